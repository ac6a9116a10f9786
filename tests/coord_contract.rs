#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
//! One contract suite for every `Coordinator` adapter: local, Redis,
//! fallback with Redis up, and fallback with Redis down (a closed port, so
//! every call is answered locally, each within a second). Then what only
//! some adapters do: Redis pub/sub between instances, fast failure on a
//! closed port, the fallback's recovery when Redis comes back, and local
//! and Redis agreeing on the order of seeded boards full of ties.
//!
//! Redis is `TEST_REDIS_URL` or `redis://127.0.0.1:6379`; each test works
//! under a fresh random key prefix and deletes its keys at the end.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actors::domain::ids::PlayerId;
use actors::ports::BoxFuture;
use actors::ports::coordinator::{
    BoardScore, CoordError, Coordinator, LockToken, PLAYER_NAME_CHARS_MAX, PricesUpdate, PublishedQuote, RateDecision,
};
use fred::prelude::{ClientLike, LuaInterface};
use stockbot::coord::fallback::{FallbackCoordinator, FallbackOptions};
use stockbot::coord::local::LocalCoordinator;
use stockbot::coord::redis::{RedisCoordinator, RedisOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;

const CLOSED_URL: &str = "redis://127.0.0.1:1";

fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn fresh_prefix() -> String {
    format!("stockbot-test:{:016x}:", rand::random::<u64>())
}

async fn redis(prefix: &str) -> RedisCoordinator {
    let url = redis_url();
    let coord = RedisCoordinator::connect(&url, prefix).await.unwrap();
    assert_eq!(coord.ping().await, Ok(()), "Redis not reachable at {url} (set TEST_REDIS_URL)");
    coord
}

/// Deletes every key under `prefix` and checks none is left.
async fn delete_keys(prefix: &str) {
    let client =
        fred::prelude::Builder::from_config(fred::prelude::Config::from_url(&redis_url()).unwrap()).build().unwrap();
    client.init().await.unwrap();
    let script = "local ks = redis.call('KEYS', ARGV[1]) for _, k in ipairs(ks) do redis.call('DEL', k) end return #ks";
    let _: i64 = client.eval(script, Vec::<String>::new(), format!("{prefix}*")).await.unwrap();
    let left: i64 =
        client.eval("return #redis.call('KEYS', ARGV[1])", Vec::<String>::new(), format!("{prefix}*")).await.unwrap();
    assert_eq!(left, 0);
    client.quit().await.unwrap();
}

#[derive(Debug, Clone, Copy)]
enum Backend {
    Local,
    Redis,
    FallbackUp,
    FallbackDown,
}

/// A coordinator under test, and a second one sharing its state (another
/// connection for Redis, the same instance for local state).
struct Harness {
    coord: Arc<dyn Coordinator>,
    peer: Arc<dyn Coordinator>,
    prefix: Option<String>,
}

impl Harness {
    async fn new(backend: Backend) -> Self {
        let prefix = fresh_prefix();
        match backend {
            Backend::Local => {
                let coord: Arc<dyn Coordinator> = Arc::new(LocalCoordinator::new());
                Self { peer: Arc::clone(&coord), coord, prefix: None }
            }
            Backend::Redis => Self {
                coord: Arc::new(redis(&prefix).await),
                peer: Arc::new(redis(&prefix).await),
                prefix: Some(prefix),
            },
            Backend::FallbackUp => Self {
                coord: Arc::new(FallbackCoordinator::new(redis(&prefix).await, LocalCoordinator::new())),
                peer: Arc::new(FallbackCoordinator::new(redis(&prefix).await, LocalCoordinator::new())),
                prefix: Some(prefix),
            },
            Backend::FallbackDown => {
                let started = Instant::now();
                let down = RedisCoordinator::connect(CLOSED_URL, &prefix).await.unwrap();
                assert!(
                    started.elapsed() < Duration::from_secs(1),
                    "connect to a closed port took {:?}",
                    started.elapsed()
                );
                let coord: Arc<dyn Coordinator> =
                    Arc::new(Timed(Arc::new(FallbackCoordinator::new(down, LocalCoordinator::new()))));
                Self { peer: Arc::clone(&coord), coord, prefix: None }
            }
        }
    }

    async fn cleanup(self) {
        if let Some(prefix) = self.prefix {
            delete_keys(&prefix).await;
        }
    }
}

/// Runs each contract test against every backend.
macro_rules! contract_suite {
    ($($test:ident),* $(,)?) => {
        contract_suite!(@backend local, Local; $($test),*);
        contract_suite!(@backend redis, Redis; $($test),*);
        contract_suite!(@backend fallback_up, FallbackUp; $($test),*);
        contract_suite!(@backend fallback_down, FallbackDown; $($test),*);
    };
    (@backend $module:ident, $backend:ident; $($test:ident),*) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    let harness = super::Harness::new(super::Backend::$backend).await;
                    super::$test(&harness).await;
                    harness.cleanup().await;
                }
            )*
        }
    };
}

contract_suite!(
    first_seen_is_true_once,
    first_seen_is_true_again_after_ttl,
    rate_limit_allows_exactly_limit_per_window,
    rate_limit_allows_again_after_window,
    concurrent_try_lock_gives_exactly_one_token,
    unlock_needs_the_holders_token,
    lock_expires_after_ttl,
    boards_rank_best_first_with_ties_by_player_id,
    board_updates_and_bad_input,
    board_count_remove_and_clear,
    board_move_merges_keeping_the_higher_score,
    seen_many_and_mark_many_agree_with_single_keys,
    boards_set_many_at_once_later_entries_win,
    boards_set_absent_keeps_what_stands,
    names_are_returned_in_the_order_asked_and_bounded,
    prices_latest_is_the_last_published,
    ping_answers,
);

