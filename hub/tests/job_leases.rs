//! Background jobs run once across the hubs sharing a database, each under a lease in the
//! database; a hub that stops cleanly gives its leases up, so another hub takes the jobs
//! at its next run instead of after the lease lapses (62 s for the digest refresh below).

use std::time::Duration;

use crate::common::Site;
use till360_hub::server;
use till360_hub::store::leases;

/// Who holds `job`'s lease (on a thread of its own: the PostgreSQL client must not run
/// on a runtime thread).
fn holder(site: &Site, job: &'static str) -> Option<String> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let database = site.open_database();
                let conn = database.get().unwrap();
                leases::holder(&*conn, job)
                    .unwrap()
                    .map(|(holder, _)| holder)
            })
            .join()
            .unwrap()
    })
}

/// Waits (at most `within`, far below the lease's time to live) until `job`'s lease is
/// `expected`'s.
async fn wait_for_holder(site: &Site, job: &'static str, expected: &str, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let now = holder(site, job);
        if now.as_deref() == Some(expected) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{job} lease still {now:?}, not {expected}'s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_that_stops_cleanly_hands_its_jobs_to_another_hub_at_once() {
    let site = Site::new();
    // Timed digest runs every second: the lease lives 2 periods and a minute past its
    // holder's last run, so a lease that were not given up would stay A's for a minute.
    site.append_config("[digests]\nrefresh_seconds = 1\n");
    let a = site.start().await;
    let a_name = server::lease_holder(&site.config());
    wait_for_holder(&site, "digests", &a_name, Duration::from_secs(20)).await;
    wait_for_holder(&site, "traits", &a_name, Duration::from_secs(20)).await;

    let b_config = site.another_hub_config("hub-b");
    let b_name = server::lease_holder(&b_config);
    let b = server::start(b_config).await.unwrap();
    // B's timed runs find A holding both jobs.
    b.refresh_digests().await.unwrap();
    assert_eq!(holder(&site, "digests").as_deref(), Some(a_name.as_str()));
    assert_eq!(holder(&site, "traits").as_deref(), Some(a_name.as_str()));

    a.shutdown().await;
    for job in ["digests", "traits"] {
        let now = holder(&site, job);
        assert!(
            now.as_deref() != Some(a_name.as_str()),
            "{job}: a hub stopped cleanly still holds the lease ({now:?})"
        );
    }
    // B's next timed digest run takes the job over (a second later, not a minute).
    wait_for_holder(&site, "digests", &b_name, Duration::from_secs(20)).await;
    b.shutdown().await;
    assert_eq!(holder(&site, "digests"), None);
}
