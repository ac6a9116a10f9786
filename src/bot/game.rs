//! The game commands of the bot — `/daily`, `/level`, `/achievements`,
//! `/top`, `/alert(s)`, `/bankrupt`, `/premium`, `/timezone`, `/admin` — plus
//! the review after each action (XP, achievements, referral rewards, board
//! scores) and per-player / per-chat rate limits. Rules live in the engine;
//! this only calls it and renders.

use std::fmt::Write as _;

use actors::domain::alert::{Direction, Entitlement};
use actors::domain::command::{Command, Outcome};
use actors::domain::daily::UtcOffset;
use actors::domain::exchange::{Review, player_stats};
use actors::domain::ids::PlayerId;
use actors::domain::profile::PaymentId;
use actors::domain::progression::{OrderType, Unlocks};
use actors::domain::rejection::Rejection;
use actors::ports::coordinator::RateDecision;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use super::scoreboard::Standing;
use super::{Bot, Speaker};
use crate::telegram::command::{AdminAction, AlertDirection, TopBoard};
use crate::telegram::reply::{self, Button, InvoiceSpec, Reply, escape, money};

/// Players shown per `/top` page.
pub const TOP_PAGE_PLAYERS: u64 = 10;
/// Places shown above and below the player's own.
pub const TOP_NEIGHBOURS: u64 = 2;
/// Invoice payload of the premium entitlement.
pub const PREMIUM_PAYLOAD: &str = "premium";

/// Achievements listed by `/achievements` (earned first, then the nearest).
pub const ACHIEVEMENTS_SHOWN: usize = 16;

/// Operator and abuse settings of the bot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GameOptions {
    /// Telegram user ids allowed `/admin`.
    pub admins: Vec<i64>,
    /// Price of premium in Telegram Stars; `None`: payments off.
    pub premium_price_stars: Option<u32>,
    /// Commands one player may send per window.
    pub player_commands_per_window: u32,
    /// Commands one group chat may send per window.
    pub chat_commands_per_window: u32,
    pub rate_window_ms: u64,
    /// The play page as a Telegram Mini App (`TELEGRAM_WEBAPP_URL`): `/start`
    /// in a private chat offers it as a `web_app` button.
    pub webapp_url: Option<String>,
}

impl Default for GameOptions {
    fn default() -> Self {
        // 20 commands in 10 s: a person tapping quickly, never a script.
        Self {
            admins: Vec::new(),
            premium_price_stars: None,
            player_commands_per_window: 20,
            chat_commands_per_window: 60,
            rate_window_ms: 10_000,
            webapp_url: None,
        }
    }
}

/// Board keys, by season and scope.
pub(super) fn board_key(kind: TopBoard, season: i64, chat: Option<i64>, day: i64) -> String {
    let scope = chat.map_or_else(|| "global".to_owned(), |chat| format!("g{chat}"));
    match kind {
        TopBoard::NetWorth => format!("top:s{season}:{scope}:worth"),
        TopBoard::Return => format!("top:s{season}:{scope}:return"),
        TopBoard::Gainers => format!("top:d{day}:{scope}:gain"),
    }
}

pub(super) fn day_open_key(day: i64, chat: Option<i64>) -> String {
    let scope = chat.map_or_else(|| "global".to_owned(), |chat| format!("g{chat}"));
    format!("top:d{day}:{scope}:open")
}

impl Bot {
    /// Counts a command against the player's and the chat's limits; a
    /// throttled command gets one polite reply per window, then silence.
    pub(super) async fn throttled(&self, speaker: &Speaker) -> Option<Vec<Reply>> {
        if self.is_replay() {
            // Counted when it was first delivered.
            return None;
        }
        let options = &self.options;
        let window = options.rate_window_ms.max(1);
        let mut keys = vec![(format!("rl:p:{}", speaker.player.0), options.player_commands_per_window)];
        if let Some(chat) = speaker.chat {
            keys.push((format!("rl:c:{chat}"), options.chat_commands_per_window));
        }
        for (key, limit) in keys {
            // An unreachable coordinator falls back locally; an error here lets the command through.
            let Ok(RateDecision::Throttled { retry_after_ms }) = self.limiter.rate_limit(&key, limit, window).await
            else {
                continue;
            };
            self.metrics.throttled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let window_start = self.engine.now_ms().div_euclid(i64::try_from(window).unwrap_or(i64::MAX));
            let once = format!("thr:{}:{window_start}", speaker.player.0);
            let first = self.limiter.first_seen(&once, window).await.unwrap_or(false);
            let seconds = retry_after_ms.div_ceil(1000).max(1);
            return Some(if first {
                vec![Reply::text(format!(
                    "🐢 Slow down: that's faster than the market takes orders. Nothing was done; try again in {seconds} s."
                ))]
            } else {
                Vec::new()
            });
        }
        None
    }