async fn first_seen_is_true_once(h: &Harness) {
    let c = &h.coord;
    assert_eq!(c.seen("update:1").await, Ok(false), "asking does not mark");
    assert_eq!(c.seen("update:1").await, Ok(false));
    assert_eq!(c.first_seen("update:1", 60_000).await, Ok(true));
    assert_eq!(c.seen("update:1").await, Ok(true));
    assert_eq!(h.peer.seen("update:1").await, Ok(true));
    assert_eq!(c.first_seen("update:1", 60_000).await, Ok(false));
    assert_eq!(h.peer.first_seen("update:1", 60_000).await, Ok(false));
    assert_eq!(c.first_seen("update:2", 60_000).await, Ok(true));
    assert_eq!(c.first_seen("", 60_000).await, Ok(true));
    assert_eq!(c.first_seen("", 60_000).await, Ok(false));
    let odd = "cb:ünïcödé:*?[]{} \n\u{0}";
    assert_eq!(c.first_seen(odd, 60_000).await, Ok(true));
    assert_eq!(c.first_seen(odd, 60_000).await, Ok(false));
}

async fn first_seen_is_true_again_after_ttl(h: &Harness) {
    let c = &h.coord;
    assert_eq!(c.first_seen("button:7", 200).await, Ok(true));
    assert_eq!(c.first_seen("button:7", 200).await, Ok(false));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(c.first_seen("button:7", 200).await, Ok(true));
    assert_eq!(c.first_seen("button:7", 200).await, Ok(false));
}

async fn rate_limit_allows_exactly_limit_per_window(h: &Harness) {
    let c = &h.coord;
    for _ in 0..5 {
        assert_eq!(c.rate_limit("player:1", 5, 60_000).await, Ok(RateDecision::Allowed));
    }
    for _ in 0..3 {
        match c.rate_limit("player:1", 5, 60_000).await {
            Ok(RateDecision::Throttled { retry_after_ms }) => {
                assert!((1..=60_000).contains(&retry_after_ms), "retry_after_ms = {retry_after_ms}");
            }
            other => panic!("expected Throttled, got {other:?}"),
        }
    }
    // Another key has its own window; the peer shares this one.
    assert_eq!(c.rate_limit("player:2", 5, 60_000).await, Ok(RateDecision::Allowed));
    assert!(matches!(h.peer.rate_limit("player:1", 5, 60_000).await, Ok(RateDecision::Throttled { .. })));
    // A limit of zero allows nothing.
    assert!(matches!(c.rate_limit("player:3", 0, 60_000).await, Ok(RateDecision::Throttled { .. })));
}

async fn rate_limit_allows_again_after_window(h: &Harness) {
    let c = &h.coord;
    assert_eq!(c.rate_limit("chat:9", 2, 300).await, Ok(RateDecision::Allowed));
    assert_eq!(c.rate_limit("chat:9", 2, 300).await, Ok(RateDecision::Allowed));
    let retry_after_ms = match c.rate_limit("chat:9", 2, 300).await {
        Ok(RateDecision::Throttled { retry_after_ms }) => retry_after_ms,
        other => panic!("expected Throttled, got {other:?}"),
    };
    assert!((1..=300).contains(&retry_after_ms), "retry_after_ms = {retry_after_ms}");
    tokio::time::sleep(Duration::from_millis(retry_after_ms + 400)).await;
    assert_eq!(c.rate_limit("chat:9", 2, 300).await, Ok(RateDecision::Allowed));
}

async fn concurrent_try_lock_gives_exactly_one_token(h: &Harness) {
    let attempts: Vec<JoinHandle<Result<Option<LockToken>, CoordError>>> = (0..100)
        .map(|i| {
            let coord = if i % 2 == 0 { &h.coord } else { &h.peer };
            tokio::spawn(coord.try_lock("trade:42", 10_000))
        })
        .collect();
    let mut tokens = Vec::new();
    for attempt in attempts {
        if let Some(token) = attempt.await.unwrap().unwrap() {
            tokens.push(token);
        }
    }
    assert_eq!(tokens.len(), 1, "tokens: {tokens:?}");
    // A different key is free.
    assert!(h.coord.try_lock("trade:43", 10_000).await.unwrap().is_some());
}

async fn unlock_needs_the_holders_token(h: &Harness) {
    let c = &h.coord;
    let token = c.try_lock("lock:a", 10_000).await.unwrap().unwrap();
    assert_eq!(c.unlock("lock:a", LockToken("not-the-token".to_owned())).await, Ok(()));
    assert_eq!(c.try_lock("lock:a", 10_000).await, Ok(None));
    // Unlocking a free key or another key's lock is harmless.
    assert_eq!(c.unlock("lock:free", token.clone()).await, Ok(()));
    assert_eq!(h.peer.unlock("lock:a", token.clone()).await, Ok(()));
    let again = c.try_lock("lock:a", 10_000).await.unwrap().unwrap();
    assert_ne!(again, token);
    // The old token cannot release the new holder.
    assert_eq!(c.unlock("lock:a", token).await, Ok(()));
    assert_eq!(c.try_lock("lock:a", 10_000).await, Ok(None));
    assert_eq!(c.unlock("lock:a", again).await, Ok(()));
    assert!(c.try_lock("lock:a", 10_000).await.unwrap().is_some());
}

async fn lock_expires_after_ttl(h: &Harness) {
    let c = &h.coord;
    let token = c.try_lock("lock:ttl", 200).await.unwrap().unwrap();
    assert_eq!(c.try_lock("lock:ttl", 200).await, Ok(None));
    tokio::time::sleep(Duration::from_millis(700)).await;
    let next = c.try_lock("lock:ttl", 10_000).await.unwrap().unwrap();
    // The expired holder's late unlock does not free the new holder.
    assert_eq!(c.unlock("lock:ttl", token).await, Ok(()));
    assert_eq!(c.try_lock("lock:ttl", 10_000).await, Ok(None));
    assert_eq!(c.unlock("lock:ttl", next).await, Ok(()));
}

