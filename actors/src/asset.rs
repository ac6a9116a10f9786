//! `AssetActor`: one per asset. Owns the asset's price model and its seeded
//! RNG; steps it one market minute at a time when the ticker says so.

use actix::prelude::*;

use crate::domain::ids::AssetId;
use crate::domain::price_model::{AssetModel, ModelTick, SectorMove};

/// Advances the model one market minute under its category's move. The reply
/// carries the model's new state, so a supervisor can rebuild the actor.
#[derive(Message)]
#[rtype(result = "StepResult")]
pub struct StepModel {
    pub sector: SectorMove,
}

/// The model's tick and its state after it.
#[derive(Debug, Clone, MessageResponse)]
pub struct StepResult {
    pub asset: AssetId,
    pub tick: ModelTick,
    pub minute: u64,
    pub model: Box<AssetModel>,
}

/// Owns one asset's price model.
pub struct AssetActor {
    asset: AssetId,
    model: AssetModel,
}

impl AssetActor {
    /// An actor for `asset` resuming from `model`.
    #[must_use]
    pub fn new(asset: AssetId, model: AssetModel) -> Self {
        Self { asset, model }
    }
}

impl Actor for AssetActor {
    type Context = Context<Self>;
}

impl Handler<StepModel> for AssetActor {
    type Result = StepResult;

    fn handle(&mut self, message: StepModel, _: &mut Context<Self>) -> StepResult {
        let tick = self.model.step(&message.sector);
        StepResult { asset: self.asset, tick, minute: self.model.minute(), model: Box::new(self.model.clone()) }
    }
}
