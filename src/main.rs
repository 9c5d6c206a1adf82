use std::io::IsTerminal;
use std::process::ExitCode;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use wecom_provider::access::{self, Suites};
use wecom_provider::app::{self, StartOptions};
use wecom_provider::config::Config;
use wecom_provider::ids::IdKind;
use wecom_provider::ids::bulk::{self, ConvertJob};
use wecom_provider::webhooks;

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
    /// Ciphertext-ID tools.
    Ids {
        #[command(subcommand)]
        command: IdsCommand,
    },
    /// Webhook subscriptions (the same as /api/v1/webhooks).
    Webhooks {
        #[command(subcommand)]
        command: WebhooksCommand,
    },
    /// API keys of /api/v1 (the same as /api/v1/admin/api-keys).
    ApiKeys {
        #[command(subcommand)]
        command: ApiKeysCommand,
    },
}

#[derive(Subcommand)]
enum ApiKeysCommand {
    /// Make a key; prints it to stdout, this once (only its hash is stored).
    Create {
        /// 1 to 64 letters, digits, '-', '_' or '.'; shown in logs and audit entries.
        name: String,
        /// admin, tokens, ids or events (repeatable); admin implies the others.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Restrict the key to this suite (repeatable); every suite without it.
        #[arg(long = "suite")]
        suites: Vec<String>,
    },
    /// List the keys, revoked ones too (never a key or its hash).
    List,
    /// Revoke a key: every instance refuses it within 2 seconds.
    Revoke { name: String },
}

#[derive(Subcommand)]
enum WebhooksCommand {
    /// Subscribe a URL to the events committed from now on; prints its id and, this
    /// once, its signing secret.
    Add {
        /// http:// or https:// URL the events are POSTed to.
        #[arg(long)]
        url: String,
        /// Only events of this kind (repeatable); all kinds without it.
        #[arg(long = "kind")]
        kinds: Vec<String>,
        /// Only events of this suite.
        #[arg(long)]
        suite: Option<String>,
        /// Create it paused.
        #[arg(long)]
        disabled: bool,
    },
    /// List the subscriptions (never their secrets).
    List,
    /// Delete a subscription: its deliveries stop.
    Remove { id: String },
}

#[derive(Subcommand)]
enum IdsCommand {
    /// Convert a CSV column of plaintext IDs to ciphertext IDs: resumable (stored
    /// conversions cost no call), paced under WeCom's limits. Exit status 3 when rows
    /// were rejected (see the rejects file).
    Convert(ConvertArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum KindArg {
    /// corpid → open_corpid (needs --provider)
    Corpid,
    /// userid → open_userid (needs --suite and --corp)
    Userid,
    /// old → new external_userid (needs --suite and --corp)
    #[value(name = "external_userid")]
    ExternalUserid,
}

#[derive(Args)]
struct ConvertArgs {
    #[arg(long, value_enum)]
    kind: KindArg,
    /// Provider corpid (for --kind corpid).
    #[arg(long)]
    provider: Option<String>,
    /// Suite of the corp (for userid and external_userid).
    #[arg(long)]
    suite: Option<String>,
    /// The corp, by the corpid the suite knows it by.
    #[arg(long)]
    corp: Option<String>,
    /// CSV file with a header row.
    #[arg(long)]
    input: PathBuf,
    /// Header of the column holding the IDs.
    #[arg(long)]
    column: String,
    /// Converted rows: the input columns plus the converted ID.
    #[arg(long)]
    output: PathBuf,
    /// Rejected rows: the input columns plus WeCom's reason.
    #[arg(long)]
    rejects: PathBuf,
    /// Upstream calls per minute at most.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..))]
    calls_per_minute: u32,
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
    let logs = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::new(&config.log_filter));
    if let Command::Serve = cli.command {
        logs.with_ansi(std::io::stdout().is_terminal()).init();
    } else {
        // A tool's stdout is its answer (a key, a secret, a list): its logs go to stderr.
        logs.with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal()).init();
    }

