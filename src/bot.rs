//! `Bot`: the command path shared by Telegram and the local play page. It
//! parses a player's text, calls the engine, and renders the replies; no
//! game rules live here.

use std::fmt::Write as _;

use std::sync::Arc;
use tracing::Instrument as _;

use actors::clock::{Clock, SystemClock};
use actors::domain::command::{Command, Outcome};
use actors::domain::exchange::{Placed, Quote};
use actors::domain::ids::{AssetId, PlayerId, Ticker};
use actors::domain::ledger::PlayerLedger;
use actors::domain::order::{OrderKind, OrderRequest, RestingOrder, Side, Trigger};
use actors::domain::rejection::Rejection;
use actors::engine::Engine;
use actors::ports::Store;
use rust_decimal::Decimal;

mod game;
mod scoreboard;

pub use game::{GameOptions, PREMIUM_PAYLOAD};
pub use scoreboard::Scoreboard;

use std::sync::atomic::AtomicU64;

use actors::ports::coordinator::Coordinator;

use crate::chart::{self, ChartSpec};
use crate::coord::local::LocalCoordinator;
use crate::telegram::command::{self, BotCommand, ChartRange};
use crate::telegram::reply::{self, Button, Reply, ReplyKind, ReplyPhoto, escape, money};

/// Longest a player waits for a trade's confirmation before being told it
/// is still processing.
pub const CONFIRM_WAIT: std::time::Duration = std::time::Duration::from_secs(8);

/// Most one-minute candles read for one chart (a week).
pub const CHART_CANDLES_MAX: usize = 7 * 24 * 60;

/// Most characters of an unknown category echoed back to the player.
pub const CATEGORY_ECHO_CHARS_MAX: usize = 32;

/// Headlines shown by `/news`.
pub const NEWS_SHOWN: usize = 10;

/// Positions listed by `/portfolio` before the rest are folded into one line.
pub const PORTFOLIO_POSITIONS_SHOWN: usize = 12;
/// Open orders listed by `/orders` before the rest are folded into one line.
pub const ORDERS_SHOWN: usize = 15;

/// Fills shown per `/history` page.
pub const HISTORY_PAGE_TRADES: usize = 10;
/// Deepest `/history` page served.
pub const HISTORY_PAGES_MAX: u32 = 100;

/// Who is talking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Speaker {
    pub player: PlayerId,
    /// The group chat the message came from (`None` in a private chat or
    /// on the play page): `/top` there shows that group's board.
    pub chat: Option<i64>,
    /// Display name (untrusted text: always escaped when shown).
    pub name: String,
}

/// The local play page's player id for `name`: negative, so it can never be
/// a Telegram user's (FNV-1a of the name, 62 bits).
#[must_use]
pub fn local_player_id(name: &str) -> PlayerId {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.trim().to_lowercase().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let magnitude = i64::try_from(hash & ((1 << 62) - 1)).unwrap_or(0);
    PlayerId(-magnitude - 1)
}

/// What the bot counts (for `/metrics` and simulations).
#[derive(Debug, Default)]
pub struct BotMetrics {
    /// Commands refused by a rate limit.
    pub throttled: AtomicU64,
}

/// Turns player text into engine calls and replies.
#[derive(Clone)]
pub struct Bot {
    engine: Engine,
    store: Arc<dyn Store>,
    username: Option<String>,
    /// Boards, names, button locks (shared by every instance).
    coordinator: Arc<dyn Coordinator>,
    /// Board scores, written behind to `coordinator`.
    scoreboard: Scoreboard,
    /// Rate limits. The engine is the one sequencer of every command, so
    /// a limiter in this process counts them all (no round trip per command).
    limiter: Arc<dyn Coordinator>,
    options: Arc<GameOptions>,
    metrics: Arc<BotMetrics>,
    /// The command-stream message being handled, if commands come from one.
    origin: Option<Arc<Origin>>,
}

/// The command-stream message a bot handles: its commands are keyed by it,
/// so a message delivered again (after a takeover) applies nothing twice.
#[derive(Debug)]
pub struct Origin {
    message: u64,
    next_index: std::sync::atomic::AtomicU32,
    /// Delivered before (it may have been partly applied): the rate limits
    /// already counted it.
    replay: bool,
}

