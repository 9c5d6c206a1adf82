use std::process::ExitCode;

use clap::{Parser, Subcommand};
use wecom_provider::app::{self, StartOptions};
use wecom_provider::config::Config;

/// Callback gateway, token center and ciphertext-ID service for a WeCom service provider.
#[derive(Parser)]
#[command(name = "wecom-provider", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run pending migrations, seed the provider and suite from the environment, serve HTTP.
    Serve,
    /// Run pending migrations and exit.
    Migrate,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&config.log_filter))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();

    let outcome = match cli.command {
        Command::Serve => serve(&config).await,
        Command::Migrate => migrate(&config).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: &Config) -> Result<(), String> {
    let running = app::start(config, StartOptions::default()).await.map_err(|e| e.to_string())?;
    running.wait().await.map_err(|e| e.to_string())
}

async fn migrate(config: &Config) -> Result<(), String> {
    let db = wecom_provider::store::Db::open(&config.database).map_err(|e| e.to_string())?;
    db.migrate().await.map_err(|e| e.to_string())?;
    tracing::info!(database = db.backend_name(), "migrations applied");
    Ok(())
}
