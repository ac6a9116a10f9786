//! `Exchange`: the deterministic state machine of the market — books and
//! player ledgers. Each command is decided against the state (a mistake is a
//! `Rejection` value, and nothing changes), then turned into events that are
//! applied by [`Exchange::apply`], the same function replay uses.

use std::sync::Arc;

use rust_decimal::Decimal;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

mod game;

pub use game::{Review, Standing, player_stats};

use super::account::Account;
use super::alert::{Alert, Perks};
use super::asset::Universe;
use super::book::Book;
use super::event::{CancelReason, CreditReason, Event, Stamped, Tick, Trade};
use super::game::{GameRules, LevelTable};
use super::ids::{AssetId, OrderId, PlayerId, TradeId};
use super::money::{Lean, MONEY_MAX, round_money};
use super::order::{OrderKind, OrderRequest, RestingOrder, Side, Trigger};
use super::profile::GameChange;
use super::progression::{OrderType, Unlocks};
use super::rejection::Rejection;
use super::rules::MarketRules;

/// What a successful order did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Placed {
    /// It executed now.
    Filled(Fill),
    /// It rests on the book.
    Resting(RestingOrder),
}

/// A fill as the player sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fill {
    pub trade: Trade,
    pub cash_after: Decimal,
    pub held_after: u64,
}

/// One asset's quote.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quote {
    pub asset: AssetId,
    pub bid: Decimal,
    pub ask: Decimal,
    pub mid: f64,
    pub sigma_daily: f64,
    pub halted: bool,
}

/// Everything the exchange holds, in a canonical order (for snapshots and
/// for checking that replay reproduces state bit for bit).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExchangeState {
    pub books: Vec<Book>,
    pub accounts: Vec<(PlayerId, Account)>,
    pub next_seq: u64,
    pub next_trade: u64,
    pub next_order: u64,
    /// Price alerts waiting to fire, by id.
    #[serde(default)]
    pub alerts: Vec<Alert>,
    #[serde(default)]
    pub next_alert: u64,
}

/// Books and ledgers of one market.
#[derive(Debug, Clone)]
pub struct Exchange {
    rules: MarketRules,
    game: Arc<GameRules>,
    levels: Arc<LevelTable>,
    universe: Arc<Universe>,
    books: Vec<Book>,
    accounts: FxHashMap<PlayerId, Account>,
    /// Price alerts, sorted by id (alerts stay live while players are passivated).
    alerts: Vec<Alert>,
    next_seq: u64,
    next_trade: u64,
    next_order: u64,
    next_alert: u64,
}

impl Exchange {
    /// A fresh market at the universe's initial prices.
    #[must_use]
    pub fn new(universe: Arc<Universe>, rules: MarketRules) -> Self {
        let books = universe
            .assets()
            .iter()
            .zip(universe.asset_categories())
            .map(|(spec, category)| {
                let sector_vol = universe.categories().get(*category).map_or(0.0, |c| c.vol_daily);
                Book::new(f64::try_from(spec.initial_price).unwrap_or(1.0), &spec.model, sector_vol)
            })
            .collect();
        let game = Arc::new(GameRules::open());
        Self {
            rules,
            levels: Arc::new(LevelTable::new(&game)),
            game,
            universe,
            books,
            accounts: FxHashMap::default(),
            alerts: Vec::new(),
            next_seq: 1,
            next_trade: 1,
            next_order: 1,
            next_alert: 1,
        }
    }

    /// The same market under `game` rules (levels, seasons, anti-abuse);
    /// without this call nothing is gated.
    #[must_use]
    pub fn with_game_rules(mut self, game: Arc<GameRules>) -> Self {
        self.levels = Arc::new(LevelTable::new(&game));
        self.game = game;
        self
    }

    /// Restores a market from a snapshot.
    #[must_use]
    pub fn from_state(universe: Arc<Universe>, rules: MarketRules, state: ExchangeState) -> Self {
        let game = Arc::new(GameRules::open());
        Self {
            rules,
            levels: Arc::new(LevelTable::new(&game)),
            game,
            universe,
            books: state.books,
            accounts: state.accounts.into_iter().collect(),
            alerts: state.alerts,
            next_seq: state.next_seq,
            next_trade: state.next_trade,
            next_order: state.next_order,
            next_alert: state.next_alert.max(1),
        }
    }