impl Bot {
    /// A bot over a running engine; `username` is the bot's Telegram name.
    /// Boards and limits stay in this process until [`Bot::with_game`].
    #[must_use]
    pub fn new(engine: Engine, store: Arc<dyn Store>, username: Option<String>) -> Self {
        let coordinator: Arc<dyn Coordinator> = Arc::new(LocalCoordinator::new());
        Self {
            engine,
            store,
            username,
            scoreboard: Scoreboard::new(Arc::clone(&coordinator)),
            limiter: Arc::new(LocalCoordinator::new()),
            coordinator,
            options: Arc::new(GameOptions::default()),
            metrics: Arc::new(BotMetrics::default()),
            origin: None,
        }
    }

    /// The same bot handling stream message `message` (`replay`: it was
    /// delivered before): every command it runs is keyed by the message and
    /// its place in it.
    #[must_use]
    pub fn for_message(&self, message: u64, replay: bool) -> Self {
        let origin = Origin { message, next_index: std::sync::atomic::AtomicU32::new(0), replay };
        Self { origin: Some(Arc::new(origin)), ..self.clone() }
    }

    /// Whether this bot handles a stream message delivered before.
    #[must_use]
    pub fn is_replay(&self) -> bool {
        self.origin.as_ref().is_some_and(|origin| origin.replay)
    }

    /// Runs one engine command, keyed by the stream message when there is one.
    async fn exec(&self, command: Command) -> Result<Outcome, Rejection> {
        let key = self.origin.as_ref().map(|origin| actors::domain::applied::CommandKey {
            message: origin.message,
            index: origin.next_index.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        });
        self.engine.execute_keyed(key, command).await
    }

    /// The same bot keeping boards and locks in `coordinator`, playing by `options`.
    #[must_use]
    pub fn with_game(mut self, coordinator: Arc<dyn Coordinator>, options: GameOptions) -> Self {
        self.scoreboard = Scoreboard::new(Arc::clone(&coordinator));
        self.coordinator = coordinator;
        self.options = Arc::new(options);
        self
    }

    /// The same bot counting its rate limits in `limiter` (a simulation's
    /// clock, say) instead of a limiter of its own.
    #[must_use]
    pub fn with_limiter(mut self, limiter: Arc<dyn Coordinator>) -> Self {
        self.limiter = limiter;
        self
    }

    /// What the bot counted.
    #[must_use]
    pub fn metrics(&self) -> &Arc<BotMetrics> {
        &self.metrics
    }

    /// The engine behind the bot.
    #[must_use]
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Answers one message. Empty when the text is not for the bot; plain
    /// text in a private chat (or on the play page) gets the short menu.
    pub async fn handle_text(&self, speaker: &Speaker, text: &str) -> Vec<Reply> {
        self.answer(speaker, text).await.into_iter().map(reply::settle).collect()
    }

    async fn answer(&self, speaker: &Speaker, text: &str) -> Vec<Reply> {
        match command::parse(text, self.username.as_deref()) {
            Ok(parsed) => {
                let span = tracing::info_span!("command", player_id = speaker.player.0);
                async {
                    if let Some(throttled) = self.throttled(speaker).await {
                        return throttled;
                    }
                    self.run(speaker, parsed).await
                }
                .instrument(span)
                .await
            }
            Err(command::ParseError::NotForUs) if speaker.chat.is_none() && !text.trim_start().starts_with('/') => {
                vec![reply::menu()]
            }
            Err(error) => reply::parse_error(&error).into_iter().collect(),
        }
    }

