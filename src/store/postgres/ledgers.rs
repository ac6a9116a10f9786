//! The ledger side of the PostgreSQL store: ledgers and fills committed to
//! the log but not checkpointed yet (kept in memory), the background
//! checkpoint that writes them — each player's ledger row and a history
//! chunk of its fills since the last one, then the journal watermark — the
//! recovery that rebuilds that memory from the journal after a crash, and
//! the rebuild of any player's ledger from its checkpoint and what followed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use actors::domain::account::{Account, Position};
use actors::domain::event::{Event, Stamped};
use actors::domain::ids::{AssetId, PlayerId};
use actors::ports::{StoreError, TradeRecord};
use deadpool_postgres::{Object, Pool, Transaction};
use rust_decimal::Decimal;
use rustc_hash::FxHashMap;
use tokio_postgres::types::{Json, ToSql};

use super::lease::FenceSlot;
use super::{OPERATION_TIMEOUT_MS, pg_error, resting_order, run_on, sql};
use crate::store::fills;
use crate::store::plan::{self, Plan, StoredProfile, from_i64, to_i64};

/// Time between two background checkpoints.
const CHECKPOINT_INTERVAL_MS: u64 = 10_000;
/// Fills waiting in memory that call for a checkpoint before the interval is
/// up (~200 MB; every fill is written once per checkpoint whatever its
/// rhythm, but each player's ledger row and chunk once per checkpoint).
const CHECKPOINT_EARLY_FILLS: usize = 2_000_000;
/// Players waiting in memory that call for a checkpoint before the interval is up.
const CHECKPOINT_EARLY_PLAYERS: usize = 50_000;
/// Players per checkpoint transaction (short transactions, small statements).
const CHECKPOINT_CHUNK: usize = 1_000;
/// Least pause between two checkpoint transactions (each pause is at least
/// as long as the transaction before it): the checkpoint yields to the
/// group commits rather than taking the machine in one burst.
const CHECKPOINT_PAUSE_MS: u64 = 10;
/// Players rebuilt per round trip.
const REBUILD_CHUNK: usize = 5_000;

/// What of one player is committed but not checkpointed.
#[derive(Debug, Clone, Default)]
pub struct Pending {
    /// The ledger as of `seq` (`None`: only fills are known, the ledger is
    /// rebuilt from the store).
    pub account: Option<Account>,
    /// Seq of the last event the ledger reflects.
    pub seq: u64,
    /// The player's fills since the last checkpoint, in log order.
    pub fills: Vec<TradeRecord>,
}

/// Committed, not yet checkpointed state.
#[derive(Default)]
struct Memory {
    dirty: FxHashMap<PlayerId, Pending>,
    /// What the running checkpoint writes, sorted by player (readable meanwhile).
    writing: Arc<Vec<(PlayerId, Pending)>>,
    dirty_fills: usize,
    /// Every event up to this seq is in memory or checkpointed.
    recorded_through: u64,
    /// The watermark stored by the last checkpoint.
    stored_watermark: u64,
}

/// The ledger projection: memory, checkpoints, recovery.
pub struct Ledgers {
    pool: Pool,
    /// The lease a checkpoint must hold (none: a lone process).
    fence: Arc<FenceSlot>,
    memory: Mutex<Memory>,
    /// One checkpoint (or audit) at a time, so an older ledger never lands
    /// after a newer one.
    pub turn: tokio::sync::Mutex<()>,
    /// Held while the memory is rebuilt from the journal.
    recovery: tokio::sync::Mutex<()>,
    recovered: AtomicBool,
    /// Wakes the background checkpoint early.
    wake: Arc<tokio::sync::Notify>,
    started: AtomicBool,
}

impl Ledgers {
    pub fn new(pool: Pool, fence: Arc<FenceSlot>) -> Arc<Self> {
        Arc::new(Self {
            pool,
            fence,
            memory: Mutex::new(Memory::default()),
            turn: tokio::sync::Mutex::new(()),
            recovery: tokio::sync::Mutex::new(()),
            recovered: AtomicBool::new(false),
            wake: Arc::new(tokio::sync::Notify::new()),
            started: AtomicBool::new(false),
        })
    }

