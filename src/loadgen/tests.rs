use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn percentiles_are_nearest_rank() {
    let samples: Vec<Duration> = (1..=100).map(ms).collect();
    assert_eq!(percentile(&samples, 50.0), ms(50));
    assert_eq!(percentile(&samples, 99.0), ms(99));
    assert_eq!(percentile(&samples, 100.0), ms(100));
    assert_eq!(percentile(&[ms(7)], 99.0), ms(7));
    assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    // Two samples: the median is the lower one, p99 the higher.
    assert_eq!(percentile(&[ms(1), ms(9)], 50.0), ms(1));
    assert_eq!(percentile(&[ms(1), ms(9)], 99.0), ms(9));
}

#[test]
fn store_names_count_from_one_with_three_digits() {
    assert_eq!(store_name(0), "LG001");
    assert_eq!(store_name(19), "LG020");
    assert_eq!(store_name(999), "LG1000");
}

#[test]
fn the_report_is_one_json_object_with_the_documented_keys() {
    let report = LoadReport {
        agents: 2,
        receipts: 10,
        seconds: 0.5,
        receipts_per_s: 20.0,
        ack_p50_ms: 1.25,
        ack_p99_ms: 3.0,
        errors: 0,
    };
    let line = serde_json::to_string(&report).unwrap();
    assert!(!line.contains('\n'));
    let value: serde_json::Value = serde_json::from_str(&line).unwrap();
    let keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    let mut expected = vec![
        "agents",
        "receipts",
        "seconds",
        "receipts_per_s",
        "ack_p50_ms",
        "ack_p99_ms",
        "errors",
    ];
    expected.sort();
    let mut keys = keys;
    keys.sort();
    assert_eq!(keys, expected);
}
