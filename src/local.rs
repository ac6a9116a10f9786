//! `LocalBackend`: the HTTP front's [`Backend`] in one process (`all`): the
//! webhook feeds in-process ingest, the play page and the reads call the
//! engine next door.

use std::sync::Arc;

use actors::ports::Store;
use bytes::Bytes;
use gateway::backend::{Backend, Inbound, LocalBoxFuture, PlayFailure, Readiness, Refused};
use teloxide_core::types::Update;
use tokio::sync::broadcast;
use wire::{Answer, PlayCommand, PlayPlayer, Query, Reply};

use crate::answers::Answers;
use crate::bot::{Bot, Speaker, local_player_id};
use crate::telegram::ingest::Ingest;

/// The game in this process.
pub struct LocalBackend {
    pub bot: Bot,
    pub store: Arc<dyn Store>,
    pub answers: Answers,
    /// Where webhook updates go; `None` without a bot token.
    pub ingest: Option<Ingest>,
    /// Live prices for `/api/stream`.
    pub prices: broadcast::Sender<Arc<str>>,
}

/// The player a play command speaks for.
#[must_use]
pub fn play_speaker(player: &PlayPlayer) -> Speaker {
    match player {
        PlayPlayer::Local { name } => Speaker { player: local_player_id(name), chat: None, name: name.clone() },
        PlayPlayer::Telegram { user_id, name } => {
            Speaker { player: actors::domain::ids::PlayerId(*user_id), chat: None, name: name.clone() }
        }
    }
}

/// Whether the engine takes players now: the store answers and the engine flushes.
pub async fn engine_readiness(bot: &Bot, store: &Arc<dyn Store>) -> Readiness {
    let store_ok = store.ping().await.is_ok();
    let engine = bot.engine();
    let engine_ok = engine.quotes().await.is_ok() && engine.store_healthy();
    match (store_ok, engine_ok) {
        (true, true) => Readiness { ready: true, detail: "ready".to_owned() },
        (false, _) => Readiness { ready: false, detail: "store unreachable".to_owned() },
        (true, false) => Readiness { ready: false, detail: "engine not ready".to_owned() },
    }
}

impl Backend for LocalBackend {
    fn submit_update(&self, update: Inbound, raw: Bytes) -> LocalBoxFuture<Result<(), Refused>> {
        let ingest = self.ingest.clone();
        Box::pin(async move {
            if !update.handled {
                return Ok(());
            }
            // The complete types are lenient: a known kind that does not
            // parse becomes `UpdateKind::Error`, which the handler ignores.
            let Ok(update) = serde_json::from_slice::<Update>(&raw) else { return Ok(()) };
            match ingest {
                Some(ingest) => ingest.offer(update).await,
                None => Err(Refused::Unavailable),
            }
        })
    }

    fn play(&self, command: PlayCommand) -> LocalBoxFuture<Result<Vec<Reply>, PlayFailure>> {
        let bot = self.bot.clone();
        Box::pin(async move {
            let speaker = play_speaker(&command.player);
            Ok(bot.handle_text(&speaker, &command.text).await)
        })
    }

    fn query(&self, query: Query) -> LocalBoxFuture<Answer> {
        let answers = self.answers.clone();
        Box::pin(async move { answers.answer(query).await })
    }

    fn readiness(&self) -> LocalBoxFuture<Readiness> {
        let (bot, store) = (self.bot.clone(), Arc::clone(&self.store));
        Box::pin(async move { engine_readiness(&bot, &store).await })
    }

    fn metrics(&self) -> LocalBoxFuture<String> {
        let text = crate::metrics::render_engine(self.bot.engine().metrics());
        Box::pin(async move { text })
    }

    fn prices(&self) -> Option<broadcast::Receiver<Arc<str>>> {
        Some(self.prices.subscribe())
    }
}