    fn memory(&self) -> MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Brings the memory back from the journal once per store (after a
    /// crash it holds what the last checkpoint missed). Every read of
    /// ledgers or fills and every checkpoint waits for it.
    pub async fn recover(&self) -> Result<(), StoreError> {
        if self.recovered.load(Ordering::Acquire) {
            return Ok(());
        }
        let _recovery = self.recovery.lock().await;
        if self.recovered.load(Ordering::Acquire) {
            return Ok(());
        }
        let (pending, head, watermark) =
            run_on(&self.pool, OPERATION_TIMEOUT_MS, |client| Box::pin(read_unchecked(client))).await?;
        {
            let mut memory = self.memory();
            for (player, entry) in pending {
                memory.dirty_fills += entry.fills.len();
                memory.dirty.insert(player, entry);
            }
            memory.recorded_through = memory.recorded_through.max(head);
            memory.stored_watermark = watermark;
        }
        self.recovered.store(true, Ordering::Release);
        Ok(())
    }

    /// Records what a committed batch changed: its ledgers as of `seq` (an
    /// entry never replaces a newer one) and its fills.
    pub fn record(&self, plan: &Plan<'_>, seq: u64) {
        let wake = {
            let mut memory = self.memory();
            for (player, account) in &plan.accounts {
                let entry = memory.dirty.entry(*player).or_default();
                if entry.seq <= seq || entry.account.is_none() {
                    entry.account = Some((*account).clone());
                    entry.seq = entry.seq.max(seq);
                }
            }
            for row in &plan.trades {
                memory.dirty.entry(row.trade.player).or_default().fills.push(row.record());
            }
            memory.dirty_fills += plan.trades.len();
            memory.recorded_through = memory.recorded_through.max(seq);
            memory.dirty_fills >= CHECKPOINT_EARLY_FILLS || memory.dirty.len() >= CHECKPOINT_EARLY_PLAYERS
        };
        if wake {
            self.wake.notify_one();
        }
    }

    /// A standby's record of what the holder committed: every player an
    /// event after what is recorded touches is marked (its ledger is then
    /// rebuilt from the store with these fills when asked for), its fills
    /// kept; what the holder's checkpoint has stored (`watermark`) is let go.
    /// So a takeover finds the memory current and reads only a short tail.
    pub fn follow(&self, events: &[Stamped], watermark: u64) {
        let mut memory = self.memory();
        let recorded = memory.recorded_through;
        for stamped in events.iter().filter(|stamped| stamped.seq > recorded) {
            let Some(player) = stamped.event.player() else { continue };
            let entry = memory.dirty.entry(player).or_default();
            entry.account = None;
            entry.seq = entry.seq.max(stamped.seq);
            if let Event::Traded(trade) = &stamped.event {
                entry.fills.push(TradeRecord { seq: stamped.seq, at_ms: stamped.at_ms, trade: *trade });
                memory.dirty_fills += 1;
            }
        }
        if let Some(last) = events.last() {
            memory.recorded_through = memory.recorded_through.max(last.seq);
        }
        if watermark > memory.stored_watermark {
            memory.stored_watermark = watermark;
            let mut fills_left = 0;
            memory.dirty.retain(|_, pending| {
                pending.fills.retain(|fill| fill.seq > watermark);
                fills_left += pending.fills.len();
                pending.seq > watermark || !pending.fills.is_empty()
            });
            memory.dirty_fills = fills_left;
        }
    }

    /// The stored watermark (every fill up to it is in `player_fills`).
    pub async fn stored_watermark(&self) -> Result<u64, StoreError> {
        run_on(&self.pool, OPERATION_TIMEOUT_MS, |client| {
            Box::pin(async move {
                let txn = client.transaction().await.map_err(pg_error)?;
                let found = watermark(&txn).await?;
                txn.commit().await.map_err(pg_error)?;
                Ok(found)
            })
        })
        .await
    }

    /// The newest ledger of `player` held in memory, if any.
    pub fn account(&self, player: PlayerId) -> Option<Account> {
        let memory = self.memory();
        if let Some(pending) = memory.dirty.get(&player) {
            return pending.account.clone();
        }
        let writing = &memory.writing;
        writing
            .binary_search_by_key(&player, |(p, _)| *p)
            .ok()
            .and_then(|index| writing.get(index))
            .and_then(|(_, pending)| pending.account.clone())
    }

    /// Fills of `player` held in memory (not necessarily stored in
    /// `player_fills` yet), unordered.
    pub fn fills(&self, player: PlayerId) -> Vec<TradeRecord> {
        let memory = self.memory();
        let mut found: Vec<TradeRecord> = memory.dirty.get(&player).map(|p| p.fills.clone()).unwrap_or_default();
        if let Ok(index) = memory.writing.binary_search_by_key(&player, |(p, _)| *p)
            && let Some((_, pending)) = memory.writing.get(index)
        {
            found.extend_from_slice(&pending.fills);
        }
        found
    }

    /// Writes everything waiting in memory (in a standby: nothing, it waits
    /// for the lease; the holder checkpoints).
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        if matches!(self.fence.get(), super::lease::Writes::Standby) {
            return Ok(());
        }
        self.recover().await?;
        let _turn = self.turn.lock().await;
        self.flush().await
    }