async fn boards_rank_best_first_with_ties_by_player_id(h: &Harness) {
    let c = &h.coord;
    for (player, score) in [(1, 100.0), (2, 300.0), (4, 200.0), (3, 200.0), (-7, 300.0), (10, 200.0)] {
        assert_eq!(c.board_set("global", PlayerId(player), score).await, Ok(()));
    }
    let expected = vec![
        (PlayerId(-7), 300.0),
        (PlayerId(2), 300.0),
        (PlayerId(3), 200.0),
        (PlayerId(4), 200.0),
        (PlayerId(10), 200.0),
        (PlayerId(1), 100.0),
    ];
    assert_eq!(c.board_range("global", 0, 100).await.unwrap(), expected);
    assert_eq!(h.peer.board_range("global", 0, 100).await.unwrap(), expected);
    assert_eq!(c.board_range("global", 1, 3).await.unwrap(), expected[1..4].to_vec());
    assert_eq!(c.board_range("global", 5, 10).await.unwrap(), expected[5..].to_vec());
    assert_eq!(c.board_range("global", 6, 10).await.unwrap(), vec![]);
    assert_eq!(c.board_range("global", 0, 0).await.unwrap(), vec![]);
    assert_eq!(c.board_range("global", u64::MAX, u64::MAX).await.unwrap(), vec![]);
    for (rank, &(player, score)) in expected.iter().enumerate() {
        assert_eq!(c.board_rank("global", player).await, Ok(Some((rank as u64, score))), "{player}");
    }
    assert_eq!(c.board_rank("global", PlayerId(99)).await, Ok(None));
    assert_eq!(c.board_rank("nowhere", PlayerId(1)).await, Ok(None));
    assert_eq!(c.board_range("nowhere", 0, 10).await.unwrap(), vec![]);
    assert_eq!(c.board_range("group:-100", 0, 10).await.unwrap(), vec![]);
}

async fn board_updates_and_bad_input(h: &Harness) {
    let c = &h.coord;
    c.board_set("g", PlayerId(1), 10.0).await.unwrap();
    c.board_set("g", PlayerId(2), 20.0).await.unwrap();
    // A new score replaces the old one: no duplicate entry.
    c.board_set("g", PlayerId(1), 30.5).await.unwrap();
    assert_eq!(c.board_range("g", 0, 10).await.unwrap(), vec![(PlayerId(1), 30.5), (PlayerId(2), 20.0)]);
    c.board_set("g", PlayerId(1), 5.0).await.unwrap();
    assert_eq!(c.board_rank("g", PlayerId(1)).await, Ok(Some((1, 5.0))));
    // Scores round-trip exactly, negatives and infinities included.
    for (player, score) in [(3, 0.1 + 0.2), (4, -1234.5678), (5, 1e300), (6, f64::NEG_INFINITY), (7, -0.0)] {
        c.board_set("exact", PlayerId(player), score).await.unwrap();
        let (_, stored) = c.board_rank("exact", PlayerId(player)).await.unwrap().unwrap();
        assert_eq!(stored, score, "player {player}");
    }
    // NaN is refused and changes nothing.
    assert!(c.board_set("g", PlayerId(1), f64::NAN).await.is_err());
    assert_eq!(c.board_rank("g", PlayerId(1)).await, Ok(Some((1, 5.0))));
    // Extreme ids and board names are fine.
    c.board_set("board with spaces/ünï*", PlayerId(i64::MIN), 1.0).await.unwrap();
    c.board_set("board with spaces/ünï*", PlayerId(i64::MAX), 1.0).await.unwrap();
    assert_eq!(
        c.board_range("board with spaces/ünï*", 0, 10).await.unwrap(),
        vec![(PlayerId(i64::MIN), 1.0), (PlayerId(i64::MAX), 1.0)]
    );
}

async fn seen_many_and_mark_many_agree_with_single_keys(h: &Harness) {
    let c = &h.coord;
    assert_eq!(c.seen_many(Vec::new()).await, Ok(Vec::new()));
    c.mark_many(Vec::new(), 60_000).await.unwrap();
    assert_eq!(c.first_seen("u:1", 60_000).await, Ok(true));
    let keys = |ids: &[u32]| ids.iter().map(|id| format!("u:{id}")).collect::<Vec<_>>();
    assert_eq!(c.seen_many(keys(&[1, 2, 3])).await, Ok(vec![true, false, false]));
    c.mark_many(keys(&[2, 3]), 60_000).await.unwrap();
    assert_eq!(h.peer.seen_many(keys(&[3, 1, 4, 2])).await, Ok(vec![true, true, false, true]));
    assert_eq!(c.first_seen("u:3", 60_000).await, Ok(false), "a marked key is seen by first_seen too");
    assert_eq!(c.seen("u:2").await, Ok(true));
    // Marks expire like first_seen's.
    c.mark_many(keys(&[9]), 150).await.unwrap();
    assert_eq!(c.seen("u:9").await, Ok(true));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(c.seen_many(keys(&[9, 1])).await, Ok(vec![false, true]));
}

fn score(board: &str, player: i64, score: f64) -> BoardScore {
    BoardScore { board: board.to_owned(), player: PlayerId(player), score }
}

async fn boards_set_many_at_once_later_entries_win(h: &Harness) {
    let c = &h.coord;
    c.boards_set(Vec::new()).await.unwrap();
    c.board_set("a", PlayerId(1), 1.0).await.unwrap();
    c.boards_set(vec![score("a", 1, 5.0), score("b", 1, 7.0), score("a", 2, 6.0), score("a", 1, 4.0)]).await.unwrap();
    assert_eq!(h.peer.board_range("a", 0, 10).await.unwrap(), vec![(PlayerId(2), 6.0), (PlayerId(1), 4.0)]);
    assert_eq!(h.peer.board_range("b", 0, 10).await.unwrap(), vec![(PlayerId(1), 7.0)]);
    // One bad score refuses the call; nothing of it is written.
    assert!(c.boards_set(vec![score("a", 3, 1.0), score("a", 4, f64::NAN)]).await.is_err());
    assert_eq!(c.board_count("a").await, Ok(2));
}

