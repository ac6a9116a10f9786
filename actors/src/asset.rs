//! `AssetActor`: one per asset. Owns the asset's price model and its seeded
//! RNG; steps it one market minute at a time when the ticker says so, and
//! queues operator news into it.

use actix::prelude::*;

use crate::domain::ids::AssetId;
use crate::domain::price_model::{AssetModel, InjectError, ModelTick, PendingNews, SectorMove};

/// Advances the model one market minute under its category's move. The reply
/// carries the model's new state, so a supervisor can rebuild the actor.
#[derive(Message)]
#[rtype(result = "StepResult")]
pub struct StepModel {
    pub sector: SectorMove,
}

/// Queues operator news for the model's next steps; the reply carries the
/// model's new state, so a snapshot keeps the pending news.
#[derive(Message)]
#[rtype(result = "Result<Box<AssetModel>, InjectError>")]
pub struct InjectNews(pub PendingNews);

/// The model's tick and its state after it.
#[derive(Debug, Clone, MessageResponse)]
pub struct StepResult {
    pub asset: AssetId,
    pub tick: ModelTick,
    pub minute: u64,
    pub model: Box<AssetModel>,
    /// The operator's wording of the news in `tick.injected`, if any.
    pub injected_text: Option<String>,
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
        let injected_text = self.model.next_injection().and_then(|news| news.text.clone());
        let tick = self.model.step(&message.sector);
        StepResult {
            asset: self.asset,
            tick,
            minute: self.model.minute(),
            model: Box::new(self.model.clone()),
            injected_text,
        }
    }
}

impl Handler<InjectNews> for AssetActor {
    type Result = Result<Box<AssetModel>, InjectError>;

    fn handle(&mut self, InjectNews(news): InjectNews, _: &mut Context<Self>) -> Self::Result {
        self.model.inject(news)?;
        Ok(Box::new(self.model.clone()))
    }
}