    /// Reviews the player after an action: XP, achievements, referral
    /// reward, board scores. Returns the review and what to announce.
    pub(super) async fn review(&self, speaker: &Speaker) -> (Option<Review>, Vec<Reply>) {
        let player = speaker.player;
        let Ok(Outcome::Reviewed(review)) = self.exec(Command::Review { player }).await else {
            return (None, Vec::new());
        };
        if let Some(referrer) = review.referrer_due {
            let command = Command::RewardReferral { player: referrer, referee: player };
            if let Ok(Outcome::ReferralRewarded { reward }) = self.exec(command).await {
                tracing::info!(referrer = referrer.0, referee = player.0, %reward, "referral rewarded");
            }
        }
        self.score(speaker, &review);
        let mut lines = Vec::new();
        if review.level > review.level_before {
            let unlocks = self.unlocks(review.level);
            lines.push(format!("⭐ <b>Level {}!</b> {}", review.level, describe_unlocks(&unlocks, self)));
        }
        let rules = &self.engine.game_rules().achievements;
        for id in &review.achievements {
            if let Some(def) = rules.get(id.as_str()) {
                lines.push(format!(
                    "🏆 Achievement unlocked: <b>{}</b> — {} (+{} XP)",
                    escape(&def.name),
                    escape(&def.description),
                    def.xp
                ));
            }
        }
        let announcements = if lines.is_empty() {
            Vec::new()
        } else {
            vec![
                Reply::text(lines.join("\n"))
                    .with_row(vec![Button::new("Level", "/level"), Button::new("Achievements", "/achievements")]),
            ]
        };
        (Some(review), announcements)
    }

    /// Puts the player's standing on the boards of the season and the day
    /// (written behind: see `Scoreboard`).
    fn score(&self, speaker: &Speaker, review: &Review) {
        let now = self.engine.now_ms();
        let standing = Standing {
            season: self.engine.game_rules().seasons.season_of(now).0,
            day: now.div_euclid(86_400_000),
            net_worth: review.net_worth.to_f64().unwrap_or(0.0),
            return_pct: review.return_pct.to_f64().unwrap_or(0.0),
        };
        let mut name: String = speaker.name.chars().take(48).collect();
        if review.bankruptcies > 0 {
            name.push_str(" ↺");
        }
        let scopes = [None, speaker.chat];
        let scopes = if speaker.chat.is_some() { &scopes[..] } else { &scopes[..1] };
        self.scoreboard.record(speaker.player, name, scopes, standing);
    }

    fn unlocks(&self, level: u32) -> Unlocks {
        self.engine.game_rules().progression.unlocks(level)
    }

    /// `/daily`.
    pub(super) async fn daily(&self, speaker: &Speaker) -> Reply {
        match self.exec(Command::ClaimDaily { player: speaker.player }).await {
            Ok(Outcome::DailyClaimed { cash, bonus, streak }) => {
                let streak_text = if streak > 1 { format!("day {streak} of your streak") } else { "day 1".to_owned() };
                Reply::text(format!(
                    "🎁 Daily bonus: +{} ({streak_text}). Cash: {}.\nCome back tomorrow to grow the streak — one missed day is forgiven.",
                    money(bonus),
                    money(cash)
                ))
                .with_row(vec![Button::new("Portfolio", "/portfolio"), Button::new("Level", "/level")])
            }
            Ok(_) => Reply::text("⚠️ Unexpected outcome; nothing to show."),
            Err(rejected) => reply::rejection(&rejected),
        }
    }

