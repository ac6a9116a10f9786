//! Senders sharing one send budget through the real Redis (a fresh key
//! prefix per test) against the fake Bot API: together they keep to the
//! per-chat, per-group and global limits, a 429 seen by one freezes the
//! other, a 403 seen by one stops the other writing to that chat, and with
//! Redis unreachable the local budget still delivers (and Redis takes over
//! again when it answers).
//!
//! Rates are measured from the fake's arrival times, which trail the grants
//! by a variable delay on a loaded machine: the checks count arrivals in a
//! window shorter than the limit's span by `JITTER`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::fake_telegram::{Call, FakeTelegram};
use common::proxy::Proxy;
use fred::prelude::{ClientLike, LuaInterface, SortedSetsInterface};
use stockbot::telegram::reply::Reply;
use stockbot::telegram::sender::budget::{Ask, Grant, LocalBudget, RedisBudget, RedisBudgetOptions, Scope, SendBudget};
use stockbot::telegram::sender::{Outgoing, RateLimits, SendError, SenderHandle, make_bot, start_sender_with_budget};

const WAIT: Duration = Duration::from_secs(60);
/// How much later than its grant a send may reach the fake, at most.
const JITTER: Duration = Duration::from_millis(500);
const CLOSED_URL: &str = "redis://127.0.0.1:1";

fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn fresh_prefix() -> String {
    format!("stockbot-test:{:016x}:", rand::random::<u64>())
}

/// One fake Bot API, one runtime, and senders on budgets sharing a prefix.
struct Rig {
    fake: FakeTelegram,
    prefix: String,
    runtime: tokio::runtime::Runtime,
    senders: Vec<(SenderHandle, Arc<RedisBudget>)>,
}

impl Rig {
    fn new() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        Self { fake: FakeTelegram::start(), prefix: fresh_prefix(), runtime, senders: Vec::new() }
    }

    /// Adds a sender whose budget is on `url` under the rig's prefix.
    fn sender(&mut self, url: &str, limits: RateLimits) -> (SenderHandle, Arc<RedisBudget>) {
        let bot = make_bot(&self.fake.token, Some(&self.fake.base_url)).unwrap();
        let options = RedisBudgetOptions::default();
        let budget = Arc::new(self.runtime.block_on(RedisBudget::connect(url, &self.prefix, limits, options)).unwrap());
        let sender = {
            let _context = self.runtime.enter();
            let shared: Arc<dyn SendBudget> = budget.clone();
            start_sender_with_budget(bot, 1_000, Arc::new(|_| {}), shared)
        };
        self.senders.push((sender.clone(), Arc::clone(&budget)));
        (sender, budget)
    }

    /// Deletes the test's keys.
    fn clean(&self) {
        self.runtime.block_on(async {
            let client = redis_client().await;
            let script = "local ks = redis.call('KEYS', ARGV[1]) for _, k in ipairs(ks) do redis.call('DEL', k) end";
            let _: () = client.eval(script, Vec::<String>::new(), format!("{}*", self.prefix)).await.unwrap();
            client.quit().await.unwrap();
        });
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.clean();
        }
    }
}

async fn redis_client() -> fred::prelude::Client {
    let config = fred::prelude::Config::from_url(&redis_url()).unwrap();
    let client = fred::prelude::Builder::from_config(config).build().unwrap();
    client.init().await.expect("Redis not reachable (set TEST_REDIS_URL)");
    client
}

fn limits(global_per_sec: u32, chat_per_sec: u32, group_per_min: u32) -> RateLimits {
    RateLimits { global_per_sec, chat_per_sec, group_per_min }
}

fn text(chat_id: i64, body: &str) -> Outgoing {
    Outgoing::Text { chat_id, reply: Reply::text(body) }
}

