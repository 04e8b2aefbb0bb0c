//! `till360-hub backup` and `restore`: one tar archive holding an online copy of the
//! SQLite database (SQLite's backup API, while the hub runs and ingests), the hub's
//! secrets (`coupon-master.key`, `quic-reset.key`) and its PKI state (CA certificate and
//! key, hub certificate and key, `revoked.toml`, `epochs.toml`), with a JSON manifest
//! naming each member's sha256. Restore puts it back into an empty data folder, where
//! `hub.toml` says each file lives, after checking every member.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::campaigns::MASTER_KEY_FILE;
use crate::config::{DatabaseUrl, HubConfig};
use crate::listener::RESET_KEY_FILE;
use crate::pki::{CA_KEY, EPOCHS_FILE, REVOKED_FILE};
use crate::store::migrations;
use crate::store::snapshot;
use crate::store::StoreError;

/// The archive format this hub writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The manifest's member name (the archive's first member).
pub const MANIFEST: &str = "manifest.json";
/// The database copy's member name.
pub const DATABASE_MEMBER: &str = "database/hub.db";
/// The largest member other than the database a restore reads (keys, PEM, TOML).
const SMALL_MEMBER_LIMIT: u64 = 16 << 20;

/// Where each member comes from and goes to, as `hub.toml` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    DataDir(&'static str),
    CaCert,
    HubCert,
    HubKey,
    PkiDir(&'static str),
}

/// A member of the archive besides the database and the manifest.
struct FileMember {
    name: &'static str,
    place: Place,
    /// A hub cannot run without it (TLS): a backup without it is refused.
    required: bool,
    /// Written 0600 on restore, as the hub makes it; 0644 otherwise.
    secret: bool,
}

const FILES: [FileMember; 8] = [
    FileMember {
        name: "data/coupon-master.key",
        place: Place::DataDir(MASTER_KEY_FILE),
        required: false,
        secret: true,
    },
    FileMember {
        name: "data/quic-reset.key",
        place: Place::DataDir(RESET_KEY_FILE),
        required: false,
        secret: true,
    },
    FileMember {
        name: "tls/ca.pem",
        place: Place::CaCert,
        required: true,
        secret: false,
    },
    FileMember {
        name: "tls/hub.pem",
        place: Place::HubCert,
        required: true,
        secret: false,
    },
    FileMember {
        name: "tls/hub.key",
        place: Place::HubKey,
        required: true,
        secret: true,
    },
    FileMember {
        name: "pki/ca.key",
        place: Place::PkiDir(CA_KEY),
        required: false,
        secret: true,
    },
    FileMember {
        name: "pki/revoked.toml",
        place: Place::PkiDir(REVOKED_FILE),
        required: false,
        secret: false,
    },
    FileMember {
        name: "pki/epochs.toml",
        place: Place::PkiDir(EPOCHS_FILE),
        required: false,
        secret: false,
    },
];

impl Place {
    fn path(self, config: &HubConfig) -> PathBuf {
        match self {
            Place::DataDir(name) => config.data_dir.join(name),
            Place::CaCert => config.ca.clone(),
            Place::HubCert => config.cert.clone(),
            Place::HubKey => config.key.clone(),
            Place::PkiDir(name) => pki_dir(config).join(name),
        }
    }
}

/// The PKI folder: the CA certificate's folder (as the hub reads `revoked.toml`).
fn pki_dir(config: &HubConfig) -> PathBuf {
    config
        .ca
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The archive's table of contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// The database's schema version (`PRAGMA user_version`).
    pub schema_version: i64,
    pub members: BTreeMap<String, MemberDigest>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberDigest {
    /// Lower-case hex.
    pub sha256: String,
    pub bytes: u64,
}

#[derive(Debug, Error)]
pub enum BackupError {
    #[error(
        "{url}: `backup` and `restore` work on SQLite only. On PostgreSQL back up the \
         database with pg_dump (it holds the hubs' shared secrets too, table hub_secrets) \
         and copy these files of each hub: {files}"
    )]
    Postgres { url: String, files: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} already exists: refusing to overwrite it")]
    Exists(PathBuf),
    #[error("{0} is not empty: a backup is restored only into an empty data folder")]
    NotEmpty(PathBuf),
    #[error("{path} is missing ({what}): a hub cannot run without it, nothing to back up")]
    Missing { what: &'static str, path: PathBuf },
    #[error("{path}: not a till360 hub backup: {reason}")]
    BadArchive { path: PathBuf, reason: String },
    #[error(
        "{path}: member {member} has sha256 {actual}, the manifest says {expected}: the \
         archive is damaged, nothing was restored"
    )]
    Checksum {
        path: PathBuf,
        member: String,
        expected: String,
        actual: String,
    },
    #[error("the database: {0}")]
    Store(#[from] StoreError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a long step has done so far, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Database pages copied (backup).
    Pages { done: u64, total: u64 },
    /// Archive bytes written (backup) or read (restore).
    Bytes { done: u64, total: u64 },
}