async fn boards_set_absent_keeps_what_stands(h: &Harness) {
    let c = &h.coord;
    assert_eq!(c.boards_set_absent(Vec::new()).await, Ok(Vec::new()));
    c.board_set("open", PlayerId(1), 100.0).await.unwrap();
    let kept = c
        .boards_set_absent(vec![score("open", 1, 150.0), score("open", 2, 200.0), score("other", 1, 50.0)])
        .await
        .unwrap();
    assert_eq!(kept, vec![100.0, 200.0, 50.0]);
    let again = c.boards_set_absent(vec![score("other", 1, 1.0), score("open", 2, 1.0)]).await.unwrap();
    assert_eq!(again, vec![50.0, 200.0]);
    assert_eq!(h.peer.board_range("open", 0, 10).await.unwrap(), vec![(PlayerId(2), 200.0), (PlayerId(1), 100.0)]);
    assert!(c.boards_set_absent(vec![score("open", 9, f64::NAN)]).await.is_err());
    assert_eq!(c.board_rank("open", PlayerId(9)).await, Ok(None));
}

async fn board_count_remove_and_clear(h: &Harness) {
    let c = &h.coord;
    assert_eq!(c.board_count("g").await, Ok(0));
    for player in 1..=5 {
        c.board_set("g", PlayerId(player), f64::from(u8::try_from(player).unwrap() % 2)).await.unwrap();
    }
    c.board_set("other", PlayerId(9), 1.0).await.unwrap();
    assert_eq!(c.board_count("g").await, Ok(5));
    assert_eq!(h.peer.board_count("g").await, Ok(5));
    // Re-setting a score does not add an entry.
    c.board_set("g", PlayerId(3), 7.0).await.unwrap();
    assert_eq!(c.board_count("g").await, Ok(5));

    c.board_remove("g", PlayerId(1)).await.unwrap();
    assert_eq!(c.board_count("g").await, Ok(4));
    assert_eq!(c.board_rank("g", PlayerId(1)).await, Ok(None));
    assert_eq!(
        c.board_range("g", 0, 10).await.unwrap(),
        vec![(PlayerId(3), 7.0), (PlayerId(5), 1.0), (PlayerId(2), 0.0), (PlayerId(4), 0.0)]
    );
    assert_eq!(c.board_rank("g", PlayerId(2)).await, Ok(Some((2, 0.0))));
    // Removing an absent player, or from an absent board, is harmless.
    assert_eq!(c.board_remove("g", PlayerId(1)).await, Ok(()));
    assert_eq!(c.board_remove("nowhere", PlayerId(1)).await, Ok(()));
    assert_eq!(c.board_count("nowhere").await, Ok(0));
    // The last entry removed leaves an empty board.
    c.board_remove("other", PlayerId(9)).await.unwrap();
    assert_eq!(c.board_count("other").await, Ok(0));
    assert_eq!(c.board_range("other", 0, 10).await.unwrap(), vec![]);

    assert_eq!(c.board_clear("g").await, Ok(()));
    assert_eq!(c.board_count("g").await, Ok(0));
    assert_eq!(h.peer.board_range("g", 0, 10).await.unwrap(), vec![]);
    assert_eq!(c.board_rank("g", PlayerId(3)).await, Ok(None));
    assert_eq!(c.board_clear("g").await, Ok(()));
    // A cleared board starts afresh.
    c.board_set("g", PlayerId(2), 1.0).await.unwrap();
    assert_eq!(c.board_range("g", 0, 10).await.unwrap(), vec![(PlayerId(2), 1.0)]);
}

async fn board_move_merges_keeping_the_higher_score(h: &Harness) {
    let c = &h.coord;
    // A group's board, and the supergroup it became (already with entries).
    for (player, score) in [(1, 10.0), (2, 50.0), (3, 30.0), (5, -1.0)] {
        c.board_set("group:-100", PlayerId(player), score).await.unwrap();
    }
    for (player, score) in [(1, 40.0), (2, 20.0), (4, 30.0)] {
        c.board_set("group:-1009", PlayerId(player), score).await.unwrap();
    }
    c.board_move("group:-100", "group:-1009").await.unwrap();
    let merged =
        vec![(PlayerId(2), 50.0), (PlayerId(1), 40.0), (PlayerId(3), 30.0), (PlayerId(4), 30.0), (PlayerId(5), -1.0)];
    assert_eq!(c.board_range("group:-1009", 0, 10).await.unwrap(), merged);
    assert_eq!(h.peer.board_range("group:-1009", 0, 10).await.unwrap(), merged);
    assert_eq!(c.board_count("group:-1009").await, Ok(5));
    assert_eq!(c.board_rank("group:-1009", PlayerId(4)).await, Ok(Some((3, 30.0))));
    // The old board is gone.
    assert_eq!(c.board_count("group:-100").await, Ok(0));
    assert_eq!(c.board_rank("group:-100", PlayerId(1)).await, Ok(None));

    // Archiving a season: the destination does not exist yet.
    c.board_set("top:global:s12", PlayerId(7), 3.5).await.unwrap();
    c.board_set("top:global:s12", PlayerId(6), 3.5).await.unwrap();
    c.board_move("top:global:s12", "archive:top:global:s12").await.unwrap();
    assert_eq!(
        c.board_range("archive:top:global:s12", 0, 10).await.unwrap(),
        vec![(PlayerId(6), 3.5), (PlayerId(7), 3.5)]
    );
    assert_eq!(c.board_count("top:global:s12").await, Ok(0));
    // The next season starts empty on the old name.
    c.board_set("top:global:s12", PlayerId(8), 1.0).await.unwrap();
    assert_eq!(c.board_range("top:global:s12", 0, 10).await.unwrap(), vec![(PlayerId(8), 1.0)]);

    // Onto itself: nothing changes (in particular, nothing is deleted).
    c.board_move("group:-1009", "group:-1009").await.unwrap();
    assert_eq!(c.board_range("group:-1009", 0, 10).await.unwrap(), merged);
    // From a board that does not exist: the destination is untouched.
    c.board_move("nowhere", "group:-1009").await.unwrap();
    assert_eq!(c.board_range("group:-1009", 0, 10).await.unwrap(), merged);
    c.board_move("nowhere", "still-nowhere").await.unwrap();
    assert_eq!(c.board_count("still-nowhere").await, Ok(0));
}