    /// `/level`.
    pub(super) async fn level(&self, speaker: &Speaker, review: Option<&Review>) -> Reply {
        let Some(review) = review else { return reply::rejection(&Rejection::NoAccount) };
        let progression = &self.engine.game_rules().progression;
        let unlocks = self.unlocks(review.level);
        let mut text = format!("⭐ <b>Level {}</b> · {} XP\n", review.level, review.xp);
        match progression.next_level(review.xp) {
            Some(next) => {
                let start = progression.level_xp.iter().copied().filter(|t| *t <= review.xp).max().unwrap_or(0);
                let span = (review.xp + next.xp_needed).saturating_sub(start).max(1);
                let done = review.xp.saturating_sub(start);
                let filled = usize::try_from(done * 10 / span).unwrap_or(10).min(10);
                let _ = writeln!(
                    text,
                    "{}{} {} XP to level {}",
                    "▰".repeat(filled),
                    "▱".repeat(10 - filled),
                    next.xp_needed,
                    next.level
                );
                let _ = writeln!(text, "Now: {}", describe_unlocks(&unlocks, self));
                let _ = writeln!(text, "Level {} adds: {}", next.level, describe_gain(&unlocks, &next.unlocks, self));
            }
            None => {
                let _ = writeln!(text, "Top level reached. {}", describe_unlocks(&unlocks, self));
            }
        }
        text.push_str("\nEarn XP by trading (capped per day), realizing profits, the /daily bonus and /achievements.");
        let _ = speaker;
        Reply::text(text).with_row(vec![
            Button::new("Achievements", "/achievements"),
            Button::new("Daily", "/daily"),
            Button::new("Top", "/top"),
        ])
    }

    /// `/achievements`.
    pub(super) async fn achievements(&self, speaker: &Speaker, review: Option<&Review>) -> Reply {
        let Some(review) = review else { return reply::rejection(&Rejection::NoAccount) };
        let ledger = match self.ledger(speaker.player).await {
            Ok(ledger) => ledger,
            Err(reply) => return reply,
        };
        let rules = self.engine.game_rules();
        let categories = self.engine.universe().asset_categories();
        let stats = player_stats(&ledger.account, review.net_worth, categories, &rules.progression);
        let owned = &ledger.account.profile.achievements;
        let total = rules.achievements.achievements.len();
        let mut text = format!("🏆 <b>Achievements</b> · {} of {total}\n", owned.len());
        let mut earned = Vec::new();
        let mut open = Vec::new();
        for def in &rules.achievements.achievements {
            if owned.contains(&def.id) {
                earned.push(format!("✅ <b>{}</b> — {}", escape(&def.name), escape(&def.description)));
            } else {
                let progress = actors::domain::achievement::progress(&stats, &def.rule);
                let done =
                    if progress.target > Decimal::ZERO { progress.current / progress.target } else { Decimal::ZERO };
                let line = format!(
                    "▫️ {} — {} ({}/{})",
                    escape(&def.name),
                    escape(&def.description),
                    progress.current.max(Decimal::ZERO).round_dp(0),
                    progress.target.round_dp(0)
                );
                open.push((done, line));
            }
        }
        // One screen: what was earned, then the nearest goals first.
        open.sort_by_key(|(done, _)| std::cmp::Reverse(*done));
        let lines: Vec<String> = earned.into_iter().chain(open.into_iter().map(|(_, line)| line)).collect();
        for line in lines.iter().take(ACHIEVEMENTS_SHOWN) {
            let _ = writeln!(text, "{line}");
        }
        if let Some(more) = lines.len().checked_sub(ACHIEVEMENTS_SHOWN).filter(|more| *more > 0) {
            let _ = writeln!(text, "…and {more} more to find.");
        }
        Reply::text(text).with_row(vec![Button::new("Level", "/level"), Button::new("Top", "/top")])
    }

