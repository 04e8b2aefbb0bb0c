//! `till360-hub import customers|orders|products FILE --config hub.toml`, in-process, on
//! the test engine's database.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use till360_hub::cli::main_with_args;

use crate::common::Site;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn run(args: &[&str]) -> ExitCode {
    main_with_args(
        std::iter::once("till360-hub")
            .chain(args.iter().copied())
            .map(Into::into),
    )
}

#[test]
fn import_commands_apply_good_files_and_refuse_bad_ones() {
    let site = Site::new();
    site.append_config(
        "[identity]\ndefault_country_code = 31\nmax_customers_per_identifier = 3\n\
         [[segment]]\nid = \"online-only\"\nwhere = [\"online_share >= 1\"]\n",
    );
    let dir = &site.dir;
    let config = dir.path().join("hub.toml");
    let config = config.to_str().unwrap();
    let file = |name: &str| data(name).to_str().unwrap().to_string();
    assert_eq!(
        run(&[
            "import",
            "products",
            &file("products.csv"),
            "--config",
            config
        ]),
        ExitCode::SUCCESS
    );
    assert_eq!(
        run(&[
            "import",
            "customers",
            &file("customers.csv"),
            "--config",
            config
        ]),
        ExitCode::SUCCESS
    );
    assert_eq!(
        run(&[
            "import",
            "orders",
            &file("orders.jsonl"),
            "--config",
            config
        ]),
        ExitCode::SUCCESS
    );
    assert_eq!(
        run(&[
            "import",
            "customers",
            &file("customers_bad_line7.csv"),
            "--config",
            config
        ]),
        ExitCode::FAILURE
    );
    assert_eq!(
        run(&[
            "import",
            "customers",
            &file("no-such-file.csv"),
            "--config",
            config
        ]),
        ExitCode::FAILURE
    );
    let count = |sql: &str| -> i64 { site.count(sql, args![]) };
    assert_eq!(count("SELECT count(*) FROM products"), 4);
    assert_eq!(count("SELECT count(*) FROM orders"), 2);
    assert_eq!(count("SELECT count(*) FROM profiles"), 3);
    assert_eq!(
        count("SELECT count(*) FROM profiles WHERE customer_no = 'C206'"),
        0
    );

    // Traits as of a date use only what happened by then (a back-test).
    let export = |as_of: &str| -> Vec<String> {
        let out = dir.path().join(format!("traits-{as_of}.csv"));
        let out_s = out.to_str().unwrap();
        assert_eq!(
            run(&[
                "traits",
                "export",
                "--config",
                config,
                "--as-of",
                as_of,
                "--horizon-days",
                "90",
                "--out",
                out_s,
            ]),
            ExitCode::SUCCESS
        );
        std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    };
    let header =
        "profile_id,customer_no,cards,frequency,recency_days,t_days,monetary_cents,rfm,p_alive,\
                  expected_purchases,clv_cents,churn_risk,segments,provisional,p_alive_low,\
                  p_alive_high,expected_purchases_low,expected_purchases_high,clv_cents_low,\
                  clv_cents_high";
    let before = export("2025-12-31");
    assert_eq!(before, vec![header.to_string()], "nothing happened yet");
    let first_day = export("2026-01-10");
    assert_eq!(
        first_day.len(),
        2,
        "only the first order by then: {first_day:?}"
    );
    let later = export("2026-02-01");
    assert_eq!(later.len(), 3, "both online orders: {later:?}");
    for row in &later[1..] {
        let cells: Vec<&str> = row.split(',').collect();
        assert_eq!(
            &cells[12..14],
            ["online-only", "1"],
            "online-only buyers are in the segment as of the date (provisional traits): {row}"
        );
    }
    assert_eq!(
        run(&[
            "traits",
            "export",
            "--config",
            config,
            "--as-of",
            "yesterday"
        ]),
        ExitCode::from(2),
        "a bad date is a usage error"
    );
}

/// The command reads the suppression list with the key from `data_dir`: a CRM file
/// imported again after an erase runs, and leaves the erased person out.
#[test]
fn an_import_after_an_erase_leaves_the_erased_person_out() {
    use till360_hub::store::{SqlStore, Store};

    let site = Site::new();
    let dir = &site.dir;
    let config = dir.path().join("hub.toml");
    let config = config.to_str().unwrap();
    let crm = data("customers.csv");
    let crm = crm.to_str().unwrap();
    assert_eq!(
        run(&["import", "customers", crm, "--config", config]),
        ExitCode::SUCCESS
    );
    // The hub erases Anna (as `DELETE /api/v1/profiles/{id}` does).
    let data_dir = dir.path().join("data");
    // A running hub creates it (on PostgreSQL nothing else does).
    std::fs::create_dir_all(&data_dir).unwrap();
    let master = till360_hub::campaigns::MasterKey::load_or_create(&data_dir).unwrap();
    let mut store = SqlStore::open(&site.open_database()).unwrap();
    store.set_coupon_master(master.as_bytes()).unwrap();
    let anna = till360_shared::CardNumber::parse("2401000009013").unwrap();
    let id = store.profile_by_card(&anna).unwrap().unwrap().profile_id;
    let now = till360_shared::Timestamp::from_utc(chrono::Utc::now(), 0);
    store.erase_profile(&id, now).unwrap().unwrap();
    drop(store);

    assert_eq!(
        run(&["import", "customers", crm, "--config", config]),
        ExitCode::SUCCESS
    );
    let store = SqlStore::open(&site.open_database()).unwrap();
    assert!(store.profile_by_card(&anna).unwrap().is_none());
    let anna_email = site.count(
        "SELECT count(*) FROM identifiers WHERE value = 'anna.devries@example.nl'",
        args![],
    );
    assert_eq!(anna_email, 0);
}
