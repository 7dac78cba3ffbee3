//! The `loan` command.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use loan::Settings;
use loan::service::{self, Queue};
use tokio::sync::watch;
use tracing::info;
use tracing_subscriber::EnvFilter;

/// Loan requests over HTTP, decided in the background by credit policies
/// running as WebAssembly components.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Settings file (default: settings.ini, or $LOAN_SETTINGS).
    #[arg(long, global = true)]
    settings: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// API and worker in one process (and the bureau simulator unless
    /// bureau.url is set).
    Serve,
    /// The HTTP API only; needs etcd and RabbitMQ.
    Api,
    /// The worker only; needs etcd and RabbitMQ.
    Worker,
    /// The bureau simulator.
    Simulator,
    /// Runs a case file against a policy and prints a pass/fail table;
    /// exits non-zero when a case fails.
    Cases {
        /// The case file (JSON, the format of policy-cases.json).
        file: PathBuf,
        /// The policy component (default: policy.path).
        #[arg(long)]
        policy: Option<PathBuf>,
    },
    /// Benchmarks; see BENCHMARKS.md.
    #[command(subcommand)]
    Bench(Bench),
}

#[derive(Subcommand)]
enum Bench {
    /// Time per evaluation inside the worker, instantiation included,
    /// with fixed bureau answers.
    Evaluate {
        /// Evaluations to run.
        #[arg(long, default_value_t = 100_000)]
        runs: u32,
        /// Evaluations at once.
        #[arg(long, default_value_t = 1)]
        concurrency: u32,
        /// The policy component (default: policy.path).
        #[arg(long)]
        policy: Option<PathBuf>,
    },
    /// Loans decided per second end to end through a running API.
    Throughput {
        /// Base URL of the API.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Loans to post.
        #[arg(long, default_value_t = 20_000)]
        count: u32,
        /// Requests in flight.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
    },
    /// POST /loan latency at a fixed rate against a running API.
    Latency {
        /// Base URL of the API.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Requests per second.
        #[arg(long, default_value_t = 500)]
        rate: u32,
        /// Seconds to run.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let mut settings = Settings::load(cli.settings.as_deref())?;

    match cli.command {
        Command::Serve => serve(&settings).await,
        Command::Api => api(&settings).await,
        Command::Worker => worker(&settings).await,
        Command::Simulator => {
            let address = settings.bureau.simulator_address.clone();
            let (bound, task) = service::serve_simulator(&settings, &address).await?;
            info!(address = %bound, "bureau simulator listening");
            tokio::select! {
                _ = task => {}
                _ = shutdown_signal() => {}
            }
            Ok(())
        }
        Command::Cases { file, policy } => {
            let policy = policy.unwrap_or_else(|| settings.policy.path.clone());
            let report = loan_host::run_cases(&file, &policy, &settings.policy).await?;
            print!("{report}");
            if !report.all_passed() {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Bench(Bench::Evaluate {
            runs,
            concurrency,
            policy,
        }) => {
            if let Some(policy) = policy {
                settings.policy.path = policy;
            }
            let evaluator = service::evaluator(&settings).await?;
            // One untimed round first, so compilation caches and the pool are warm.
            loan_host::benchmark(&evaluator, 1_000.min(runs), concurrency).await?;
            let report = loan_host::benchmark(&evaluator, runs, concurrency).await?;
            println!("{report}");
            Ok(())
        }
        Command::Bench(Bench::Throughput {
            url,
            count,
            concurrency,
        }) => loan::bench::throughput(&url, count, concurrency).await,
        Command::Bench(Bench::Latency { url, rate, seconds }) => {
            loan::bench::latency(&url, rate, Duration::from_secs(seconds)).await
        }
    }
}

/// API and worker together, on whichever backends the settings name.
async fn serve(settings: &Settings) -> anyhow::Result<()> {
    let store = service::open_store(settings).await?;
    let mut queue = Queue::open(settings).await?;
    let publisher = queue.publisher().await?;
    let consumer = queue.consumer(settings.queue.prefetch).await?;
    let worker = service::worker(settings, store.clone()).await?;

    let (stop, stopped) = watch::channel(false);
    let worker_task = tokio::spawn(worker.run(consumer, wait(stopped.clone())));
    if queue.is_in_process() {
        service::requeue_processing(store.as_ref(), publisher.as_ref()).await?;
    }

    let state = service::api_state(settings, store, publisher)?;
    let (address, api_task) = service::serve(
        loan_api::router(state),
        &settings.http.address,
        wait(stopped),
    )
    .await?;
    announce(address);

    shutdown_signal().await;
    info!("shutting down: finishing evaluations in progress");
    let _ = stop.send(true);
    let _ = api_task.await;
    let _ = worker_task.await;
    Ok(())
}

/// The API alone: the worker runs elsewhere, so the queue must be shared.
async fn api(settings: &Settings) -> anyhow::Result<()> {
    require_shared_backends(settings, "api")?;
    let store = service::open_store(settings).await?;
    let queue = Queue::open(settings).await?;
    let publisher = queue.publisher().await?;
    let state = service::api_state(settings, store, publisher)?;
    let (address, task) = service::serve(
        loan_api::router(state),
        &settings.http.address,
        shutdown_signal(),
    )
    .await?;
    announce(address);
    task.await.context("the API task failed")
}

/// The worker alone.
async fn worker(settings: &Settings) -> anyhow::Result<()> {
    require_shared_backends(settings, "worker")?;
    let store = service::open_store(settings).await?;
    let mut queue = Queue::open(settings).await?;
    let consumer = queue.consumer(settings.queue.prefetch).await?;
    let worker = service::worker(settings, store).await?;
    info!("worker started");
    worker.run(consumer, shutdown_signal()).await;
    Ok(())
}

fn require_shared_backends(settings: &Settings, role: &str) -> anyhow::Result<()> {
    if settings.store.endpoints().is_empty() || settings.queue.amqp_url.is_empty() {
        bail!(
            "`loan {role}` runs apart from the other roles, so it needs etcd and RabbitMQ: \
             set store.etcd_endpoints and queue.amqp_url (LOAN_STORE__ETCD_ENDPOINTS, \
             LOAN_QUEUE__AMQP_URL), or use `loan serve` for everything in one process"
        );
    }
    Ok(())
}

fn announce(address: std::net::SocketAddr) {
    info!(%address, "API listening");
    println!("loan is listening on http://{address}");
    println!("  POST http://{address}/loan, GET http://{address}/loan/{{id}}");
    println!("  API docs: http://{address}/docs (Swagger UI), http://{address}/redoc");
}

/// Completes when `stopped` turns true.
async fn wait(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