    /// `/top`: a page of the board, rank numbers, and the player's own place
    /// with the three above and below it.
    pub(super) async fn top(&self, speaker: &Speaker, board: TopBoard, page: u32) -> Reply {
        let now = self.engine.now_ms();
        let season = self.engine.game_rules().seasons.season_of(now);
        let day = now.div_euclid(86_400_000);
        let key = board_key(board, season.0, speaker.chat, day);
        self.scoreboard.settled().await;
        let coordinator = &self.coordinator;
        let count = coordinator.board_count(&key).await.unwrap_or(0);
        let pages = count.div_ceil(TOP_PAGE_PLAYERS).max(1);
        let page = u64::from(page).clamp(1, pages);
        let offset = (page - 1) * TOP_PAGE_PLAYERS;
        let Ok(rows) = coordinator.board_range(&key, offset, TOP_PAGE_PLAYERS).await else {
            return reply::rejection(&Rejection::Unavailable);
        };
        let scope = if speaker.chat.is_some() { "this group" } else { "all players" };
        let what = match board {
            TopBoard::NetWorth => format!("season {season} · net worth"),
            TopBoard::Return => format!("season {season} · return"),
            TopBoard::Gainers => "today's gainers".to_owned(),
        };
        let mut text = format!("🏆 <b>Top — {what}</b> ({scope})\n");
        if rows.is_empty() {
            text.push_str("Nobody on this board yet: trade, then check again.\n");
        }
        self.write_rows(&mut text, &rows, offset, board, speaker.player).await;
        if let Ok(Some((rank, _))) = coordinator.board_rank(&key, speaker.player).await
            && !(offset..offset + TOP_PAGE_PLAYERS).contains(&rank)
        {
            let from = rank.saturating_sub(TOP_NEIGHBOURS);
            let around = coordinator.board_range(&key, from, TOP_NEIGHBOURS * 2 + 1).await.unwrap_or_default();
            let _ = writeln!(text, "…\nYou are #{}:", rank + 1);
            self.write_rows(&mut text, &around, from, board, speaker.player).await;
        }
        let _ = write!(text, "\nPage {page} of {pages} · {count} players");
        let arg = match board {
            TopBoard::NetWorth => "",
            TopBoard::Return => " return",
            TopBoard::Gainers => " gainers",
        };
        let mut nav = Vec::new();
        if page > 1 {
            nav.push(Button::new("◀ Prev", format!("/top{arg} {}", page - 1)));
        }
        if page < pages {
            nav.push(Button::new("Next ▶", format!("/top{arg} {}", page + 1)));
        }
        Reply::text(text).with_row(nav).with_row(vec![
            Button::new("Net worth", "/top"),
            Button::new("Return %", "/top return"),
            Button::new("Gainers", "/top gainers"),
        ])
    }

    async fn write_rows(
        &self,
        text: &mut String,
        rows: &[(PlayerId, f64)],
        offset: u64,
        board: TopBoard,
        me: PlayerId,
    ) {
        let players: Vec<PlayerId> = rows.iter().map(|(player, _)| *player).collect();
        let names = self.coordinator.names_get(players).await.unwrap_or_default();
        for (index, (player, score)) in rows.iter().enumerate() {
            let rank = offset + index as u64 + 1;
            let name = names.get(index).cloned().flatten().unwrap_or_else(|| format!("player {}", player.0));
            let value = match board {
                TopBoard::NetWorth => money(Decimal::from_f64_retain(*score).unwrap_or_default().round_dp(2)),
                TopBoard::Return | TopBoard::Gainers => format!("{score:+.2}%"),
            };
            let marker = if *player == me { " ◀ you" } else { "" };
            let _ = writeln!(text, "{rank}. {} — {value}{marker}", escape(&name));
        }
    }

    /// `/alert TICKER > PRICE`.
    pub(super) async fn alert(
        &self,
        player: PlayerId,
        ticker: actors::domain::ids::Ticker,
        direction: AlertDirection,
        price: actors::domain::ids::LimitPrice,
    ) -> Reply {
        let asset = match self.engine.universe().find(ticker) {
            Ok(asset) => asset,
            Err(rejected) => return reply::rejection(&rejected),
        };
        let direction = match direction {
            AlertDirection::Above => Direction::Above,
            AlertDirection::Below => Direction::Below,
        };
        let command = Command::SetAlert { player, asset, direction, price: price.get() };
        match self.exec(command).await {
            Ok(Outcome::AlertSet(alert)) => {
                let sign = if direction == Direction::Above { "≥" } else { "≤" };
                Reply::text(format!(
                    "🔔 Alert #{} set: I'll tell you once {} is {sign} {}.",
                    alert.id.0,
                    escape(ticker.as_str()),
                    money(alert.price)
                ))
                .with_row(vec![
                    Button::new("Alerts", "/alerts"),
                    Button::new("Delete", format!("/unalert {}", alert.id.0)),
                ])
            }
            Ok(_) => Reply::text("⚠️ Unexpected outcome; nothing to show."),
            Err(rejected) => reply::rejection(&rejected),
        }
    }