    /// Writes everything waiting in memory (the caller holds the turn), in
    /// transactions of [`CHECKPOINT_CHUNK`] players, the last one storing
    /// the watermark. On failure what was not written goes back.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (writing, watermark) = {
            let mut memory = self.memory();
            let mut taken: Vec<(PlayerId, Pending)> = std::mem::take(&mut memory.dirty).into_iter().collect();
            taken.sort_unstable_by_key(|(player, _)| *player);
            memory.dirty_fills = 0;
            memory.writing = Arc::new(taken);
            (Arc::clone(&memory.writing), memory.recorded_through)
        };
        if writing.is_empty() && watermark == self.memory().stored_watermark {
            return Ok(());
        }
        let chunks = writing.len().div_ceil(CHECKPOINT_CHUNK).max(1);
        let mut written = 0;
        let mut failure = None;
        let mut pause = Duration::ZERO;
        for chunk in 0..chunks {
            if chunk > 0 {
                tokio::time::sleep(pause).await;
            }
            let range = chunk * CHECKPOINT_CHUNK..((chunk + 1) * CHECKPOINT_CHUNK).min(writing.len());
            let last = chunk + 1 == chunks;
            let started = std::time::Instant::now();
            let result = self.write_chunk(Arc::clone(&writing), range, last.then_some(watermark)).await;
            // At most half the time writing: the checkpoint takes longer but
            // leaves the group commits room all along.
            pause = started.elapsed().max(Duration::from_millis(CHECKPOINT_PAUSE_MS));
            match result {
                Ok(()) => written = ((chunk + 1) * CHECKPOINT_CHUNK).min(writing.len()),
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        let mut memory = self.memory();
        memory.writing = Arc::new(Vec::new());
        let Some(error) = failure else {
            memory.stored_watermark = memory.stored_watermark.max(watermark);
            return Ok(());
        };
        // What was not written goes back, older than anything recorded since.
        for (player, pending) in writing.iter().skip(written) {
            memory.dirty_fills += pending.fills.len();
            match memory.dirty.get_mut(player) {
                Some(newer) => {
                    let mut fills = pending.fills.clone();
                    fills.append(&mut newer.fills);
                    newer.fills = fills;
                    if newer.account.is_none() {
                        newer.account.clone_from(&pending.account);
                        newer.seq = newer.seq.max(pending.seq);
                    }
                }
                None => {
                    memory.dirty.insert(*player, pending.clone());
                }
            }
        }
        Err(error)
    }

    /// Writes `entries[range]` in one transaction (with the watermark, if
    /// given). The rows are encoded off the async threads: a checkpoint
    /// carries megabytes of history, which must not stall the market.
    async fn write_chunk(
        &self,
        entries: Arc<Vec<(PlayerId, Pending)>>,
        range: std::ops::Range<usize>,
        watermark: Option<u64>,
    ) -> Result<(), StoreError> {
        let complete = entries.get(range.clone()).unwrap_or_default().iter().all(|(_, p)| p.account.is_some());
        let encoded = if complete {
            let part = Arc::clone(&entries);
            let range = range.clone();
            let rows = tokio::task::spawn_blocking(move || CheckpointRows::new(part.get(range).unwrap_or_default()))
                .await
                .map_err(|error| StoreError::Unavailable(format!("checkpoint encoding stopped: {error}")))??;
            Some(rows)
        } else {
            None
        };
        let writes = self.fence.get();
        run_on(&self.pool, OPERATION_TIMEOUT_MS, move |client| {
            Box::pin(async move {
                let txn = client.transaction().await.map_err(pg_error)?;
                let rows = match encoded {
                    Some(rows) => rows,
                    None => {
                        let part = entries.get(range).unwrap_or_default();
                        CheckpointRows::new(&complete_ledgers(&txn, part).await?)?
                    }
                };
                rows.write(&txn).await?;
                if let Some(watermark) = watermark {
                    let statement = txn.prepare_cached(sql::WATERMARK_SAVE).await.map_err(pg_error)?;
                    txn.execute(&statement, &[&to_i64(watermark, "watermark")?]).await.map_err(pg_error)?;
                }
                // A superseded engine's checkpoint must not land over the new one's.
                if let Some(fence) = writes.fence()? {
                    fence.check_in(&txn).await?;
                }
                txn.commit().await.map_err(pg_error)
            })
        })
        .await
    }
}

