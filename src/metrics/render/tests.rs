use super::*;
use crate::processor::Outcome;
use std::time::Duration;

fn rendered(m: &Metrics, live: &Live) -> String {
    let mut out = Vec::new();
    render(m, live, &mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn every_family_has_help_and_type_once_and_samples_follow_it() {
    let m = Metrics::new();
    m.attempt(
        Processor::Default,
        Outcome::Stored,
        Duration::from_millis(3),
    );
    let live = Live {
        lag: vec![(2, 5)],
        ..Live::default()
    };
    let text = rendered(&m, &live);
    let mut families = Vec::new();
    let mut current = "";
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            current = rest.split(' ').next().unwrap();
            assert!(!families.contains(&current), "{current} twice");
            families.push(current);
        } else if !line.starts_with('#') {
            assert!(line.starts_with("rinha_"), "{line}");
            assert!(line.starts_with(current), "{line} outside {current}");
        }
    }
    assert!(families.len() > 40, "{}", families.len());
}

#[test]
fn samples_are_exact() {
    let m = Metrics::new();
    m.payments_paid[1].add(7);
    m.attempt(
        Processor::Fallback,
        Outcome::Refused(429),
        Duration::from_millis(1),
    );
    let live = Live {
        instance_id: 2_147_483_700,
        id_derived: true,
        lag: vec![(3, 12)],
        router: [
            RouterLive {
                failing: true,
                latency_ms: 1_500,
                last_probe_age_ms: Some(250),
            },
            RouterLive::default(),
        ],
        ..Live::default()
    };
    let text = rendered(&m, &live);
    for want in [
        "rinha_payments_paid_total{processor=\"fallback\"} 7\n",
        "rinha_payments_paid_total{processor=\"default\"} 0\n",
        "rinha_processor_attempts_total{processor=\"fallback\",outcome=\"429\"} 1\n",
        "rinha_processor_latency_seconds_bucket{processor=\"fallback\",le=\"0.001\"} 1\n",
        "rinha_processor_latency_seconds_bucket{processor=\"fallback\",le=\"+Inf\"} 1\n",
        "rinha_processor_latency_seconds_sum{processor=\"fallback\"} 0.001\n",
        "rinha_processor_latency_seconds_count{processor=\"default\"} 0\n",
        "rinha_router_failing{processor=\"default\"} 1\n",
        "rinha_router_latency_ewma_seconds{processor=\"default\"} 1.5\n",
        "rinha_router_last_probe_age_seconds{processor=\"default\"} 0.25\n",
        "rinha_peer_replication_lag_records{peer=\"3\"} 12\n",
        "rinha_instance_info{instance_id=\"2147483700\",id_source=\"derived\",",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    assert!(
        !text.contains("rinha_router_last_probe_age_seconds{processor=\"fallback\"}"),
        "never probed: no sample"
    );
}
