//! The engine's answers to reads — `/api/market`, `/api/chart`, the admin
//! API — computed once here and served as they are by every role: directly
//! in one process, over NATS through a gateway.

use std::collections::BTreeMap;
use std::sync::Arc;

use actors::domain::alert::Entitlement;
use actors::domain::ids::PlayerId;
use actors::ports::Store;
use rust_decimal::Decimal;
use serde::Serialize;
use wire::{Answer, EngineStatus, Query};

use crate::bot::{Bot, local_player_id};
use crate::telegram::command::{self, BotCommand};

/// Reports who the engine is now (role, epoch, instance).
pub type StatusSource = Arc<dyn Fn() -> EngineStatus + Send + Sync>;

/// Answers reads against a running engine and its store.
#[derive(Clone)]
pub struct Answers {
    bot: Bot,
    store: Arc<dyn Store>,
    status: StatusSource,
}

#[derive(Debug, Serialize)]
struct MarketAsset {
    ticker: String,
    name: String,
    category: String,
    price: String,
    bid: String,
    ask: String,
    halted: bool,
}

#[derive(Debug, Serialize)]
struct MarketBody {
    assets: Vec<MarketAsset>,
}

#[derive(Debug, Serialize)]
struct PlayerBody {
    cash: String,
    holdings: BTreeMap<String, u64>,
    trades: u64,
    xp: u64,
    level: u32,
    achievements: Vec<String>,
    entitlements: Vec<String>,
}

impl Answers {
    /// Answers from `bot`'s engine and `store`; `status` names the engine.
    #[must_use]
    pub fn new(bot: Bot, store: Arc<dyn Store>, status: StatusSource) -> Self {
        Self { bot, store, status }
    }

    /// The answer to `query`.
    pub async fn answer(&self, query: Query) -> Answer {
        match query {
            Query::Market => self.market().await,
            Query::Chart { ticker, range } => self.chart(&ticker, range.as_deref()).await,
            Query::Player { player } => self.player(&player).await,
            Query::Audit => self.audit().await,
            Query::Engine => Answer::json(200, &(self.status)()),
        }
    }

    async fn market(&self) -> Answer {
        let engine = self.bot.engine();
        let Ok(quotes) = engine.quotes().await else {
            return Answer::error(503, "engine unavailable");
        };
        let assets = engine
            .universe()
            .assets()
            .iter()
            .zip(&quotes)
            .map(|(spec, quote)| {
                let mid = Decimal::from_f64_retain(quote.mid)
                    .map(|mid| mid.round_dp(2))
                    .unwrap_or((quote.bid + quote.ask) / Decimal::TWO);
                MarketAsset {
                    ticker: spec.ticker.to_string(),
                    name: spec.name.clone(),
                    category: spec.category.clone(),
                    price: format!("{mid:.2}"),
                    bid: format!("{:.2}", quote.bid),
                    ask: format!("{:.2}", quote.ask),
                    halted: quote.halted,
                }
            })
            .collect();
        Answer::json(200, &MarketBody { assets })
    }

    async fn chart(&self, ticker: &str, range: Option<&str>) -> Answer {
        let text = format!("/chart {ticker} {}", range.unwrap_or("1d"));
        let Ok(BotCommand::Chart { ticker, range }) = command::parse(&text, None) else {
            return Answer::error(400, "use ?ticker=ACME&range=1h|1d|1w");
        };
        match self.bot.chart_png(ticker, range).await {
            Ok(png) => Answer {
                status: 200,
                content_type: "image/png".to_owned(),
                body: png,
                cache_control: Some("max-age=30".to_owned()),
            },
            Err(reply) => Answer::error(404, &reply.text),
        }
    }

    async fn player(&self, text: &str) -> Answer {
        let Some(player) = parse_player(text) else {
            return Answer::error(404, "no such player");
        };
        let engine = self.bot.engine();
        let ledger = match engine.ledger(player).await {
            Ok(Some(ledger)) => ledger,
            Ok(None) => return Answer::error(404, "no such player"),
            Err(_) => return Answer::error(503, "temporarily unavailable"),
        };
        let universe = engine.universe();
        let account = &ledger.account;
        let holdings = account
            .positions
            .iter()
            .filter(|p| p.qty > 0)
            .filter_map(|p| universe.ticker(p.asset).map(|t| (t.to_string(), p.qty)))
            .collect();
        Answer::json(
            200,
            &PlayerBody {
                cash: format!("{:.2}", account.cash),
                holdings,
                trades: account.trades,
                xp: account.profile.xp,
                level: engine.game_rules().progression.level_for_xp(account.profile.xp),
                achievements: account.profile.achievements.iter().map(ToString::to_string).collect(),
                entitlements: account
                    .profile
                    .entitlements
                    .iter()
                    .map(|e| match e {
                        Entitlement::Premium => "premium".to_owned(),
                    })
                    .collect(),
            },
        )
    }

    async fn audit(&self) -> Answer {
        let tickers: Vec<String> = self.bot.engine().universe().assets().iter().map(|a| a.ticker.to_string()).collect();
        match self.store.audit(Arc::new(tickers)).await {
            Ok(audit) => Answer::json(
                200,
                &serde_json::json!({
                    "ok": audit.ok,
                    "cash_total": format!("{:.2}", audit.cash_total),
                    "shares": audit.shares,
                    "events": audit.events,
                }),
            ),
            Err(error) => Answer::error(503, &error.to_string()),
        }
    }
}

/// `123` (a Telegram user id) or `local:NAME`.
fn parse_player(text: &str) -> Option<PlayerId> {
    if let Some(name) = text.strip_prefix("local:") {
        return (!name.trim().is_empty()).then(|| local_player_id(name));
    }
    text.parse::<i64>().ok().filter(|id| *id > 0).map(PlayerId)
}
