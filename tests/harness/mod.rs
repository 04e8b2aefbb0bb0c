//! End-to-end harness: a temp folder with a PKI, configs on free ports, the hub and
//! agents as real child processes (`till360 hub run`, `till360 agent run`) killed on
//! drop, virtual devices per till and an HTTP client for the hub's API.

#![allow(dead_code)] // each test uses a different part

pub mod browser;

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;
use till360::faults::ReceiptKey;
use till360::http_client::{http_get, HttpResponse};
use till360::rig::{
    free_tcp_addr, free_udp_addr, install_layouts, play_visit, profile_differences, wait_until,
    write_agent_config, write_hub_config_on, AgentSettings, HubFiles, PlayOptions, TillDevices,
};
use till360::sim::{
    CardExpectation, Morning, ReceiptStyle, Scan, SimRng, StoreSetup, Suffix, Visit,
};
use till360_agent::journal::{Journal, JournalStatus};
use till360_shared::AgentId;

/// How long any wait on the system may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// A child process killed (SIGKILL) and reaped on drop.
pub struct Proc {
    child: Option<Child>,
    pub name: String,
    pub log: PathBuf,
}

impl Proc {
    /// SIGKILL: no shutdown code runs, as with a power cut.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM (how systemd stops a service) and waits up to `bound` for the exit;
    /// `None` if it did not exit in time (it is then killed on drop).
    pub fn terminate(&mut self, bound: Duration) -> Option<std::process::ExitStatus> {
        self.send_sigterm();
        self.wait_exit(bound)
    }

    /// Sends SIGTERM without waiting.
    pub fn send_sigterm(&mut self) {
        let Some(child) = self.child.as_mut() else {
            panic!("{} has already exited", self.name);
        };
        let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) with a pid this test spawned and has not reaped.
        let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(sent, 0, "SIGTERM to {}", self.name);
    }

    /// Waits up to `bound` for the process to exit; `None` if it is still running.
    pub fn wait_exit(&mut self, bound: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let status = wait_until(bound, || child.try_wait().ok().flatten());
        if status.is_some() {
            self.child = None;
        }
        status
    }

    /// Fails the test if the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(c) = self.child.as_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                panic!(
                    "{} exited with {status}; log:\n{}",
                    self.name,
                    read_log(&self.log)
                );
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn read_log(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    // The tail is what explains a failure.
    let start = text.len().saturating_sub(6000);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    text[start..].to_string()
}

/// One till: its devices and config.
pub struct Till {
    pub setup: StoreSetup,
    pub devices: TillDevices,
    pub config: PathBuf,
    pub data_dir: PathBuf,
    pub rng: SimRng,
    pub cuts: usize,
}

impl Till {
    /// Plays `visit` and checks every status poll was answered by the printer.
    pub fn play(&mut self, visit: &Visit) {
        self.play_with(visit, &PlayOptions::default());
    }

    /// [`Till::play`] with other pacing (e.g. a longer pause after the scans).
    pub fn play_with(&mut self, visit: &Visit, options: &PlayOptions) {
        let report = play_visit(&self.devices, visit, &mut self.rng, self.cuts, options)
            .unwrap_or_else(|e| panic!("{}/{}: {e}", self.setup.store, self.setup.till));
        assert_eq!(
            report.status_replies.len(),
            visit.receipt.status_polls(),
            "every DLE EOT is answered"
        );
        self.cuts += 1;
    }
}

pub struct Site {
    pub dir: TempDir,
    pub pki: PathBuf,
    pub layouts: PathBuf,
    pub hub: HubFiles,
    /// The hub's PostgreSQL database when `TILL360_TEST_ENGINE=postgres` (created for this
    /// site, dropped with it); `None`: SQLite in `hub-data/hub.db`.
    pub postgres: Option<till360_hub::store::postgres::TemporaryDatabase>,
}

