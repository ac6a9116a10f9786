//! `Follower`: a standby's copy of the market, kept current from the
//! committed log (events and the fill journal) that the active engine
//! writes — the exchange by applying it, the store's ledger memory by
//! recording it — so that a takeover reads only the short tail written
//! since the last step, not everything since the last checkpoint. A standby
//! applies committed events; it never runs commands.

use std::sync::Arc;

use actors::config::EngineConfig;
use actors::domain::applied::AppliedCommands;
use actors::domain::asset::Universe;
use actors::domain::exchange::Exchange;
use actors::engine::{EngineError, Recovered, attach_resting, load_market};
use actors::ports::{Store, StoreError};

use crate::store::postgres::PostgresStore;
use crate::store::postgres::lease::{Fence, Writes};

/// Most events read in one step (more come with the next).
pub const FOLLOW_PAGE_EVENTS: usize = 20_000;

/// A standby's market, following the log.
pub struct Follower {
    store: PostgresStore,
    config: EngineConfig,
    universe: Arc<Universe>,
    exchange: Exchange,
}

impl Follower {
    /// Follows the log of `store` (set to write nothing) from its last
    /// market snapshot (or the configured market, when there is none yet).
    ///
    /// # Errors
    /// An invalid universe, a store that cannot be read.
    pub async fn start(store: PostgresStore, config: &EngineConfig) -> Result<Self, EngineError> {
        store.set_writes(Writes::Standby);
        let universe = Arc::new(config.universe()?);
        let exchange = match store.load_market().await? {
            Some(snapshot) if snapshot.assets.len() == universe.len() => {
                Exchange::from_state(Arc::clone(&universe), config.market.clone(), snapshot.exchange)
            }
            _ => Exchange::new(Arc::clone(&universe), config.market.clone()),
        }
        .with_game_rules(Arc::new(config.game.clone()));
        let mut follower = Self { store, config: config.clone(), universe, exchange };
        follower.follow().await?;
        Ok(follower)
    }

    /// Applies what was committed since the last step; returns how many
    /// events that was.
    ///
    /// # Errors
    /// A store that cannot be read.
    pub async fn follow(&mut self) -> Result<usize, StoreError> {
        let mut applied = 0;
        loop {
            let after = self.exchange.next_seq().saturating_sub(1);
            let page = self.store.follow(after, FOLLOW_PAGE_EVENTS).await?;
            for stamped in &page {
                self.exchange.apply(stamped);
            }
            applied += page.len();
            if page.len() < FOLLOW_PAGE_EVENTS {
                return Ok(applied);
            }
        }
    }

    /// The last seq applied.
    #[must_use]
    pub fn seq(&self) -> u64 {
        self.exchange.next_seq().saturating_sub(1)
    }

    /// Takes over with the lease `fence` holds (the store now writes under
    /// it): reads the last of the tail (the old holder can write no more),
    /// the price models and the outcomes of stream commands after `cursor`,
    /// and loads the ledgers of players with resting orders.
    ///
    /// # Errors
    /// A store that cannot be read, or already superseded.
    pub async fn take_over(
        mut self,
        fence: Arc<Fence>,
        cursor: u64,
    ) -> Result<(Recovered, PostgresStore), EngineError> {
        self.store.set_writes(Writes::Fenced(fence));
        self.follow().await?;
        let store: Arc<dyn Store> = Arc::new(self.store.clone());
        // The models as last saved (the first snapshot is saved now when
        // there is none); they are stepped up to the exchange's minute at start.
        let (_, models, sectors) = load_market(&store, &self.config, &self.universe).await?;
        attach_resting(&store, &mut self.exchange).await?;
        let mut applied = AppliedCommands::default();
        applied.advance(cursor);
        for (key, outcome) in self.store.outcomes_after(cursor).await? {
            applied.record(key, outcome);
        }
        Ok((Recovered { exchange: self.exchange, models, sectors, applied }, self.store))
    }
}
