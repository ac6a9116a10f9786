//! The in-process load generator on the embedded store: simulated players
//! trade, every counted trade was confirmed, and the report adds up (fixed
//! and adaptive client counts alike).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use stockbot::config::Settings;
use stockbot::loadgen::{self, LoadReport, LoadgenArgs};

fn run(concurrency: Option<usize>) -> LoadReport {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::load_from(None).expect("default configuration loads");
    settings.database_url = None;
    settings.data_dir = dir.path().to_path_buf();
    let args = LoadgenArgs { seconds: 1.5, players: 300, concurrency, timeline: true };
    actix::System::new().block_on(async move { loadgen::run_in_process(&settings, &args).await }).unwrap()
}

fn assert_consistent(report: &LoadReport) {
    assert!(report.confirmed_trades > 100, "too few trades:\n{}", report.render(true));
    assert_eq!(report.latencies_us.len() as u64, report.confirmed_trades);
    assert!(report.latencies_us.windows(2).all(|pair| pair[0] <= pair[1]), "latencies are sorted");
    let per_second: u64 = report.timeline.iter().map(|(trades, _)| trades).sum();
    assert_eq!(per_second, report.confirmed_trades, "every trade falls in one second of the timeline");
    let text = report.render(true);
    assert!(text.starts_with("second 0: "), "{text}");
    let last = text.lines().last().unwrap();
    assert!(last.starts_with("trades_per_sec=") && last.contains(" p50_ms=") && last.contains(" p99_ms="), "{last}");
}

#[test]
fn fixed_clients_trade_and_report() {
    let report = run(Some(16));
    assert_consistent(&report);
    assert!(report.note.contains("clients sending: 16"), "{}", report.note);
}

#[test]
fn adaptive_clients_trade_and_report() {
    let report = run(None);
    assert_consistent(&report);
    assert!(report.note.contains("clients sending: adapted"), "{}", report.note);
}