    /// The state in canonical order.
    #[must_use]
    pub fn state(&self) -> ExchangeState {
        let mut accounts: Vec<_> = self.accounts.iter().map(|(id, a)| (*id, a.clone())).collect();
        accounts.sort_by_key(|(id, _)| *id);
        ExchangeState {
            books: self.books.clone(),
            accounts,
            next_seq: self.next_seq,
            next_trade: self.next_trade,
            next_order: self.next_order,
            alerts: self.alerts.clone(),
            next_alert: self.next_alert,
        }
    }

    /// The market-wide state without player ledgers (for snapshots; ledgers
    /// live in the store's accounts and load lazily).
    #[must_use]
    pub fn market_state(&self) -> ExchangeState {
        ExchangeState {
            books: self.books.clone(),
            accounts: Vec::new(),
            next_seq: self.next_seq,
            next_trade: self.next_trade,
            next_order: self.next_order,
            alerts: self.alerts.clone(),
            next_alert: self.next_alert,
        }
    }

    /// The newest model minute any book has seen (0 before the first tick).
    #[must_use]
    pub fn last_minute(&self) -> u64 {
        self.books.iter().map(|book| book.minute).max().unwrap_or(0)
    }

    /// Players with orders resting on the books (their ledgers must be loaded
    /// for those orders to fill).
    #[must_use]
    pub fn players_with_orders(&self) -> Vec<PlayerId> {
        let mut players: Vec<PlayerId> = self.books.iter().flat_map(|b| b.resting.iter().map(|o| o.player)).collect();
        players.sort_unstable();
        players.dedup();
        players
    }

    /// The rules in force.
    #[must_use]
    pub fn rules(&self) -> &MarketRules {
        &self.rules
    }

    /// The game rules in force.
    #[must_use]
    pub fn game_rules(&self) -> &GameRules {
        &self.game
    }

    /// What a player's level unlocks (everything when the game is not gated).
    #[must_use]
    pub fn unlocks_of(&self, account: &Account) -> &Unlocks {
        self.levels.unlocks(self.game.progression.level_for_xp(account.profile.xp))
    }

    /// The perks a player's entitlements give.
    #[must_use]
    pub fn perks_of(&self, account: &Account) -> Perks {
        self.game.entitlements.perks(&account.profile.entitlements)
    }

    /// A player's price alerts, oldest first.
    pub fn alerts_of(&self, player: PlayerId) -> impl Iterator<Item = &Alert> {
        self.alerts.iter().filter(move |a| a.player == player)
    }

    /// The asset universe.
    #[must_use]
    pub fn universe(&self) -> &Arc<Universe> {
        &self.universe
    }

    /// Sequence number the next event will get.
    #[must_use]
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// A player's ledger, if loaded.
    #[must_use]
    pub fn account(&self, player: PlayerId) -> Option<&Account> {
        self.accounts.get(&player)
    }

    /// Loaded players.
    pub fn players(&self) -> impl Iterator<Item = (&PlayerId, &Account)> {
        self.accounts.iter()
    }

    /// An asset's book.
    #[must_use]
    pub fn book(&self, asset: AssetId) -> Option<&Book> {
        self.books.get(asset.index())
    }

    /// The quote of one asset.
    #[must_use]
    pub fn quote(&self, asset: AssetId) -> Option<Quote> {
        let book = self.books.get(asset.index())?;
        let (bid, ask) = book.bid_ask(&self.rules)?;
        let (mid, sigma_daily, halted) = (book.mid(&self.rules), book.sigma_daily, book.halted());
        Some(Quote { asset, bid, ask, mid, sigma_daily, halted })
    }

    /// The player's resting orders.
    pub fn orders_of(&self, player: PlayerId) -> impl Iterator<Item = &RestingOrder> {
        self.books.iter().flat_map(|b| b.resting.iter()).filter(move |o| o.player == player)
    }

    /// Puts a ledger loaded from the store in memory (lazy activation).
    pub fn attach(&mut self, player: PlayerId, account: Account) {
        self.accounts.entry(player).or_insert(account);
    }