    /// `/alerts`.
    pub(super) async fn alerts(&self, player: PlayerId) -> Reply {
        let Ok(alerts) = self.engine.alerts(player).await else {
            return reply::rejection(&Rejection::Unavailable);
        };
        if alerts.is_empty() {
            return Reply::text("🔕 No alerts. Set one with /alert TICKER &gt; PRICE or /alert TICKER &lt; PRICE.");
        }
        let mut text = String::from("🔔 <b>Your alerts</b>\n");
        let mut buttons = Vec::new();
        for alert in &alerts {
            let ticker = self.ticker_text(alert.asset);
            let sign = if alert.direction == Direction::Above { "≥" } else { "≤" };
            let _ = writeln!(text, "#{} {ticker} {sign} {}", alert.id.0, money(alert.price));
            buttons.push(Button::new(format!("Delete #{}", alert.id.0), format!("/unalert {}", alert.id.0)));
        }
        let mut reply = Reply::text(text);
        for row in buttons.chunks(2) {
            reply = reply.with_row(row.to_vec());
        }
        reply
    }

    /// `/unalert ID`.
    pub(super) async fn unalert(&self, player: PlayerId, alert: u64) -> Reply {
        let command = Command::DeleteAlert { player, alert: actors::domain::alert::AlertId(alert) };
        match self.exec(command).await {
            Ok(_) => {
                Reply::text(format!("🔕 Alert #{alert} deleted.")).with_row(vec![Button::new("Alerts", "/alerts")])
            }
            Err(rejected) => reply::rejection(&rejected),
        }
    }

    /// `/bankrupt`.
    pub(super) async fn bankrupt(&self, player: PlayerId) -> Reply {
        match self.exec(Command::Bankrupt { player }).await {
            Ok(Outcome::Bankrupted { cash }) => Reply::text(format!(
                "🔄 Fresh start: your holdings are written off and you have {} in cash. Your level and achievements stay; the board marks your restart with ↺.",
                money(cash)
            ))
            .with_row(vec![Button::new("Market", "/market")]),
            Ok(_) => Reply::text("⚠️ Unexpected outcome; nothing to show."),
            Err(rejected) => reply::rejection(&rejected),
        }
    }

    /// `/timezone ±HH:MM`.
    pub(super) async fn time_zone(&self, player: PlayerId, minutes: i32) -> Reply {
        let Some(offset) = UtcOffset::from_minutes(minutes) else {
            return Reply::text("⚠️ UTC offsets go from -12:00 to +14:00.");
        };
        match self.exec(Command::SetTimeZone { player, offset }).await {
            Ok(_) => {
                let sign = if minutes < 0 { '-' } else { '+' };
                let abs = minutes.unsigned_abs();
                Reply::text(format!(
                    "🕒 Time zone set to UTC{sign}{:02}:{:02}: your daily bonus follows your calendar day.",
                    abs / 60,
                    abs % 60
                ))
            }
            Err(rejected) => reply::rejection(&rejected),
        }
    }

    /// `/premium`: what it gives; with payments on, an invoice in Stars.
    pub(super) async fn premium(&self, player: PlayerId) -> Reply {
        let rules = &self.engine.game_rules().entitlements;
        let perks = rules.premium;
        let has = match self.engine.ledger(player).await {
            Ok(Some(ledger)) => ledger.account.profile.entitlements.contains(&Entitlement::Premium),
            _ => false,
        };
        let discount = (perks.fee_discount * Decimal::ONE_HUNDRED).round_dp(0);
        let what = format!(
            "{discount}% off the base trading fee and up to {} price alerts (instead of {}). Premium is comfort, not victory: size surcharges and caps apply to everyone.",
            perks.alerts_max, rules.base.alerts_max
        );
        if has {
            return Reply::text(format!("💎 You have premium: {what}"));
        }
        let mut reply = Reply::text(format!("💎 <b>Premium</b>: {what}"));
        match self.options.premium_price_stars {
            Some(stars) => {
                reply.invoice = Some(InvoiceSpec {
                    title: "stockbot premium".to_owned(),
                    description: format!("{discount}% off base fees and {} price alerts.", perks.alerts_max),
                    payload: PREMIUM_PAYLOAD.to_owned(),
                    stars,
                });
            }
            None => reply.text.push_str("\nPayments are not enabled on this server."),
        }
        reply
    }