fn metric(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// Waits (polling) until `done` holds; panics after `WAIT`.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not reached within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The most successful sends in any window of `span` (arrival times).
fn most_in_window(calls: &[Call], span: Duration) -> usize {
    let mut times: Vec<Instant> = calls.iter().filter(|call| call.ok()).map(|call| call.at).collect();
    times.sort();
    (0..times.len()).map(|i| times[i..].iter().take_while(|at| **at < times[i] + span).count()).max().unwrap_or(0)
}

fn sends(fake: &FakeTelegram) -> Vec<Call> {
    fake.calls().into_iter().filter(|call| call.method == "sendMessage").collect()
}

#[test]
fn two_senders_keep_one_private_chat_to_one_message_per_second() {
    let mut rig = Rig::new();
    let url = redis_url();
    let (a, _) = rig.sender(&url, limits(1_000, 1, 20));
    let (b, _) = rig.sender(&url, limits(1_000, 1, 20));
    for i in 0..3 {
        a.send(text(11, &format!("a{i}"))).unwrap();
        b.send(text(11, &format!("b{i}"))).unwrap();
    }
    rig.fake.wait_for_messages(11, 6, WAIT);
    let calls = sends(&rig.fake);
    assert_eq!(most_in_window(&calls, Duration::from_secs(1) - JITTER), 1, "two sends within a second");
    // Each sender kept its own order.
    let texts = rig.fake.texts_to(11);
    for who in ["a", "b"] {
        let mine: Vec<_> = texts.iter().filter(|t| t.starts_with(who)).cloned().collect();
        assert_eq!(mine, [0, 1, 2].map(|i| format!("{who}{i}")));
    }
    assert!(metric(&a.metrics().budget_waits) + metric(&b.metrics().budget_waits) > 0);
}

#[test]
fn two_senders_keep_a_group_to_its_per_minute_limit() {
    let mut rig = Rig::new();
    let url = redis_url();
    let (a, _) = rig.sender(&url, limits(1_000, 1, 3));
    let (b, _) = rig.sender(&url, limits(1_000, 1, 3));
    for i in 0..3 {
        a.send(text(-77, &format!("a{i}"))).unwrap();
        b.send(text(-77, &format!("b{i}"))).unwrap();
    }
    rig.fake.wait_for_messages(-77, 3, WAIT);
    // Whoever holds the other three has asked for them and been told to
    // wait (about a minute).
    let waiting = |s: &SenderHandle| metric(&s.metrics().queued) == 0 || metric(&s.metrics().budget_waits) > 0;
    wait_until("the rest waiting", || {
        waiting(&a) && waiting(&b) && metric(&a.metrics().queued) + metric(&b.metrics().queued) == 3
    });
    assert_eq!(rig.fake.messages_to(-77).len(), 3, "the group got more than its minute's budget");
}

#[test]
fn two_senders_keep_to_one_global_limit() {
    let mut rig = Rig::new();
    let url = redis_url();
    let (a, _) = rig.sender(&url, limits(5, 1_000, 1_000));
    let (b, _) = rig.sender(&url, limits(5, 1_000, 1_000));
    for chat in 1..=10 {
        a.send(text(chat, "from a")).unwrap();
        b.send(text(100 + chat, "from b")).unwrap();
    }
    assert!(rig.fake.wait_for(|calls| calls.iter().filter(|c| c.ok()).count() == 20, WAIT));
    let calls = sends(&rig.fake);
    let most = most_in_window(&calls, Duration::from_secs(1) - JITTER);
    assert!(most <= 5, "{most} sends within a second, over both senders");
}

#[test]
fn a_429_seen_by_one_sender_freezes_the_other() {
    let mut rig = Rig::new();
    let url = redis_url();
    let (a, _) = rig.sender(&url, RateLimits::default());
    let (b, budget_b) = rig.sender(&url, RateLimits::default());
    rig.fake.fail_next("sendMessage", 1, 3);
    a.send(text(21, "flooded")).unwrap();
    wait_until("the freeze reaches the shared budget", || rig.runtime.block_on(budget_b.is_frozen(Instant::now())));
    b.send(text(22, "after the freeze")).unwrap();
    let delivered = rig.fake.wait_for_messages(22, 1, WAIT);
    let refused = rig.fake.calls_of("sendMessage").into_iter().find(|c| c.status == 429).unwrap();
    let waited = delivered[0].at.duration_since(refused.at);
    // The freeze began after the 429 was recorded and lasts 3 s.
    assert!(waited >= Duration::from_secs(3), "the other sender sent {waited:?} after the 429");
    rig.fake.wait_for_messages(21, 1, WAIT);
    assert_eq!(metric(&a.metrics().budget_freezes), 1);
    assert!(metric(&b.metrics().budget_waits) > 0);
    let rendered = stockbot::metrics::render_sender(a.metrics());
    assert!(rendered.contains("stockbot_telegram_budget_freezes_total 1"), "{rendered}");
}

#[test]
fn a_403_seen_by_one_sender_stops_the_other_writing_to_that_chat() {
    let mut rig = Rig::new();
    let url = redis_url();
    let (a, _) = rig.sender(&url, RateLimits::default());
    let (b, budget_b) = rig.sender(&url, RateLimits::default());
    rig.fake.block_chat(31);
    a.send(text(31, "to a blocked chat")).unwrap();
    wait_until("the mark reaches the shared budget", || rig.runtime.block_on(budget_b.is_blocked(31, Instant::now())));
    assert_eq!(metric(&a.metrics().blocked_marks), 1);
    b.send(text(31, "m0")).unwrap();
    b.send(text(31, "m1")).unwrap();
    wait_until("the other sender drops the chat's queue", || {
        metric(&b.metrics().blocked_elsewhere) == 1 && metric(&b.metrics().queued) == 0
    });
    assert_eq!(metric(&b.metrics().failed), 2);
    assert_eq!(rig.fake.calls_of("sendMessage").iter().filter(|c| c.chat_id() == Some(31)).count(), 1);
    assert_eq!(b.send(text(31, "m2")), Err(SendError::Blocked));
    // The user writes to the bot again; the other sender's gateway replies.
    rig.fake.unblock_chat(31);
    b.send_reply(text(31, "welcome back")).unwrap();
    assert_eq!(rig.fake.wait_for_messages(31, 1, WAIT)[0].text(), Some("welcome back"));
    wait_until("the mark is lifted for every sender", || {
        !rig.runtime.block_on(budget_b.is_blocked(31, Instant::now()))
    });
    // The first sender's own memory of the 403 is short-lived on a shared budget.
    wait_until("the first sender writes again", || a.send(text(31, "and again")).is_ok());
    rig.fake.wait_for_messages(31, 2, WAIT);
}

#[test]
fn with_redis_unreachable_the_local_budget_still_delivers() {
    let mut rig = Rig::new();
    let (sender, _) = rig.sender(CLOSED_URL, limits(30, 1, 20));
    for i in 0..3 {
        sender.send(text(41, &format!("m{i}"))).unwrap();
    }
    let messages = rig.fake.wait_for_messages(41, 3, WAIT);
    let texts: Vec<_> = messages.iter().map(|c| c.text().unwrap().to_owned()).collect();
    assert_eq!(texts, ["m0", "m1", "m2"]);
    assert_eq!(most_in_window(&messages, Duration::from_secs(1) - JITTER), 1, "the local windows still hold");
    assert_eq!(metric(&sender.metrics().budget_fallbacks), 1, "one switch to local, counted once");
}

#[test]
fn the_budget_goes_back_to_redis_when_it_answers_again() {
    let mut rig = Rig::new();
    let upstream: SocketAddr = redis_url().trim_start_matches("redis://").parse().unwrap();
    let mut proxy = Proxy::start(upstream);
    let url = format!("redis://127.0.0.1:{}", proxy.port);
    let (sender, _) = rig.sender(&url, limits(30, 1, 20));
    sender.send(text(51, "through redis")).unwrap();
    rig.fake.wait_for_messages(51, 1, WAIT);
    assert_eq!(metric(&sender.metrics().budget_fallbacks), 0);
    proxy.cut();
    sender.send(text(52, "during the outage")).unwrap();
    rig.fake.wait_for_messages(52, 1, WAIT);
    assert_eq!(metric(&sender.metrics().budget_fallbacks), 1);
    proxy.resume();
    let window_key = format!("{}send:chat:53", rig.prefix);
    let client = rig.runtime.block_on(redis_client());
    let mut sent = 0;
    wait_until("a grant taken in Redis again", || {
        // One message per try (the chat allows one a second): each asks the budget.
        if sender.send(text(53, &format!("after {sent}"))).is_ok() {
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(200));
        rig.runtime.block_on(client.zcard::<i64, _>(&window_key)).unwrap() > 0
    });
    rig.runtime.block_on(client.quit()).unwrap();
}

#[test]
fn connect_puts_the_sender_on_the_redis_budget_under_the_configured_prefix() {
    let rig = Rig::new();
    let mut settings = stockbot::config::Settings::load_from(None).unwrap();
    settings.telegram.bot_token = Some(serde_json::from_value(serde_json::json!(rig.fake.token)).unwrap());
    settings.telegram.api_url = Some(rig.fake.base_url.clone());
    settings.telegram.mode = Some("polling".to_owned());
    settings.redis_url = Some(serde_json::from_value(serde_json::json!(redis_url())).unwrap());
    settings.redis_prefix = rig.prefix.clone();
    let client = rig.runtime.block_on(stockbot::telegram::front::connect(&settings)).unwrap().unwrap();
    client.sender.send(text(61, "through connect")).unwrap();
    rig.fake.wait_for_messages(61, 1, WAIT);
    let redis = rig.runtime.block_on(redis_client());
    let window: i64 = rig.runtime.block_on(redis.zcard(format!("{}send:chat:61", rig.prefix))).unwrap();
    assert_eq!(window, 1, "the send was counted in the shared window");
    rig.runtime.block_on(redis.quit()).unwrap();
}

/// A grant's shape: its variant and scope, and how far off its time is.
fn shape(grant: Grant, now: Instant) -> (&'static str, Option<Duration>) {
    let ahead = |at: Instant| at.saturating_duration_since(now);
    match grant {
        Grant::Granted { next_at } => ("granted", next_at.map(ahead)),
        Grant::Wait { until, scope: Scope::Global } => ("wait global", Some(ahead(until))),
        Grant::Wait { until, scope: Scope::Chat } => ("wait chat", Some(ahead(until))),
        Grant::Blocked => ("blocked", None),
    }
}

/// The same calls on `budget` give the same answers, whichever budget it is.
async fn budget_contract(budget: &dyn SendBudget) {
    let now = Instant::now();
    let grants = budget.try_take([1, 1, -5, -5, -5, 2].map(Ask::from).to_vec(), now).await;
    assert!(!grants.local, "answered by the budget itself");
    let shapes: Vec<_> = grants.grants.iter().map(|grant| shape(*grant, now)).collect();
    let kinds: Vec<_> = shapes.iter().map(|(kind, _)| *kind).collect();
    assert_eq!(kinds, ["granted", "wait chat", "granted", "granted", "wait global", "wait global"]);
    let second = Duration::from_secs(1);
    // Times are reckoned from when the answer came, a round trip after `now`.
    let within = |ahead: Option<Duration>, most: Duration| {
        ahead.is_some_and(|a| a > Duration::ZERO && a <= most + Duration::from_millis(500))
    };
    assert!(within(shapes[0].1, second), "the private chat is full for up to a second: {shapes:?}");
    assert!(within(shapes[1].1, second), "{shapes:?}");
    assert_eq!(shapes[2].1, None, "the group has room for one more");
    assert!(within(shapes[3].1, Duration::from_secs(60)) && shapes[3].1 > Some(second), "{shapes:?}");
    assert!(within(shapes[4].1, second), "{shapes:?}");
    // A freeze holds every chat; a mark blocks one until lifted.
    budget.freeze(Duration::from_secs(30), now).await;
    assert!(budget.is_frozen(Instant::now()).await);
    budget.mark_blocked(7, now).await;
    assert!(budget.is_blocked(7, Instant::now()).await);
    let later = Instant::now();
    let grants = budget.try_take(vec![Ask::from(7), Ask::from(8)], later).await.grants;
    assert_eq!(grants[0], Grant::Blocked);
    assert!(matches!(shape(grants[1], later), ("wait global", Some(a)) if a > Duration::from_secs(20)));
    // A reply to the chat (it just wrote to the bot) lifts its mark.
    let replying = Ask { chat: 7, replying: true };
    let grants = budget.try_take(vec![replying], Instant::now()).await.grants;
    assert!(matches!(grants[0], Grant::Wait { scope: Scope::Global, .. }), "frozen, no longer blocked: {grants:?}");
    assert!(!budget.is_blocked(7, Instant::now()).await);
}

#[test]
fn the_redis_budget_answers_as_the_local_one_does() {
    let mut rig = Rig::new();
    let budget_limits = limits(3, 1, 2);
    let (_, redis) = rig.sender(&redis_url(), budget_limits);
    rig.runtime.block_on(budget_contract(redis.as_ref()));
    rig.runtime.block_on(budget_contract(&LocalBudget::new(budget_limits)));
}