    /// Takes an idle ledger out of memory (passivation); refused while the
    /// player has resting orders, which must stay live on the books.
    pub fn detach(&mut self, player: PlayerId) -> Option<Account> {
        if self.accounts.get(&player).is_some_and(|a| a.open_orders > 0) {
            return None;
        }
        self.accounts.remove(&player)
    }

    /// The fee on a trade worth `value`: a rate with a floor, rounded up.
    #[must_use]
    pub fn fee(&self, value: Decimal) -> Decimal {
        round_money(value * self.rules.fee_rate, Lean::Up).max(self.rules.fee_min)
    }

    /// The fee a player pays on `qty` shares worth `value` of `book`'s asset:
    /// the base fee less the player's discount, plus a surcharge that grows
    /// with order size when the game is gated (holding runaway leaders back).
    fn fee_for(&self, account: &Account, book: &Book, qty: u64, value: Decimal) -> Decimal {
        if !self.game.gated && account.profile.entitlements.is_empty() {
            return self.fee(value);
        }
        let discount = self.perks_of(account).fee_discount;
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let liquidity = book.liquidity_shares.clamp(1.0, 1e15) as u64;
        let abuse = &self.game.abuse;
        if self.game.gated {
            abuse.graduated_fee(value, qty, liquidity, discount, &self.rules)
        } else {
            let base = self.rules.fee_rate * (Decimal::ONE - discount);
            round_money(value * base, Lean::Up).max(self.rules.fee_min)
        }
    }

    // ---- commands -------------------------------------------------------

    /// Opens an account with starting cash; `Ok(false)` if it already exists.
    ///
    /// # Errors
    /// None today; kept fallible for callers that treat commands uniformly.
    pub fn open_account(&mut self, player: PlayerId, at_ms: i64, out: &mut Vec<Stamped>) -> Result<bool, Rejection> {
        if self.accounts.contains_key(&player) {
            return Ok(false);
        }
        let season = self.game.seasons.season_of(at_ms).0;
        self.emit(Event::AccountOpened { player, cash: self.rules.starting_cash, season }, at_ms, out);
        Ok(true)
    }

    /// Creates cash for a player (bonus, grant); returns the new balance.
    ///
    /// # Errors
    /// `NoAccount`, or `AmountTooLarge` for absurd amounts and for amounts
    /// that are not positive once rounded down to the cent.
    pub fn credit(
        &mut self,
        player: PlayerId,
        amount: Decimal,
        reason: CreditReason,
        at_ms: i64,
        out: &mut Vec<Stamped>,
    ) -> Result<Decimal, Rejection> {
        let account = self.accounts.get(&player).ok_or(Rejection::NoAccount)?;
        if amount <= Decimal::ZERO || amount > MONEY_MAX || account.cash + amount > MONEY_MAX * Decimal::from(1000) {
            return Err(Rejection::AmountTooLarge);
        }
        let amount = round_money(amount, Lean::Down);
        if amount <= Decimal::ZERO {
            // A sub-cent credit would log a credit of nothing.
            return Err(Rejection::AmountTooLarge);
        }
        self.emit(Event::CashCredited { player, amount, reason }, at_ms, out);
        Ok(self.accounts.get(&player).map_or(Decimal::ZERO, |a| a.cash))
    }

