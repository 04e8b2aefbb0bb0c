//! A minimal HTTP/1.1 GET over a raw `TcpStream`: enough to read the hub's JSON API
//! from the demo and the end-to-end tests without an HTTP client dependency.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("GET {path} on {addr}: {source}")]
    Io {
        addr: SocketAddr,
        path: String,
        source: io::Error,
    },
    #[error("GET {path} on {addr}: malformed response: {reason}")]
    Malformed {
        addr: SocketAddr,
        path: String,
        reason: String,
    },
}

/// A response: status code and body text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
}

impl HttpResponse {
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.body).ok()
    }
}

/// The hub's HTTP API at `addr`, with the token its `api_token` asks for (`None`: a hub
/// without one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubApi {
    pub addr: SocketAddr,
    pub token: Option<String>,
}

impl HubApi {
    pub fn new(addr: SocketAddr, token: Option<String>) -> Self {
        Self { addr, token }
    }

    /// `GET path`, with `Authorization: Bearer <token>` when there is a token.
    pub fn get(&self, path: &str, timeout: Duration) -> Result<HttpResponse, HttpError> {
        get(self.addr, path, timeout, self.token.as_deref())
    }
}

/// A hub without a token.
impl From<SocketAddr> for HubApi {
    fn from(addr: SocketAddr) -> Self {
        Self::new(addr, None)
    }
}

/// `GET path` with `Connection: close`, each socket step bounded by `timeout`.
pub fn http_get(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<HttpResponse, HttpError> {
    get(addr, path, timeout, None)
}

fn get(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
    bearer: Option<&str>,
) -> Result<HttpResponse, HttpError> {
    let io_err = |source| HttpError::Io {
        addr,
        path: path.to_string(),
        source,
    };
    let malformed = |reason: &str| HttpError::Malformed {
        addr,
        path: path.to_string(),
        reason: reason.to_string(),
    };
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(io_err)?;
    stream.set_read_timeout(Some(timeout)).map_err(io_err)?;
    stream.set_write_timeout(Some(timeout)).map_err(io_err)?;
    let authorization = bearer
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\n{authorization}\
         Connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).map_err(io_err)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(io_err)?;

    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| malformed("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| malformed("no status code"))?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if chunked {
        body = dechunk(&body).ok_or_else(|| malformed("bad chunked body"))?;
    }
    Ok(HttpResponse {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn serve_once(response: &'static [u8]) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).unwrap();
            s.write_all(response).unwrap();
        });
        addr
    }

    #[test]
    fn reads_plain_and_chunked_bodies() {
        let addr = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n{\"a\":1}");
        let r = http_get(addr, "/x", Duration::from_secs(5)).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.json().unwrap()["a"], 1);
        let addr = serve_once(
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"b\r\n4\r\n\":2}\r\n0\r\n\r\n",
        );
        let r = http_get(addr, "/y", Duration::from_secs(5)).unwrap();
        assert_eq!(r.status, 404);
        assert_eq!(r.body, "{\"b\":2}");
    }

    #[test]
    fn sends_the_bearer_token_of_a_hub_api() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let mut requests = Vec::new();
            for _ in 0..2 {
                let (mut s, _) = listener.accept().unwrap();
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).unwrap();
                requests.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                    .unwrap();
            }
            requests
        });
        let with = HubApi::new(addr, Some("0123456789abcdef".into()));
        assert_eq!(with.get("/a", Duration::from_secs(5)).unwrap().status, 200);
        let without = HubApi::new(addr, None);
        assert_eq!(
            without.get("/b", Duration::from_secs(5)).unwrap().status,
            200
        );
        let requests = server.join().unwrap();
        assert!(
            requests[0].contains("\r\nAuthorization: Bearer 0123456789abcdef\r\n"),
            "{:?}",
            requests[0]
        );
        assert!(requests[1].starts_with("GET /b HTTP/1.1\r\n"));
        assert!(!requests[1].contains("Authorization"), "{:?}", requests[1]);
    }

    #[test]
    fn refuses_garbage() {
        let addr = serve_once(b"garbage");
        assert!(matches!(
            http_get(addr, "/", Duration::from_secs(5)),
            Err(HttpError::Malformed { .. })
        ));
    }
}