    let outcome = match cli.command {
        Command::Serve => serve(&config).await,
        Command::Migrate => migrate(&config).await,
        Command::Ids { command: IdsCommand::Convert(args) } => return convert(&config, args).await,
        Command::Webhooks { command } => manage_webhooks(&config, command).await,
        Command::ApiKeys { command } => manage_api_keys(&config, command).await,
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

async fn manage_webhooks(config: &Config, command: WebhooksCommand) -> Result<(), String> {
    let db = app::prepare_database(config).await.map_err(|e| e.to_string())?;
    match command {
        WebhooksCommand::Add { url, kinds, suite, disabled } => {
            let new = webhooks::NewSubscription { url, kinds, suite_id: suite, enabled: !disabled };
            let created = webhooks::create(&db, new, &Suites::All).await.map_err(|e| e.to_string())?;
            println!("id      {}", created.subscription.id);
            println!("secret  {}", created.secret);
            eprintln!("The secret is shown only now: give it to the receiver to verify signatures.");
        }
        WebhooksCommand::List => {
            for hook in webhooks::list(&db, &Suites::All).await.map_err(|e| e.to_string())? {
                let kinds = if hook.kinds.is_empty() { "*".to_owned() } else { hook.kinds.join(",") };
                println!(
                    "{}\t{}\t{}\tkinds={kinds}\tsuite={}\tlast_event_id={}",
                    hook.id,
                    if hook.enabled { "enabled" } else { "disabled" },
                    hook.url,
                    hook.suite_id.as_deref().unwrap_or("*"),
                    hook.last_event_id
                );
            }
        }
        WebhooksCommand::Remove { id } => {
            webhooks::remove(&db, &id, &Suites::All).await.map_err(|e| format!("{id}: {e}"))?;
            println!("removed {id}");
        }
    }
    Ok(())
}

async fn manage_api_keys(config: &Config, command: ApiKeysCommand) -> Result<(), String> {
    let db = app::prepare_database(config).await.map_err(|e| e.to_string())?;
    match command {
        ApiKeysCommand::Create { name, scopes, suites } => {
            let new = access::NewKey { name, scopes, suites: (!suites.is_empty()).then_some(suites) };
            let created = access::create(&db, new, access::CLI_ACTOR).await.map_err(|e| e.to_string())?;
            println!("{}", created.key);
            eprintln!("The key of {} is shown only now: store it where its service reads it.", created.name);
        }
        ApiKeysCommand::List => {
            let dash = |time: Option<String>| time.unwrap_or_else(|| "-".to_owned());
            for key in access::list(&db).await.map_err(|e| e.to_string())? {
                let scopes: Vec<&str> = key.scopes.iter().map(|scope| scope.as_str()).collect();
                println!(
                    "{}\tscopes={}\tsuites={}\tcreated={}\tlast_used={}\trevoked={}",
                    key.name,
                    scopes.join(","),
                    key.suites.map_or_else(|| "*".to_owned(), |suites| suites.join(",")),
                    key.created_at,
                    dash(key.last_used_at),
                    dash(key.revoked_at)
                );
            }
        }
        ApiKeysCommand::Revoke { name } => {
            access::revoke(&db, &name, access::CLI_ACTOR).await.map_err(|e| format!("{name}: {e}"))?;
            println!("revoked {name}");
        }
    }
    Ok(())
}

async fn convert(config: &Config, args: ConvertArgs) -> ExitCode {
    let job = ConvertJob {
        kind: match args.kind {
            KindArg::Corpid => IdKind::Corpid,
            KindArg::Userid => IdKind::Userid,
            KindArg::ExternalUserid => IdKind::ExternalUserid,
        },
        provider_corpid: args.provider,
        suite_id: args.suite,
        corpid: args.corp,
        input: args.input,
        column: args.column,
        output: args.output,
        rejects: args.rejects,
        calls_per_minute: args.calls_per_minute,
    };
    let ids = match app::id_service(config).await {
        Ok(ids) => ids,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    match bulk::run(&ids, &job).await {
        Ok(summary) => {
            eprintln!(
                "{} rows: {} converted into {}, {} rejected into {}; {} upstream calls",
                summary.rows,
                summary.converted,
                job.output.display(),
                summary.rejected,
                job.rejects.display(),
                summary.upstream_calls
            );
            if summary.rejected > 0 { ExitCode::from(3) } else { ExitCode::SUCCESS }
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}