    /// Places an order: fills it now, or rests it on the book.
    ///
    /// # Errors
    /// A `Rejection` for every player mistake; the state is then unchanged.
    pub fn place(&mut self, request: &OrderRequest, at_ms: i64, out: &mut Vec<Stamped>) -> Result<Placed, Rejection> {
        let qty = request.qty.get();
        let ticker = self.ticker(request.asset)?;
        if qty > self.rules.order_qty_max {
            return Err(Rejection::OrderTooLarge { qty_max: self.rules.order_qty_max });
        }
        let book = self.books.get(request.asset.index()).ok_or(Rejection::UnknownTicker { ticker })?;
        if book.halted() {
            return Err(Rejection::Halted { ticker, resumes_at_ms: 0 });
        }
        let account = self.accounts.get(&request.player).ok_or(Rejection::NoAccount)?;
        self.check_unlocked(account, request)?;
        match request.kind {
            OrderKind::Market => self.fill_now(request.player, request.asset, request.side, qty, None, at_ms, out),
            OrderKind::Limit(limit) => {
                let limit = limit.get();
                let estimate = book.estimate(&self.rules, request.side, qty).ok_or(Rejection::AmountTooLarge)?;
                let marketable = match request.side {
                    Side::Buy => estimate.price <= limit,
                    Side::Sell => estimate.price >= limit,
                };
                if marketable {
                    return self.fill_now(request.player, request.asset, request.side, qty, None, at_ms, out);
                }
                self.check_can_rest(account, request, limit)?;
                let reserved_cash = match request.side {
                    Side::Buy => self.buy_reservation(account, request.asset, limit, qty)?,
                    Side::Sell => Decimal::ZERO,
                };
                self.rest(request, Trigger::Limit(limit), reserved_cash, at_ms, out)
            }
            OrderKind::Stop(stop) => {
                if request.side != Side::Sell {
                    return Err(Rejection::StopOnlySells);
                }
                let stop = stop.get();
                let (bid, _) = book.bid_ask(&self.rules).ok_or(Rejection::AmountTooLarge)?;
                if bid <= stop {
                    return Err(Rejection::PriceWouldExecute { ticker, market: bid });
                }
                self.check_can_rest(account, request, stop)?;
                self.rest(request, Trigger::Stop(stop), Decimal::ZERO, at_ms, out)
            }
        }
    }

    /// Withdraws one of the player's resting orders.
    ///
    /// # Errors
    /// `UnknownOrder` when it is not an open order of this player.
    pub fn cancel(
        &mut self,
        player: PlayerId,
        order: OrderId,
        at_ms: i64,
        out: &mut Vec<Stamped>,
    ) -> Result<RestingOrder, Rejection> {
        let found = self
            .find_resting(order)
            .filter(|o| o.player == player)
            .ok_or(Rejection::UnknownOrder { order_id: order })?;
        self.emit(Event::OrderCancelled { order, player, reason: CancelReason::ByPlayer }, at_ms, out);
        Ok(found)
    }

    /// Halts or resumes trading in an asset (operators).
    pub fn set_halted(&mut self, asset: AssetId, halted: bool, at_ms: i64, out: &mut Vec<Stamped>) {
        if asset.index() < self.books.len() {
            self.emit(Event::TradingHalted { asset, halted }, at_ms, out);
        }
    }

    /// Moves an asset to the model's new minute, then fills the resting orders
    /// the move triggered, oldest first.
    pub fn tick(&mut self, tick: Tick, at_ms: i64, out: &mut Vec<Stamped>) {
        let Some(book) = self.books.get(tick.asset.index()) else { return };
        if tick.minute <= book.minute && book.minute > 0 {
            return; // a stale or repeated tick changes nothing
        }
        let mid_before = book.mid(&self.rules);
        self.emit(Event::Ticked(tick), at_ms, out);
        self.fire_alerts(tick.asset, mid_before, at_ms, out);
        let Some(book) = self.books.get(tick.asset.index()) else { return };
        if book.halted() || book.resting.is_empty() {
            return;
        }
        let candidates: Vec<RestingOrder> = book.resting.clone();
        for order in candidates {
            self.try_trigger(&order, at_ms, out);
        }
    }

    // ---- decisions ------------------------------------------------------

    fn try_trigger(&mut self, order: &RestingOrder, at_ms: i64, out: &mut Vec<Stamped>) {
        let Some(book) = self.books.get(order.asset.index()) else { return };
        let triggered = match order.trigger {
            Trigger::Limit(limit) => {
                book.estimate(&self.rules, order.side, order.qty).is_some_and(|e| match order.side {
                    Side::Buy => e.price <= limit,
                    Side::Sell => e.price >= limit,
                })
            }
            Trigger::Stop(stop) => book.bid_ask(&self.rules).is_some_and(|(bid, _)| bid <= stop),
        };
        if !triggered {
            return;
        }
        let result = self.fill_now(order.player, order.asset, order.side, order.qty, Some(order), at_ms, out);
        match (result, order.trigger) {
            (Ok(_), Trigger::Stop(_)) => {
                self.emit(Event::Game { player: order.player, change: GameChange::StopTriggered }, at_ms, out);
            }
            // A limit waits for liquidity to return; a stop must not linger
            // once it cannot be honoured.
            (Err(Rejection::ExceedsLiquidity { .. }), Trigger::Limit(_)) | (Ok(_), _) => {}
            (Err(_), _) => {
                let event =
                    Event::OrderCancelled { order: order.id, player: order.player, reason: CancelReason::Unfillable };
                self.emit(event, at_ms, out);
            }
        }
    }