/// What `backup` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSummary {
    pub out: PathBuf,
    pub manifest: Manifest,
}

/// What `restore` put back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreSummary {
    pub manifest: Manifest,
    /// Every file written, the database first.
    pub written: Vec<PathBuf>,
}

/// The files to keep besides a `pg_dump` (the refusal on PostgreSQL names them).
fn postgres_advice(config: &HubConfig, url: String) -> BackupError {
    let files: Vec<String> = FILES
        .iter()
        .map(|f| f.place.path(config).display().to_string())
        .chain([config.origin.display().to_string()])
        .collect();
    BackupError::Postgres {
        url,
        files: files.join(", "),
    }
}

fn sqlite_path(config: &HubConfig) -> Result<&Path, BackupError> {
    match &config.database {
        DatabaseUrl::Sqlite(path) => Ok(path),
        DatabaseUrl::Postgres(url) => Err(postgres_advice(config, url.to_string())),
    }
}

fn sha256_hex(digest: ring::digest::Digest) -> String {
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// `path` with `suffix` added to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Removes the temporary files it names when dropped (a failed or finished run).
struct Scratch(Vec<PathBuf>);

impl Drop for Scratch {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = fs::remove_file(path);
        }
    }
}

/// Hashes a reader to the end: (sha256 hex, bytes).
fn hash_reader(mut reader: impl Read, path: &Path) -> Result<(String, u64), BackupError> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 64 << 10];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
        total += n as u64;
    }
    Ok((sha256_hex(ctx.finish()), total))
}

/// Writes a consistent backup of the hub `config` describes to `out` (via `out.tmp`,
/// mode 0600), while that hub may be running.
pub fn backup(
    config: &HubConfig,
    out: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<BackupSummary, BackupError> {
    let db_path = sqlite_path(config)?;
    if out.exists() {
        return Err(BackupError::Exists(out.to_path_buf()));
    }
    let tmp = with_suffix(out, ".tmp");
    let db_copy = with_suffix(out, ".db.tmp");
    for path in [&tmp, &db_copy] {
        if path.exists() {
            return Err(BackupError::Exists(path.clone()));
        }
    }
    let mut scratch = Scratch(vec![db_copy.clone()]);

    // The small files first: they change seldom, and never with the database.
    let mut files: Vec<(&'static str, Vec<u8>)> = Vec::new();
    for member in &FILES {
        let path = member.place.path(config);
        match fs::read(&path) {
            Ok(bytes) => files.push((member.name, bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !member.required => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(BackupError::Missing {
                    what: member.name,
                    path,
                })
            }
            Err(source) => return Err(BackupError::Io { path, source }),
        }
    }

    let snapshot = snapshot::copy_consistent(
        db_path,
        &db_copy,
        config.database_timeout,
        &mut |done, total| progress(Progress::Pages { done, total }),
    )?;
    let (db_sha, db_bytes) =
        hash_reader(fs::File::open(&db_copy).map_err(io(&db_copy))?, &db_copy)?;

    let mut members = BTreeMap::new();
    members.insert(
        DATABASE_MEMBER.to_string(),
        MemberDigest {
            sha256: db_sha,
            bytes: db_bytes,
        },
    );
    for (name, bytes) in &files {
        members.insert(
            (*name).to_string(),
            MemberDigest {
                sha256: sha256_hex(ring::digest::digest(&ring::digest::SHA256, bytes)),
                bytes: bytes.len() as u64,
            },
        );
    }
    let now = chrono::Utc::now();
    let manifest = Manifest {
        version: FORMAT_VERSION,
        created_at: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        schema_version: snapshot.schema_version,
        members,
    };
    let manifest_json = serde_json::to_vec_pretty(&manifest).map_err(|e| BackupError::Io {
        path: out.to_path_buf(),
        source: std::io::Error::other(e),
    })?;

    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    scratch.0.push(tmp.clone());
    let total = db_bytes + files.iter().map(|(_, b)| b.len() as u64).sum::<u64>();
    let mtime = u64::try_from(now.timestamp()).unwrap_or(0);
    let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
    let append = |tar: &mut tar::Builder<_>, name: &str, size: u64, data: &mut dyn Read| {
        let mut header = tar::Header::new_gnu();
        header.set_size(size);
        header.set_mode(0o600);
        header.set_mtime(mtime);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, name, data).map_err(io(&tmp))
    };
    append(
        &mut tar,
        MANIFEST,
        manifest_json.len() as u64,
        &mut manifest_json.as_slice(),
    )?;
    let mut done = 0u64;
    {
        let db_file = fs::File::open(&db_copy).map_err(io(&db_copy))?;
        let mut counted = CountingReader {
            inner: db_file,
            on_read: &mut |n| {
                done += n;
                progress(Progress::Bytes { done, total });
            },
        };
        append(&mut tar, DATABASE_MEMBER, db_bytes, &mut counted)?;
    }
    for (name, bytes) in &files {
        append(&mut tar, name, bytes.len() as u64, &mut bytes.as_slice())?;
        done += bytes.len() as u64;
        progress(Progress::Bytes { done, total });
    }
    let writer = tar.into_inner().map_err(io(&tmp))?;
    let file = writer.into_inner().map_err(|e| BackupError::Io {
        path: tmp.clone(),
        source: e.into_error(),
    })?;
    file.sync_all().map_err(io(&tmp))?;
    drop(file);
    if out.exists() {
        return Err(BackupError::Exists(out.to_path_buf()));
    }
    fs::rename(&tmp, out).map_err(io(out))?;
    scratch.0.retain(|p| p != &tmp);
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        // The rename is durable once the folder is synced.
        if let Ok(dir) = fs::File::open(dir) {
            let _ = dir.sync_all();
        }
    }
    Ok(BackupSummary {
        out: out.to_path_buf(),
        manifest,
    })
}

/// Tells `on_read` how many bytes each read returned.
struct CountingReader<'a, R> {
    inner: R,
    on_read: &'a mut dyn FnMut(u64),
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.on_read)(n as u64);
        Ok(n)
    }
}

