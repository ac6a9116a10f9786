//! Trade throughput: `domain` runs the pure exchange state machine; `actors`
//! sends batches through the running actor system with every trade's result
//! awaited (durable in the in-memory store) by its caller.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use actors::clock::SystemClock;
use actors::domain::command::Command;
use actors::domain::exchange::Exchange;
use actors::domain::ids::{AssetId, PlayerId, Quantity};
use actors::domain::order::{OrderKind, OrderRequest, Side};
use actors::engine::{Engine, EngineDeps};
use actors::ports::NullNotifier;
use actors::ports::memory::MemoryStore;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use futures_util::StreamExt;
use stockbot::config::Settings;

// The allocator the `stockbot` binary runs with.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const PLAYERS: i64 = 1_000;
const BATCH_TRADES: usize = 1_000;
/// Batches in flight at once in the actor bench, as concurrent gateway
/// connections would keep them.
const IN_FLIGHT_BATCHES: usize = 8;

/// Round trips of 1–3 shares by every player over every asset: buys then
/// sells of the same asset, so nobody runs out of cash and the book's flow
/// stays bounded; every command is a fill.
fn workload(assets: usize, round: usize) -> Vec<Command> {
    (0..BATCH_TRADES)
        .map(|i| {
            let player = PlayerId(i64::try_from(i).unwrap() % PLAYERS + 1);
            let asset = AssetId(u16::try_from((i + round / 2) % assets).unwrap());
            let side = if round.is_multiple_of(2) { Side::Buy } else { Side::Sell };
            let qty = Quantity::new(1 + (i % 3) as u64).unwrap();
            Command::Place(OrderRequest { player, asset, side, qty, kind: OrderKind::Market })
        })
        .collect()
}

fn domain(c: &mut Criterion) {
    let settings = Settings::load().unwrap();
    let universe = Arc::new(settings.engine.universe().unwrap());
    let mut exchange = Exchange::new(Arc::clone(&universe), settings.engine.market.clone());
    let mut out = Vec::new();
    for player in 1..=PLAYERS {
        exchange.execute(&Command::Open { player: PlayerId(player) }, 0, &mut out).unwrap();
    }
    let rounds: Vec<Vec<Command>> = (0..2).map(|round| workload(universe.len(), round)).collect();
    let mut group = c.benchmark_group("domain");
    group.throughput(Throughput::Elements(BATCH_TRADES as u64));
    let mut round = 0;
    group.bench_function("market_orders", |b| {
        b.iter_batched_ref(
            || Vec::with_capacity(BATCH_TRADES * 2),
            |out| {
                for command in &rounds[round % 2] {
                    let _ = exchange.execute(command, 1, out);
                }
                round += 1;
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

fn actors(c: &mut Criterion) {
    let settings = Settings::load().unwrap();
    let config = settings.engine.clone();
    let system = actix::System::new();
    let engine = system.block_on(async {
        let store = MemoryStore::new();
        let deps = EngineDeps {
            store: Arc::new(store),
            clock: Arc::new(SystemClock),
            notifier: Arc::new(NullNotifier),
            autonomous_ticker: false,
        };
        let engine = Engine::start(&config, deps).await.unwrap();
        let opens = (1..=PLAYERS).map(|player| Command::Open { player: PlayerId(player) }).collect();
        engine.execute(opens).await.unwrap();
        engine
    });
    let assets = engine.universe().len();
    let mut group = c.benchmark_group("actors");
    group.throughput(Throughput::Elements(BATCH_TRADES as u64));
    group.measurement_time(Duration::from_secs(8));
    group.bench_function("market_orders_awaited", |b| {
        b.iter_custom(|iters| {
            system.block_on(async {
                let started = Instant::now();
                let batches = (0..usize::try_from(iters).unwrap()).map(|round| {
                    let engine = engine.clone();
                    let commands = workload(assets, round);
                    async move { engine.execute(commands).await.unwrap() }
                });
                // A sliding window of batches in flight, each awaited to the end.
                let mut results = futures_util::stream::iter(batches).buffered(IN_FLIGHT_BATCHES);
                while let Some(results) = results.next().await {
                    assert_eq!(results.len(), BATCH_TRADES);
                }
                started.elapsed()
            })
        });
    });
    group.finish();
}

criterion_group!(benches, domain, actors);
criterion_main!(benches);