/// Starts the background checkpoint on the current runtime, once. It holds
/// the ledgers only while it writes, and stops when the store is gone.
pub fn start_checkpoints(ledgers: &Arc<Ledgers>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    if ledgers.started.swap(true, Ordering::AcqRel) {
        return;
    }
    let weak: Weak<Ledgers> = Arc::downgrade(ledgers);
    let wake = Arc::clone(&ledgers.wake);
    runtime.spawn(async move {
        loop {
            // Woken early or not, a checkpoint follows.
            let _ = tokio::time::timeout(Duration::from_millis(CHECKPOINT_INTERVAL_MS), wake.notified()).await;
            let Some(ledgers) = weak.upgrade() else { return };
            if let Err(error) = ledgers.checkpoint().await {
                tracing::warn!(%error, "ledger checkpoint failed; retried");
            }
        }
    });
}

/// Entries to checkpoint, each with its ledger: those known only by their
/// fills are rebuilt from the store (their fills included).
async fn complete_ledgers(
    txn: &Transaction<'_>,
    entries: &[(PlayerId, Pending)],
) -> Result<Vec<(PlayerId, Pending)>, StoreError> {
    let unchunked: FxHashMap<PlayerId, Vec<TradeRecord>> = entries
        .iter()
        .filter(|(_, p)| p.account.is_none())
        .map(|(player, pending)| (*player, pending.fills.clone()))
        .collect();
    let mut rebuilt: FxHashMap<PlayerId, Pending> = FxHashMap::default();
    if !unchunked.is_empty() {
        let missing: Vec<i64> = unchunked.keys().map(|player| player.0).collect();
        rebuilt.extend(rebuild(txn, &missing, &unchunked).await?.into_iter().map(Rebuilt::into_pending));
    }
    Ok(entries
        .iter()
        .filter_map(|(player, pending)| match &pending.account {
            Some(_) => Some((*player, pending.clone())),
            None => rebuilt.remove(player).map(|found| (*player, found)),
        })
        .collect())
}

