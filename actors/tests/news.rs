//! News and events: operator news moves fair value and price in its
//! direction, replays exactly, survives a restart; the headline feed is
//! bounded, deterministic, and reports halts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::sync::Arc;

use actors::clock::ManualClock;
use actors::config::EngineConfig;
use actors::domain::asset::{AssetSpec, CategorySpec, ModelParams, Universe};
use actors::domain::command::{Command, Outcome};
use actors::domain::ids::{AssetId, Ticker};
use actors::domain::news::{HEADLINES_KEPT, Headline, HeadlineKind, NewsError, NewsTarget};
use actors::domain::price_model::{
    AssetModel, HALT_MINUTES, INJECTED_LOG_JUMP_MAX, MarketModel, PENDING_NEWS_MAX, PendingNews, SectorMove,
};
use actors::engine::{Engine, EngineDeps};
use actors::ports::NullNotifier;
use actors::ports::memory::MemoryStore;
use proptest::prelude::*;
use rust_decimal_macros::dec;

const START_MS: i64 = 1_700_000_000_000;

fn categories() -> Vec<CategorySpec> {
    vec![
        CategorySpec { name: "Tech".into(), vol_daily: 0.015, jump_rate_daily: 40.0, jump_sigma: 0.02 },
        CategorySpec { name: "Energy".into(), vol_daily: 0.015, jump_rate_daily: 40.0, jump_sigma: 0.02 },
    ]
}

/// Three assets (two Tech, one Energy) with frequent news, so a few dozen
/// minutes make headlines of every kind.
fn assets(jump_rate_daily: f64) -> Vec<AssetSpec> {
    [("ACME", "Tech"), ("QBIT", "Tech"), ("OILX", "Energy")]
        .iter()
        .map(|(ticker, category)| AssetSpec {
            ticker: Ticker::parse(ticker).unwrap(),
            name: format!("{ticker} Inc"),
            category: (*category).into(),
            initial_price: dec!(50),
            model: ModelParams { jump_rate_daily, ..ModelParams::default() },
        })
        .collect()
}