    /// Price of premium in Telegram Stars, when payments are on.
    #[must_use]
    pub fn premium_price_stars(&self) -> Option<u32> {
        self.options.premium_price_stars
    }

    /// A completed Telegram Stars payment: grants premium exactly once per
    /// charge id (a repeated delivery gets no second reply).
    pub async fn grant_payment(&self, speaker: &Speaker, charge_id: &str, payload: &str) -> Vec<Reply> {
        if !payload.starts_with(PREMIUM_PAYLOAD) || charge_id.is_empty() {
            tracing::warn!(player_id = speaker.player.0, payload, "payment for something we did not sell");
            return Vec::new();
        }
        let player = speaker.player;
        if let Err(rejected) = self.exec(Command::Open { player }).await {
            return vec![reply::rejection(&rejected)];
        }
        let command =
            Command::Grant { player, entitlement: Entitlement::Premium, payment: Some(PaymentId::of(charge_id)) };
        match self.exec(command).await {
            Ok(Outcome::Granted { new: true }) => {
                tracing::info!(player_id = player.0, "premium granted by payment");
                vec![Reply::text("💎 Thank you! Premium is active: lower fees and more alerts. See /premium.")]
            }
            Ok(_) => Vec::new(),
            Err(rejected) => vec![reply::rejection(&rejected)],
        }
    }

    /// Closes the season that ended last, once across all instances: the
    /// top of its global board (kept as its archive) gets titles and season
    /// achievements. Portfolios reset lazily, at each player's next action.
    pub async fn award_finished_season(&self) {
        let now = self.engine.now_ms();
        let rules = &self.engine.game_rules().seasons;
        let finished = rules.season_of(now).0 - 1;
        let (_, ended_ms) = rules.season_bounds(actors::domain::season::SeasonId(finished));
        if now < ended_ms {
            return;
        }
        let once = format!("season-awarded:{finished}");
        // Long enough to outlive the next season's end.
        let ttl_ms = u64::try_from(rules.length_ms().saturating_mul(2)).unwrap_or(u64::MAX);
        if !self.coordinator.first_seen(&once, ttl_ms).await.unwrap_or(false) {
            return;
        }
        let key = board_key(TopBoard::NetWorth, finished, None, 0);
        self.scoreboard.settled().await;
        let Ok(top) = self.coordinator.board_range(&key, 0, TOP_PAGE_PLAYERS).await else { return };
        for (index, (player, _)) in top.iter().enumerate() {
            let rank = u32::try_from(index).unwrap_or(u32::MAX).saturating_add(1);
            match self.exec(Command::AwardSeason { player: *player, rank }).await {
                Ok(_) => tracing::info!(season = finished + 1, rank, player_id = player.0, "season award"),
                Err(rejected) => tracing::warn!(?rejected, player_id = player.0, "season award failed"),
            }
        }
    }

    /// A group became a supergroup: its board moves to the new chat id.
    pub async fn migrate_group(&self, from_chat: i64, to_chat: i64) {
        let now = self.engine.now_ms();
        let season = self.engine.game_rules().seasons.season_of(now).0;
        let day = now.div_euclid(86_400_000);
        self.scoreboard.settled().await;
        for board in [TopBoard::NetWorth, TopBoard::Return, TopBoard::Gainers] {
            let from = board_key(board, season, Some(from_chat), day);
            let to = board_key(board, season, Some(to_chat), day);
            if let Err(error) = self.coordinator.board_move(&from, &to).await {
                tracing::warn!(%error, from_chat, to_chat, "group board not moved");
            }
        }
        let _ =
            self.coordinator.board_move(&day_open_key(day, Some(from_chat)), &day_open_key(day, Some(to_chat))).await;
    }