async fn names_are_returned_in_the_order_asked_and_bounded(h: &Harness) {
    let c = &h.coord;
    assert_eq!(c.names_get(vec![]).await, Ok(vec![]));
    assert_eq!(c.names_set(vec![]).await, Ok(()));
    assert_eq!(c.names_get(vec![PlayerId(1)]).await, Ok(vec![None]));
    let exact = "é".repeat(PLAYER_NAME_CHARS_MAX);
    let long = format!("{exact}🚀 and more");
    c.names_set(vec![
        (PlayerId(1), "Alice".to_owned()),
        (PlayerId(-2), "Bob 🚀".to_owned()),
        (PlayerId(i64::MAX), exact.clone()),
        (PlayerId(i64::MIN), long),
        (PlayerId(5), String::new()),
        // A later entry for the same player wins.
        (PlayerId(6), "first".to_owned()),
        (PlayerId(6), "second".to_owned()),
    ])
    .await
    .unwrap();
    let asked = vec![PlayerId(i64::MIN), PlayerId(3), PlayerId(1), PlayerId(-2), PlayerId(1), PlayerId(i64::MAX)];
    let expected = vec![
        Some(exact.clone()),
        None,
        Some("Alice".to_owned()),
        Some("Bob 🚀".to_owned()),
        Some("Alice".to_owned()),
        Some(exact.clone()),
    ];
    assert_eq!(c.names_get(asked.clone()).await, Ok(expected.clone()));
    assert_eq!(h.peer.names_get(asked).await, Ok(expected));
    assert_eq!(
        c.names_get(vec![PlayerId(5), PlayerId(6)]).await,
        Ok(vec![Some(String::new()), Some("second".to_owned())])
    );
    // A new name replaces the old one.
    c.names_set(vec![(PlayerId(1), "Alice B.".to_owned())]).await.unwrap();
    assert_eq!(c.names_get(vec![PlayerId(1)]).await, Ok(vec![Some("Alice B.".to_owned())]));
    // More names than one command carries, in order.
    let many: Vec<(PlayerId, String)> = (0..2_500).map(|i| (PlayerId(1_000 + i), format!("p{i}"))).collect();
    c.names_set(many.clone()).await.unwrap();
    let got = c.names_get(many.iter().rev().map(|(player, _)| *player).collect()).await.unwrap();
    assert_eq!(got, many.into_iter().rev().map(|(_, name)| Some(name)).collect::<Vec<_>>());
}

fn update(minute: u64, mid: &str) -> PricesUpdate {
    PricesUpdate {
        minute,
        quotes: vec![
            PublishedQuote {
                ticker: "ACME".to_owned(),
                bid: "9.99".to_owned(),
                ask: "10.01".to_owned(),
                mid: mid.to_owned(),
                halted: false,
            },
            PublishedQuote {
                ticker: "ÜNÏ".to_owned(),
                bid: "1".to_owned(),
                ask: "1.02".to_owned(),
                mid: "1.01".to_owned(),
                halted: true,
            },
        ],
    }
}

async fn prices_latest_is_the_last_published(h: &Harness) {
    let c = &h.coord;
    assert_eq!(c.latest_prices().await, Ok(None));
    c.publish_prices(update(1, "10.00")).await.unwrap();
    assert_eq!(c.latest_prices().await, Ok(Some(update(1, "10.00"))));
    h.peer.publish_prices(update(2, "10.50")).await.unwrap();
    assert_eq!(c.latest_prices().await, Ok(Some(update(2, "10.50"))));
    assert_eq!(h.peer.latest_prices().await, Ok(Some(update(2, "10.50"))));
}

async fn ping_answers(h: &Harness) {
    assert_eq!(h.coord.ping().await, Ok(()));
}

/// A coordinator that fails the test when any call takes a second or more.
struct Timed(Arc<dyn Coordinator>);

fn timed<T: Send + 'static>(what: &'static str, call: BoxFuture<T>) -> BoxFuture<T> {
    Box::pin(async move {
        let started = Instant::now();
        let answer = call.await;
        assert!(started.elapsed() < Duration::from_secs(1), "{what} took {:?}", started.elapsed());
        answer
    })
}

