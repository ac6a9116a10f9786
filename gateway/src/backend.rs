//! `Backend`: what the HTTP front needs from whoever runs the game. In one
//! process (`all`) that is the engine next door; in a gateway it is the
//! active engine reached over NATS. The front does not know which.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::broadcast;
use wire::{Answer, PlayCommand, Query, Reply};

/// A future polled on the thread that made it.
pub type LocalBoxFuture<T> = Pin<Box<dyn Future<Output = T> + 'static>>;

/// Why an update was not taken (the webhook answers 503: Telegram retries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// No room within the wait allowed.
    Full,
    /// This instance is stopping (or standing by): retry with another.
    Stopping,
    /// What holds commands (the stream) is unreachable right now.
    Unavailable,
}

/// Why a play command got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlayFailure {
    /// No engine answered within the wait allowed; the command may still
    /// be applied (once) later.
    TimedOut,
    /// Nothing can take commands right now; the command was not taken.
    Unavailable(String),
}

/// Whether this instance takes players now, and why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub ready: bool,
    /// `ready`, `standby`, or what is wrong.
    pub detail: String,
}

/// What the front read of an update (`wire::update::UpdateHead`), to
/// route it without parsing all of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inbound {
    pub update_id: u32,
    /// A kind the bot handles (message, button press, checkout).
    pub handled: bool,
}

/// The game behind the HTTP front.
pub trait Backend: Send + Sync + 'static {
    /// Takes a Telegram update (`raw`, the JSON Telegram sent) for
    /// handling. `Ok` once it will be handled (a repeat of one taken before,
    /// or a kind the bot does not handle, is `Ok` and ignored).
    fn submit_update(&self, update: Inbound, raw: Bytes) -> LocalBoxFuture<Result<(), Refused>>;

    /// Runs a play-page message and returns the bot's replies.
    fn play(&self, command: PlayCommand) -> LocalBoxFuture<Result<Vec<Reply>, PlayFailure>>;

    /// Answers a read (market, chart, admin).
    fn query(&self, query: Query) -> LocalBoxFuture<Answer>;

    /// For `/readyz`.
    fn readiness(&self) -> LocalBoxFuture<Readiness>;

    /// This role's metrics in Prometheus text format.
    fn metrics(&self) -> LocalBoxFuture<String>;

    /// Live prices for `/api/stream` (SSE-ready JSON per market minute).
    fn prices(&self) -> Option<broadcast::Receiver<Arc<str>>>;
}