    /// Checks and executes a fill against the house. `resting` is the order
    /// being filled, whose reservation is available to it.
    #[allow(clippy::too_many_arguments)]
    fn fill_now(
        &mut self,
        player: PlayerId,
        asset: AssetId,
        side: Side,
        qty: u64,
        resting: Option<&RestingOrder>,
        at_ms: i64,
        out: &mut Vec<Stamped>,
    ) -> Result<Placed, Rejection> {
        let ticker = self.ticker(asset)?;
        let book = self.books.get(asset.index()).ok_or(Rejection::UnknownTicker { ticker })?;
        let account = self.accounts.get(&player).ok_or(Rejection::NoAccount)?;
        let estimate = book.estimate(&self.rules, side, qty).ok_or(Rejection::AmountTooLarge)?;
        if estimate.impact_log > self.rules.order_impact_max {
            return Err(Rejection::ExceedsLiquidity { qty_max: self.liquidity_qty_max(book) });
        }
        let value = estimate.price.checked_mul(Decimal::from(qty)).ok_or(Rejection::AmountTooLarge)?;
        if value > MONEY_MAX {
            return Err(Rejection::AmountTooLarge);
        }
        // Closing a whole position is always allowed, however small it is.
        let closes_position = side == Side::Sell && qty == account.held(asset);
        if value < self.rules.order_value_min && !closes_position {
            return Err(Rejection::OrderTooSmall { value_min: self.rules.order_value_min });
        }
        let fee = self.fee_for(account, book, qty, value);
        match side {
            Side::Buy => {
                let needed = value + fee;
                let available = account.free_cash() + resting.map_or(Decimal::ZERO, |o| o.reserved_cash);
                if needed > available {
                    return Err(Rejection::InsufficientCash { needed, available: available.max(Decimal::ZERO) });
                }
                let held = account.held(asset);
                let qty_max = self.position_qty_max(account);
                if held.saturating_add(qty) > qty_max {
                    return Err(Rejection::PositionLimit { ticker, qty_max, held });
                }
                self.check_concentration(account, asset, value)?;
            }
            Side::Sell => {
                let available = account.free_qty(asset) + resting.map_or(0, |o| o.qty);
                if qty > available {
                    return Err(Rejection::InsufficientShares { ticker, needed: qty, available });
                }
            }
        }
        let trade = Trade {
            id: TradeId(self.next_trade),
            order: resting.map(|o| o.id),
            player,
            asset,
            side,
            qty,
            price: estimate.price,
            fee,
        };
        self.emit(Event::Traded(trade), at_ms, out);
        let account = self.accounts.get(&player);
        let cash_after = account.map_or(Decimal::ZERO, |a| a.cash);
        let held_after = account.map_or(0, |a| a.held(asset));
        Ok(Placed::Filled(Fill { trade, cash_after, held_after }))
    }

    fn check_can_rest(&self, account: &Account, request: &OrderRequest, price: Decimal) -> Result<(), Rejection> {
        let open_max = self.rules.open_orders_max.min(self.unlocks_of(account).open_orders_max);
        if account.open_orders >= open_max {
            return Err(Rejection::TooManyOpenOrders { open_max });
        }
        let qty = request.qty.get();
        let value = price.checked_mul(Decimal::from(qty)).ok_or(Rejection::AmountTooLarge)?;
        if value > MONEY_MAX {
            return Err(Rejection::AmountTooLarge);
        }
        if value < self.rules.order_value_min {
            return Err(Rejection::OrderTooSmall { value_min: self.rules.order_value_min });
        }
        let ticker = self.ticker(request.asset)?;
        match request.side {
            Side::Buy => {
                let needed = self.buy_reservation(account, request.asset, price, qty)?;
                if needed > account.free_cash() {
                    return Err(Rejection::InsufficientCash {
                        needed,
                        available: account.free_cash().max(Decimal::ZERO),
                    });
                }
                let held = account.held(request.asset);
                let qty_max = self.position_qty_max(account);
                if held.saturating_add(qty) > qty_max {
                    return Err(Rejection::PositionLimit { ticker, qty_max, held });
                }
            }
            Side::Sell => {
                let available = account.free_qty(request.asset);
                if qty > available {
                    return Err(Rejection::InsufficientShares { ticker, needed: qty, available });
                }
            }
        }
        Ok(())
    }

