//! Failover of the split deployment, real binaries end to end: two gateways,
//! two engines, NATS JetStream, PostgreSQL, Redis and the fake Bot API,
//! players buying through both gateways' webhooks the whole time while the
//! active engine is killed, the next one paused past its lease, a gateway
//! killed and NATS killed and restarted. After each: every webhook update
//! that was answered 200 took effect exactly once, no confirmation lacks its
//! trade, `/admin/audit` is ok, and two engines never said they were active
//! at once. Stalls (the longest time with no trade confirmed anywhere) are
//! printed, not asserted: the machine decides them, the test decides truth.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::cluster::{Cluster, LEASE_MS, engine_phase, signal};
use common::fake_telegram::FakeTelegram;
use common::rig::{next_update_id, post_webhook};
use serde_json::{Value, json};

/// Players, and the threads that send for them.
const PLAYERS: i64 = 24;
const SENDERS: i64 = 4;
/// Pause between one sender's updates (pacing, not waiting for anything).
const PACE: Duration = Duration::from_millis(25);
const FIRST_PLAYER: i64 = 7_100_000;
/// Anything that must happen is given this long.
const WAIT: Duration = Duration::from_secs(90);

/// Webhook updates answered 200, per player (each is one `/buy ACME 1`).
struct Traffic {
    acked: Vec<AtomicU64>,
    stop: AtomicBool,
    /// The gateways' bases; a killed gateway's requests fail and go to the next.
    gateways: Mutex<Vec<String>>,
    /// Updates that needed more than one attempt.
    retried: AtomicU64,
}

impl Traffic {
    fn new(gateways: Vec<String>) -> Arc<Self> {
        Arc::new(Self {
            acked: (0..PLAYERS).map(|_| AtomicU64::new(0)).collect(),
            stop: AtomicBool::new(false),
            gateways: Mutex::new(gateways),
            retried: AtomicU64::new(0),
        })
    }

    /// Posts `update` until a gateway answers 200, trying them in turn.
    fn deliver(&self, client: &reqwest::blocking::Client, update: &Value, start: usize) {
        let deadline = Instant::now() + WAIT;
        for attempt in 0.. {
            let gateways = self.gateways.lock().unwrap().clone();
            let base = &gateways[(start + attempt) % gateways.len()];
            if post_webhook(client, base, update) == 200 {
                if attempt > 0 {
                    self.retried.fetch_add(1, Ordering::Relaxed);
                }
                return;
            }
            assert!(Instant::now() < deadline, "no gateway took update {} within {WAIT:?}", update["update_id"]);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn start(self: &Arc<Self>) -> Vec<JoinHandle<()>> {
        (0..SENDERS)
            .map(|sender| {
                let traffic = Arc::clone(self);
                std::thread::spawn(move || {
                    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
                    let mine: Vec<i64> = (0..PLAYERS).filter(|p| p % SENDERS == sender).collect();
                    let mut turn = 0usize;
                    while !traffic.stop.load(Ordering::Relaxed) {
                        let player = mine[turn % mine.len()];
                        let mut update = FakeTelegram::text_update(FIRST_PLAYER + player, "/buy ACME 1");
                        update["update_id"] = json!(next_update_id());
                        traffic.deliver(&client, &update, turn);
                        traffic.acked[usize::try_from(player).unwrap()].fetch_add(1, Ordering::Relaxed);
                        turn += 1;
                        std::thread::sleep(PACE);
                    }
                })
            })
            .collect()
    }

    fn total(&self) -> u64 {
        self.acked.iter().map(|count| count.load(Ordering::Relaxed)).sum()
    }
}

/// Watches the engines' `/readyz`; records any moment two said "active".
struct Watch {
    stop: Arc<AtomicBool>,
    both: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl Watch {
    fn start(bases: Arc<Mutex<Vec<Option<String>>>>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let both = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, both) = (Arc::clone(&stop), Arc::clone(&both));
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::new();
                while !stop.load(Ordering::Relaxed) {
                    let engines = bases.lock().unwrap().clone();
                    let active: Vec<String> = engines
                        .iter()
                        .flatten()
                        .filter(|base| engine_phase(&client, base).as_deref() == Some("active"))
                        .cloned()
                        .collect();
                    if active.len() > 1 {
                        both.lock().unwrap().push(format!("{:?}", active));
                    }
                    std::thread::sleep(Duration::from_millis(25));
                }
            })
        };
        Self { stop, both, thread: Some(thread) }
    }

    fn finish(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        self.both.lock().unwrap().clone()
    }
}