/// Reads, in one snapshot, what the last checkpoint missed: the players with
/// events after the watermark, rebuilt. Returns them, the log head and the
/// watermark.
async fn read_unchecked(client: &mut Object) -> Result<(Vec<(PlayerId, Pending)>, u64, u64), StoreError> {
    let txn = super::read_snapshot(client).await?;
    let (watermark, head) = futures_util::try_join!(watermark(&txn), super::log_head(&txn))?;
    let after = watermark.saturating_add(1);
    let tail = super::fills_between(&txn, after, u64::MAX).await?;
    let mut unchunked: FxHashMap<PlayerId, Vec<TradeRecord>> = FxHashMap::default();
    for fill in tail {
        unchunked.entry(fill.trade.player).or_default().push(fill);
    }
    let statement = txn.prepare_cached(sql::LEDGER_PLAYERS_AFTER).await.map_err(pg_error)?;
    let mut players: Vec<i64> = txn
        .query(&statement, &[&to_i64(watermark, "watermark")?])
        .await
        .map_err(pg_error)?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()
        .map_err(pg_error)?;
    players.extend(unchunked.keys().map(|player| player.0));
    players.sort_unstable();
    players.dedup();
    let mut pending = Vec::with_capacity(players.len());
    for chunk in players.chunks(REBUILD_CHUNK) {
        pending.extend(rebuild(&txn, chunk, &unchunked).await?.into_iter().map(Rebuilt::into_pending));
    }
    txn.commit().await.map_err(pg_error)?;
    if !pending.is_empty() {
        tracing::info!(players = pending.len(), watermark, head, "ledgers recovered from the journal");
    }
    Ok((pending, head, watermark))
}

async fn watermark(txn: &Transaction<'_>) -> Result<u64, StoreError> {
    let statement = txn.prepare_cached(sql::WATERMARK_LOAD).await.map_err(pg_error)?;
    let seq: i64 = txn.query_one(&statement, &[]).await.map_err(pg_error)?.try_get(0).map_err(pg_error)?;
    from_i64(seq, "watermark")
}

/// One player's current ledger, rebuilt.
pub struct Rebuilt {
    pub player: PlayerId,
    pub account: Account,
    /// Seq of the last event it reflects.
    pub seq: u64,
    /// The fills given as not yet in `player_fills`, after the stored
    /// checkpoint (they belong in the player's next history chunk).
    pub unchunked: Vec<TradeRecord>,
}

impl Rebuilt {
    /// The player's entry for the next checkpoint.
    fn into_pending(self) -> (PlayerId, Pending) {
        (self.player, Pending { account: Some(self.account), seq: self.seq, fills: self.unchunked })
    }
}

/// A player's ledger while it is rebuilt.
#[derive(Default)]
struct Rebuilding {
    account: Option<Account>,
    /// Seq of the last event applied.
    seq: u64,
    /// Seq of the stored checkpoint (0 without one).
    checkpoint: u64,
    unchunked: Vec<TradeRecord>,
}

