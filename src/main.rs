//! The `stockbot` binary: parses the command line and hands off.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use stockbot::config::Settings;

// Engine, store and front-end threads allocate on one thread and free on
// another all the time; jemalloc handles that better than glibc's malloc
// (measured with `stockbot loadgen`: less CPU per trade, a shorter tail).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(name = "stockbot", version, about = "A stock-market game server for Telegram")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs everything in one process: engine, HTTP, Telegram.
    Serve,
    /// Applies the SQL migrations (to DATABASE_URL, else the embedded store) and exits.
    Migrate,
    /// Simulated players trading; prints throughput and latency.
    Loadgen {
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        #[arg(long, default_value_t = 1000)]
        players: u32,
        /// A running server's base URL (its webhook is driven), or several comma-separated (gateways, taken in turn); in-process without it.
        #[arg(long)]
        target: Option<String>,
        /// Clients with one command in flight each (default: in process, as many as keep the median latency near 17 ms).
        #[arg(long)]
        concurrency: Option<usize>,
        /// With --target: also serve a fake Bot API here and time each reply's arrival.
        #[arg(long)]
        bot_api_bind: Option<std::net::SocketAddr>,
        /// Also print trades and p99 latency for every second of the run.
        #[arg(long)]
        timeline: bool,
    },
    /// Runs the market alone in simulated time and prints per-asset summaries.
    Simulate {
        #[arg(long, default_value_t = 7)]
        seed: u64,
        #[arg(long, default_value_t = 24.0)]
        hours: f64,
        /// Writes `minute,ticker,price` rows here.
        #[arg(long)]
        csv: Option<PathBuf>,
    },
    /// Checks conservation on the configured store (read-only on PostgreSQL) and prints the result.
    Audit,
    /// Scripted players (honest and abusive) through the bot in simulated time; ends with the audit.
    Playtest {
        #[arg(long, default_value_t = 7)]
        seed: u64,
        #[arg(long, default_value_t = 24.0)]
        hours: f64,
        #[arg(long, default_value_t = 1000)]
        players: u32,
    },
}

/// Runs the server in an actix system until a signal stops it.
fn serve(settings: Settings) -> Result<(), Box<dyn std::error::Error>> {
    // Every line the server's own thread logs names the role and instance
    // (the lease's lines add the epoch).
    let role = settings.role().map_or("invalid", stockbot::config::Role::name);
    let span = tracing::error_span!("stockbot", role, instance = %settings.instance_name());
    let _named = span.enter();
    actix_web::rt::System::new().block_on(async move {
        let app = stockbot::startup::Application::build(&settings).await?;
        let address = app.address();
        println!("stockbot listening on http://{address}");
        if settings.play_enabled() {
            println!("play in your browser: http://{address}/");
        }
        app.run_until_stopped().await?;
        Ok(())
    })
}

/// Applies the migrations.
fn migrate(settings: &Settings) -> Result<(), Box<dyn std::error::Error>> {
    actix_web::rt::System::new().block_on(async move {
        match settings.database_url.as_ref().map(|u| u.expose().to_owned()).filter(|u| !u.is_empty()) {
            Some(url) => stockbot::store::migrate::migrate(&url).await?,
            None => {
                stockbot::store::embedded::EmbeddedStore::open(&settings.data_dir).await?;
            }
        }
        println!("migrations applied");
        Ok(())
    })
}

/// Runs the load generator and prints its report.
fn loadgen(
    settings: &Settings,
    args: stockbot::loadgen::LoadgenArgs,
    target: Option<String>,
    bot_api_bind: Option<std::net::SocketAddr>,
) -> Result<(), Box<dyn std::error::Error>> {
    actix_web::rt::System::new().block_on(async move {
        let report = match target {
            Some(target) => {
                let secret = settings.telegram.webhook_secret.as_ref().map(|s| s.expose().to_owned());
                stockbot::loadgen::target::run_against(&target, secret, bot_api_bind, &args).await?
            }
            None => stockbot::loadgen::run_in_process(settings, &args).await?,
        };
        println!("{}", report.render(args.timeline));
        Ok(())
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("stockbot: {error}");
            return ExitCode::from(2);
        }
    };
    stockbot::telemetry::init(settings.log_format.as_deref() == Some("json"));
    let result = match cli.command {
        Command::Serve => serve(settings),
        Command::Migrate => migrate(&settings),
        Command::Loadgen { seconds, players, target, concurrency, bot_api_bind, timeline } => {
            let args = stockbot::loadgen::LoadgenArgs { seconds, players, concurrency, timeline };
            loadgen(&settings, args, target, bot_api_bind)
        }
        Command::Simulate { seed, hours, csv } => {
            stockbot::simulate::run(&settings.engine, seed, hours, csv.as_deref())
        }
        Command::Audit => {
            actix_web::rt::System::new().block_on(stockbot::audit::run(&settings)).map(|report| println!("{report}"))
        }
        Command::Playtest { seed, hours, players } => stockbot::playtest::run(&settings, seed, hours, players)
            .map(|report| println!("{report}"))
            .map_err(Into::into),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("stockbot: {error}");
            ExitCode::FAILURE
        }
    }
}
