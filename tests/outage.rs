//! Outages, black box: PostgreSQL becomes unreachable under load (a proxy in
//! between is cut). Players get clear replies, nothing panics, `/readyz`
//! turns 503, no confirmed trade is lost, and trading resumes once the
//! database is back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::net::ToSocketAddrs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::proxy::Proxy;
use common::{Server, parse_fill};

const PLAYERS: usize = 8;

/// Per player: confirmed trades and confirmed holdings by ticker.
type Confirmed = Arc<Mutex<Vec<(u64, BTreeMap<String, i64>)>>>;

#[test]
fn postgres_outage_under_load() {
    let url = common::migrated_database("outage");
    let _dropped_at_end = common::DatabaseGuard(url.clone());
    let upstream = "127.0.0.1:5432".to_socket_addrs().unwrap().next().unwrap();
    let mut proxy = Proxy::start(upstream);
    let proxied = url.replace("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port));
    let server = Server::start(&[("DATABASE_URL", proxied)]);
    let client = server.client();
    for p in 0..PLAYERS {
        assert!(server.play(&client, &format!("out{p}"), "/start").unwrap()[0].contains("Welcome"));
    }

    let confirmed: Confirmed = Arc::new(Mutex::new(vec![(0, BTreeMap::new()); PLAYERS]));
    let replies_seen: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..PLAYERS)
        .map(|p| {
            let (confirmed, replies_seen, stop, base) =
                (Arc::clone(&confirmed), Arc::clone(&replies_seen), Arc::clone(&stop), server.base.clone());
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
                while !stop.load(Ordering::SeqCst) {
                    let body: serde_json::Value = client
                        .post(format!("{base}/api/play"))
                        .json(&serde_json::json!({"player": format!("out{p}"), "text": "/buy ACME 1"}))
                        .send()
                        .unwrap()
                        .json()
                        .unwrap();
                    // Past the rate limit's one reply per window, silence: wait.
                    let Some(reply) = body["replies"][0]["text"].as_str().map(str::to_owned) else {
                        std::thread::sleep(Duration::from_millis(200));
                        continue;
                    };
                    if let Some((qty, ticker)) = parse_fill(&reply) {
                        let mut all = confirmed.lock().unwrap();
                        all[p].0 += 1;
                        *all[p].1.entry(ticker).or_default() += qty;
                    } else {
                        replies_seen.lock().unwrap().push(reply);
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            })
        })
        .collect();

    std::thread::sleep(Duration::from_millis(800));
    let before_outage: u64 = confirmed.lock().unwrap().iter().map(|c| c.0).sum();
    assert!(before_outage > 0, "trades confirmed before the outage");
    proxy.cut();
    // During the outage: the process stays alive and says it is not ready.
    let outage_started = Instant::now();
    let mut saw_not_ready = false;
    while outage_started.elapsed() < Duration::from_secs(4) {
        let health = client.get(format!("{}/healthz", server.base)).send().unwrap();
        assert_eq!(health.status().as_u16(), 200, "alive during the outage");
        let ready = client.get(format!("{}/readyz", server.base)).send().unwrap();
        saw_not_ready |= ready.status().as_u16() == 503;
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(saw_not_ready, "/readyz reports 503 while the database is unreachable");
    proxy.resume();
    // Work resumes within seconds of the database coming back.
    let resumed = Instant::now();
    let mut back = false;
    while resumed.elapsed() < Duration::from_secs(20) {
        let reply = server.play(&client, "probe", "/start");
        if reply.is_ok_and(|r| r[0].contains("Welcome")) {
            back = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(back, "the server works again after the database returns");
    std::thread::sleep(Duration::from_millis(800));
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.join().unwrap();
    }
    // Every refusal during the outage was a clear reply.
    for reply in replies_seen.lock().unwrap().iter() {
        assert!(
            reply.contains("Temporarily unavailable")
                || reply.contains("busy")
                || reply.contains("Still processing")
                // The per-player rate limit: as clear, and nothing was done.
                || reply.contains("Nothing was done"),
            "unclear reply during the outage: {reply}"
        );
    }
    // No confirmed trade was lost.
    for (p, (trades, holdings)) in confirmed.lock().unwrap().iter().enumerate() {
        let (status, body) = server.admin(&client, &format!("/admin/players/local:out{p}"));
        assert_eq!(status, 200);
        assert!(body["trades"].as_u64().unwrap() >= *trades, "player out{p}: confirmed {trades}, stored {body}");
        let stored = body["holdings"]["ACME"].as_i64().unwrap_or(0);
        assert!(stored >= holdings.get("ACME").copied().unwrap_or(0), "player out{p} holdings: {body}");
    }
    let (_, audit) = server.admin(&client, "/admin/audit");
    assert_eq!(audit["ok"], serde_json::Value::Bool(true), "audit after the outage: {audit}");
}

/// A stop always ends: SIGTERM while PostgreSQL cannot take writes (trades
/// waiting for their commit) exits within the configured bounds, naming in
/// the log what it could not flush, instead of retrying forever.
#[test]
fn sigterm_ends_while_postgres_is_cut() {
    let url = common::migrated_database("outage_stop");
    let _dropped_at_end = common::DatabaseGuard(url.clone());
    let upstream = "127.0.0.1:5432".to_socket_addrs().unwrap().next().unwrap();
    let mut proxy = Proxy::start(upstream);
    let proxied = url.replace("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port));
    let server = Server::start(&[
        ("DATABASE_URL", proxied),
        ("STOCKBOT__CLUSTER__STOP_FLUSH_MAX_MS", "2000".to_owned()),
        ("STOCKBOT__CLUSTER__STOP_DRAIN_MAX_MS", "2000".to_owned()),
    ]);
    let client = server.client();
    assert!(server.play(&client, "stop0", "/start").unwrap()[0].contains("Welcome"));
    proxy.cut();
    // Trades now wait for a commit that cannot happen.
    let base = server.base.clone();
    let waiting = std::thread::spawn(move || {
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(120)).build().unwrap();
        let _ = client
            .post(format!("{base}/api/play"))
            .json(&serde_json::json!({"player": "stop0", "text": "/buy ACME 1"}))
            .send();
    });
    std::thread::sleep(Duration::from_millis(300));
    let asked = Instant::now();
    let status = server.terminate();
    let took = asked.elapsed();
    // Bounded by the configuration (2 s drain + 2 s flush + slack), never
    // minutes; the machine's load only stretches it a little.
    assert!(took < Duration::from_secs(60), "SIGTERM took {took:?} with the store cut");
    println!("SIGTERM with PostgreSQL cut: exited {status} after {took:?}");
    proxy.resume();
    let _ = waiting.join();
}