/// The current ledgers of `players` (those that exist): each from its
/// checkpoint (reservations cleared), then the player's openings, credits,
/// fills, game changes and resets after it in log order — fills from the
/// history chunks and from `unchunked` (fills not in `player_fills` yet) —
/// then a reservation for each resting order.
pub async fn rebuild(
    txn: &Transaction<'_>,
    players: &[i64],
    unchunked: &FxHashMap<PlayerId, Vec<TradeRecord>>,
) -> Result<Vec<Rebuilt>, StoreError> {
    let (ledgers, events, chunks, orders) = futures_util::try_join!(
        txn.prepare_cached(sql::LEDGERS_OF),
        txn.prepare_cached(sql::LEDGER_EVENTS_OF),
        txn.prepare_cached(sql::PLAYER_FILLS_OF),
        txn.prepare_cached(sql::OPEN_ORDERS_OF),
    )
    .map_err(pg_error)?;
    let ids = players.to_vec();
    let params: [&(dyn ToSql + Sync); 1] = [&ids];
    let (ledger_rows, event_rows, chunk_rows, order_rows) = futures_util::try_join!(
        txn.query(&ledgers, &params),
        txn.query(&events, &params),
        txn.query(&chunks, &params),
        txn.query(&orders, &params)
    )
    .map_err(pg_error)?;

    let mut states: BTreeMap<i64, Rebuilding> = BTreeMap::new();
    for row in &ledger_rows {
        let player: i64 = row.try_get(0).map_err(pg_error)?;
        let mut account = Account {
            cash: row.try_get(1).map_err(pg_error)?,
            reserved_cash: Decimal::ZERO,
            positions: parse_positions(row.try_get(5).map_err(pg_error)?)?,
            realized_pnl: row.try_get(2).map_err(pg_error)?,
            trades: from_i64(row.try_get(3).map_err(pg_error)?, "trade count")?,
            open_orders: 0,
            ..Account::default()
        };
        row.try_get::<_, Json<StoredProfile>>(6).map_err(pg_error)?.0.restore(&mut account);
        let seq = from_i64(row.try_get(4).map_err(pg_error)?, "ledger seq")?;
        states.insert(player, Rebuilding { account: Some(account), seq, checkpoint: seq, unchunked: Vec::new() });
    }
    // The ledger-moving events after each checkpoint, in log order.
    let checkpoint_of =
        |states: &BTreeMap<i64, Rebuilding>, player: i64| states.get(&player).map_or(0, |state| state.checkpoint);
    let mut steps: Vec<(i64, u64, Event)> = Vec::with_capacity(event_rows.len());
    for row in &event_rows {
        let player: i64 = row.try_get(0).map_err(pg_error)?;
        let stamped = row.try_get::<_, Json<Stamped>>(1).map_err(pg_error)?.0;
        steps.push((player, stamped.seq, stamped.event));
    }
    for row in &chunk_rows {
        let player: i64 = row.try_get(0).map_err(pg_error)?;
        let after = checkpoint_of(&states, player);
        for fill in fills::decode(row.try_get::<_, &str>(1).map_err(pg_error)?.as_bytes())? {
            if fill.seq > after && fill.trade.player.0 == player {
                steps.push((player, fill.seq, Event::Traded(fill.trade)));
            }
        }
    }
    for player in players {
        let after = checkpoint_of(&states, *player);
        for fill in unchunked.get(&PlayerId(*player)).into_iter().flatten() {
            if fill.seq > after {
                steps.push((*player, fill.seq, Event::Traded(fill.trade)));
                states.entry(*player).or_default().unchunked.push(*fill);
            }
        }
    }
    steps.sort_by_key(|(player, seq, _)| (*player, *seq));
    steps.dedup_by_key(|(player, seq, _)| (*player, *seq));
    for (player, step_seq, event) in &steps {
        let Rebuilding { account, seq, .. } = states.entry(*player).or_default();
        *seq = (*seq).max(*step_seq);
        // As `PlayerLedger::apply` (orders are reserved for below).
        match (event, account.as_mut()) {
            (Event::AccountOpened { cash, season, .. }, _) => *account = Some(Account::opened(*cash, *season)),
            (Event::CashCredited { amount, .. }, Some(account)) => account.cash += *amount,
            (Event::Traded(trade), Some(account)) => account.apply_trade(trade),
            (Event::Game { change, .. }, Some(account)) => account.apply_game(change),
            (Event::AccountReset { cash, reason, .. }, Some(account)) => account.reset(*cash, *reason),
            _ => {}
        }
    }
    for row in &order_rows {
        let order = resting_order(row)?;
        if let Some(Rebuilding { account: Some(account), .. }) = states.get_mut(&order.player.0) {
            account.reserve_for(&order);
        }
    }
    Ok(states
        .into_iter()
        .filter_map(|(player, Rebuilding { account, seq, mut unchunked, .. })| {
            account.map(|mut account| {
                account.positions.retain(|p| p.qty > 0 || p.reserved_qty > 0);
                unchunked.sort_by_key(|fill| fill.seq);
                Rebuilt { player: PlayerId(player), account, seq, unchunked }
            })
        })
        .collect())
}

/// A stored position: `[asset, qty, "cost_basis"]`.
type StoredPosition = (u16, i64, Decimal);

