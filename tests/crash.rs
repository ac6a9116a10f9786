//! Crash safety, black box: the real binary under load is killed with
//! SIGKILL; after a restart every trade it had confirmed is there and the
//! audit balances. Once on the embedded store, once on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Server, parse_fill};

const PLAYERS: usize = 24;
const TICKERS: [&str; 4] = ["ACME", "QBIT", "SOLR", "BANK"];

#[derive(Default, Clone)]
struct Confirmed {
    trades: u64,
    holdings: BTreeMap<String, i64>,
    /// A request was on its way when the server died: it may or may not count.
    in_flight: bool,
}

fn crash_and_recover(env: Vec<(&'static str, String)>) {
    let server = Server::start(&env);
    let client = server.client();
    for p in 0..PLAYERS {
        server.play(&client, &format!("crash{p}"), "/start").unwrap();
    }
    let confirmed: Arc<Mutex<Vec<Confirmed>>> = Arc::new(Mutex::new(vec![Confirmed::default(); PLAYERS]));
    let stop = Arc::new(AtomicBool::new(false));
    let base = server.base.clone();
    let workers: Vec<_> = (0..PLAYERS)
        .map(|p| {
            let (confirmed, stop, base) = (Arc::clone(&confirmed), Arc::clone(&stop), base.clone());
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
                let mut round = 0_usize;
                while !stop.load(Ordering::SeqCst) {
                    let ticker = TICKERS[(p + round) % TICKERS.len()];
                    let held = confirmed.lock().unwrap()[p].holdings.get(ticker).copied().unwrap_or(0);
                    let text = if held > 0 && round % 3 == 2 {
                        format!("/sell {ticker} {}", held.min(2))
                    } else {
                        format!("/buy {ticker} {}", 1 + round % 3)
                    };
                    round += 1;
                    confirmed.lock().unwrap()[p].in_flight = true;
                    let response = client
                        .post(format!("{base}/api/play"))
                        .json(&serde_json::json!({"player": format!("crash{p}"), "text": text}))
                        .send()
                        .and_then(reqwest::blocking::Response::json::<serde_json::Value>);
                    let Ok(body) = response else { return };
                    let reply = body["replies"][0]["text"].as_str().unwrap_or("").to_owned();
                    let mut all = confirmed.lock().unwrap();
                    let mine = &mut all[p];
                    mine.in_flight = false;
                    if let Some((qty, ticker)) = parse_fill(&reply) {
                        mine.trades += 1;
                        *mine.holdings.entry(ticker).or_default() += qty;
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    server.kill();
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.join().unwrap();
    }
    let confirmed = confirmed.lock().unwrap().clone();
    let total: u64 = confirmed.iter().map(|c| c.trades).sum();
    assert!(total > 50, "the load confirmed too few trades before the kill: {total}");

    let server = Server::start(&env);
    let client = server.client();
    for (p, expected) in confirmed.iter().enumerate() {
        let (status, body) = server.admin(&client, &format!("/admin/players/local:crash{p}"));
        assert_eq!(status, 200, "player crash{p} survives the crash: {body}");
        let stored = body["trades"].as_u64().unwrap();
        let slack = u64::from(expected.in_flight);
        assert!(
            stored >= expected.trades && stored <= expected.trades + slack,
            "player crash{p}: {} confirmed trades (+{slack} in flight), {stored} stored",
            expected.trades
        );
        if stored == expected.trades {
            for ticker in TICKERS {
                let want = expected.holdings.get(ticker).copied().unwrap_or(0);
                let have = body["holdings"].get(ticker).and_then(serde_json::Value::as_i64).unwrap_or(0);
                assert_eq!(have, want, "player crash{p} holds {have} {ticker}, confirmed {want}");
            }
        }
    }
    let (status, audit) = server.admin(&client, "/admin/audit");
    assert_eq!(status, 200);
    assert_eq!(audit["ok"], serde_json::Value::Bool(true), "audit after the crash: {audit}");
    // The market keeps working after recovery.
    let reply = server.play(&client, "crash0", "/buy ACME 1").unwrap();
    assert!(reply[0].contains("Bought"), "trading resumes after recovery: {reply:?}");
    let status = server.terminate();
    assert!(status.success(), "clean exit on SIGTERM: {status}");
}

#[test]
fn embedded_store_survives_kill_9() {
    let dir = common::fresh_data_dir("crash");
    crash_and_recover(vec![("STOCKBOT_DATA_DIR", dir.display().to_string())]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn postgres_store_survives_kill_9() {
    let url = common::migrated_database("crash");
    let _dropped_at_end = common::DatabaseGuard(url.clone());
    crash_and_recover(vec![("DATABASE_URL", url)]);
}