    /// `/admin …`: only for configured admins, each action logged.
    pub(super) async fn admin(&self, speaker: &Speaker, action: AdminAction) -> Reply {
        let admin = speaker.player.0;
        if admin <= 0 || !self.options.admins.contains(&admin) {
            tracing::warn!(player_id = admin, ?action, "admin command refused");
            return Reply::text("⛔ Admin commands are for the server's operators. Nothing was done.");
        }
        tracing::info!(target: "audit", admin, ?action, "admin command");
        match action {
            AdminAction::Halt { ticker, halted } => {
                let asset = match self.engine.universe().find(ticker) {
                    Ok(asset) => asset,
                    Err(rejected) => return reply::rejection(&rejected),
                };
                match self.exec(Command::AdminHalt { admin, asset, halted }).await {
                    Ok(_) => {
                        let verb = if halted { "halted" } else { "resumed" };
                        Reply::text(format!("🛠 Trading in {} {verb}.", escape(ticker.as_str())))
                    }
                    Err(rejected) => reply::rejection(&rejected),
                }
            }
            AdminAction::Grant { player, amount } => {
                let command = Command::AdminGrant { admin, player: PlayerId(player), amount };
                match self.exec(command).await {
                    Ok(Outcome::Credited { cash }) => Reply::text(format!(
                        "🛠 Granted {} to player {player}; their cash is {}.",
                        money(amount),
                        money(cash)
                    )),
                    Ok(_) => Reply::text("⚠️ Unexpected outcome; nothing to show."),
                    Err(rejected) => reply::rejection(&rejected),
                }
            }
            AdminAction::News { target, move_pct, text } => self.admin_news(admin, &target, move_pct, &text).await,
        }
    }

    /// `/admin news TARGET ±PCT TEXT`: a news jump through the price model.
    async fn admin_news(&self, admin: i64, target: &str, move_pct: Decimal, text: &str) -> Reply {
        let news_target = match actors::domain::news::NewsTarget::parse(self.engine.universe(), target) {
            Ok(news_target) => news_target,
            Err(error) => return Reply::text(format!("⚠️ {}", escape(&error.to_string()))),
        };
        let factor = (Decimal::ONE + move_pct / Decimal::ONE_HUNDRED).to_f64().unwrap_or(1.0);
        if factor <= 0.0 {
            return Reply::text("⚠️ A move must stay above -100%.");
        }
        let headline = (!text.trim().is_empty()).then(|| text.trim().to_owned());
        if let Err(error) = self.engine.inject_news(news_target, factor.ln(), headline).await {
            return Reply::text(format!("⚠️ {}", escape(&error.to_string())));
        }
        let action = format!("news {target} {move_pct}% {text}");
        match self.exec(Command::AdminNote { admin, action }).await {
            Ok(_) => {
                Reply::text(format!("🛠 News queued: {} moves {move_pct}% at the next market minute.", escape(target)))
            }
            Err(rejected) => reply::rejection(&rejected),
        }
    }
}

/// Unlocks in words.
fn describe_unlocks(unlocks: &Unlocks, bot: &Bot) -> String {
    let categories = bot.engine.universe().categories();
    let open: Vec<String> = categories
        .iter()
        .enumerate()
        .filter(|(index, _)| unlocks.allows_category(*index))
        .map(|(_, c)| escape(&c.name))
        .collect();
    format!(
        "{} orders · categories: {} · position cap {} shares · {} open orders",
        order_types(unlocks),
        open.join(", "),
        unlocks.position_qty_max(bot.engine.rules().position_qty_max),
        unlocks.open_orders_max.min(bot.engine.rules().open_orders_max)
    )
}

/// What `next` adds over `now`, in words.
fn describe_gain(now: &Unlocks, next: &Unlocks, bot: &Bot) -> String {
    let mut parts = Vec::new();
    for order_type in next.order_types.difference(&now.order_types) {
        parts.push(format!("{} orders", order_type_name(*order_type)));
    }
    let categories = bot.engine.universe().categories();
    for (index, category) in categories.iter().enumerate() {
        if next.allows_category(index) && !now.allows_category(index) {
            parts.push(format!("the {} category", escape(&category.name)));
        }
    }
    if next.position_cap_pct > now.position_cap_pct {
        parts.push(format!("position cap {} shares", next.position_qty_max(bot.engine.rules().position_qty_max)));
    }
    if next.open_orders_max > now.open_orders_max {
        parts.push(format!("{} open orders", next.open_orders_max.min(bot.engine.rules().open_orders_max)));
    }
    if parts.is_empty() { "bragging rights".to_owned() } else { parts.join(", ") }
}

fn order_types(unlocks: &Unlocks) -> String {
    unlocks.order_types.iter().map(|t| order_type_name(*t)).collect::<Vec<_>>().join(", ")
}

fn order_type_name(order_type: OrderType) -> &'static str {
    match order_type {
        OrderType::Market => "market",
        OrderType::Limit => "limit",
        OrderType::Stop => "stop",
    }
}