    fn rest(
        &mut self,
        request: &OrderRequest,
        trigger: Trigger,
        reserved_cash: Decimal,
        at_ms: i64,
        out: &mut Vec<Stamped>,
    ) -> Result<Placed, Rejection> {
        let order = RestingOrder {
            id: OrderId(self.next_order),
            player: request.player,
            asset: request.asset,
            side: request.side,
            qty: request.qty.get(),
            trigger,
            reserved_cash,
            placed_at_ms: at_ms,
        };
        self.emit(Event::OrderPlaced(order), at_ms, out);
        Ok(Placed::Resting(order))
    }

    /// Cash a resting buy sets aside: its value at the limit plus that fee.
    fn buy_reservation(
        &self,
        account: &Account,
        asset: AssetId,
        limit: Decimal,
        qty: u64,
    ) -> Result<Decimal, Rejection> {
        let value = limit.checked_mul(Decimal::from(qty)).ok_or(Rejection::AmountTooLarge)?;
        let book = self.books.get(asset.index()).ok_or(Rejection::AmountTooLarge)?;
        Ok(value + self.fee_for(account, book, qty, value))
    }

    /// Refuses order types and categories the player's level has not unlocked.
    fn check_unlocked(&self, account: &Account, request: &OrderRequest) -> Result<(), Rejection> {
        if !self.game.gated {
            return Ok(());
        }
        let unlocks = self.unlocks_of(account);
        let order_type = OrderType::from(&request.kind);
        if !unlocks.allows(order_type) {
            let level = self
                .game
                .progression
                .unlocks
                .iter()
                .filter(|u| u.order_types.contains(&order_type))
                .map(|u| u.level)
                .min();
            return Err(Rejection::Locked {
                what: format!("{order_type:?} orders").to_lowercase(),
                level: level.unwrap_or(u32::MAX),
            });
        }
        let category = self.universe.asset_categories().get(request.asset.index()).copied().unwrap_or(0);
        if !unlocks.allows_category(category) {
            let needed = u32::try_from(category + 1).unwrap_or(u32::MAX);
            let level = self
                .game
                .progression
                .unlocks
                .iter()
                .filter(|u| u.categories_count.is_some_and(|c| c >= needed))
                .map(|u| u.level)
                .min();
            let name = self.universe.categories().get(category).map_or_else(String::new, |c| c.name.clone());
            return Err(Rejection::Locked { what: format!("the {name} category"), level: level.unwrap_or(u32::MAX) });
        }
        Ok(())
    }

    /// The largest position the player's level allows in one asset.
    fn position_qty_max(&self, account: &Account) -> u64 {
        if !self.game.gated {
            return self.rules.position_qty_max;
        }
        self.unlocks_of(account).position_qty_max(self.rules.position_qty_max)
    }

    /// Refuses a buy that would put too much of a wealthy player's net worth
    /// (marked at mid) into one asset.
    fn check_concentration(&self, account: &Account, asset: AssetId, buy_value: Decimal) -> Result<(), Rejection> {
        let abuse = &self.game.abuse;
        if !self.game.gated || abuse.concentration_max_pct >= 100 {
            return Ok(());
        }
        let mut net_worth = account.cash;
        let mut held_value = Decimal::ZERO;
        for position in &account.positions {
            let Some(book) = self.books.get(position.asset.index()) else { continue };
            let mid = super::money::price_from_f64(book.mid(&self.rules), Lean::Down).unwrap_or_default();
            let value = mid * Decimal::from(position.qty);
            net_worth += value;
            if position.asset == asset {
                held_value = value;
            }
        }
        abuse.check_concentration(held_value, buy_value, net_worth).map_err(|rejection| match rejection {
            super::abuse::AbuseRejection::Concentration { pct_max, value_max } => {
                Rejection::Concentration { pct_max, value_max }
            }
        })
    }

