use std::io::IsTerminal;
use std::process::ExitCode;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::SecretString;
use std::sync::Arc;
use wecom_provider::access::{self, Suites};
use wecom_provider::app::{self, StartOptions};
use wecom_provider::config::{Config, LogFormat};
use wecom_provider::ids::IdKind;
use wecom_provider::ids::bulk::{self, ConvertJob};
use wecom_provider::keys;
use wecom_provider::licenses::sync::SyncJob;
use wecom_provider::model::{CorpId, PermanentCodeApi, ProviderCorpId, SuiteId, SuiteKind};
use wecom_provider::registry::apply::{Outcome, apply_file, secret_value};
use wecom_provider::registry::{ProviderInput, ProviderPatch, Registry, SuiteInput, SuitePatch};
use wecom_provider::store::audit::ACTOR_CLI;
use wecom_provider::store::sealing::MasterKey;
use wecom_provider::webhooks;

// jemalloc instead of glibc's malloc: a callback allocates on an HTTP worker and is
// freed on the event writer, and glibc's arenas made malloc ~14 % of the server's
// CPU; jemalloc took 12–22 % off the CPU per callback at +9 MiB peak RSS under the
// held-bodies attack (BENCHMARKS.md, 2026-12-07).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
    /// Providers (the same as /api/v1/admin/providers).
    Providers {
        #[command(subcommand)]
        command: ProvidersCommand,
    },
    /// Suites: third-party apps, customized-app templates, login apps (the same as
    /// /api/v1/admin/suites).
    Suites {
        #[command(subcommand)]
        command: SuitesCommand,
    },
    /// Create or update the providers and suites FILE.toml declares; prints what changed.
    Apply { file: PathBuf },
    /// Interface licenses (接口调用许可).
    Licenses {
        #[command(subcommand)]
        command: LicensesCommand,
    },
    /// The master key that seals stored secrets.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

