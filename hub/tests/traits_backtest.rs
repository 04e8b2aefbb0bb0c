//! `till360-hub traits backtest --config hub.toml --split DATE --horizon-days N [--json]`,
//! run as the binary on orders imported into the test engine's database.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use chrono::NaiveDate;
use till360_hub::traits::history::{day_number, CustomerHistory};
use till360_hub::traits::selection::{Candidate, PARETO_GGG};
use till360_hub::traits::simulate;

use crate::common::Site;

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn hub_command(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_till360-hub"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The histories as online orders (UTC, so the local day is the UTC day).
fn write_orders(histories: &[CustomerHistory], path: &Path) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for h in histories {
        for (n, p) in h.purchases.iter().enumerate() {
            let at = chrono::DateTime::from_timestamp_millis(p.at.unix_ms).unwrap();
            let order = serde_json::json!({
                "order_id": format!("{}-{n}", h.profile_id),
                "customer_no": h.customer_no,
                "ordered_at": at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                "channel": "web",
                "lines": [{"description": "Basket", "qty": 1,
                           "unit_cents": p.amount_cents, "amount_cents": p.amount_cents}],
                "total_cents": p.amount_cents,
                "currency": "EUR",
            });
            writeln!(file, "{order}").unwrap();
        }
    }
}

#[test]
fn backtest_reports_every_model_as_a_table_and_as_json() {
    let site = Site::new();
    let config = site.dir.path().join("hub.toml");
    let config = config.to_str().unwrap();
    let end = date(2026, 9, 30);
    let truth = simulate::CDNOW_DAYS;
    let spend = simulate::CDNOW_SPEND;
    let histories = simulate::histories(21, 400, end, 540, &truth, &spend);
    let orders = site.dir.path().join("orders.jsonl");
    write_orders(&histories, &orders);
    let (ok, _, err) = hub_command(&[
        "import",
        "orders",
        orders.to_str().unwrap(),
        "--config",
        config,
    ]);
    assert!(ok, "{err}");

    let (split, horizon) = (date(2026, 6, 30), 90u32);
    let args = [
        "traits",
        "backtest",
        "--config",
        config,
        "--split",
        "2026-06-30",
        "--horizon-days",
        "90",
    ];
    let (ok, json, err) = hub_command(&[&args[..], &["--json"]].concat());
    assert!(ok, "{err}");
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();

    // Independently: customers with an order by the split, and their order days after it.
    let (s, e) = (day_number(split), day_number(split) + i64::from(horizon));
    let (mut customers, mut actual) = (0u64, 0u64);
    for h in &histories {
        let mut days: Vec<i64> = h.purchases.iter().map(|p| p.local_day()).collect();
        days.sort_unstable();
        days.dedup();
        if days.first().is_some_and(|&d| d <= s) {
            customers += 1;
            actual += days.iter().filter(|&&d| d > s && d <= e).count() as u64;
        }
    }
    assert_eq!(report["customers"], customers, "{report}");
    assert_eq!(report["holdout_end"], "2026-09-28");
    let models = report["models"].as_array().unwrap();
    assert_eq!(models[0]["model"], "bgnbd", "the baseline comes first");
    for m in models {
        assert_eq!(m["actual_total"], actual, "{m}");
        assert_eq!(m["customers"], customers, "{m}");
        for key in ["mae", "rmse", "predicted_total", "top_decile_precision"] {
            assert!(m[key].as_f64().is_some_and(f64::is_finite), "{key}: {m}");
        }
    }
    let chosen = report["chosen"].as_str().unwrap();
    assert!(models.iter().any(|m| m["model"] == chosen), "{report}");
    assert!(report["selection"]["scores"]
        .as_array()
        .is_some_and(|s| !s.is_empty()));

    // The table says the same, one line per model, the chosen one marked.
    let (ok, table, err) = hub_command(&args);
    assert!(ok, "{err}");
    for m in models {
        let name = m["model"].as_str().unwrap();
        let line = table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} missing: {table}"));
        let mae = format!("{:.4}", m["mae"].as_f64().unwrap());
        assert!(line.contains(&mae), "{line} vs {mae}");
        assert_eq!(line.ends_with(" *"), name == chosen, "{line}");
        // Each fitted model's parameters are printed (once per fit), k for CNBD-k.
        let parameters = m["parameters"].as_str().unwrap();
        assert!(
            table.contains(&format!(": {parameters}\n")),
            "{parameters}: {table}"
        );
        assert_eq!(
            name.contains("cnbd_k"),
            parameters.starts_with("k "),
            "{name}: {parameters}"
        );
    }

    // `traits export` on the same data says which model won, and by how much.
    let out = site.dir.path().join("traits.csv");
    let (ok, _, err) = hub_command(&[
        "traits",
        "export",
        "--config",
        config,
        "--as-of",
        "2026-06-30",
        "--horizon-days",
        "90",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let note = err
        .lines()
        .find(|l| l.contains("chosen by back-test"))
        .unwrap_or_else(|| panic!("no model note: {err}"));
    assert!(note.contains("% below BG/NBD's"), "{note}");
    assert!(
        Candidate::all()
            .iter()
            .map(|c| c.name())
            .chain([PARETO_GGG.to_string()])
            .any(|m| note.contains(&format!("model: {m} "))),
        "{note}"
    );
    let csv = std::fs::read_to_string(&out).unwrap();
    assert_eq!(csv.lines().count() as u64, customers + 1, "{err}");
    // On these (seeded) customers Pareto/GGG wins, so this is also the end-to-end test of
    // its path: its posterior gives every customer's values and 80 % ranges.
    assert!(note.contains(&format!("model: {PARETO_GGG} ")), "{note}");
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap();
    for row in csv.lines().skip(1) {
        let fields: Vec<&str> = row.split(',').collect();
        let value = |name: &str| -> f64 { fields[column(name)].parse().unwrap() };
        for (low, high) in [
            ("p_alive_low", "p_alive_high"),
            ("expected_purchases_low", "expected_purchases_high"),
        ] {
            assert!(value(low) <= value(high), "{row}");
        }
        assert!((0.0..=1.0).contains(&value("p_alive")), "{row}");
        assert!(value("expected_purchases") >= 0.0, "{row}");
    }

    // Bad input: a clear error, nothing else.
    let (ok, _, err) = hub_command(&[
        "traits",
        "backtest",
        "--config",
        config,
        "--split",
        "2026-13-01",
        "--horizon-days",
        "90",
    ]);
    assert!(!ok && err.contains("--split"), "{err}");
    let (ok, _, err) = hub_command(&[
        "traits",
        "backtest",
        "--config",
        config,
        "--split",
        "2026-06-30",
        "--horizon-days",
        "0",
    ]);
    assert!(!ok && err.contains("--horizon-days"), "{err}");
    let (ok, _, err) = hub_command(&[
        "traits",
        "backtest",
        "--config",
        "/nonexistent/hub.toml",
        "--split",
        "2026-06-30",
        "--horizon-days",
        "90",
    ]);
    assert!(!ok && err.contains("/nonexistent/hub.toml"), "{err}");
    // A hold-out past the newest order is flagged in the report.
    let (ok, table, _) = hub_command(&[
        "traits",
        "backtest",
        "--config",
        config,
        "--split",
        "2026-09-01",
        "--horizon-days",
        "90",
    ]);
    assert!(ok && table.contains("incomplete"), "{table}");
}