fn config(jump_rate_daily: f64) -> EngineConfig {
    // Built through serde so the test does not depend on every field.
    let mut config: EngineConfig = serde_json::from_str(r#"{"categories": [], "assets": []}"#).unwrap();
    config.engine.seed = 7;
    config.categories = categories();
    config.assets = assets(jump_rate_daily);
    config
}

async fn start(config: &EngineConfig, store: &MemoryStore) -> Engine {
    let deps = EngineDeps {
        store: Arc::new(store.clone()),
        clock: Arc::new(ManualClock::new(START_MS)),
        notifier: Arc::new(NullNotifier),
        autonomous_ticker: false,
    };
    Engine::start(config, deps).await.unwrap()
}

fn operator(text: Option<&str>) -> PendingNews {
    PendingNews { log_jump: 0.0, text: text.map(str::to_owned) }
}

fn news(log_jump: f64) -> PendingNews {
    PendingNews { log_jump, ..operator(None) }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// A twin model with the same seed and one injection: the fair value
    /// moves by exactly the jump, the latent price in its direction, and the
    /// quote too unless the breaker froze it.
    #[test]
    fn injected_news_moves_fair_value_and_price_its_way(
        seed in any::<u64>(),
        warmup in 0u32..60,
        log_jump in prop_oneof![-INJECTED_LOG_JUMP_MAX..-0.005, 0.005..INJECTED_LOG_JUMP_MAX],
    ) {
        let params = ModelParams::default();
        let mut plain = AssetModel::new(&params, 50.0, seed, 3);
        for _ in 0..warmup {
            plain.step(&SectorMove::default());
        }
        let mut hit = plain.clone();
        hit.inject(news(log_jump)).unwrap();
        let quiet = plain.step(&SectorMove::default());
        let moved = hit.step(&SectorMove::default());
        prop_assert_eq!(moved.injected.map(|n| n.log_jump), Some(log_jump));
        prop_assert_eq!(quiet.injected, None);
        let fair_shift = (hit.fair_value() / plain.fair_value()).ln();
        prop_assert!((fair_shift - log_jump).abs() < 1e-9, "fair moved {fair_shift}, jump {log_jump}");
        let price_shift = (hit.latent_price() / plain.latent_price()).ln();
        prop_assert!(price_shift * log_jump > 0.0 && price_shift.abs() <= log_jump.abs() + 1e-9);
        if !moved.halted && !quiet.halted {
            prop_assert!((moved.mid / quiet.mid).ln() * log_jump > 0.0);
        }
        // Once any halt is over, the quote shows the news too.
        let (mut quiet, mut moved) = (quiet, moved);
        for _ in 0..=HALT_MINUTES {
            quiet = plain.step(&SectorMove::default());
            moved = hit.step(&SectorMove::default());
        }
        if !moved.halted && !quiet.halted {
            prop_assert!((moved.mid / quiet.mid).ln() * log_jump > 0.0);
        }
    }
}

#[test]
fn injections_draw_nothing_and_category_news_hits_only_its_category() {
    let universe = Universe::new(categories(), assets(3.0)).unwrap();
    let mut plain = MarketModel::new(&universe, 11);
    let mut hit = MarketModel::new(&universe, 11);
    for _ in 0..30 {
        assert_eq!(plain.step(), hit.step());
    }
    hit.inject_category(0, news(0.08)).unwrap().unwrap();
    hit.inject_asset(2, news(-0.04)).unwrap().unwrap();
    let (quiet, moved) = (plain.step(), hit.step());
    assert_eq!(quiet[2].injected, None);
    assert_eq!(moved[2].injected.map(|n| n.log_jump), Some(-0.04));
    for asset in 0..2 {
        let loading = universe.assets()[asset].model.sector_loading;
        let shift = (hit.assets[asset].fair_value() / plain.assets[asset].fair_value()).ln();
        assert!((shift - loading * 0.08).abs() < 1e-9, "asset {asset}: {shift}");
    }
    let shift = (hit.assets[2].fair_value() / plain.assets[2].fair_value()).ln();
    assert!((shift + 0.04).abs() < 1e-9);
    // The injections consumed no random draws: afterwards both markets see
    // the same shocks, so the fair values keep their gap exactly.
    for _ in 0..200 {
        plain.step();
        hit.step();
    }
    let shift = (hit.assets[2].fair_value() / plain.assets[2].fair_value()).ln();
    assert!((shift + 0.04).abs() < 1e-9);
    assert!(hit.inject_asset(9, news(0.1)).is_none());
    assert!(hit.inject_category(9, news(0.1)).is_none());
}

#[test]
fn pending_news_is_bounded_and_kept_in_the_model_state() {
    let mut model = AssetModel::new(&ModelParams::default(), 50.0, 1, 0);
    assert!(model.inject(news(INJECTED_LOG_JUMP_MAX + 0.01)).is_err());
    assert!(model.inject(news(f64::INFINITY)).is_err());
    for _ in 0..PENDING_NEWS_MAX {
        model.inject(PendingNews { log_jump: 0.01, text: Some("Merger talks".into()) }).unwrap();
    }
    assert!(model.inject(news(0.01)).is_err(), "the queue is bounded");
    let json = serde_json::to_string(&model).unwrap();
    let mut restored: AssetModel = serde_json::from_str(&json).unwrap();
    assert_eq!(restored.next_injection().and_then(|n| n.text.as_deref()), Some("Merger talks"));
    assert_eq!(restored.step(&SectorMove::default()), model.step(&SectorMove::default()));
    // A model saved before news existed (no `pending` field) still loads.
    let quiet = AssetModel::new(&ModelParams::default(), 50.0, 1, 0);
    let json = serde_json::to_string(&quiet).unwrap();
    assert!(!json.contains("pending"));
    let _: AssetModel = serde_json::from_str(&json).unwrap();
}

/// Runs a scripted session: some minutes, operator news, more minutes.
async fn session(config: &EngineConfig) -> (Vec<String>, Vec<Headline>) {
    let store = MemoryStore::new();
    let engine = start(config, &store).await;
    let mut quotes = Vec::new();
    for minute in 0..40 {
        if minute == 5 {
            engine
                .inject_news(NewsTarget::Asset(AssetId(0)), 0.2, Some("ACME wins a huge contract".into()))
                .await
                .unwrap();
            engine.inject_news(NewsTarget::Category(1), -0.05, None).await.unwrap();
        }
        let changed = engine.step().await.unwrap().unwrap();
        quotes.push(format!("{:?}", changed.quotes));
    }
    let headlines = engine.headlines(HEADLINES_KEPT);
    engine.shutdown().await.unwrap();
    (quotes, headlines)
}

#[actix::test]
async fn the_same_seed_and_injections_replay_the_same_ticks_and_headlines() {
    let config = config(200.0);
    let (quotes, headlines) = session(&config).await;
    let (quotes_again, headlines_again) = session(&config).await;
    assert_eq!(quotes, quotes_again);
    assert_eq!(headlines, headlines_again);

    let operator: Vec<&Headline> = headlines.iter().filter(|h| h.kind == HeadlineKind::OperatorNews).collect();
    assert_eq!(operator.len(), 2, "{headlines:#?}");
    let asset = operator.iter().find(|h| h.ticker.is_some()).unwrap();
    assert_eq!(asset.text, "ACME wins a huge contract");
    assert_eq!(asset.minute, 6);
    assert!((asset.move_pct - 22.140_275_816_016_98).abs() < 1e-6);
    let category = operator.iter().find(|h| h.ticker.is_none()).unwrap();
    assert_eq!(category.category.as_deref(), Some("Energy"));
    assert!(category.move_pct < 0.0 && category.text.starts_with("Energy sector "), "{}", category.text);
    // A 22% jump trips ACME's circuit breaker, and it reopens after the halt.
    let halt = headlines.iter().find(|h| h.kind == HeadlineKind::BreakerHalt && h.ticker.as_deref() == Some("ACME"));
    let halt = halt.expect("breaker halt headline");
    assert_eq!(halt.minute, 6);
    assert!(halt.text.contains("ACME"));
    assert!(headlines.iter().any(|h| h.kind == HeadlineKind::BreakerResume && h.minute == 6 + HALT_MINUTES));
    // Drawn news makes headlines too, each naming its subject.
    assert!(headlines.iter().any(|h| matches!(h.kind, HeadlineKind::AssetNews | HeadlineKind::Earnings)));
    for headline in &headlines {
        let subject = headline.ticker.as_ref().or(headline.category.as_ref()).unwrap();
        assert!(headline.text.contains(subject.as_str()), "{headline:?}");
        assert_eq!(headline.at_ms, START_MS);
    }
}

#[actix::test]
async fn injected_news_lifts_the_quote_and_survives_a_restart() {
    let config = config(0.0);
    let store = MemoryStore::new();
    let engine = start(&config, &store).await;
    engine.step().await.unwrap();
    let before = engine.quotes().await.unwrap()[1].mid;
    engine.inject_news(NewsTarget::Asset(AssetId(1)), 0.06, None).await.unwrap();
    engine.shutdown().await.unwrap();

    // The pending news is in the snapshot: it lands after the restart.
    let engine = start(&config, &store).await;
    let changed = engine.step().await.unwrap().unwrap();
    let after = changed.quotes[1].mid;
    assert!(after > before * 1.04, "{before} -> {after}");
    let headline = &engine.headlines(1)[0];
    assert_eq!(headline.kind, HeadlineKind::OperatorNews);
    assert_eq!(headline.ticker.as_deref(), Some("QBIT"));
    assert!(headline.text.starts_with("QBIT ") && headline.text.contains("6.2%"), "{}", headline.text);
    engine.shutdown().await.unwrap();
}

#[actix::test]
async fn operator_news_is_validated() {
    let config = config(0.0);
    let engine = start(&config, &MemoryStore::new()).await;
    let acme = NewsTarget::parse(engine.universe(), "acme").unwrap();
    assert_eq!(acme, NewsTarget::Asset(AssetId(0)));
    assert_eq!(NewsTarget::parse(engine.universe(), "energy").unwrap(), NewsTarget::Category(1));
    assert!(matches!(NewsTarget::parse(engine.universe(), "NOPE"), Err(NewsError::UnknownTarget(_))));
    assert!(matches!(engine.inject_news(acme, 0.51, None).await, Err(NewsError::OutOfBounds { .. })));
    assert!(matches!(engine.inject_news(acme, -0.7, None).await, Err(NewsError::OutOfBounds { .. })));
    assert!(matches!(engine.inject_news(acme, f64::NAN, None).await, Err(NewsError::OutOfBounds { .. })));
    assert!(matches!(engine.inject_news(acme, 0.1, Some("x".repeat(500))).await, Err(NewsError::TextTooLong)));
    assert!(matches!(engine.inject_news(NewsTarget::Category(5), 0.1, None).await, Err(NewsError::UnknownTarget(_))));
    assert!(matches!(
        engine.inject_news(NewsTarget::Asset(AssetId(40)), 0.1, None).await,
        Err(NewsError::UnknownTarget(_))
    ));
    for _ in 0..PENDING_NEWS_MAX {
        engine.inject_news(acme, 0.001, None).await.unwrap();
    }
    assert_eq!(engine.inject_news(acme, 0.001, None).await, Err(NewsError::QueueFull));
    assert!(engine.headlines(10).is_empty(), "nothing has landed yet");
    engine.shutdown().await.unwrap();
}

#[actix::test]
async fn an_operator_halt_makes_a_headline_for_subscribers() {
    let config = config(0.0);
    let engine = start(&config, &MemoryStore::new()).await;
    let mut feed = engine.subscribe_headlines();
    engine.step().await.unwrap();
    let halt = Command::Halt { asset: AssetId(1), halted: true };
    assert_eq!(engine.execute_one(halt).await, Ok(Outcome::Halted));
    let resume = Command::Halt { asset: AssetId(1), halted: false };
    assert!(matches!(engine.execute(vec![resume]).await.unwrap()[..], [Ok(Outcome::Halted)]));
    let halted = feed.try_recv().unwrap();
    assert_eq!(halted.kind, HeadlineKind::OperatorHalt);
    assert_eq!(halted.ticker.as_deref(), Some("QBIT"));
    assert_eq!(halted.category.as_deref(), Some("Tech"));
    assert_eq!(halted.minute, 1);
    assert!(halted.text.contains("QBIT"));
    let resumed = feed.try_recv().unwrap();
    assert_eq!(resumed.kind, HeadlineKind::OperatorResume);
    let latest = engine.headlines(5);
    assert_eq!(latest, vec![resumed, halted], "newest first");
    engine.shutdown().await.unwrap();
}

#[actix::test]
async fn the_feed_keeps_only_the_newest_headlines() {
    let config = config(400.0);
    let engine = start(&config, &MemoryStore::new()).await;
    let mut feed = engine.subscribe_headlines();
    for _ in 0..150 {
        engine.step().await.unwrap();
    }
    let mut published = 0;
    while feed.try_recv().is_ok() {
        published += 1;
    }
    assert!(published > HEADLINES_KEPT, "only {published} headlines in 150 busy minutes");
    let kept = engine.headlines(usize::MAX);
    assert_eq!(kept.len(), HEADLINES_KEPT);
    assert!(kept.windows(2).all(|pair| pair[0].minute >= pair[1].minute), "newest first");
    assert!(kept[0].minute > 140);
    assert_eq!(engine.headlines(3).len(), 3);
    engine.shutdown().await.unwrap();
}
