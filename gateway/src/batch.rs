//! `Batcher`: many small asks of one kind become one call. Asks that arrive
//! while a call is out wait and go together in the next one (natural
//! batching: no timer, so an idle system adds no latency and a busy one
//! makes one round trip for hundreds of asks).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

/// What a batched call returns: the answers, in the order of the asks.
pub type BatchFuture<O> = Pin<Box<dyn Future<Output = Vec<O>> + Send>>;

/// The batched call: the asks in order in, their answers in the same order out.
pub type BatchCall<I, O> = dyn Fn(Vec<I>) -> BatchFuture<O> + Send + Sync;

/// Asks waiting for a call at most; past it an ask is answered `None` at once.
pub const ASKS_WAITING_MAX: usize = 100_000;

struct Queue<I, O> {
    asks: Vec<(I, oneshot::Sender<O>)>,
    /// A task is making calls.
    calling: bool,
}

struct Shared<I, O> {
    queue: Mutex<Queue<I, O>>,
    call: Box<BatchCall<I, O>>,
    batch_max: usize,
}

/// Gathers asks into batched calls. Cheap to clone.
pub struct Batcher<I, O> {
    shared: Arc<Shared<I, O>>,
}

impl<I, O> Clone for Batcher<I, O> {
    fn clone(&self) -> Self {
        Self { shared: Arc::clone(&self.shared) }
    }
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// Batches of at most `batch_max` asks, each made by `call`.
    pub fn new(batch_max: usize, call: impl Fn(Vec<I>) -> BatchFuture<O> + Send + Sync + 'static) -> Self {
        let queue = Queue { asks: Vec::new(), calling: false };
        Self {
            shared: Arc::new(Shared { queue: Mutex::new(queue), call: Box::new(call), batch_max: batch_max.max(1) }),
        }
    }

    /// The answer to `ask`, from the next call; `None` if that call
    /// answered fewer asks than it was given or too many asks are waiting.
    /// Must be called inside a tokio runtime.
    pub async fn ask(&self, ask: I) -> Option<O> {
        let (answer, answered) = oneshot::channel();
        let start = {
            let mut queue = self.shared.queue.lock().unwrap_or_else(PoisonError::into_inner);
            if queue.asks.len() >= ASKS_WAITING_MAX {
                return None;
            }
            queue.asks.push((ask, answer));
            !std::mem::replace(&mut queue.calling, true)
        };
        if start {
            tokio::spawn(call_until_empty(Arc::clone(&self.shared)));
        }
        answered.await.ok()
    }
}

async fn call_until_empty<I: Send + 'static, O: Send + 'static>(shared: Arc<Shared<I, O>>) {
    loop {
        let asks: Vec<(I, oneshot::Sender<O>)> = {
            let mut queue = shared.queue.lock().unwrap_or_else(PoisonError::into_inner);
            if queue.asks.is_empty() {
                queue.calling = false;
                return;
            }
            let take = queue.asks.len().min(shared.batch_max);
            queue.asks.drain(..take).collect()
        };
        let (items, waiters): (Vec<I>, Vec<oneshot::Sender<O>>) = asks.into_iter().unzip();
        let answers = (shared.call)(items).await;
        for (waiter, answer) in waiters.into_iter().zip(answers) {
            // A waiter that gave up is no concern of the others.
            let _ = waiter.send(answer);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn asks_made_while_a_call_is_out_go_together_in_order() {
        let calls = Arc::new(Mutex::new(Vec::<Vec<u32>>::new()));
        let seen = Arc::clone(&calls);
        let batcher = Batcher::new(1_000, move |asks: Vec<u32>| {
            seen.lock().unwrap().push(asks.clone());
            Box::pin(async move {
                tokio::task::yield_now().await;
                asks.into_iter().map(|ask| ask * 10).collect::<Vec<_>>()
            }) as BatchFuture<u32>
        });
        let answers = futures_util::future::join_all((0..50).map(|ask| batcher.ask(ask))).await;
        assert_eq!(answers, (0..50).map(|ask| Some(ask * 10)).collect::<Vec<_>>());
        let calls = calls.lock().unwrap();
        assert!(calls.len() < 50, "asks were batched: {} calls", calls.len());
        assert_eq!(calls.concat(), (0..50).collect::<Vec<_>>(), "every ask once, in order");
    }

    #[tokio::test]
    async fn a_batch_never_exceeds_its_bound_and_short_answers_are_none() {
        let largest = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&largest);
        let batcher = Batcher::new(4, move |asks: Vec<u32>| {
            seen.fetch_max(asks.len(), Ordering::Relaxed);
            // Answers all but the last ask of each batch.
            let answers: Vec<u32> = asks.iter().take(asks.len() - 1).copied().collect();
            Box::pin(async move { answers }) as BatchFuture<u32>
        });
        let answers = futures_util::future::join_all((0..10).map(|ask| batcher.ask(ask))).await;
        assert!(largest.load(Ordering::Relaxed) <= 4);
        assert!(answers.iter().any(Option::is_none));
        assert!(answers.iter().flatten().count() >= 5);
    }
}