/// Positions as stored in `players.positions`.
pub fn parse_positions(text: &str) -> Result<Vec<Position>, StoreError> {
    parse_signed_positions(text)?
        .into_iter()
        .map(|(asset, qty, cost_basis)| {
            Ok(Position { asset: AssetId(asset), qty: from_i64(qty, "position qty")?, reserved_qty: 0, cost_basis })
        })
        .collect()
}

/// Stored positions as signed quantities (the audit looks for negatives).
pub fn parse_signed_positions(text: &str) -> Result<Vec<StoredPosition>, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Invalid(format!("stored positions unreadable: {e}")))
}

fn positions_json(account: &Account) -> Result<String, StoreError> {
    let stored = account
        .positions
        .iter()
        .filter(|p| p.qty > 0)
        .map(|p| Ok((p.asset.0, to_i64(p.qty, "position qty")?, p.cost_basis)))
        .collect::<Result<Vec<StoredPosition>, StoreError>>()?;
    serde_json::to_string(&stored).map_err(|e| StoreError::Invalid(format!("positions: {e}")))
}

/// Ledger rows and history chunks of a checkpoint, as statement columns.
#[derive(Default)]
pub struct CheckpointRows {
    players: Vec<i64>,
    cash: Vec<Decimal>,
    reserved_cash: Vec<Decimal>,
    realized_pnl: Vec<Decimal>,
    trades: Vec<i64>,
    open_orders: Vec<i32>,
    ledger_seqs: Vec<i64>,
    profiles: Vec<Json<StoredProfile>>,
    positions: Vec<String>,
    chunk_players: Vec<i64>,
    chunk_seqs: Vec<i64>,
    chunk_fills: Vec<String>,
}

impl CheckpointRows {
    /// Encodes ledgers (players sorted, each once; entries without a ledger
    /// are left out) and the players' new history chunks.
    pub fn new(entries: &[(PlayerId, Pending)]) -> Result<Self, StoreError> {
        let mut rows = Self::default();
        for (player, pending) in entries {
            let Some(account) = &pending.account else { continue };
            rows.players.push(player.0);
            rows.cash.push(account.cash);
            rows.reserved_cash.push(account.reserved_cash);
            rows.realized_pnl.push(account.realized_pnl);
            rows.trades.push(to_i64(account.trades, "trade count")?);
            rows.open_orders.push(plan::to_i32(account.open_orders, "open orders")?);
            rows.ledger_seqs.push(to_i64(pending.seq, "ledger seq")?);
            rows.profiles.push(Json(StoredProfile::of(account)));
            rows.positions.push(positions_json(account)?);
            if let Some(last) = pending.fills.last() {
                rows.chunk_players.push(player.0);
                rows.chunk_seqs.push(to_i64(last.seq, "seq")?);
                rows.chunk_fills.push(String::from_utf8(fills::encode(&pending.fills)).unwrap_or_default());
            }
        }
        Ok(rows)
    }

    /// Writes the rows.
    pub async fn write(&self, txn: &Transaction<'_>) -> Result<(), StoreError> {
        if self.players.is_empty() {
            return Ok(());
        }
        let (ledgers, chunks) = futures_util::try_join!(
            txn.prepare_cached(sql::PLAYERS_CHECKPOINT),
            txn.prepare_cached(sql::PLAYER_FILLS_INSERT)
        )
        .map_err(pg_error)?;
        let ledger_params: [&(dyn ToSql + Sync); 9] = [
            &self.players,
            &self.cash,
            &self.reserved_cash,
            &self.realized_pnl,
            &self.trades,
            &self.open_orders,
            &self.ledger_seqs,
            &self.profiles,
            &self.positions,
        ];
        let chunk_params: [&(dyn ToSql + Sync); 3] = [&self.chunk_players, &self.chunk_seqs, &self.chunk_fills];
        let chunked =
            async { if self.chunk_players.is_empty() { Ok(0) } else { txn.execute(&chunks, &chunk_params).await } };
        futures_util::try_join!(txn.execute(&ledgers, &ledger_params), chunked).map_err(pg_error)?;
        Ok(())
    }
}