    async fn run(&self, speaker: &Speaker, parsed: BotCommand) -> Vec<Reply> {
        // Views of the player's progress are drawn after a review.
        match parsed {
            BotCommand::Level | BotCommand::Achievements | BotCommand::Top { .. } => {
                let (review, mut announcements) = self.review(speaker).await;
                let view = match parsed {
                    BotCommand::Level => self.level(speaker, review.as_ref()).await,
                    BotCommand::Achievements => self.achievements(speaker, review.as_ref()).await,
                    BotCommand::Top { board, page } => self.top(speaker, board, page).await,
                    _ => return announcements,
                };
                let mut view = view;
                if view.kind == ReplyKind::Receipt {
                    view.kind = ReplyKind::View;
                }
                for announcement in announcements.drain(..) {
                    // An announcement is news: the reply carrying it stays.
                    view.kind = ReplyKind::Receipt;
                    view.text.push_str("\n\n");
                    view.text.push_str(&announcement.text);
                }
                return vec![view];
            }
            _ => {}
        }
        let reviews = matches!(
            parsed,
            BotCommand::Trade { .. }
                | BotCommand::Stop { .. }
                | BotCommand::Daily
                | BotCommand::Portfolio
                | BotCommand::Bankrupt
                | BotCommand::Start { .. }
        );
        let view = matches!(
            parsed,
            BotCommand::Help
                | BotCommand::Market { .. }
                | BotCommand::Quote { .. }
                | BotCommand::Orders
                | BotCommand::Portfolio
                | BotCommand::History { .. }
                | BotCommand::Chart { .. }
                | BotCommand::Alerts
                | BotCommand::News
        );
        // An order goes to the market first thing: its review can follow
        // it into the same market batch and group commit (the queue keeps
        // their order) instead of waiting for its confirmation.
        let places = matches!(parsed, BotCommand::Trade { .. } | BotCommand::Stop { .. });
        let (mut reply, announcements) = if places {
            let (reply, (_, announcements)) = futures_util::join!(self.run_one(speaker, parsed), self.review(speaker));
            (reply, announcements)
        } else {
            let reply = self.run_one(speaker, parsed).await;
            let announcements = if reviews { self.review(speaker).await.1 } else { Vec::new() };
            (reply, announcements)
        };
        if view && reply.kind == ReplyKind::Receipt {
            reply.kind = ReplyKind::View;
        }
        if reviews {
            // Level-ups and achievements ride on the reply itself (after
            // its first line, so a trade reply still starts with its verb).
            for announcement in announcements {
                reply.kind = ReplyKind::Receipt;
                reply.text.push_str("\n\n");
                reply.text.push_str(&announcement.text);
            }
        }
        vec![reply]
    }

    async fn run_one(&self, speaker: &Speaker, parsed: BotCommand) -> Reply {
        let player = speaker.player;
        match parsed {
            BotCommand::Start { referral } => self.start(speaker, referral.as_deref()).await,
            BotCommand::Help => help(),
            BotCommand::Market { category } => self.market(category.as_deref()).await,
            BotCommand::Quote { ticker } => self.quote(ticker).await,
            BotCommand::Trade { side, ticker, qty, limit } => {
                let kind = limit.map_or(OrderKind::Market, OrderKind::Limit);
                self.place(player, ticker, side, qty, kind).await
            }
            BotCommand::Stop { ticker, qty, price } => {
                self.place(player, ticker, Side::Sell, qty, OrderKind::Stop(price)).await
            }
            BotCommand::Orders => self.orders(player).await,
            BotCommand::Cancel { order } => match self.exec(Command::Cancel { player, order }).await {
                Ok(_) => {
                    Reply::text(format!("🗑 Cancelled order #{order}.")).with_row(vec![Button::new("Orders", "/orders")])
                }
                Err(rejected) => reply::rejection(&rejected),
            },
            BotCommand::Portfolio => self.portfolio(player).await,
            BotCommand::History { page } => self.history(player, page).await,
            BotCommand::Chart { ticker, range } => self.chart(ticker, range).await,
            BotCommand::Daily => self.daily(speaker).await,
            BotCommand::Alert { ticker, direction, price } => self.alert(player, ticker, direction, price).await,
            BotCommand::Alerts => self.alerts(player).await,
            BotCommand::Unalert { alert } => self.unalert(player, alert).await,
            BotCommand::Premium => self.premium(player).await,
            BotCommand::Bankrupt => self.bankrupt(player).await,
            BotCommand::TimeZone { minutes } => self.time_zone(player, minutes).await,
            BotCommand::News => self.news().await,
            BotCommand::Admin { action } => self.admin(speaker, action).await,
            BotCommand::Level | BotCommand::Achievements | BotCommand::Top { .. } => {
                Reply::text("⚠️ Unexpected command routing; nothing was done.")
            }
        }
    }