/// When trade receipts reached the fake Bot API, in order.
fn confirmations(fake: &FakeTelegram) -> Vec<Instant> {
    let mut times: Vec<Instant> = fake
        .calls()
        .iter()
        .filter(|call| call.ok() && call.method == "sendMessage")
        .filter(|call| call.text().is_some_and(|text| text.contains("Bought 1 ACME")))
        .map(|call| call.at)
        .collect();
    times.sort();
    times
}

/// The longest time without a confirmation in `[from, to]`.
fn stall(times: &[Instant], from: Instant, to: Instant) -> Duration {
    let mut last = from;
    let mut longest = Duration::ZERO;
    for &at in times.iter().filter(|at| **at > from && **at <= to) {
        longest = longest.max(at - last);
        last = at;
    }
    longest.max(to.saturating_duration_since(last))
}

/// Waits until receipts arrive again after `since` (trading resumed).
fn wait_resumed(fake: &FakeTelegram, since: Instant) {
    let resumed = fake.wait_for(
        |calls| {
            calls.iter().any(|call| {
                call.at > since
                    && call.method == "sendMessage"
                    && call.text().is_some_and(|text| text.contains("Bought 1 ACME"))
            })
        },
        WAIT,
    );
    assert!(resumed, "no trade confirmed within {WAIT:?} of the fault");
}