impl Coordinator for Timed {
    fn first_seen(&self, key: &str, ttl_ms: u64) -> BoxFuture<Result<bool, CoordError>> {
        timed("first_seen", self.0.first_seen(key, ttl_ms))
    }
    fn seen(&self, key: &str) -> BoxFuture<Result<bool, CoordError>> {
        timed("seen", self.0.seen(key))
    }
    fn seen_many(&self, keys: Vec<String>) -> BoxFuture<Result<Vec<bool>, CoordError>> {
        timed("seen_many", self.0.seen_many(keys))
    }
    fn mark_many(&self, keys: Vec<String>, ttl_ms: u64) -> BoxFuture<Result<(), CoordError>> {
        timed("mark_many", self.0.mark_many(keys, ttl_ms))
    }
    fn rate_limit(&self, key: &str, limit: u32, window_ms: u64) -> BoxFuture<Result<RateDecision, CoordError>> {
        timed("rate_limit", self.0.rate_limit(key, limit, window_ms))
    }
    fn try_lock(&self, key: &str, ttl_ms: u64) -> BoxFuture<Result<Option<LockToken>, CoordError>> {
        timed("try_lock", self.0.try_lock(key, ttl_ms))
    }
    fn unlock(&self, key: &str, token: LockToken) -> BoxFuture<Result<(), CoordError>> {
        timed("unlock", self.0.unlock(key, token))
    }
    fn publish_prices(&self, update: PricesUpdate) -> BoxFuture<Result<(), CoordError>> {
        timed("publish_prices", self.0.publish_prices(update))
    }
    fn latest_prices(&self) -> BoxFuture<Result<Option<PricesUpdate>, CoordError>> {
        timed("latest_prices", self.0.latest_prices())
    }
    fn board_set(&self, board: &str, player: PlayerId, score: f64) -> BoxFuture<Result<(), CoordError>> {
        timed("board_set", self.0.board_set(board, player, score))
    }
    fn boards_set(&self, scores: Vec<BoardScore>) -> BoxFuture<Result<(), CoordError>> {
        timed("boards_set", self.0.boards_set(scores))
    }
    fn boards_set_absent(&self, scores: Vec<BoardScore>) -> BoxFuture<Result<Vec<f64>, CoordError>> {
        timed("boards_set_absent", self.0.boards_set_absent(scores))
    }
    fn board_range(&self, board: &str, offset: u64, limit: u64) -> BoxFuture<Result<Vec<(PlayerId, f64)>, CoordError>> {
        timed("board_range", self.0.board_range(board, offset, limit))
    }
    fn board_rank(&self, board: &str, player: PlayerId) -> BoxFuture<Result<Option<(u64, f64)>, CoordError>> {
        timed("board_rank", self.0.board_rank(board, player))
    }
    fn board_count(&self, board: &str) -> BoxFuture<Result<u64, CoordError>> {
        timed("board_count", self.0.board_count(board))
    }
    fn board_remove(&self, board: &str, player: PlayerId) -> BoxFuture<Result<(), CoordError>> {
        timed("board_remove", self.0.board_remove(board, player))
    }
    fn board_move(&self, from: &str, to: &str) -> BoxFuture<Result<(), CoordError>> {
        timed("board_move", self.0.board_move(from, to))
    }
    fn board_clear(&self, board: &str) -> BoxFuture<Result<(), CoordError>> {
        timed("board_clear", self.0.board_clear(board))
    }
    fn names_set(&self, entries: Vec<(PlayerId, String)>) -> BoxFuture<Result<(), CoordError>> {
        timed("names_set", self.0.names_set(entries))
    }
    fn names_get(&self, players: Vec<PlayerId>) -> BoxFuture<Result<Vec<Option<String>>, CoordError>> {
        timed("names_get", self.0.names_get(players))
    }
    fn ping(&self) -> BoxFuture<Result<(), CoordError>> {
        timed("ping", self.0.ping())
    }
}

// ---- beyond the shared contract ----

async fn recv_within<F, T>(what: &str, next: F) -> T
where
    F: std::future::Future<Output = Option<T>>,
{
    tokio::time::timeout(Duration::from_secs(5), next)
        .await
        .unwrap_or_else(|_| panic!("no {what} within 5 s"))
        .unwrap_or_else(|| panic!("{what}: subscription closed"))
}