    async fn start(&self, speaker: &Speaker, referral: Option<&str>) -> Reply {
        let name = escape(&speaker.name);
        match self.exec(Command::Open { player: speaker.player }).await {
            Ok(Outcome::Opened { new: true }) => {
                let referred = self.refer(speaker.player, referral).await;
                Reply::text(format!(
                    "👋 Welcome to the market, {name}!\nYou start with {} in cash. Buy low, sell high, climb the board.\nTry /market to see what's trading, and claim your /daily bonus.{referred}",
                    money(self.engine.rules().starting_cash)
                ))
            }
            Ok(_) => Reply::text(format!("👋 Welcome back, {name}! /portfolio shows where you stand.")),
            Err(rejected) => reply::rejection(&rejected),
        }
        .with_row(vec![
            Button::new("Market", "/market"),
            Button::new("Portfolio", "/portfolio"),
            Button::new("Help", "/help"),
        ])
        .with_row(self.webapp_button(speaker).into_iter().collect())
    }

    /// The Mini App button, in a private chat when one is configured
    /// (Telegram allows `web_app` buttons only there).
    fn webapp_button(&self, speaker: &Speaker) -> Option<Button> {
        let url = self.options.webapp_url.as_deref().filter(|url| !url.is_empty())?;
        speaker.chat.is_none().then(|| Button::web_app("🎮 Open the game", "/portfolio", url))
    }

    async fn quotes(&self) -> Result<Vec<Quote>, Rejection> {
        self.engine.quotes().await.map_err(|_| Rejection::Unavailable)
    }

    async fn market(&self, category: Option<&str>) -> Reply {
        let quotes = match self.quotes().await {
            Ok(quotes) => quotes,
            Err(rejected) => return reply::rejection(&rejected),
        };
        let universe = self.engine.universe();
        let wanted = category.map(str::trim).filter(|c| !c.is_empty());
        if let Some(wanted) = wanted
            && !universe.categories().iter().any(|c| c.name.eq_ignore_ascii_case(wanted))
        {
            let names: Vec<String> = universe.categories().iter().map(|c| escape(&c.name)).collect();
            // Echo a bounded piece: 4,000 typed characters would push the
            // reply past Telegram's 4,096 and it would never arrive.
            let given: String = wanted.chars().take(CATEGORY_ECHO_CHARS_MAX).collect();
            return reply::error(
                format!("⚠️ No category '{}'. Categories: {}.", escape(&given), names.join(", ")),
                Button::new("Market", "/market"),
            );
        }
        let mut text = String::from("📈 <b>Market</b>\n");
        let mut asset_buttons = Vec::new();
        for category in universe.categories() {
            if wanted.is_some_and(|w| !category.name.eq_ignore_ascii_case(w)) {
                continue;
            }
            let in_category = universe.assets().iter().zip(&quotes).filter(|(spec, _)| spec.category == category.name);
            if wanted.is_some() {
                // One category: a line per asset, a button per asset.
                let _ = writeln!(text, "\n<b>{}</b>", escape(&category.name));
                for (spec, quote) in in_category {
                    let halted = if quote.halted { " ⛔" } else { "" };
                    let ticker = escape(spec.ticker.as_str());
                    let _ = writeln!(text, "{ticker} {} — {}{halted}", escape(&spec.name), money(quote.ask));
                    asset_buttons.push(Button::new(spec.ticker.as_str(), format!("/quote {}", spec.ticker)));
                }
            } else {
                // The whole market, folded to a line per category (one screen).
                let prices: Vec<String> = in_category
                    .map(|(spec, quote)| {
                        let halted = if quote.halted { "⛔" } else { "" };
                        format!("{} {}{halted}", escape(spec.ticker.as_str()), money(quote.ask))
                    })
                    .collect();
                let _ = writeln!(text, "<b>{}</b>: {}", escape(&category.name), prices.join(" · "));
            }
        }
        if wanted.is_none() {
            text.push_str("\nTap a category for names and buy buttons.");
        }
        let mut reply = Reply::text(text);
        if wanted.is_some() {
            for row in asset_buttons.chunks(3) {
                reply = reply.with_row(row.to_vec());
            }
            reply = reply.with_row(vec![Button::new("‹ All categories", "/market")]);
        } else {
            let categories: Vec<Button> = universe
                .categories()
                .iter()
                .map(|c| Button::new(c.name.clone(), format!("/market {}", c.name)))
                .collect();
            for row in categories.chunks(3) {
                reply = reply.with_row(row.to_vec());
            }
        }
        reply
    }

