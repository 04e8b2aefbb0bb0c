//! `config/grafana-dashboard.json` and `config/prometheus-alerts.yml` name only metrics the
//! hub and the agent export, the dashboard is JSON Grafana can import, and promtool
//! accepts the rules (skipped loudly without promtool, failing when
//! `TILL360_REQUIRE_PROMTOOL=1`).

use std::path::{Path, PathBuf};

fn config_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config")
        .join(name)
}

/// Every `till360_[a-z_]+` in `text`.
fn metric_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("till360_") {
        let preceded = text.len() - rest.len() + at;
        let word_start = preceded == 0
            || !text.as_bytes()[preceded - 1].is_ascii_alphanumeric()
                && text.as_bytes()[preceded - 1] != b'_';
        let tail = &rest[at..];
        let prefix = "till360_".len();
        let end = prefix
            + tail[prefix..]
                .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                .unwrap_or(tail.len() - prefix);
        if word_start {
            names.push(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    names
}

/// Whether `name` is an exported family or a histogram's series of one.
fn exported(name: &str) -> bool {
    let families: Vec<&str> = till360_hub::metrics::FAMILIES
        .iter()
        .chain(till360_agent::metrics::FAMILIES)
        .copied()
        .collect();
    families.contains(&name)
        || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
            name.strip_suffix(suffix)
                .is_some_and(|family| families.contains(&family) && family.ends_with("_seconds"))
        })
}

fn exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match value {
                    serde_json::Value::String(text) if key == "expr" => out.push(text.clone()),
                    other => exprs(other, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|item| exprs(item, out)),
        _ => {}
    }
}

#[test]
fn the_dashboard_queries_only_exported_metrics() {
    let text = std::fs::read_to_string(config_file("grafana-dashboard.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(dashboard["title"], "Till360");
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut queries = Vec::new();
    exprs(&dashboard["panels"], &mut queries);
    assert!(panels.len() >= 8, "{} panels", panels.len());
    assert!(queries.len() >= panels.len(), "{queries:?}");
    let mut used = Vec::new();
    for query in &queries {
        let names = metric_names(query);
        assert!(
            !names.is_empty(),
            "a query naming no Till360 metric: {query}"
        );
        used.extend(names);
    }
    for name in &used {
        assert!(
            exported(name),
            "the dashboard queries {name}, which nothing exports"
        );
    }
    for wanted in [
        "till360_hub_ingest_events_total",
        "till360_hub_commit_duration_seconds_bucket",
        "till360_hub_connected_tills",
        "till360_hub_till_backlog_events",
        "till360_hub_till_last_seen_age_seconds",
        "till360_hub_refusals_total",
        "till360_hub_coupons_issued_total",
        "till360_hub_http_request_duration_seconds_bucket",
    ] {
        assert!(used.iter().any(|n| n == wanted), "no panel shows {wanted}");
    }
}

#[test]
fn the_alert_rules_name_only_exported_metrics_and_promtool_accepts_them() {
    let path = config_file("prometheus-alerts.yml");
    let text = std::fs::read_to_string(&path).unwrap();
    let names = metric_names(&text);
    for wanted in [
        "till360_hub_till_last_seen_age_seconds",
        "till360_hub_till_backlog_events",
        "till360_hub_chain_breaks",
        "till360_hub_till_quota_exceeded",
    ] {
        assert!(names.iter().any(|n| n == wanted), "no rule uses {wanted}");
    }
    for name in &names {
        assert!(exported(name), "a rule uses {name}, which nothing exports");
    }
    let output = match std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(&path)
        .output()
    {
        Ok(output) => output,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            assert!(
                std::env::var("TILL360_REQUIRE_PROMTOOL").as_deref() != Ok("1"),
                "TILL360_REQUIRE_PROMTOOL=1 but promtool is not on PATH (Debian: prometheus)"
            );
            eprintln!("SKIPPED: promtool check rules: promtool is not on PATH");
            return;
        }
        Err(err) => panic!("promtool: {err}"),
    };
    assert!(
        output.status.success(),
        "promtool check rules failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn metric_names_are_found_whole() {
    assert_eq!(
        metric_names("sum(rate(till360_hub_x_total[5m])) / my_till360_y + till360_z{a=\"b\"}"),
        ["till360_hub_x_total", "till360_z"]
    );
}