/// Every acknowledged update took effect exactly once, every receipt has
/// its trade, and the audit holds.
fn check_books(cluster: &Cluster, traffic: &Traffic, moment: &str) {
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    for player in 0..PLAYERS {
        let id = FIRST_PLAYER + player;
        let wanted = traffic.acked[usize::try_from(player).unwrap()].load(Ordering::Relaxed);
        let deadline = Instant::now() + WAIT;
        let held = loop {
            let (status, body) = cluster.admin(&client, &format!("/admin/players/{id}"));
            assert_eq!(status, 200, "{moment}: player {id}: {body}");
            let held = body["holdings"]["ACME"].as_u64().unwrap_or(0);
            // Acknowledged updates may still be in the stream: wait for them.
            if held >= wanted || Instant::now() >= deadline {
                break held;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(held, wanted, "{moment}: player {id} holds {held} ACME for {wanted} acknowledged buys");
        // A receipt names the cash left, so each trade's is distinct; one
        // sent twice (its gateway died before acknowledging it) counts once.
        let receipts: std::collections::BTreeSet<String> =
            cluster.fake.texts_to(id).into_iter().filter(|text| text.contains("Bought 1 ACME")).collect();
        assert!(
            u64::try_from(receipts.len()).unwrap() <= held,
            "{moment}: player {id} got {} distinct receipts for {held} trades",
            receipts.len()
        );
    }
    let (status, audit) = cluster.admin(&client, "/admin/audit");
    assert_eq!(status, 200, "{moment}: audit {audit}");
    assert_eq!(audit["ok"], Value::Bool(true), "{moment}: audit {audit}");
}

/// Pauses the traffic, lets it drain into the books, checks them, resumes.
fn checkpoint(cluster: &Cluster, traffic: &Arc<Traffic>, senders: &mut Vec<JoinHandle<()>>, moment: &str) {
    traffic.stop.store(true, Ordering::Relaxed);
    for sender in senders.drain(..) {
        sender.join().unwrap();
    }
    check_books(cluster, traffic, moment);
    println!("after {moment}: {} buys acknowledged, books exact, audit ok", traffic.total());
    traffic.stop.store(false, Ordering::Relaxed);
    *senders = traffic.start();
}

fn engine_bases(cluster: &Cluster) -> Vec<Option<String>> {
    cluster.engines.iter().map(|engine| engine.as_ref().map(|e| e.base.clone())).collect()
}

#[test]
fn trades_survive_engine_gateway_and_nats_failures() {
    let mut cluster = Cluster::start(2, 2);
    let client = reqwest::blocking::Client::new();
    // Every player registers once.
    for player in 0..PLAYERS {
        let id = FIRST_PLAYER + player;
        let mut update = FakeTelegram::text_update(id, "/start");
        update["update_id"] = json!(next_update_id());
        Traffic::new(cluster.gateway_bases()).deliver(&client, &update, 0);
        assert!(
            cluster.fake.wait_for(|calls| calls.iter().any(|c| c.ok() && c.chat_id() == Some(id)), WAIT),
            "player {id} got no welcome"
        );
    }
    let bases = Arc::new(Mutex::new(engine_bases(&cluster)));
    let watch = Watch::start(Arc::clone(&bases));
    let traffic = Traffic::new(cluster.gateway_bases());
    let mut senders = traffic.start();
    let warm = Instant::now();
    wait_resumed(&cluster.fake, warm);

    // 1. kill -9 of the active engine.
    let active = cluster.wait_active(WAIT);
    let killed_at = Instant::now();
    cluster.kill_engine(active);
    let next = cluster.wait_active_other(active, WAIT);
    wait_resumed(&cluster.fake, killed_at);
    let after_kill = Instant::now();
    cluster.engines[active] = Some(cluster.start_engine(active));
    *bases.lock().unwrap() = engine_bases(&cluster);
    cluster.wait_standby(active, WAIT);
    checkpoint(&cluster, &traffic, &mut senders, "kill -9 of the active engine");

    // 2. SIGSTOP of the next active engine for twice the lease, then SIGCONT.
    let paused_at = Instant::now();
    signal(&cluster.engines[next].as_ref().unwrap().child, "STOP");
    let taker = cluster.wait_active_other(next, WAIT);
    assert_eq!(taker, active, "the restarted engine takes over");
    std::thread::sleep(Duration::from_millis(2 * LEASE_MS).saturating_sub(paused_at.elapsed()));
    signal(&cluster.engines[next].as_ref().unwrap().child, "CONT");
    wait_resumed(&cluster.fake, paused_at);
    cluster.wait_standby(next, WAIT);
    let after_pause = Instant::now();
    checkpoint(&cluster, &traffic, &mut senders, "SIGSTOP past the lease and SIGCONT");

    // 3. kill -9 of a gateway; the players' retries go to the other.
    let gateway_killed_at = Instant::now();
    cluster.kill_gateway(0);
    *traffic.gateways.lock().unwrap() = cluster.gateway_bases();
    wait_resumed(&cluster.fake, gateway_killed_at);
    std::thread::sleep(Duration::from_millis(500));
    let gateway_back_at = Instant::now();
    cluster.gateways[0] = Some(cluster.start_gateway(0));
    *traffic.gateways.lock().unwrap() = cluster.gateway_bases();
    checkpoint(&cluster, &traffic, &mut senders, "kill -9 of a gateway");

    // 4. kill -9 of NATS, and its restart.
    let nats_killed_at = Instant::now();
    cluster.nats.kill();
    std::thread::sleep(Duration::from_millis(1_000));
    cluster.nats.restart();
    wait_resumed(&cluster.fake, nats_killed_at);
    let after_nats = Instant::now();
    checkpoint(&cluster, &traffic, &mut senders, "kill -9 and restart of NATS");

    traffic.stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.join().unwrap();
    }
    check_books(&cluster, &traffic, "the end");
    let both = watch.finish();
    assert!(both.is_empty(), "two engines said they were active at once: {both:?}");

    let times = confirmations(&cluster.fake);
    println!(
        "stall after kill -9 of the active engine: {:?}; after SIGSTOP (lease {LEASE_MS} ms): {:?}; \
         after kill -9 of a gateway: {:?}; after kill -9 of NATS (down 1 s): {:?}; \
         {} buys, {} updates retried on another gateway",
        stall(&times, killed_at, after_kill),
        stall(&times, paused_at, after_pause),
        stall(&times, gateway_killed_at, gateway_back_at),
        stall(&times, nats_killed_at, after_nats),
        traffic.total(),
        traffic.retried.load(Ordering::Relaxed),
    );
}

/// A small seeded generator for the long run's choices (its seed is printed).
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// The long run (by hand, not in CI): `STOCKBOT_FAILOVER_KILLS` faults (20
/// by default) at random moments while players trade — kill -9 or SIGSTOP
/// of the active engine, kill -9 of a gateway or of NATS — the books
/// checked every fifth fault and at the end, the stall of each printed.
#[test]
#[ignore = "minutes long; run by hand: cargo test --release --test failover -- --ignored --nocapture"]
fn trades_survive_faults_at_random_moments() {
    let kills: u32 = std::env::var("STOCKBOT_FAILOVER_KILLS").ok().and_then(|n| n.parse().ok()).unwrap_or(20);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let seed = u64::try_from(nanos % u128::from(u64::MAX)).unwrap() | 1;
    println!("seed {seed}");
    let mut dice = Dice(seed);
    let mut cluster = Cluster::start(2, 2);
    let client = reqwest::blocking::Client::new();
    for player in 0..PLAYERS {
        let mut update = FakeTelegram::text_update(FIRST_PLAYER + player, "/start");
        update["update_id"] = json!(next_update_id());
        Traffic::new(cluster.gateway_bases()).deliver(&client, &update, 0);
    }
    let bases = Arc::new(Mutex::new(engine_bases(&cluster)));
    let watch = Watch::start(Arc::clone(&bases));
    let traffic = Traffic::new(cluster.gateway_bases());
    let mut senders = traffic.start();
    wait_resumed(&cluster.fake, Instant::now());
    let mut stalls: Vec<(&str, Duration)> = Vec::new();
    for round in 1..=kills {
        std::thread::sleep(Duration::from_millis(200 + dice.below(1_800)));
        let active = cluster.wait_active(WAIT);
        let at = Instant::now();
        let kind = match dice.below(4) {
            0 => {
                cluster.kill_engine(active);
                cluster.wait_active_other(active, WAIT);
                wait_resumed(&cluster.fake, at);
                cluster.engines[active] = Some(cluster.start_engine(active));
                "kill -9 engine"
            }
            1 => {
                signal(&cluster.engines[active].as_ref().unwrap().child, "STOP");
                cluster.wait_active_other(active, WAIT);
                wait_resumed(&cluster.fake, at);
                signal(&cluster.engines[active].as_ref().unwrap().child, "CONT");
                "SIGSTOP engine"
            }
            2 => {
                let gateway = usize::try_from(dice.below(2)).unwrap();
                cluster.kill_gateway(gateway);
                *traffic.gateways.lock().unwrap() = cluster.gateway_bases();
                wait_resumed(&cluster.fake, at);
                cluster.gateways[gateway] = Some(cluster.start_gateway(gateway));
                *traffic.gateways.lock().unwrap() = cluster.gateway_bases();
                "kill -9 gateway"
            }
            _ => {
                cluster.nats.kill();
                cluster.nats.restart();
                wait_resumed(&cluster.fake, at);
                "kill -9 NATS"
            }
        };
        let resumed = Instant::now();
        *bases.lock().unwrap() = engine_bases(&cluster);
        stalls.push((kind, stall(&confirmations(&cluster.fake), at, resumed)));
        for index in 0..cluster.engines.len() {
            if index != cluster.wait_active(WAIT) {
                cluster.wait_standby(index, WAIT);
            }
        }
        if round % 5 == 0 {
            checkpoint(&cluster, &traffic, &mut senders, &format!("fault {round}"));
        }
    }
    traffic.stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.join().unwrap();
    }
    check_books(&cluster, &traffic, "the end of the long run");
    let both = watch.finish();
    assert!(both.is_empty(), "two engines said they were active at once: {both:?}");
    for (kind, stall) in &stalls {
        println!("{kind}: stall {stall:?}");
    }
    for kind in ["kill -9 engine", "SIGSTOP engine", "kill -9 gateway", "kill -9 NATS"] {
        let of: Vec<Duration> = stalls.iter().filter(|(k, _)| *k == kind).map(|(_, s)| *s).collect();
        if let Some(worst) = of.iter().max() {
            println!("{kind}: {} times, worst stall {worst:?}", of.len());
        }
    }
    println!(
        "{} buys, {} updates retried on another gateway",
        traffic.total(),
        traffic.retried.load(Ordering::Relaxed)
    );
}