    async fn quote(&self, ticker: Ticker) -> Reply {
        let universe = self.engine.universe();
        let asset = match universe.find(ticker) {
            Ok(asset) => asset,
            Err(rejected) => return reply::rejection(&rejected),
        };
        let quotes = match self.quotes().await {
            Ok(quotes) => quotes,
            Err(rejected) => return reply::rejection(&rejected),
        };
        match (quotes.iter().find(|q| q.asset == asset), universe.get(asset)) {
            (Some(quote), Some(spec)) => reply::quote(quote, spec.ticker.as_str(), &spec.name, &spec.category),
            _ => reply::rejection(&Rejection::UnknownTicker { ticker }),
        }
    }

    async fn place(
        &self,
        player: PlayerId,
        ticker: Ticker,
        side: Side,
        qty: actors::domain::ids::Quantity,
        kind: OrderKind,
    ) -> Reply {
        let asset = match self.engine.universe().find(ticker) {
            Ok(asset) => asset,
            Err(rejected) => return reply::rejection(&rejected),
        };
        let request = OrderRequest { player, asset, side, qty, kind };
        let Ok(result) = actix::clock::timeout(CONFIRM_WAIT, self.exec(Command::Place(request))).await else {
            // Applied or not, it will be durable or refused; never guess.
            return reply::error(
                "⏳ Still processing: the market is slow to confirm right now. Check /portfolio in a moment before trying again.",
                Button::new("Portfolio", "/portfolio"),
            );
        };
        match result {
            Ok(Outcome::Placed(Placed::Filled(fill))) => reply::fill(&fill, ticker.as_str()),
            Ok(Outcome::Placed(Placed::Resting(order))) => {
                Reply::text(format!("📌 {}", describe_order(&order, ticker.as_str()))).with_row(vec![
                    Button::new("Orders", "/orders"),
                    Button::new("Cancel", format!("/cancel {}", order.id)),
                ])
            }
            Ok(_) => Reply::text("⚠️ Unexpected outcome; nothing to show."),
            Err(rejected) => reply::rejection(&rejected),
        }
    }

    /// Links a new player to the player whose code (`r<id>`) they started with.
    async fn refer(&self, player: PlayerId, referral: Option<&str>) -> String {
        let Some(code) = referral.map(str::trim).filter(|c| !c.is_empty()) else { return String::new() };
        let Some(referrer) = code.strip_prefix('r').and_then(|id| id.parse::<i64>().ok()).map(PlayerId) else {
            return String::new();
        };
        match self.exec(Command::Refer { player, referrer }).await {
            Ok(_) => "\nA friend invited you: once you've traded a little, they get a thank-you bonus.".to_owned(),
            Err(rejected) => {
                tracing::info!(player_id = player.0, ?rejected, "referral not linked");
                String::new()
            }
        }
    }

    /// The latest news.
    async fn news(&self) -> Reply {
        let headlines = self.engine.headlines(NEWS_SHOWN);
        if headlines.is_empty() {
            return Reply::text("📰 No news yet: markets are quiet. Check again later.");
        }
        let mut text = String::from("📰 <b>Latest news</b>\n");
        for headline in &headlines {
            let _ = writeln!(text, "• {}", escape(&headline.text));
        }
        Reply::text(text).with_row(vec![Button::new("↻ Refresh", "/news"), Button::new("Market", "/market")])
    }

    async fn ledger(&self, player: PlayerId) -> Result<PlayerLedger, Reply> {
        match self.engine.ledger(player).await {
            Ok(Some(ledger)) => Ok(ledger),
            Ok(None) => Err(reply::rejection(&Rejection::NoAccount)),
            Err(rejected) => Err(reply::rejection(&rejected)),
        }
    }

    async fn orders(&self, player: PlayerId) -> Reply {
        let ledger = match self.ledger(player).await {
            Ok(ledger) => ledger,
            Err(reply) => return reply,
        };
        if ledger.orders.is_empty() {
            return Reply::text(
                "📭 No open orders. Place one with /buy TICKER QTY @ PRICE or /stop TICKER QTY @ PRICE.",
            );
        }
        let mut text = String::from("📋 <b>Open orders</b>\n");
        let mut reply_buttons = Vec::new();
        for order in ledger.orders.iter().take(ORDERS_SHOWN) {
            let ticker = self.ticker_text(order.asset);
            let _ = writeln!(text, "#{} {}", order.id, describe_order(order, &ticker));
            reply_buttons.push(Button::new(format!("Cancel #{}", order.id), format!("/cancel {}", order.id)));
        }
        if let Some(more) = ledger.orders.len().checked_sub(ORDERS_SHOWN).filter(|more| *more > 0) {
            let _ = writeln!(text, "…and {more} more: cancel some to see them.");
        }
        let mut reply = Reply::text(text);
        for row in reply_buttons.chunks(2) {
            reply = reply.with_row(row.to_vec());
        }
        reply
    }

