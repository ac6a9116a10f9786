//! The in-process load: simulated players sharing one thread, each client
//! with one market order in flight, and the steering that decides how many
//! clients may send at once (fixed, or adapted to a latency goal).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use actors::domain::command::{Command, Outcome};
use actors::domain::exchange::Placed;
use actors::domain::ids::{AssetId, PlayerId, Quantity};
use actors::domain::order::{OrderKind, OrderRequest, Side};
use actors::domain::price_model::mix_seed;
use actors::domain::rejection::Rejection;
use actors::engine::Engine;
use tokio::sync::Semaphore;

use super::LoadReport;

/// Clients sending at first when adapting.
pub const ADAPTIVE_START: usize = 1_024;
/// Fewest clients sending when adapting.
const ADAPTIVE_MIN: usize = 64;
/// Most clients the adaptation goes up to (fewer with fewer players).
pub const ADAPTIVE_MAX: usize = 8_192;
/// The median latency the adaptation steers each window to, µs: the tail
/// runs about two and a half times the median, so p99 stays under 50 ms. (The
/// median, not the p99, is steered by: a checkpoint's slow second would
/// otherwise throttle the clients for the seconds after it.)
pub const ADAPTIVE_P50_GOAL_US: u32 = 17_000;
/// How often the adaptation looks at the latencies since its last look.
const STEER_PERIOD: Duration = Duration::from_millis(250);
/// Fewest latencies in a window worth steering by.
const STEER_SAMPLES_MIN: usize = 100;

/// How many clients send at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clients {
    /// Exactly this many.
    Fixed(usize),
    /// Up to this many: as many as keep the median latency at the goal.
    Adaptive(usize),
}

impl Clients {
    /// The most clients that may ever send.
    #[must_use]
    pub fn max(self) -> usize {
        match self {
            Self::Fixed(n) | Self::Adaptive(n) => n.max(1),
        }
    }
}

/// The simulated players and what they share on their thread.
pub struct Crowd {
    players: Vec<PlayerId>,
    assets: Vec<AssetId>,
    /// Shares each player holds of each tradable asset (`player * assets + asset`),
    /// as their confirmed fills said.
    held: RefCell<Vec<u64>>,
    /// The next player to trade: players take turns, whoever the client.
    next_player: Cell<usize>,
    /// A permit per client allowed to send now.
    sending: Semaphore,
    /// Latencies of confirmed trades since the steering last looked, µs.
    window: RefCell<Vec<u32>>,
}

impl Crowd {
    #[must_use]
    pub fn new(players: Vec<PlayerId>, assets: Vec<AssetId>, clients: Clients) -> Rc<Self> {
        let permits = match clients {
            Clients::Fixed(n) => n.max(1),
            Clients::Adaptive(n) => ADAPTIVE_START.min(n.max(1)),
        };
        Rc::new(Self {
            held: RefCell::new(vec![0; players.len().saturating_mul(assets.len())]),
            players,
            assets,
            next_player: Cell::new(0),
            sending: Semaphore::new(permits),
            window: RefCell::new(Vec::new()),
        })
    }

    fn take_turn(&self) -> usize {
        let turn = self.next_player.get();
        self.next_player.set((turn + 1) % self.players.len().max(1));
        turn
    }

    fn held_mut(&self, player: usize, asset: usize) -> Option<std::cell::RefMut<'_, u64>> {
        let index = player.checked_mul(self.assets.len())?.checked_add(asset)?;
        std::cell::RefMut::filter_map(self.held.borrow_mut(), |held| held.get_mut(index)).ok()
    }
}

/// One client: market orders for whichever player's turn it is, one at a
/// time, whenever it holds a sending permit, until `deadline`.
pub async fn trade_until(
    engine: Engine,
    crowd: Rc<Crowd>,
    client: usize,
    started: Instant,
    deadline: Instant,
) -> LoadReport {
    let mut report = LoadReport::default();
    let mut rng = mix_seed(0x10ad, client as u64);
    let assets = crowd.assets.len() as u64;
    while Instant::now() < deadline && !crowd.players.is_empty() && assets > 0 {
        let Ok(permit) = crowd.sending.acquire().await else { break };
        if Instant::now() >= deadline {
            break;
        }
        rng = mix_seed(rng, 1);
        let slot = crowd.take_turn();
        let asset_index = usize::try_from(rng % assets).unwrap_or(0);
        let owned = crowd.held_mut(slot, asset_index).map_or(0, |held| *held);
        let side = if owned > 0 && (rng >> 20) % 10 < 5 { Side::Sell } else { Side::Buy };
        let qty = if side == Side::Sell { owned.min(1 + (rng >> 32) % 5) } else { 1 + (rng >> 32) % 5 };
        let (Ok(qty), Some(player), Some(asset)) =
            (Quantity::new(qty), crowd.players.get(slot), crowd.assets.get(asset_index))
        else {
            continue;
        };
        let request = OrderRequest { player: *player, asset: *asset, side, qty, kind: OrderKind::Market };
        let sent = Instant::now();
        let outcome = engine.execute_one(Command::Place(request)).await;
        drop(permit);
        match outcome {
            Ok(Outcome::Placed(Placed::Filled(fill))) => {
                let latency = report.confirm(sent, started);
                crowd.window.borrow_mut().push(latency);
                if let Some(mut held) = crowd.held_mut(slot, asset_index) {
                    *held = fill.held_after;
                }
            }
            Err(Rejection::Busy | Rejection::Unavailable) => {
                report.busy += 1;
                actix::clock::sleep(Duration::from_millis(5)).await;
            }
            _ => report.rejected += 1,
        }
    }
    report
}

/// Adapts how many clients send: fewer when the last window's median
/// latency was over the goal, more when it was under, within `[ADAPTIVE_MIN,
/// max]`. Returns the clients sending at the end.
pub async fn steer(crowd: Rc<Crowd>, max: usize, deadline: Instant) -> usize {
    let max = max.max(1);
    let mut sending = ADAPTIVE_START.min(max);
    while Instant::now() + STEER_PERIOD < deadline {
        actix::clock::sleep(STEER_PERIOD).await;
        let mut window = std::mem::take(&mut *crowd.window.borrow_mut());
        if window.len() < STEER_SAMPLES_MIN {
            continue;
        }
        window.sort_unstable();
        let p50 = super::quantile_us(&window, 0.5).unwrap_or(0);
        let wanted = if p50 > ADAPTIVE_P50_GOAL_US / 10 * 11 {
            (sending * 9 / 10).max(ADAPTIVE_MIN.min(max))
        } else if p50 < ADAPTIVE_P50_GOAL_US / 10 * 9 {
            (sending * 11 / 10 + 1).min(max)
        } else {
            sending
        };
        if wanted > sending {
            crowd.sending.add_permits(wanted - sending);
        } else if wanted < sending {
            // Taken back as clients finish their orders.
            let Ok(taken) = crowd.sending.acquire_many(u32::try_from(sending - wanted).unwrap_or(u32::MAX)).await
            else {
                break;
            };
            taken.forget();
        }
        sending = wanted;
    }
    sending
}