/// A fresh PostgreSQL database for a site's hub when `TILL360_TEST_ENGINE=postgres`, on
/// the server `TILL360_TEST_POSTGRES` names; `None` on SQLite (the default). PostgreSQL
/// chosen without a reachable server fails the test.
fn test_database() -> Option<till360_hub::store::postgres::TemporaryDatabase> {
    let engine = std::env::var("TILL360_TEST_ENGINE").unwrap_or_default();
    match engine.trim() {
        "" | "sqlite" => None,
        "postgres" | "postgresql" => {
            let server = std::env::var("TILL360_TEST_POSTGRES").unwrap_or_else(|_| {
                panic!(
                    "TILL360_TEST_ENGINE=postgres needs TILL360_TEST_POSTGRES, e.g. \
                     postgres://postgres@127.0.0.1:5432/test"
                )
            });
            Some(postgres_database(&server))
        }
        other => panic!("TILL360_TEST_ENGINE={other:?}: expected sqlite or postgres"),
    }
}

/// A fresh database on the PostgreSQL server `server` names.
fn postgres_database(server: &str) -> till360_hub::store::postgres::TemporaryDatabase {
    let server = till360_hub::config::PostgresUrl::parse(server.trim())
        .unwrap_or_else(|e| panic!("TILL360_TEST_POSTGRES: {e}"));
    // On a thread of its own: sites are made inside async tests too, where the
    // synchronous PostgreSQL client must not run.
    std::thread::spawn(move || {
        till360_hub::store::postgres::TemporaryDatabase::create(&server, "t360e2e")
            .unwrap_or_else(|e| panic!("TILL360_TEST_POSTGRES={server}: {e}"))
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

impl Drop for Site {
    /// The PostgreSQL database goes on a thread of its own, as it was made.
    fn drop(&mut self) {
        if let Some(database) = self.postgres.take() {
            let _ = std::thread::spawn(move || drop(database)).join();
        }
    }
}

impl Site {
    pub fn new() -> Site {
        Site::with_database(test_database())
    }

    /// A site whose hub runs on a fresh PostgreSQL database whatever
    /// `TILL360_TEST_ENGINE` says (several hubs share one only there); `None`, said
    /// loudly, when `TILL360_TEST_POSTGRES` names no server.
    pub fn on_postgres() -> Option<Site> {
        match std::env::var("TILL360_TEST_POSTGRES") {
            Ok(server) if !server.trim().is_empty() => {
                Some(Site::with_database(Some(postgres_database(&server))))
            }
            _ => {
                eprintln!(
                    "*** SKIPPED: this test needs PostgreSQL (set TILL360_TEST_POSTGRES, e.g. \
                     postgres://postgres@127.0.0.1:5432/test) ***"
                );
                None
            }
        }
    }

    fn with_database(postgres: Option<till360_hub::store::postgres::TemporaryDatabase>) -> Site {
        let mut dir = tempfile::Builder::new()
            .prefix("till360-e2e-")
            .tempdir()
            .expect("temp dir");
        // TILL360_KEEP_E2E=1 keeps the folder (configs, logs, databases) for a post-mortem.
        if std::env::var_os("TILL360_KEEP_E2E").is_some() {
            dir.disable_cleanup(true);
            eprintln!("keeping {}", dir.path().display());
        }
        let pki = dir.path().join("pki");
        till360_hub::pki::init_ca(
            &pki,
            &["localhost".to_string()],
            &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
            false,
        )
        .expect("init CA");
        let layouts = dir.path().join("receipts");
        install_layouts(&layouts).expect("layouts");
        let url = postgres.as_ref().map(|db| db.url().connection_string());
        let hub = write_hub_config_on(
            dir.path(),
            &pki,
            free_udp_addr().expect("free udp port"),
            free_tcp_addr().expect("free tcp port"),
            &[],
            url.as_deref(),
        )
        .expect("hub.toml");
        Site {
            dir,
            pki,
            layouts,
            hub,
            postgres,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Issues a certificate for `store/till` from this site's CA.
    pub fn issue(&self, store: &str, till: &str) -> PathBuf {
        let out = self.path().join(format!("certs-{store}-{till}"));
        till360_hub::pki::issue_agent(&self.pki, store, till, &out).expect("issue agent cert");
        out
    }

    /// A till with certificates from this site's CA.
    pub fn till(&self, store: &str, style: ReceiptStyle, suffix: Suffix, seed: u64) -> Till {
        let certs = self.issue(store, "T01");
        self.till_with_certs(store, style, suffix, seed, &certs)
    }

    pub fn till_with_certs(
        &self,
        store: &str,
        style: ReceiptStyle,
        suffix: Suffix,
        seed: u64,
        certs: &Path,
    ) -> Till {
        self.till_towards(
            store,
            "T01",
            style,
            suffix,
            seed,
            certs,
            self.hub.quic,
            None,
        )
    }

    /// Till `till` of `store` with its own certificate, and `[coupons] budget_ms` and
    /// `digest_timeout_ms` from `coupon_timeouts_ms` (`None`: the defaults).
    pub fn till_named(
        &self,
        store: &str,
        till: &str,
        style: ReceiptStyle,
        suffix: Suffix,
        seed: u64,
        coupon_timeouts_ms: Option<(u64, u64)>,
    ) -> Till {
        let certs = self.issue(store, till);
        let hub = self.hub.quic;
        self.till_towards(
            store,
            till,
            style,
            suffix,
            seed,
            &certs,
            hub,
            coupon_timeouts_ms,
        )
    }

    /// A till whose agent talks to `hub_address` (e.g. a fault proxy in front of the
    /// hub) instead of the hub's own QUIC address.
    pub fn till_via(
        &self,
        store: &str,
        style: ReceiptStyle,
        suffix: Suffix,
        seed: u64,
        hub_address: SocketAddr,
    ) -> Till {
        let certs = self.issue(store, "T01");
        self.till_towards(store, "T01", style, suffix, seed, &certs, hub_address, None)
    }

    #[allow(clippy::too_many_arguments)]
    fn till_towards(
        &self,
        store: &str,
        till: &str,
        style: ReceiptStyle,
        suffix: Suffix,
        seed: u64,
        certs: &Path,
        hub_address: SocketAddr,
        coupon_timeouts_ms: Option<(u64, u64)>,
    ) -> Till {
        let setup = StoreSetup {
            store: store.to_string(),
            till: till.to_string(),
            style,
        };
        let devices = TillDevices::open(suffix).expect("virtual devices");
        let data_dir = self.path().join(format!("agent-{store}-{till}"));
        let config = self.path().join(format!("agent-{store}-{till}.toml"));
        let layout = self.layouts.join(format!("{}.toml", style.layout_name()));
        write_agent_config(
            &config,
            &AgentSettings {
                store,
                till,
                data_dir: &data_dir,
                layout: &layout,
                hub: hub_address,
                certs,
                coupon_timeouts_ms,
            },
            &devices,
        )
        .expect("agent.toml");
        Till {
            setup,
            devices,
            config,
            data_dir,
            rng: SimRng::new(seed),
            cuts: 0,
        }
    }

    fn spawn(&self, name: &str, args: &[&str]) -> Proc {
        self.spawn_with_env(name, args, &[])
    }

    /// Runs `till360 ARGS` with `envs` added to its environment (its log is `name.log`).
    pub fn spawn_with_env(&self, name: &str, args: &[&str], envs: &[(&str, &str)]) -> Proc {
        let log = self.path().join(format!("{name}.log"));
        let out = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_till360"))
            .args(args)
            .env("RUST_LOG", "info")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn till360");
        Proc {
            child: Some(child),
            name: name.to_string(),
            log,
        }
    }

    /// Starts the hub and waits until its API answers.
    pub fn start_hub(&self) -> Proc {
        self.start_hub_from(&self.hub, "hub")
    }

    /// Another hub on this site's database (PostgreSQL: see [`Site::on_postgres`]), with
    /// its own folder, data_dir and ports, the site's CA and hub certificate.
    pub fn another_hub(&self, name: &str) -> HubFiles {
        let url = self
            .postgres
            .as_ref()
            .map(|db| db.url().connection_string());
        let dir = self.path().join(name);
        std::fs::create_dir_all(&dir).expect("hub folder");
        write_hub_config_on(
            &dir,
            &self.pki,
            free_udp_addr().expect("free udp port"),
            free_tcp_addr().expect("free tcp port"),
            &[],
            url.as_deref(),
        )
        .expect("hub.toml")
    }

    /// Starts the hub of `files` (its log is `name.log`) and waits until its API answers.
    pub fn start_hub_from(&self, files: &HubFiles, name: &str) -> Proc {
        let config = files.config.display().to_string();
        let mut hub = self.spawn(name, &["hub", "run", "--config", &config]);
        let up = wait_until(DEADLINE, || {
            hub.assert_running();
            http_get(files.http, "/api/v1/health", Duration::from_secs(5))
                .ok()
                .filter(|r| r.status == 200)
        });
        assert!(
            up.is_some(),
            "{name} did not come up:\n{}",
            read_log(&hub.log)
        );
        hub
    }

    /// Till T01 of `store` whose agent fails over between `hubs` (`[hub] address` a list),
    /// in that order.
    pub fn till_via_hubs(
        &self,
        store: &str,
        style: ReceiptStyle,
        suffix: Suffix,
        seed: u64,
        hubs: &[SocketAddr],
    ) -> Till {
        let till = self.till_via(store, style, suffix, seed, hubs[0]);
        let text = std::fs::read_to_string(&till.config).expect("agent.toml");
        let one = format!("address = \"{}\"", hubs[0]);
        assert!(text.contains(&one), "agent.toml names its hub as {one}");
        let list: Vec<String> = hubs.iter().map(|h| format!("\"{h}\"")).collect();
        let text = text.replace(&one, &format!("address = [{}]", list.join(", ")));
        std::fs::write(&till.config, text).expect("agent.toml");
        till
    }

    /// Starts an agent and waits until it reads its scanner and POS ports. Bytes
    /// written before that wait in the ptys, and a scan and a receipt buffered on two
    /// ports cannot be put back in the order they were written; at a real till nobody
    /// scans while the agent boots.
    pub fn start_agent(&self, till: &Till) -> Proc {
        let config = till.config.display().to_string();
        let name = match till.setup.till.as_str() {
            "T01" => format!("agent-{}", till.setup.store),
            other => format!("agent-{}-{other}", till.setup.store),
        };
        // Each start appends to the same log: read only what this start wrote.
        let log_path = self.path().join(format!("{name}.log"));
        let offset = std::fs::metadata(&log_path).map_or(0, |m| m.len() as usize);
        let mut agent = self.spawn(&name, &["agent", "run", "--config", &config]);
        let ready = wait_until(DEADLINE, || {
            agent.assert_running();
            let log = std::fs::read(&agent.log).unwrap_or_default();
            let new = String::from_utf8_lossy(log.get(offset..).unwrap_or_default());
            (new.contains("scanner: reading") && new.contains("proxy: ")).then_some(())
        });
        assert!(
            ready.is_some(),
            "{name} never opened its ports:\n{}",
            read_log(&agent.log)
        );
        agent
    }

    pub fn get(&self, path: &str) -> Option<HttpResponse> {
        http_get(self.hub.http, path, Duration::from_secs(5)).ok()
    }

    /// The profile for `card`: `Some(json)` on 200, `None` on 404; panics otherwise.
    pub fn profile(&self, card: &str) -> Option<Value> {
        let r = self.get(&format!("/api/v1/profiles/by-card/{card}"))?;
        match r.status {
            200 => r.json(),
            _ => None,
        }
    }

    pub fn status_of(&self, path: &str) -> Option<u16> {
        self.get(path).map(|r| r.status)
    }

    /// Waits until every card's profile shows exactly the expected count, total and
    /// stores; on timeout panics with the differences.
    pub fn wait_for_profiles(&self, expected: &BTreeMap<String, CardExpectation>, logs: &[&Proc]) {
        let mut last_diff = Vec::new();
        let ok = wait_until(DEADLINE, || {
            last_diff = profile_differences(self.hub.http, expected);
            last_diff.is_empty().then_some(())
        });
        if ok.is_none() {
            let mut msg = format!(
                "profiles never matched the simulation ({} cards differ), e.g.:\n",
                last_diff.len()
            );
            for d in last_diff.iter().take(5) {
                msg.push_str(&format!("  {d}\n"));
            }
            for p in logs {
                msg.push_str(&format!("--- {} log:\n{}\n", p.name, read_log(&p.log)));
            }
            panic!("{msg}");
        }
    }
}

impl Site {
    /// The hub's database (either engine), opened as the hub opens it.
    pub fn hub_database(&self) -> Result<till360_hub::store::Database, String> {
        let config =
            till360_hub::config::HubConfig::load(&self.hub.config).map_err(|e| e.to_string())?;
        till360_hub::server::open_database(&config).map_err(|e| format!("{e:#}"))
    }

    /// Every receipt the hub has committed (`transactions`: its commit is the only
    /// truth for exactly-once), read through the hub's store. A row without a receipt
    /// number is named by its seq so it still counts as unexpected.
    pub fn hub_receipts(&self) -> Result<Vec<ReceiptKey>, String> {
        // On a thread of its own: callers poll it from async tests too.
        let config = self.hub.config.clone();
        let rows = std::thread::spawn(move || {
            let config =
                till360_hub::config::HubConfig::load(&config).map_err(|e| e.to_string())?;
            let db = till360_hub::server::open_database(&config).map_err(|e| format!("{e:#}"))?;
            let store = till360_hub::store::SqlStore::open(&db).map_err(|e| e.to_string())?;
            store.committed_receipts().map_err(|e| e.to_string())
        })
        .join()
        .map_err(|_| "the receipts reader panicked".to_string())??;
        Ok(rows
            .into_iter()
            .map(|r| ReceiptKey {
                store: r.store,
                till: r.till,
                receipt_no: r
                    .receipt_no
                    .unwrap_or_else(|| format!("(none, seq {})", r.seq)),
            })
            .collect())
    }

    /// `(store, till) → last_seq` from `GET /api/v1/agents`.
    pub fn hub_high_water(&self) -> Option<BTreeMap<(String, String), u64>> {
        let agents = self.get("/api/v1/agents")?.json()?;
        Some(
            agents
                .as_array()?
                .iter()
                .filter_map(|a| {
                    Some((
                        (
                            a["store"].as_str()?.to_string(),
                            a["till"].as_str()?.to_string(),
                        ),
                        a["last_seq"].as_u64()?,
                    ))
                })
                .collect(),
        )
    }
}

/// The till's journal as `till360-agent status` reads it (WAL lets a second connection
/// read while the agent runs).
pub fn journal_status(till: &Till) -> Option<JournalStatus> {
    journal_status_in(&till.data_dir, &till.setup.store, &till.setup.till)
}

/// [`journal_status`] by the agent's data_dir, for a till another thread holds.
pub fn journal_status_in(data_dir: &Path, store: &str, till: &str) -> Option<JournalStatus> {
    let agent = AgentId::new(store.to_string(), till.to_string());
    let journal = Journal::open_existing(data_dir, &agent).ok()?;
    journal.status().ok()
}

/// Events a visit journals: one per loyalty-card scan, one for the receipt.
pub fn journaled_events(visit: &Visit) -> u64 {
    let cards = visit
        .scans
        .iter()
        .filter(|s| matches!(s, Scan::Card(_)))
        .count();
    cards as u64 + 1
}

/// Visits of `morning` at store index `i`, cloned so tills can be played on threads.
pub fn visits_at(morning: &Morning, i: usize) -> Vec<Visit> {
    morning.visits_at(i).cloned().collect()
}

/// The receipts `visits` print at `till`, as the total-queue check names them.
pub fn printed_keys(till: &Till, visits: &[Visit]) -> Vec<ReceiptKey> {
    visits
        .iter()
        .map(|v| {
            ReceiptKey::new(
                &till.setup.store,
                &till.setup.till,
                &v.receipt.expected.receipt_no,
            )
        })
        .collect()
}

/// `Ok` when each journal's acked seq equals its last seq and the hub's high-water
/// mark; otherwise what differs.
pub fn drained(site: &Site, tills: &[Till]) -> Result<(), String> {
    let hub = site.hub_high_water().ok_or("no /api/v1/agents answer")?;
    for till in tills {
        let st = journal_status(till).ok_or(format!("{}: journal unreadable", till.setup.store))?;
        let hub_seq = hub
            .get(&(till.setup.store.clone(), till.setup.till.clone()))
            .copied();
        if st.acked_seq != st.last_seq || hub_seq != Some(st.last_seq) {
            return Err(format!(
                "{}: journal last {} acked {}, hub {hub_seq:?}",
                till.setup.store, st.last_seq, st.acked_seq
            ));
        }
    }
    Ok(())
}