    async fn portfolio(&self, player: PlayerId) -> Reply {
        let view = match self.engine.portfolio(player).await {
            Ok(Some(view)) => view,
            Ok(None) => return reply::rejection(&Rejection::NoAccount),
            Err(rejected) => return reply::rejection(&rejected),
        };
        let quotes = self.quotes().await.unwrap_or_default();
        let account = &view.ledger.account;
        let mut text = String::from("💼 <b>Portfolio</b>\n");
        let mut worth = account.cash;
        let (mut folded, mut folded_value) = (0_usize, Decimal::ZERO);
        for (shown, position) in account.positions.iter().enumerate() {
            let ticker = self.ticker_text(position.asset);
            let bid = quotes.iter().find(|q| q.asset == position.asset).map_or(Decimal::ZERO, |q| q.bid);
            let value = bid * Decimal::from(position.qty);
            worth += value;
            let average =
                if position.qty > 0 { position.cost_basis / Decimal::from(position.qty) } else { Decimal::ZERO };
            if shown >= PORTFOLIO_POSITIONS_SHOWN {
                // One screen: the rest of the holdings fold into one line.
                folded += 1;
                folded_value += value;
                continue;
            }
            let pnl = value - position.cost_basis;
            let sign = if pnl >= Decimal::ZERO { "+" } else { "" };
            let _ = writeln!(
                text,
                "{ticker}: {} @ {} avg · worth {} ({sign}{})",
                position.qty,
                money(average),
                money(value),
                money(pnl)
            );
        }
        if folded > 0 {
            let _ = writeln!(text, "…and {folded} more holdings worth {}", money(folded_value));
        }
        if account.positions.is_empty() {
            text.push_str("No holdings yet: see /market.\n");
        }
        let _ = write!(
            text,
            "\nCash: {} (free {})\nNet worth: {}\nRealized P&amp;L: {}",
            money(account.cash),
            money(account.free_cash()),
            money(worth),
            money(account.realized_pnl)
        );
        Reply::text(text).with_row(vec![
            Button::new("↻ Refresh", "/portfolio"),
            Button::new("History", "/history"),
            Button::new("Market", "/market"),
        ])
    }

    async fn history(&self, player: PlayerId, page: u32) -> Reply {
        let page = page.clamp(1, HISTORY_PAGES_MAX);
        let wanted = HISTORY_PAGE_TRADES * usize::try_from(page).unwrap_or(1);
        let trades = match self.store.trades_of(player, u64::MAX, wanted + 1).await {
            Ok(trades) => trades,
            Err(_) => return reply::rejection(&Rejection::Unavailable),
        };
        let start = wanted - HISTORY_PAGE_TRADES;
        let shown: Vec<_> = trades.iter().skip(start).take(HISTORY_PAGE_TRADES).collect();
        if shown.is_empty() {
            return Reply::text(if page == 1 { "📭 No trades yet." } else { "📭 No older trades." });
        }
        let mut text = format!("🧾 <b>History</b> (page {page})\n");
        for record in shown {
            let trade = &record.trade;
            let verb = if trade.side == Side::Buy { "bought" } else { "sold" };
            let _ = writeln!(
                text,
                "{verb} {} {} at {} (fee {})",
                trade.qty,
                self.ticker_text(trade.asset),
                money(trade.price),
                money(trade.fee)
            );
        }
        let mut nav = Vec::new();
        if page > 1 {
            nav.push(Button::new("‹ Newer", format!("/history {}", page - 1)));
        }
        if trades.len() > wanted && page < HISTORY_PAGES_MAX {
            nav.push(Button::new("Older ›", format!("/history {}", page + 1)));
        }
        Reply::text(text).with_row(nav)
    }