/// Secrets are given as `env:NAME`, `file:PATH` or the value itself (which the
/// shell history then keeps: prefer the first two).
#[derive(Subcommand)]
enum ProvidersCommand {
    Add {
        #[arg(long)]
        corpid: ProviderCorpId,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        secret: String,
        #[arg(long, requires = "encoding_aes_key")]
        callback_token: Option<String>,
        #[arg(long, requires = "callback_token")]
        encoding_aes_key: Option<String>,
    },
    List,
    Update {
        corpid: ProviderCorpId,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        secret: Option<String>,
        #[arg(long)]
        callback_token: Option<String>,
        #[arg(long)]
        encoding_aes_key: Option<String>,
    },
    /// Delete a provider that has no suites.
    Remove {
        corpid: ProviderCorpId,
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
enum SuitesCommand {
    Add {
        #[arg(long)]
        suite_id: SuiteId,
        #[arg(long)]
        provider: ProviderCorpId,
        #[arg(long, value_parser = parse_kind)]
        kind: SuiteKind,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        secret: String,
        #[arg(long)]
        callback_token: String,
        #[arg(long)]
        encoding_aes_key: String,
        /// Create it disabled: its callbacks answer 404 until enabled.
        #[arg(long)]
        disabled: bool,
        /// Which get_permanent_code exchanges auth codes: v2 (default) or v1.
        #[arg(long, value_parser = parse_permanent_code_api, default_value = "v2")]
        permanent_code_api: PermanentCodeApi,
        /// Shown on the install page: what the app does.
        #[arg(long)]
        description: Option<String>,
        /// Shown on the install page: the app's logo, an http(s) URL.
        #[arg(long)]
        logo_url: Option<String>,
    },
    List,
    Update {
        suite_id: SuiteId,
        #[arg(long, value_parser = parse_kind)]
        kind: Option<SuiteKind>,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        secret: Option<String>,
        #[arg(long)]
        callback_token: Option<String>,
        #[arg(long)]
        encoding_aes_key: Option<String>,
        /// v2 or v1.
        #[arg(long, value_parser = parse_permanent_code_api)]
        permanent_code_api: Option<PermanentCodeApi>,
        #[arg(long)]
        description: Option<String>,
        /// An empty value removes the logo.
        #[arg(long)]
        logo_url: Option<String>,
    },
    /// Callbacks answer 404 and token routes 409 until enabled again.
    Disable {
        suite_id: SuiteId,
    },
    Enable {
        suite_id: SuiteId,
    },
    /// Delete a suite; one with active corps only with --force (its corps and tokens go too).
    Remove {
        suite_id: SuiteId,
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Print a new random key (base64 of 32 bytes) for MASTER_KEY or a key file.
    Generate,
    /// Make a new key current in the key file and re-seal every secret under it,
    /// while the service runs (instances sharing the file follow within seconds).
    Rotate {
        /// Drop the older keys from the file afterwards (backups sealed under them
        /// then no longer open).
        #[arg(long)]
        retire_old: bool,
    },
}

fn parse_kind(text: &str) -> Result<SuiteKind, String> {
    text.parse().map_err(|e: wecom_provider::model::UnknownName| e.to_string())
}

fn parse_permanent_code_api(text: &str) -> Result<PermanentCodeApi, String> {
    text.parse().map_err(|e: wecom_provider::model::UnknownName| e.to_string())
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
        suite: Option<SuiteId>,
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
enum LicensesCommand {
    /// Read every active corp's licenses from WeCom into the database (trial,
    /// auto-activation, members' codes, orders): paced, resumable (an interrupted run
    /// is continued where it stopped), progress on stderr.
    Sync {
        /// Only this suite's corps.
        #[arg(long)]
        suite: Option<SuiteId>,
        /// Only this corp.
        #[arg(long)]
        corp: Option<CorpId>,
        /// At most this many WeCom calls per minute.
        #[arg(long, default_value_t = 300)]
        calls_per_minute: u32,
    },
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
    provider: Option<ProviderCorpId>,
    /// Suite of the corp (for userid and external_userid).
    #[arg(long)]
    suite: Option<SuiteId>,
    /// The corp, by the corpid the suite knows it by.
    #[arg(long)]
    corp: Option<CorpId>,
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
    // A tool's stdout is its answer (a key, a secret, a list): its logs go to stderr.
    let serving = matches!(cli.command, Command::Serve);
    match (config.log_format, serving) {
        (LogFormat::Json, true) => logs.json().flatten_event(true).init(),
        (LogFormat::Json, false) => logs.json().flatten_event(true).with_writer(std::io::stderr).init(),
        (LogFormat::Text, true) => logs.with_ansi(std::io::stdout().is_terminal()).init(),
        (LogFormat::Text, false) => logs.with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal()).init(),
    }

    let outcome = match cli.command {
        Command::Serve => serve(&config).await,
        Command::Migrate => migrate(&config).await,
        Command::Ids { command: IdsCommand::Convert(args) } => return convert(&config, args).await,
        Command::Webhooks { command } => manage_webhooks(&config, command).await,
        Command::ApiKeys { command } => manage_api_keys(&config, command).await,
        Command::Providers { command } => manage_providers(&config, command).await,
        Command::Suites { command } => manage_suites(&config, command).await,
        Command::Apply { file } => apply(&config, &file).await,
        Command::Keys { command: KeysCommand::Generate } => {
            println!("{}", MasterKey::generate().1);
            Ok(())
        }
        Command::Keys { command: KeysCommand::Rotate { retire_old } } => rotate_keys(&config, retire_old).await,
        Command::Licenses { command: LicensesCommand::Sync { suite, corp, calls_per_minute } } => {
            sync_licenses(&config, SyncJob { suite_id: suite, corpid: corp, calls_per_minute }).await
        }
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
    let db = app::open_sealed(config).await.map_err(|e| e.to_string())?;
    tracing::info!(database = db.backend_name(), "migrations applied");
    Ok(())
}

async fn registry(config: &Config) -> Result<Arc<Registry>, String> {
    Ok(app::prepare(config).await.map_err(|e| e.to_string())?.registry)
}

fn secret(source: &str) -> Result<SecretString, String> {
    secret_value(source).map_err(|problem| format!("secret: {problem}"))
}

fn optional_secret(source: Option<String>) -> Result<Option<SecretString>, String> {
    source.as_deref().map(secret).transpose()
}

async fn manage_providers(config: &Config, command: ProvidersCommand) -> Result<(), String> {
    let registry = registry(config).await?;
    match command {
        ProvidersCommand::Add { corpid, name, secret: given, callback_token, encoding_aes_key } => {
            let input = ProviderInput {
                provider_corpid: corpid,
                name,
                secret: secret(&given)?,
                callback_token: optional_secret(callback_token)?,
                encoding_aes_key: optional_secret(encoding_aes_key)?,
            };
            let view = registry.create_provider(ACTOR_CLI, input).await.map_err(|e| e.to_string())?;
            println!("created provider {}", view.provider_corpid);
            println!("system-event URL  {}", view.callback_url);
        }
        ProvidersCommand::List => {
            for view in registry.provider_views().await.map_err(|e| e.to_string())? {
                println!(
                    "{}\tname={}\tcallback={}\tversion={}\tupdated={}",
                    view.provider_corpid,
                    view.name,
                    if view.has_callback { view.callback_url.as_str() } else { "-" },
                    view.version,
                    view.updated_at
                );
            }
        }
        ProvidersCommand::Update { corpid, name, secret: given, callback_token, encoding_aes_key } => {
            let patch = ProviderPatch {
                name,
                secret: optional_secret(given)?,
                callback_token: optional_secret(callback_token)?,
                encoding_aes_key: optional_secret(encoding_aes_key)?,
            };
            let changed = registry.update_provider(ACTOR_CLI, &corpid, patch).await.map_err(|e| e.to_string())?;
            print_changed("provider", corpid.as_str(), &changed);
        }
        ProvidersCommand::Remove { corpid } => {
            registry.remove_provider(ACTOR_CLI, &corpid).await.map_err(|e| e.to_string())?;
            println!("removed provider {corpid}");
        }
    }
    Ok(())
}

async fn manage_suites(config: &Config, command: SuitesCommand) -> Result<(), String> {
    let registry = registry(config).await?;
    let update = |patch: SuitePatch, suite_id: SuiteId| {
        let registry = registry.clone();
        async move {
            let changed = registry.update_suite(ACTOR_CLI, &suite_id, patch).await.map_err(|e| e.to_string())?;
            print_changed("suite", suite_id.as_str(), &changed);
            Ok::<(), String>(())
        }
    };
    match command {
        SuitesCommand::Add {
            suite_id,
            provider,
            kind,
            name,
            secret: given,
            callback_token,
            encoding_aes_key,
            disabled,
            permanent_code_api,
            description,
            logo_url,
        } => {
            let input = SuiteInput {
                suite_id,
                provider_corpid: provider,
                kind,
                name,
                enabled: !disabled,
                secret: secret(&given)?,
                callback_token: secret(&callback_token)?,
                encoding_aes_key: secret(&encoding_aes_key)?,
                permanent_code_api,
                description,
                logo_url,
            };
            let view = registry.create_suite(ACTOR_CLI, input).await.map_err(|e| e.to_string())?;
            println!("created suite {} ({})", view.suite_id, view.kind);
            println!("command URL  {}", view.callback_urls.command);
            println!("data URL     {}", view.callback_urls.data);
        }
        SuitesCommand::List => {
            for view in registry.suite_views().await.map_err(|e| e.to_string())? {
                println!(
                    "{}\t{}\t{}\tprovider={}\tname={}\tcorps={}\tticket={}\tcommand_url={}",
                    view.suite_id,
                    view.kind,
                    if view.enabled { "enabled" } else { "disabled" },
                    view.provider_corpid,
                    view.name,
                    view.active_corps,
                    view.ticket_updated_at.as_deref().unwrap_or("none"),
                    view.callback_urls.command
                );
            }
        }
        SuitesCommand::Update {
            suite_id,
            kind,
            name,
            secret: given,
            callback_token,
            encoding_aes_key,
            permanent_code_api,
            description,
            logo_url,
        } => {
            let patch = SuitePatch {
                kind,
                permanent_code_api,
                name,
                enabled: None,
                secret: optional_secret(given)?,
                callback_token: optional_secret(callback_token)?,
                encoding_aes_key: optional_secret(encoding_aes_key)?,
                description,
                logo_url,
            };
            update(patch, suite_id).await?;
        }
        SuitesCommand::Disable { suite_id } => {
            update(SuitePatch { enabled: Some(false), ..SuitePatch::default() }, suite_id).await?;
        }
        SuitesCommand::Enable { suite_id } => {
            update(SuitePatch { enabled: Some(true), ..SuitePatch::default() }, suite_id).await?;
        }
        SuitesCommand::Remove { suite_id, force } => {
            registry.remove_suite(ACTOR_CLI, &suite_id, force).await.map_err(|e| e.to_string())?;
            println!("removed suite {suite_id}");
        }
    }
    Ok(())
}

fn print_changed(what: &str, id: &str, changed: &[&str]) {
    if changed.is_empty() {
        println!("{what} {id} unchanged");
    } else {
        println!("updated {what} {id}: {}", changed.join(", "));
    }
}

async fn apply(config: &Config, file: &std::path::Path) -> Result<(), String> {
    let registry = registry(config).await?;
    let changes = apply_file(&registry, file, ACTOR_CLI).await.map_err(|e| e.to_string())?;
    let mut changed = 0;
    for change in &changes {
        match &change.outcome {
            Outcome::Created => println!("created {} {}", change.what, change.id),
            Outcome::Updated(fields) => println!("updated {} {}: {}", change.what, change.id, fields.join(", ")),
            Outcome::Unchanged => continue,
        }
        changed += 1;
    }
    println!("{changed} changed, {} unchanged", changes.len() - changed);
    Ok(())
}

async fn rotate_keys(config: &Config, retire_old: bool) -> Result<(), String> {
    let db = app::open_sealed(config).await.map_err(|e| e.to_string())?;
    let rotation = keys::rotate(&db, retire_old).await.map_err(|e| e.to_string())?;
    println!("rotated the master key: {} -> {}", rotation.from, rotation.to);
    for (column, count) in &rotation.report.resealed {
        println!("  re-sealed {count} in {column}");
    }
    if retire_old {
        println!("older keys dropped from {}", rotation.file.display());
    } else {
        println!("older keys kept in {} for what is sealed outside this database (backups)", rotation.file.display());
    }
    Ok(())
}

async fn manage_webhooks(config: &Config, command: WebhooksCommand) -> Result<(), String> {
    let db = app::prepare(config).await.map_err(|e| e.to_string())?.db;
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
                    hook.suite_id.as_ref().map_or("*", SuiteId::as_str),
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
    let db = app::prepare(config).await.map_err(|e| e.to_string())?.db;
    match command {
        ApiKeysCommand::Create { name, scopes, suites } => {
            let new = access::NewKey { name, scopes, suites: (!suites.is_empty()).then_some(suites) };
            let created = access::create(&db, new, ACTOR_CLI).await.map_err(|e| e.to_string())?;
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
            access::revoke(&db, &name, ACTOR_CLI).await.map_err(|e| format!("{name}: {e}"))?;
            println!("revoked {name}");
        }
    }
    Ok(())
}

async fn sync_licenses(config: &Config, job: SyncJob) -> Result<(), String> {
    let licenses = app::license_service(config).await.map_err(|e| e.to_string())?;
    let summary = licenses.sync(&job, &mut |line| eprintln!("{line}")).await.map_err(|e| e.to_string())?;
    eprintln!(
        "{} corps synced ({} already by the interrupted run): {} members, {} orders",
        summary.corps, summary.already_done, summary.members, summary.orders
    );
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
