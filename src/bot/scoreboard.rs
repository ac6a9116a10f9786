//! `Scoreboard`: the players' standings on the boards, written behind.
//! After each action the bot records the player's standing here and moves
//! on; one writer task puts everything recorded so far on the coordinator's
//! boards in a handful of batched calls (on Redis: two round trips,
//! whatever the number of players), at most every `WRITE_INTERVAL_MS`, the
//! latest standing of a player winning (a player trading four times in
//! that time is written once). A read of a board first waits for what was
//! recorded before it — the writer goes at once then — so a player sees
//! their own trade on `/top`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use actors::domain::ids::PlayerId;
use actors::ports::coordinator::{BoardScore, Coordinator};
use tokio::sync::{Notify, watch};

use super::game::{board_key, day_open_key};
use crate::telegram::command::TopBoard;

/// Standings waiting to be written at most; past it new ones are dropped
/// (logged) until the writer catches up (the next action writes them again).
pub const STANDINGS_PENDING_MAX: usize = 200_000;
/// Shortest time between two writes while nobody waits to read a board.
pub const WRITE_INTERVAL_MS: u64 = 1_000;
/// Longest a board read waits for the writer (a coordinator that hangs must
/// not hang `/top`; the read then shows what the board has).
const SETTLE_WAIT_MAX_MS: u64 = 2_000;

/// One player's standing in one scope (global, or a group chat).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Standing {
    pub season: i64,
    /// Days since the Unix epoch (the gainers' board is per day).
    pub day: i64,
    pub net_worth: f64,
    pub return_pct: f64,
}

#[derive(Default)]
struct Pending {
    standings: HashMap<(PlayerId, Option<i64>), Standing>,
    names: HashMap<PlayerId, String>,
    /// Records made so far (the newest generation).
    recorded: u64,
    /// A writer task is running.
    writing: bool,
}

struct Shared {
    coordinator: Arc<dyn Coordinator>,
    pending: Mutex<Pending>,
    /// The generation the writer has put on the boards.
    written: watch::Sender<u64>,
    /// A reader waits: write now.
    hurry: Notify,
}

/// The write-behind scoreboard of one bot. Cheap to clone.
#[derive(Clone)]
pub struct Scoreboard {
    shared: Arc<Shared>,
}

impl Scoreboard {
    /// A scoreboard writing to `coordinator`'s boards.
    #[must_use]
    pub fn new(coordinator: Arc<dyn Coordinator>) -> Self {
        let (written, _) = watch::channel(0);
        Self { shared: Arc::new(Shared { coordinator, pending: Mutex::default(), written, hurry: Notify::new() }) }
    }

    /// Records `player`'s standing in each of `scopes` (`None`: the global
    /// boards) and their display name. Returns at once; must be called
    /// inside a tokio runtime (the writer runs as a task of it).
    pub fn record(&self, player: PlayerId, name: String, scopes: &[Option<i64>], standing: Standing) {
        let start_writer = {
            let mut pending = self.shared.pending.lock().unwrap_or_else(PoisonError::into_inner);
            if pending.standings.len() >= STANDINGS_PENDING_MAX {
                tracing::warn!(player_id = player.0, "board writes are behind; this standing is dropped");
                return;
            }
            for scope in scopes {
                pending.standings.insert((player, *scope), standing);
            }
            pending.names.insert(player, name);
            pending.recorded += 1;
            !std::mem::replace(&mut pending.writing, true)
        };
        if start_writer {
            tokio::spawn(write_all(Arc::clone(&self.shared)));
        }
    }

    /// Waits (boundedly) until everything recorded before this call is on
    /// the boards.
    pub async fn settled(&self) {
        let target = self.shared.pending.lock().unwrap_or_else(PoisonError::into_inner).recorded;
        let mut written = self.shared.written.subscribe();
        if *written.borrow() < target {
            self.shared.hurry.notify_one();
        }
        let wait = written.wait_for(|generation| *generation >= target);
        let _ = tokio::time::timeout(Duration::from_millis(SETTLE_WAIT_MAX_MS), wait).await;
    }
}

/// The writer: takes what was recorded and writes it, then again after a
/// pause (cut short by a reader), until nothing is left.
async fn write_all(shared: Arc<Shared>) {
    let mut first = true;
    loop {
        if !std::mem::take(&mut first) {
            let pause = tokio::time::sleep(Duration::from_millis(WRITE_INTERVAL_MS));
            tokio::select! {
                () = pause => {}
                () = shared.hurry.notified() => {}
            }
        }
        let (standings, names, generation) = {
            let mut pending = shared.pending.lock().unwrap_or_else(PoisonError::into_inner);
            if pending.standings.is_empty() && pending.names.is_empty() {
                pending.writing = false;
                return;
            }
            (std::mem::take(&mut pending.standings), std::mem::take(&mut pending.names), pending.recorded)
        };
        write(shared.coordinator.as_ref(), standings, names).await;
        shared.written.send_replace(generation);
    }
}

/// Puts one batch on the boards: names, net worth and return; the day's
/// opening worth where it is not set yet; then the day's gain against it.
async fn write(
    coordinator: &dyn Coordinator,
    standings: HashMap<(PlayerId, Option<i64>), Standing>,
    names: HashMap<PlayerId, String>,
) {
    let players: Vec<((PlayerId, Option<i64>), Standing)> = standings.into_iter().collect();
    let mut scores = Vec::with_capacity(players.len() * 2);
    let mut opens = Vec::with_capacity(players.len());
    for &((player, scope), standing) in &players {
        let board = |kind| board_key(kind, standing.season, scope, standing.day);
        scores.push(BoardScore { board: board(TopBoard::NetWorth), player, score: standing.net_worth });
        scores.push(BoardScore { board: board(TopBoard::Return), player, score: standing.return_pct });
        opens.push(BoardScore { board: day_open_key(standing.day, scope), player, score: standing.net_worth });
    }
    let (named, scored, opened) = futures_util::join!(
        coordinator.names_set(names.into_iter().collect()),
        coordinator.boards_set(scores),
        coordinator.boards_set_absent(opens),
    );
    if let Err(error) = named.and(scored) {
        tracing::debug!(%error, "board scores not written");
    }
    let gains = match opened {
        Ok(opens) => players
            .iter()
            .zip(opens)
            .map(|(&((player, scope), standing), open)| {
                let gain = if open > 0.0 { (standing.net_worth - open) / open * 100.0 } else { 0.0 };
                BoardScore {
                    board: board_key(TopBoard::Gainers, standing.season, scope, standing.day),
                    player,
                    score: gain,
                }
            })
            .collect(),
        Err(error) => {
            tracing::debug!(%error, "day openings not read; gains not written");
            return;
        }
    };
    if let Err(error) = coordinator.boards_set(gains).await {
        tracing::debug!(%error, "gains not written");
    }
}
