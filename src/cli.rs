//! The `mash` command line: one binary, a subcommand per role.

use clap::{Parser, Subcommand};
use sea_orm_migration::{MigrationStatus, MigratorTrait};

use crate::{config::Config, migration::Migrator, startup::Application};

#[derive(Debug, Parser)]
#[command(name = "mash", version, about = "Greenhouse platform backend in one binary")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API, and the job workers unless JOB_CONCURRENCY=0 (the default command).
    Serve,
    /// Run only the job workers and the schedule of periodic jobs (no HTTP).
    Worker,
    /// Apply, roll back or list schema migrations.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Print the OpenAPI document as JSON.
    Openapi,
    /// Create or update the admin from MASH_SEED_ADMIN_EMAIL / MASH_SEED_ADMIN_PASSWORD
    /// (idempotent); `--demo` adds demo users.
    Seed {
        /// Also add demo users (one per role), a demo greenhouse and a demo catalogue.
        #[arg(long)]
        demo: bool,
        /// Products in the demo catalogue (with `--demo`).
        #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        products: u32,
        /// Categories in the demo catalogue (with `--demo`).
        #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        categories: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum MigrateAction {
    /// Apply every pending migration.
    Up,
    /// Roll back the newest migrations (one by default).
    Down {
        /// How many to roll back.
        #[arg(long, default_value_t = 1, conflicts_with = "all")]
        steps: u32,
        /// Roll back every migration.
        #[arg(long)]
        all: bool,
    },
    /// List migrations and whether each is applied.
    Status,
}

/// Runs the parsed command. Returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::Openapi = command {
        // Needs no configuration and no database: built on demand, never cached (see
        // `http::router::openapi`).
        let doc = crate::http::router::openapi().to_pretty_json()?;
        println!("{doc}");
        return Ok(());
    }
    let config = Config::from_env()?;
    crate::logging::init(config.log_format, &config.log_level);
    match command {
        Command::Serve => {
            tracing::info!(database = ?config.database.url, "starting");
            Application::build(config).await?.run().await
        }
        Command::Worker => worker(config).await,
        Command::Migrate { action } => migrate(&config, action).await,
        Command::Seed { demo, products, categories } => {
            let db = crate::db::Db::new(crate::db::connect(&config.database).await?);
            Migrator::up(db.conn(), None).await?;
            let shop = crate::seed::DemoShop { products: products as usize, categories: categories as usize };
            let report = crate::seed::run(&config, &db, demo.then_some(shop)).await?;
            for line in report {
                println!("{line}");
            }
            db.close().await?;
            Ok(())
        }
        Command::Openapi => unreachable!("handled above"),
    }
}

/// `mash worker`: the queue's workers without the API, until SIGTERM or SIGINT. Jobs in flight
/// at shutdown are abandoned and, their lease expiring, retried elsewhere: runs are idempotent.
async fn worker(mut config: Config) -> anyhow::Result<()> {
    if config.jobs.concurrency == 0 {
        config.jobs.concurrency = 4;
    }
    let db = crate::startup::open_database(&config).await?;
    let concurrency = config.jobs.concurrency;
    let addr = std::net::SocketAddr::new(config.http.host, config.http.port);
    let state = crate::AppState::new(config, db)?;
    // Health and metrics only, so orchestrators and Prometheus see workers like API instances.
    let listener =
        tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let service = crate::health::router().split_for_parts().0.with_state(state.clone());
    let mut tasks = crate::background::spawn_workers(&state);
    tasks.push(crate::jobs::worker::spawn_gauges(&state));
    tracing::info!(concurrency, addr = %listener.local_addr()?, "job workers running; /health and /metrics served");
    axum::serve(listener, service).with_graceful_shutdown(crate::startup::shutdown_signal()).await?;
    for task in tasks {
        task.abort();
    }
    state.db.close().await.ok();
    tracing::info!("stopped");
    Ok(())
}

async fn migrate(config: &Config, action: MigrateAction) -> anyhow::Result<()> {
    let db = crate::db::connect(&config.database).await?;
    match action {
        MigrateAction::Up => {
            Migrator::up(&db, None).await?;
            println!("migrations applied");
        }
        MigrateAction::Down { steps, all } => {
            Migrator::down(&db, if all { None } else { Some(steps) }).await?;
            println!(
                "rolled back {}",
                if all { "every migration".to_string() } else { format!("{steps} migration(s)") }
            );
        }
        MigrateAction::Status => {
            for m in Migrator::get_migration_with_status(&db).await? {
                let status = match m.status() {
                    MigrationStatus::Applied => "applied",
                    MigrationStatus::Pending => "pending",
                };
                println!("{status:8} {}", m.name());
            }
        }
    }
    db.close().await?;
    Ok(())
}