/// A member read from the archive: the database streamed into a file, the rest held.
enum Extracted {
    Database,
    Small(Vec<u8>),
}

/// Puts the backup `from` into the empty data folder of the hub `config` describes: the
/// database, the secrets and the PKI files each where `hub.toml` says, none of which may
/// exist yet. Every member is checked against the manifest before anything is written
/// to its place.
pub fn restore(
    config: &HubConfig,
    from: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<RestoreSummary, BackupError> {
    let db_path = sqlite_path(config)?.to_path_buf();
    match fs::read_dir(&config.data_dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(BackupError::NotEmpty(config.data_dir.clone()));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(BackupError::Io {
                path: config.data_dir.clone(),
                source,
            })
        }
    }
    // Nothing already there is overwritten: check every place before reading the archive.
    let targets: Vec<(&FileMember, PathBuf)> = FILES
        .iter()
        .map(|member| (member, member.place.path(config)))
        .collect();
    for path in std::iter::once(&db_path).chain(targets.iter().map(|(_, p)| p)) {
        if path.exists() {
            return Err(BackupError::Exists(path.clone()));
        }
    }
    let db_dir = db_path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    fs::create_dir_all(&db_dir).map_err(io(&db_dir))?;
    let db_tmp = with_suffix(&db_path, ".restore-tmp");
    if db_tmp.exists() {
        return Err(BackupError::Exists(db_tmp));
    }
    // Reading the copy (a WAL-mode file) leaves SQLite's -wal and -shm beside it.
    let scratch = Scratch(vec![
        db_tmp.clone(),
        with_suffix(&db_tmp, "-wal"),
        with_suffix(&db_tmp, "-shm"),
    ]);

    let bad = |reason: String| BackupError::BadArchive {
        path: from.to_path_buf(),
        reason,
    };
    let archive_file = fs::File::open(from).map_err(io(from))?;
    let total = archive_file.metadata().map_err(io(from))?.len();
    let mut done = 0u64;
    let counted = CountingReader {
        inner: std::io::BufReader::new(archive_file),
        on_read: &mut |n| {
            done += n;
            progress(Progress::Bytes { done, total });
        },
    };
    let mut archive = tar::Archive::new(counted);
    let mut manifest: Option<Manifest> = None;
    let mut read: BTreeMap<String, (MemberDigest, Extracted)> = BTreeMap::new();
    for entry in archive.entries().map_err(|e| bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(bad("a member that is not a regular file".into()));
        }
        let name = entry
            .path()
            .map_err(|e| bad(e.to_string()))?
            .to_str()
            .ok_or_else(|| bad("a member name that is not UTF-8".into()))?
            .to_string();
        if read.contains_key(&name) || (name == MANIFEST && manifest.is_some()) {
            return Err(bad(format!("member {name} twice")));
        }
        if name == MANIFEST {
            let mut text = Vec::new();
            (&mut entry)
                .take(SMALL_MEMBER_LIMIT)
                .read_to_end(&mut text)
                .map_err(|e| bad(e.to_string()))?;
            let parsed: Manifest =
                serde_json::from_slice(&text).map_err(|e| bad(format!("{MANIFEST}: {e}")))?;
            if parsed.version != FORMAT_VERSION {
                return Err(bad(format!(
                    "format version {}, this hub reads version {FORMAT_VERSION}",
                    parsed.version
                )));
            }
            manifest = Some(parsed);
        } else if name == DATABASE_MEMBER {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                // It holds people's data and, in hub_secrets, the secrets themselves.
                .mode(0o600)
                .open(&db_tmp)
                .map_err(io(&db_tmp))?;
            let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
            let mut buf = vec![0u8; 64 << 10];
            let mut bytes = 0u64;
            loop {
                let n = entry.read(&mut buf).map_err(|e| bad(e.to_string()))?;
                if n == 0 {
                    break;
                }
                ctx.update(&buf[..n]);
                file.write_all(&buf[..n]).map_err(io(&db_tmp))?;
                bytes += n as u64;
            }
            file.sync_all().map_err(io(&db_tmp))?;
            let digest = MemberDigest {
                sha256: sha256_hex(ctx.finish()),
                bytes,
            };
            read.insert(name, (digest, Extracted::Database));
        } else if FILES.iter().any(|f| f.name == name) {
            let mut bytes = Vec::new();
            (&mut entry)
                .take(SMALL_MEMBER_LIMIT)
                .read_to_end(&mut bytes)
                .map_err(|e| bad(e.to_string()))?;
            let digest = MemberDigest {
                sha256: sha256_hex(ring::digest::digest(&ring::digest::SHA256, &bytes)),
                bytes: bytes.len() as u64,
            };
            read.insert(name, (digest, Extracted::Small(bytes)));
        } else {
            return Err(bad(format!("unknown member {name}")));
        }
    }
    drop(archive);
    let manifest = manifest.ok_or_else(|| bad(format!("no {MANIFEST}")))?;

    // Every member the manifest names, each as it says; nothing else.
    for (name, expected) in &manifest.members {
        let (actual, _) = read
            .get(name)
            .ok_or_else(|| bad(format!("member {name} is missing")))?;
        if actual != expected {
            return Err(BackupError::Checksum {
                path: from.to_path_buf(),
                member: name.clone(),
                expected: format!("{} ({} bytes)", expected.sha256, expected.bytes),
                actual: format!("{} ({} bytes)", actual.sha256, actual.bytes),
            });
        }
    }
    if let Some(extra) = read.keys().find(|n| !manifest.members.contains_key(*n)) {
        return Err(bad(format!("member {extra} is not in the manifest")));
    }
    if !read.contains_key(DATABASE_MEMBER) {
        return Err(bad(format!("no {DATABASE_MEMBER}")));
    }
    let copy = snapshot::inspect(&db_tmp)?;
    if copy.schema_version != manifest.schema_version {
        return Err(bad(format!(
            "the database is at schema {}, the manifest says {}",
            copy.schema_version, manifest.schema_version
        )));
    }
    migrations::refuse_newer(copy.schema_version)?;

    // Write the files, then move the database into place last: a restore that fails
    // half-way leaves no database a hub would start on.
    let mut written = Vec::new();
    let mut placed = Scratch(Vec::new());
    for (member, path) in &targets {
        let Some((_, Extracted::Small(bytes))) = read.get(member.name) else {
            continue;
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(io(dir))?;
        }
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(if member.secret { 0o600 } else { 0o644 })
            .open(path)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    BackupError::Exists(path.clone())
                } else {
                    io(path)(e)
                }
            })?;
        placed.0.push(path.clone());
        file.write_all(bytes).map_err(io(path))?;
        file.sync_all().map_err(io(path))?;
        written.push(path.clone());
    }
    fs::create_dir_all(&config.data_dir).map_err(io(&config.data_dir))?;
    // hard_link refuses an existing target, where rename would replace it.
    fs::hard_link(&db_tmp, &db_path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            BackupError::Exists(db_path.clone())
        } else {
            io(&db_path)(e)
        }
    })?;
    placed.0.clear();
    // The temporary name goes with `scratch`; the database stays under its own.
    drop(scratch);
    written.insert(0, db_path);
    Ok(RestoreSummary { manifest, written })
}