#[tokio::test]
async fn local_subscribers_receive_published_prices() {
    let coord = LocalCoordinator::new();
    let mut first = coord.subscribe_prices();
    let mut second = coord.subscribe_prices();
    coord.publish_prices(update(1, "10.00")).await.unwrap();
    coord.publish_prices(update(2, "10.10")).await.unwrap();
    for rx in [&mut first, &mut second] {
        assert_eq!(rx.recv().await.unwrap(), update(1, "10.00"));
        assert_eq!(rx.recv().await.unwrap(), update(2, "10.10"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_pubsub_delivers_to_another_instance() {
    let prefix = fresh_prefix();
    let publisher = redis(&prefix).await;
    let receiver = redis(&prefix).await;
    let stranger = redis(&fresh_prefix()).await;
    let mut subscription = receiver.subscribe_prices().await.unwrap();
    assert!(subscription.is_connected());
    // An instance on another prefix is not heard.
    stranger.publish_prices(update(7, "77.00")).await.unwrap();
    publisher.publish_prices(update(1, "10.00")).await.unwrap();
    publisher.publish_prices(update(2, "10.20")).await.unwrap();
    assert_eq!(recv_within("price update", subscription.recv()).await, update(1, "10.00"));
    assert_eq!(recv_within("price update", subscription.recv()).await, update(2, "10.20"));
    assert_eq!(receiver.latest_prices().await, Ok(Some(update(2, "10.20"))));
    delete_keys(&prefix).await;
    delete_keys(stranger.prefix()).await;
}

#[tokio::test]
async fn redis_on_a_closed_port_is_unavailable_at_once() {
    let started = Instant::now();
    let coord = RedisCoordinator::connect(CLOSED_URL, &fresh_prefix()).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(1), "connect took {:?}", started.elapsed());
    let coord = Timed(Arc::new(coord));
    assert!(matches!(coord.ping().await, Err(CoordError::Unavailable(_))));
    assert!(matches!(coord.first_seen("k", 1_000).await, Err(CoordError::Unavailable(_))));
    assert!(matches!(coord.rate_limit("k", 1, 1_000).await, Err(CoordError::Unavailable(_))));
    assert!(matches!(coord.try_lock("k", 1_000).await, Err(CoordError::Unavailable(_))));
    assert!(matches!(coord.unlock("k", LockToken("t".to_owned())).await, Err(CoordError::Unavailable(_))));
    assert!(matches!(coord.publish_prices(update(1, "1")).await, Err(CoordError::Unavailable(_))));
    assert!(matches!(coord.latest_prices().await, Err(CoordError::Unavailable(_))));
    assert!(matches!(coord.board_set("b", PlayerId(1), 1.0).await, Err(CoordError::Unavailable(_))));
    assert!(matches!(coord.board_range("b", 0, 10).await, Err(CoordError::Unavailable(_))));
    assert!(matches!(coord.board_rank("b", PlayerId(1)).await, Err(CoordError::Unavailable(_))));
    assert!(matches!(coord.board_count("b").await, Err(CoordError::Unavailable(_))));
    assert!(matches!(coord.board_remove("b", PlayerId(1)).await, Err(CoordError::Unavailable(_))));
    assert!(matches!(coord.board_move("b", "c").await, Err(CoordError::Unavailable(_))));
    assert!(matches!(coord.board_clear("b").await, Err(CoordError::Unavailable(_))));
    assert!(matches!(coord.names_set(vec![(PlayerId(1), "n".to_owned())]).await, Err(CoordError::Unavailable(_))));
    assert!(matches!(coord.names_get(vec![PlayerId(1)]).await, Err(CoordError::Unavailable(_))));
}

/// A seeded random mix of ties (few distinct scores), extreme ids, updates,
/// removals and a move, applied to local and Redis alike: every page, rank
/// and count must agree exactly. The seed is printed on failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_and_redis_agree_on_tied_boards() {
    use rand::{Rng, SeedableRng};
    let seed: u64 = std::env::var("COORD_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    let prefix = fresh_prefix();
    let local = LocalCoordinator::new();
    let redis = redis(&prefix).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let scores = [f64::NEG_INFINITY, -1.5, 0.0, 1.0, 2.5, f64::INFINITY];
    let ids: Vec<i64> = (0..60)
        .map(|i| match i {
            0 => i64::MIN,
            1 => i64::MAX,
            2 => -1,
            3 => 0,
            _ => rng.random_range(-1_000_i64..1_000) * if rng.random_bool(0.1) { 1 << 40 } else { 1 },
        })
        .collect();
    for step in 0..400 {
        let board = if rng.random_bool(0.7) { "a" } else { "b" };
        let player = PlayerId(ids[rng.random_range(0..ids.len())]);
        let roll = rng.random_range(0..10);
        for coord in [&local as &dyn Coordinator, &redis] {
            match roll {
                _ if step % 150 == 149 => coord.board_move("b", "a").await.unwrap(),
                0 => coord.board_remove(board, player).await.unwrap(),
                _ => coord.board_set(board, player, scores[usize::try_from(step % 6).unwrap()]).await.unwrap(),
            }
        }
    }
    for board in ["a", "b"] {
        let count = local.board_count(board).await.unwrap();
        assert_eq!(redis.board_count(board).await.unwrap(), count, "seed {seed}: count of {board}");
        let all = local.board_range(board, 0, u64::MAX).await.unwrap();
        assert_eq!(redis.board_range(board, 0, u64::MAX).await.unwrap(), all, "seed {seed}: board {board}");
        assert!(
            all.windows(2).all(|w| w[0].1 > w[1].1 || (w[0].1 == w[1].1 && w[0].0 < w[1].0)),
            "seed {seed}: {board} not best first with ties by lower id: {all:?}"
        );
        for offset in [0, 1, 7, 13] {
            assert_eq!(
                redis.board_range(board, offset, 5).await.unwrap(),
                local.board_range(board, offset, 5).await.unwrap(),
                "seed {seed}: page {offset} of {board}"
            );
        }
        for (rank, &(player, score)) in all.iter().enumerate() {
            let expected = Some((u64::try_from(rank).unwrap(), score));
            assert_eq!(local.board_rank(board, player).await.unwrap(), expected, "seed {seed}");
            assert_eq!(redis.board_rank(board, player).await.unwrap(), expected, "seed {seed}");
        }
    }
    delete_keys(&prefix).await;
}

#[tokio::test]
async fn redis_rejects_a_bad_url() {
    assert!(matches!(RedisCoordinator::connect("not a url", "p:").await, Err(CoordError::Unavailable(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_subscription_hears_local_publishes_while_redis_is_down() {
    let down = RedisCoordinator::connect(CLOSED_URL, &fresh_prefix()).await.unwrap();
    let coord = FallbackCoordinator::new(down, LocalCoordinator::new());
    let started = Instant::now();
    let mut subscription = coord.subscribe_prices().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(1), "subscribe took {:?}", started.elapsed());
    coord.publish_prices(update(3, "3.00")).await.unwrap();
    assert_eq!(recv_within("local price update", subscription.recv()).await, update(3, "3.00"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_subscription_hears_other_instances_through_redis() {
    let prefix = fresh_prefix();
    let coord = FallbackCoordinator::new(redis(&prefix).await, LocalCoordinator::new());
    let other = FallbackCoordinator::new(redis(&prefix).await, LocalCoordinator::new());
    let mut subscription = coord.subscribe_prices().await.unwrap();
    other.publish_prices(update(4, "4.00")).await.unwrap();
    assert_eq!(recv_within("price update", subscription.recv()).await, update(4, "4.00"));
    delete_keys(&prefix).await;
}

/// A TCP proxy to Redis that can be taken down (listener closed,
/// connections cut) and brought back on the same port.
struct Proxy {
    addr: SocketAddr,
    target: SocketAddr,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    /// While set, bytes are swallowed in both directions: a hung Redis.
    frozen: Arc<AtomicBool>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Self {
        let mut proxy =
            Self { addr: "127.0.0.1:0".parse().unwrap(), target, tasks: Arc::default(), frozen: Arc::default() };
        proxy.up().await;
        proxy
    }

    async fn up(&mut self) {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(self.addr).unwrap();
        let listener = socket.listen(64).unwrap();
        self.addr = listener.local_addr().unwrap();
        let target = self.target;
        let tasks = Arc::clone(&self.tasks);
        let frozen = Arc::clone(&self.frozen);
        let accept = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let Ok(outbound) = TcpStream::connect(target).await else { continue };
                let (from_client, to_client) = inbound.into_split();
                let (from_redis, to_redis) = outbound.into_split();
                let mut tasks = tasks.lock().unwrap();
                tasks.push(tokio::spawn(pump(from_client, to_redis, Arc::clone(&frozen))));
                tasks.push(tokio::spawn(pump(from_redis, to_client, Arc::clone(&frozen))));
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    fn down(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }
}

/// Copies bytes one way, swallowing them while `frozen`.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, frozen: Arc<AtomicBool>) {
    let mut buffer = vec![0_u8; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        if !frozen.load(Ordering::Relaxed) && to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.down();
    }
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check().await {
        assert!(Instant::now() < deadline, "not {what} within 15 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_answers_locally_during_an_outage_and_returns_to_redis() {
    let prefix = fresh_prefix();
    let direct = redis(&prefix).await;
    let target = redis_target().await;
    let mut proxy = Proxy::start(target).await;
    let options = RedisOptions { reconnect_delay_min_ms: 20, reconnect_delay_max_ms: 100, ..RedisOptions::default() };
    let through_proxy = RedisCoordinator::connect_with(&proxy.url(), &prefix, options).await.unwrap();
    let fallback = FallbackCoordinator::with_options(
        through_proxy,
        LocalCoordinator::new(),
        FallbackOptions { warn_interval_ms: 60_000, retry_after_failure_ms: 100 },
    );
    let coord = Timed(Arc::new(fallback.clone()));

    // Redis up: answers come from Redis.
    assert_eq!(coord.first_seen("a", 60_000).await, Ok(true));
    assert_eq!(direct.first_seen("a", 60_000).await, Ok(false));

    // Redis gone: answers come from local state, quickly.
    proxy.down();
    eventually("disconnected", async || !fallback.redis().is_connected()).await;
    assert_eq!(coord.first_seen("b", 60_000).await, Ok(true));
    assert_eq!(coord.first_seen("b", 60_000).await, Ok(false));
    // Seen through Redis just before the outage, and mirrored locally.
    assert_eq!(coord.first_seen("a", 60_000).await, Ok(false));
    assert_eq!(direct.first_seen("b", 60_000).await, Ok(true), "b went to Redis during the outage");
    assert_eq!(coord.rate_limit("r", 2, 60_000).await, Ok(RateDecision::Allowed));
    assert_eq!(coord.rate_limit("r", 2, 60_000).await, Ok(RateDecision::Allowed));
    assert!(matches!(coord.rate_limit("r", 2, 60_000).await, Ok(RateDecision::Throttled { .. })));
    let token = coord.try_lock("l", 60_000).await.unwrap().unwrap();
    assert_eq!(coord.try_lock("l", 60_000).await, Ok(None));
    coord.unlock("l", token).await.unwrap();
    assert!(coord.try_lock("l", 60_000).await.unwrap().is_some());
    assert_eq!(coord.ping().await, Ok(()));
    assert!(fallback.redis().ping().await.is_err());

    // Redis back: answers come from Redis again.
    proxy.up().await;
    eventually("reconnected", async || fallback.redis().ping().await.is_ok()).await;
    eventually("answering from redis", async || {
        let key = format!("c:{}", rand::random::<u64>());
        coord.first_seen(&key, 60_000).await == Ok(true) && direct.first_seen(&key, 60_000).await == Ok(false)
    })
    .await;
    delete_keys(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_that_stops_answering_is_bounded_by_the_timeout() {
    let prefix = fresh_prefix();
    let proxy = Proxy::start(redis_target().await).await;
    let hung = RedisCoordinator::connect(&proxy.url(), &prefix).await.unwrap();
    assert_eq!(hung.ping().await, Ok(()));
    // Connected, then the server hangs: calls must time out, not wait.
    proxy.frozen.store(true, Ordering::Relaxed);
    let direct = Timed(Arc::new(hung.clone()));
    assert!(matches!(direct.first_seen("k", 1_000).await, Err(CoordError::Unavailable(_))));
    assert!(matches!(direct.board_rank("b", PlayerId(1)).await, Err(CoordError::Unavailable(_))));
    let fallback = Timed(Arc::new(FallbackCoordinator::with_options(
        hung,
        LocalCoordinator::new(),
        FallbackOptions { warn_interval_ms: 60_000, retry_after_failure_ms: 300 },
    )));
    // Several rounds, each after the retry period, so Redis is asked (and times out) again.
    for round in 0..3 {
        let (key, rate) = (format!("k{round}"), format!("r{round}"));
        assert_eq!(fallback.first_seen(&key, 60_000).await, Ok(true));
        assert_eq!(fallback.first_seen(&key, 60_000).await, Ok(false));
        assert_eq!(fallback.rate_limit(&rate, 1, 60_000).await, Ok(RateDecision::Allowed));
        assert!(matches!(fallback.rate_limit(&rate, 1, 60_000).await, Ok(RateDecision::Throttled { .. })));
        assert_eq!(fallback.board_set("b", PlayerId(round), 1.0).await, Ok(()));
        assert_eq!(fallback.board_rank("b", PlayerId(round)).await, Ok(Some((u64::try_from(round).unwrap(), 1.0))));
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    drop(proxy);
    delete_keys(&prefix).await;
}

/// The address of the test Redis.
async fn redis_target() -> SocketAddr {
    let config = fred::prelude::Config::from_url(&redis_url()).unwrap();
    let fred::prelude::ServerConfig::Centralized { server } = config.server else {
        panic!("centralized redis expected")
    };
    tokio::net::lookup_host((server.host.to_string(), server.port)).await.unwrap().next().unwrap()
}