    /// A chart as a PNG, or the reply explaining why not.
    ///
    /// # Errors
    /// A reply for an unknown ticker, a store outage or a rendering failure.
    pub async fn chart_png(&self, ticker: Ticker, range: ChartRange) -> Result<Vec<u8>, Reply> {
        let universe = self.engine.universe();
        let asset = universe.find(ticker).map_err(|rejected| reply::rejection(&rejected))?;
        let spec = universe.get(asset).ok_or_else(|| reply::rejection(&Rejection::UnknownTicker { ticker }))?;
        let now_ms = SystemClock.now_ms();
        let since_ms = now_ms - chart::window_ms(range);
        let candles = self
            .store
            .candles(asset, since_ms, CHART_CANDLES_MAX)
            .await
            .map_err(|_| reply::rejection(&Rejection::Unavailable))?;
        let (symbol, name) = (spec.ticker.to_string(), spec.name.clone());
        let rendered = actix_web::web::block(move || {
            chart::render_png(&ChartSpec { ticker: &symbol, name: &name, range, candles: &candles, now_ms })
        })
        .await;
        match rendered {
            Ok(Ok(png)) => Ok(png),
            _ => Err(reply::error(
                "⚠️ The chart could not be drawn right now; try again in a moment.",
                Button::new(format!("Quote {ticker}"), format!("/quote {ticker}")),
            )),
        }
    }

    async fn chart(&self, ticker: Ticker, range: ChartRange) -> Reply {
        match self.chart_png(ticker, range).await {
            Ok(png) => {
                let label = range_label(range);
                let mut reply = Reply::text(format!("📊 <b>{}</b> · {label}", escape(ticker.as_str())));
                reply = reply.with_row(
                    ["1h", "1d", "1w"].iter().map(|r| Button::new(*r, format!("/chart {ticker} {r}"))).collect(),
                );
                reply.photo =
                    Some(ReplyPhoto { png: Arc::new(png), url: format!("/api/chart?ticker={ticker}&range={label}") });
                reply.with_row(vec![Button::new(format!("Quote {ticker}"), format!("/quote {ticker}"))])
            }
            Err(reply) => reply,
        }
    }

    fn ticker_text(&self, asset: AssetId) -> String {
        self.engine.universe().ticker(asset).map_or_else(|| format!("#{}", asset.0), |t| escape(t.as_str()))
    }
}

fn describe_order(order: &RestingOrder, ticker: &str) -> String {
    let verb = if order.side == Side::Buy { "buy" } else { "sell" };
    match order.trigger {
        Trigger::Limit(price) => format!("Limit {verb} {} {ticker} at {} or better", order.qty, money(price)),
        Trigger::Stop(price) => format!("Stop-loss: sell {} {ticker} if the bid falls to {}", order.qty, money(price)),
    }
}

/// The text form of a chart range (`1h`, `1d`, `1w`).
#[must_use]
pub fn range_label(range: ChartRange) -> &'static str {
    match range {
        ChartRange::Hour => "1h",
        ChartRange::Day => "1d",
        ChartRange::Week => "1w",
    }
}

fn help() -> Reply {
    use command::usage;
    // Folded to one screen: related commands share a line.
    let lines = [
        "/start — open your account".to_owned(),
        "/market [category] — what's trading".to_owned(),
        usage::QUOTE.to_owned(),
        usage::BUY.to_owned(),
        usage::SELL.to_owned(),
        usage::STOP.to_owned(),
        format!("/orders — your open orders · {}", usage::CANCEL),
        "/portfolio — cash, holdings, net worth".to_owned(),
        usage::HISTORY.to_owned(),
        usage::CHART.to_owned(),
        usage::TOP.to_owned(),
        "/daily — your daily bonus (streaks grow it)".to_owned(),
        "/level — XP and unlocks · /achievements".to_owned(),
        format!("{} · /alerts", usage::ALERT),
        "/news — market news · /premium — lower fees".to_owned(),
        usage::TIMEZONE.to_owned(),
        "/bankrupt — start over when broke".to_owned(),
    ];
    let body: Vec<String> = lines.iter().map(|line| escape(line)).collect();
    Reply::text(format!("📖 <b>Commands</b>\n{}", body.join("\n")))
        .with_row(vec![Button::new("Market", "/market"), Button::new("Portfolio", "/portfolio")])
}