    /// Largest order the liquidity limit lets through from a flat book.
    fn liquidity_qty_max(&self, book: &Book) -> u64 {
        let k = self.rules.impact_coef * book.sigma_daily / book.liquidity_shares.sqrt();
        if k <= 0.0 {
            return self.rules.order_qty_max;
        }
        let qty = (self.rules.order_impact_max / k).powi(2).floor();
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let qty = qty.clamp(1.0, 1e12) as u64;
        qty.min(self.rules.order_qty_max)
    }

    fn ticker(&self, asset: AssetId) -> Result<super::ids::Ticker, Rejection> {
        self.universe.ticker(asset).ok_or_else(|| Rejection::BadTicker { given: format!("#{}", asset.0) })
    }

    fn find_resting(&self, order: OrderId) -> Option<RestingOrder> {
        self.books.iter().flat_map(|b| b.resting.iter()).find(|o| o.id == order).copied()
    }

    fn emit(&mut self, event: Event, at_ms: i64, out: &mut Vec<Stamped>) {
        let stamped = Stamped { seq: self.next_seq, at_ms, event };
        self.apply(&stamped);
        out.push(stamped);
    }

    // ---- evolution ------------------------------------------------------

    /// Applies one event: the only place state changes. Replaying a log
    /// through here reproduces the state that produced it.
    pub fn apply(&mut self, stamped: &Stamped) {
        self.next_seq = self.next_seq.max(stamped.seq + 1);
        match &stamped.event {
            Event::AccountOpened { player, cash, season } => {
                self.accounts.insert(*player, Account::opened(*cash, *season));
            }
            Event::CashCredited { player, amount, .. } => {
                if let Some(account) = self.accounts.get_mut(player) {
                    account.cash += *amount;
                }
            }
            Event::Traded(trade) => self.apply_trade(trade),
            Event::OrderPlaced(order) => {
                self.next_order = self.next_order.max(order.id.0 + 1);
                if let Some(account) = self.accounts.get_mut(&order.player) {
                    account.reserve_for(order);
                }
                if let Some(book) = self.books.get_mut(order.asset.index()) {
                    book.resting.push(*order);
                }
            }
            Event::OrderCancelled { order, .. } => {
                self.remove_resting(*order);
            }
            Event::Ticked(tick) => {
                let rules = &self.rules;
                if let Some(book) = self.books.get_mut(tick.asset.index()) {
                    book.advance(rules, tick.minute, tick.model_mid, tick.sigma_daily, tick.halted);
                }
            }
            Event::TradingHalted { asset, halted } => {
                if let Some(book) = self.books.get_mut(asset.index()) {
                    book.admin_halted = *halted;
                }
            }
            Event::Game { player, change } => {
                if let Some(account) = self.accounts.get_mut(player) {
                    account.apply_game(change);
                }
            }
            Event::AccountReset { player, cash, reason } => {
                if let Some(account) = self.accounts.get_mut(player) {
                    account.reset(*cash, *reason);
                }
            }
            Event::AlertSet(alert) => {
                self.next_alert = self.next_alert.max(alert.id.0 + 1);
                if let Err(index) = self.alerts.binary_search_by_key(&alert.id, |a| a.id) {
                    self.alerts.insert(index, *alert);
                }
            }
            Event::AlertFired { alert: Alert { id, .. }, .. } | Event::AlertDeleted { alert: id, .. } => {
                if let Ok(index) = self.alerts.binary_search_by_key(id, |a| a.id) {
                    self.alerts.remove(index);
                }
            }
            Event::AdminActed { .. } => {}
        }
    }

    fn apply_trade(&mut self, trade: &Trade) {
        self.next_trade = self.next_trade.max(trade.id.0 + 1);
        if let Some(order) = trade.order {
            self.remove_resting(order);
        }
        if let Some(account) = self.accounts.get_mut(&trade.player) {
            account.apply_trade(trade);
        }
        if let Some(book) = self.books.get_mut(trade.asset.index()) {
            book.add_flow(trade.side, trade.qty);
        }
    }

    /// Takes an order off its book and releases what it reserved.
    fn remove_resting(&mut self, order: OrderId) {
        let Some(found) = self.books.iter_mut().find_map(|book| {
            let index = book.resting.iter().position(|o| o.id == order)?;
            Some(book.resting.remove(index))
        }) else {
            return;
        };
        if let Some(account) = self.accounts.get_mut(&found.player) {
            account.release_for(&found);
        }
    }
}
