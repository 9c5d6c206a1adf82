//! Configuration: read once from the environment (and `.env`), validated before
//! anything starts. Every problem names its variable; secrets are wrapped so that
//! `Debug` output and logs never show them.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::crypto::{CallbackKeys, KeyError};
use crate::model::{ProviderCorpId, SuiteId, SuiteKind};

/// Every variable the service reads. `.env.example` lists exactly these (a test checks it).
pub const VARIABLES: &[&str] = &[
    "DATABASE_URL",
    "LISTEN_ADDR",
    "PUBLIC_BASE_URL",
    "WECOM_API_BASE",
    "ADMIN_TOKEN",
    "MASTER_KEY",
    "MASTER_KEY_FILE",
    "WECOM_PROVIDER_CORPID",
    "WECOM_PROVIDER_SECRET",
    "WECOM_PROVIDER_TOKEN",
    "WECOM_PROVIDER_ENCODING_AES_KEY",
    "WECOM_SUITE_ID",
    "WECOM_SUITE_SECRET",
    "WECOM_SUITE_TOKEN",
    "WECOM_SUITE_ENCODING_AES_KEY",
    "WECOM_SUITE_KIND",
    "WECOM_INSTALL_AUTH_TYPE",
    "EFFECT_CONCURRENCY",
    "SHUTDOWN_GRACE_SECONDS",
    "EVENT_RETENTION_DAYS",
    "LICENSE_EXPIRY_NOTICE_DAYS",
    "REQUEST_READ_TIMEOUT_SECONDS",
    "HTTP_WORKERS",
    "MAX_CONNECTIONS",
    "CALLBACK_BODY_BUDGET_MIB",
    "API_RATE_LIMIT_PER_MINUTE",
    "INSTALL_RATE_LIMIT_PER_MINUTE",
    "TRUSTED_PROXIES",
    "METRICS_ADDR",
    "TEMPLATES_DIR",
    "CONSOLE_SESSION_HOURS",
    "RUST_LOG",
    "LOG_FORMAT",
];

/// The shortest bearer token accepted.
pub const MIN_BEARER_CHARS: usize = 32;
const DEFAULT_DATABASE_URL: &str = "sqlite://data/wecom-provider.db";
const DEFAULT_LISTEN_ADDR: &str = "127.0.0.1:8080";
const DEFAULT_WECOM_API_BASE: &str = "https://qyapi.weixin.qq.com";

#[derive(Debug, Clone)]
pub struct Config {
    pub database: DatabaseUrl,
    pub listen_addr: SocketAddr,
    pub public_base_url: Url,
    pub wecom_api_base: Url,
    pub admin_token: Option<SecretString>,
    /// The key ring every stored secret is sealed under.
    pub master_key: MasterKeySource,
    pub provider: Option<ProviderSeed>,
    pub suite: Option<SuiteSeed>,
    /// `auth_type` of set_session_info: 1 marks installs from the install page as test installs.
    pub install_auth_type: u8,
    /// Effects applied at once, across corps and suites (one corp's stay in order).
    pub effect_concurrency: usize,
    /// On SIGTERM, how long effects in flight may still finish.
    pub shutdown_grace: std::time::Duration,
    /// Done events older than this are pruned; callbacks signed before it are refused.
    pub event_retention_days: u32,
    /// `license_expiring` is appended this many days before a code or a trial ends.
    pub license_expiry_notice_days: u32,
    pub edge: EdgeLimits,
    /// HTTP worker threads, each with its own event loop.
    pub http_workers: usize,
    /// Where `/metrics` is served; `None`: nowhere.
    pub metrics_addr: Option<SocketAddr>,
    /// Page templates here replace the built-in ones of the same name.
    pub templates_dir: Option<PathBuf>,
    /// A console sign-in lasts this long (absolute, not renewed by use).
    pub console_session: std::time::Duration,
    pub log_filter: String,
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for a log pipeline.
    Json,
}

/// What one client, or all of them together, may hold of the public listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeLimits {
    /// A request's head and body must each arrive within this.
    pub request_read_timeout: std::time::Duration,
    /// Open connections across all HTTP workers; past it new ones wait in the backlog.
    pub max_connections: usize,
    /// Bytes of callback bodies over 16 KiB buffered at once; a body that would
    /// exceed it is refused with 503.
    pub callback_body_budget_bytes: usize,
    /// Requests to `/api/v1` per client address and minute.
    pub api_requests_per_minute: u32,
    /// Views of the public install pages per client address and minute.
    pub install_requests_per_minute: u32,
    /// Reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    /// Kept whole: libpq parses it; it may carry a password, hence the redacting `Debug`.
    Postgres(String),
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "Sqlite({})", path.display()),
            Self::Postgres(_) => f.write_str("Postgres(..)"),
        }
    }
}

/// Where the master key ring comes from.
#[derive(Debug, Clone)]
pub enum MasterKeySource {
    /// `MASTER_KEY`: one key, base64 of 32 bytes (checked when read).
    Inline(SecretString),
    /// `MASTER_KEY_FILE`: one base64 key per line, the current one first; `keys
    /// rotate` rewrites it and running instances follow.
    File(PathBuf),
    /// The embedded default: a key file beside the SQLite database, created on first start.
    BesideDatabase(PathBuf),
    /// PostgreSQL without a key: refused at start.
    Required,
}

#[derive(Debug, Clone)]
pub struct ProviderSeed {
    pub corpid: ProviderCorpId,
    pub secret: SecretString,
    /// The provider's own system-event callback credentials, when configured.
    pub callback: Option<CallbackSeed>,
}

#[derive(Debug, Clone)]
pub struct SuiteSeed {
    pub suite_id: SuiteId,
    pub kind: SuiteKind,
    pub secret: SecretString,
    pub callback: CallbackSeed,
}

#[derive(Debug, Clone)]
pub struct CallbackSeed {
    pub token: SecretString,
    pub encoding_aes_key: SecretString,
}

/// One variable and what is wrong with it; the message never contains the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.variable, self.problem)
    }
}

#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "invalid configuration: {error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    /// Reads `.env` (if present) and the process environment.
    pub fn from_env() -> Result<Self, ConfigErrors> {
        // A missing .env is normal; a malformed one is reported by the values it fails to set.
        let _ = dotenvy::dotenv();
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Builds the configuration from any lookup; every variable of [`VARIABLES`] is
    /// read exactly once whatever the values, so tests can record what is read.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigErrors> {
        let mut errors = Vec::new();
        let get = |name: &'static str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());

        let database_url = get("DATABASE_URL");
        let listen_addr = get("LISTEN_ADDR");
        let public_base_url = get("PUBLIC_BASE_URL");
        let wecom_api_base = get("WECOM_API_BASE");
        let admin_token = get("ADMIN_TOKEN");
        let master_key = get("MASTER_KEY");
        let master_key_file = get("MASTER_KEY_FILE");
        let provider_corpid = get("WECOM_PROVIDER_CORPID");
        let provider_secret = get("WECOM_PROVIDER_SECRET");
        let provider_token = get("WECOM_PROVIDER_TOKEN");
        let provider_aes_key = get("WECOM_PROVIDER_ENCODING_AES_KEY");
        let suite_id = get("WECOM_SUITE_ID");
        let suite_secret = get("WECOM_SUITE_SECRET");
        let suite_token = get("WECOM_SUITE_TOKEN");
        let suite_aes_key = get("WECOM_SUITE_ENCODING_AES_KEY");
        let suite_kind = get("WECOM_SUITE_KIND");
        let install_auth_type = get("WECOM_INSTALL_AUTH_TYPE");
        let effect_concurrency = get("EFFECT_CONCURRENCY");
        let shutdown_grace = get("SHUTDOWN_GRACE_SECONDS");
        let event_retention_days = get("EVENT_RETENTION_DAYS");
        let license_expiry_notice_days = get("LICENSE_EXPIRY_NOTICE_DAYS");
        let request_read_timeout = get("REQUEST_READ_TIMEOUT_SECONDS");
        let max_connections = get("MAX_CONNECTIONS");
        let http_workers = get("HTTP_WORKERS");
        let callback_body_budget = get("CALLBACK_BODY_BUDGET_MIB");
        let api_rate_limit = get("API_RATE_LIMIT_PER_MINUTE");
        let install_rate_limit = get("INSTALL_RATE_LIMIT_PER_MINUTE");
        let trusted_proxies = get("TRUSTED_PROXIES");
        let metrics_addr = get("METRICS_ADDR");
        let templates_dir = get("TEMPLATES_DIR");
        let console_session_hours = get("CONSOLE_SESSION_HOURS");
        let log_filter = get("RUST_LOG");
        let log_format = get("LOG_FORMAT");

        let database = parse_database_url(database_url.as_deref().unwrap_or(DEFAULT_DATABASE_URL))
            .map_err(|problem| errors.push(ConfigError { variable: "DATABASE_URL", problem }))
            .ok();

        let listen_addr = listen_addr
            .as_deref()
            .unwrap_or(DEFAULT_LISTEN_ADDR)
            .parse::<SocketAddr>()
            .map_err(|_| {
                errors.push(ConfigError {
                    variable: "LISTEN_ADDR",
                    problem: "must be an address with a port, such as 127.0.0.1:8080".into(),
                })
            })
            .ok();

        let public_base_url = match (&public_base_url, listen_addr) {
            (Some(raw), _) => parse_http_url("PUBLIC_BASE_URL", raw, &mut errors),
            (None, Some(addr)) => Url::parse(&format!("http://{addr}")).ok(),
            (None, None) => None,
        };
        let wecom_api_base =
            parse_http_url("WECOM_API_BASE", wecom_api_base.as_deref().unwrap_or(DEFAULT_WECOM_API_BASE), &mut errors);

        let provider = match (provider_corpid, provider_secret) {
            (Some(corpid), Some(secret)) => {
                check_identifier("WECOM_PROVIDER_CORPID", &corpid, &mut errors);
                let callback = callback_seed(
                    ("WECOM_PROVIDER_TOKEN", provider_token),
                    ("WECOM_PROVIDER_ENCODING_AES_KEY", provider_aes_key),
                    &mut errors,
                );
                Some(ProviderSeed { corpid: corpid.into(), secret: secret.into(), callback })
            }
            (None, None) => {
                for (variable, value) in
                    [("WECOM_PROVIDER_TOKEN", &provider_token), ("WECOM_PROVIDER_ENCODING_AES_KEY", &provider_aes_key)]
                {
                    if value.is_some() {
                        errors.push(required_with("WECOM_PROVIDER_CORPID", variable));
                    }
                }
                None
            }
            (Some(_), None) => {
                errors.push(required_with("WECOM_PROVIDER_SECRET", "WECOM_PROVIDER_CORPID"));
                None
            }
            (None, Some(_)) => {
                errors.push(required_with("WECOM_PROVIDER_CORPID", "WECOM_PROVIDER_SECRET"));
                None
            }
        };

        let kind = match suite_kind.as_deref().map(str::parse::<SuiteKind>) {
            None => SuiteKind::ThirdParty,
            Some(Ok(kind)) => kind,
            Some(Err(error)) => {
                errors.push(ConfigError { variable: "WECOM_SUITE_KIND", problem: error.to_string() });
                SuiteKind::ThirdParty
            }
        };
        let suite = match suite_id {
            Some(suite_id) => {
                check_identifier("WECOM_SUITE_ID", &suite_id, &mut errors);
                if provider.is_none() && !errors.iter().any(|e| e.variable.starts_with("WECOM_PROVIDER")) {
                    errors.push(required_with("WECOM_PROVIDER_CORPID", "WECOM_SUITE_ID"));
                }
                let secret = suite_secret.or_else(|| {
                    errors.push(required_with("WECOM_SUITE_SECRET", "WECOM_SUITE_ID"));
                    None
                });
                let token = suite_token.clone().or_else(|| {
                    errors.push(required_with("WECOM_SUITE_TOKEN", "WECOM_SUITE_ID"));
                    None
                });
                let aes_key = suite_aes_key.clone().or_else(|| {
                    errors.push(required_with("WECOM_SUITE_ENCODING_AES_KEY", "WECOM_SUITE_ID"));
                    None
                });
                let suite_id = SuiteId::from(suite_id);
                match (secret, token, aes_key) {
                    (Some(secret), Some(token), Some(aes_key)) => callback_seed(
                        ("WECOM_SUITE_TOKEN", Some(token)),
                        ("WECOM_SUITE_ENCODING_AES_KEY", Some(aes_key)),
                        &mut errors,
                    )
                    .map(|callback| SuiteSeed { suite_id, kind, secret: secret.into(), callback }),
                    _ => None,
                }
            }
            None => {
                for (variable, value) in [
                    ("WECOM_SUITE_KIND", &suite_kind),
                    ("WECOM_SUITE_SECRET", &suite_secret),
                    ("WECOM_SUITE_TOKEN", &suite_token),
                    ("WECOM_SUITE_ENCODING_AES_KEY", &suite_aes_key),
                ] {
                    if value.is_some() {
                        errors.push(required_with("WECOM_SUITE_ID", variable));
                    }
                }
                None
            }
        };

        let install_auth_type = match install_auth_type.as_deref().unwrap_or("0") {
            "0" => 0,
            "1" => 1,
            _ => {
                errors.push(ConfigError {
                    variable: "WECOM_INSTALL_AUTH_TYPE",
                    problem: "must be 0 (formal installs) or 1 (test installs)".into(),
                });
                0
            }
        };

        let effect_concurrency =
            whole_number("EFFECT_CONCURRENCY", effect_concurrency.as_deref(), 16, 1..=1024, &mut errors);
        let shutdown_grace = std::time::Duration::from_secs(whole_number(
            "SHUTDOWN_GRACE_SECONDS",
            shutdown_grace.as_deref(),
            10,
            0..=600,
            &mut errors,
        ));
        let console_session_hours =
            whole_number("CONSOLE_SESSION_HOURS", console_session_hours.as_deref(), 8, 1..=168, &mut errors);
        let event_retention_days =
            whole_number("EVENT_RETENTION_DAYS", event_retention_days.as_deref(), 30, 1..=3650, &mut errors);
        let license_expiry_notice_days =
            whole_number("LICENSE_EXPIRY_NOTICE_DAYS", license_expiry_notice_days.as_deref(), 7, 1..=365, &mut errors);
        // One per core by default; fewer when several instances share a host's cores.
        let cores = std::thread::available_parallelism().map_or(1, |cores| cores.get() as u64);
        let http_workers = whole_number("HTTP_WORKERS", http_workers.as_deref(), cores, 1..=1024, &mut errors);
        let edge = edge_limits(
            [request_read_timeout, max_connections, callback_body_budget, api_rate_limit, install_rate_limit],
            trusted_proxies.as_deref(),
            &mut errors,
        );

        // A bearer anyone can guess is no protection for tokens and permanent data.
        if admin_token.as_ref().is_some_and(|token| token.chars().count() < MIN_BEARER_CHARS) {
            errors.push(ConfigError {
                variable: "ADMIN_TOKEN",
                problem: format!("must be at least {MIN_BEARER_CHARS} characters (for example: openssl rand -hex 32)"),
            });
        }

        let master_key = match (master_key, master_key_file, &database) {
            (Some(_), Some(_), _) => {
                errors.push(ConfigError {
                    variable: "MASTER_KEY_FILE",
                    problem: "must not be set together with MASTER_KEY (choose one)".into(),
                });
                MasterKeySource::Required
            }
            (Some(key), None, _) => {
                if !is_base64_of_32_bytes(&key) {
                    errors.push(ConfigError {
                        variable: "MASTER_KEY",
                        problem: "must be base64 of 32 bytes (make one with: wecom-provider keys generate)".into(),
                    });
                }
                MasterKeySource::Inline(key.into())
            }
            (None, Some(path), _) => MasterKeySource::File(PathBuf::from(path)),
            (None, None, Some(DatabaseUrl::Sqlite(path))) => {
                MasterKeySource::BesideDatabase(path.with_extension("key"))
            }
            (None, None, _) => MasterKeySource::Required,
        };

        let metrics_addr = metrics_addr.and_then(|addr| {
            addr.parse::<SocketAddr>()
                .map_err(|_| {
                    let problem = "must be an address with a port, such as 127.0.0.1:9090".into();
                    errors.push(ConfigError { variable: "METRICS_ADDR", problem });
                })
                .ok()
        });
        let templates_dir = templates_dir.map(PathBuf::from).filter(|dir| {
            let is_dir = dir.is_dir();
            if !is_dir {
                errors.push(ConfigError { variable: "TEMPLATES_DIR", problem: "must be a directory".into() });
            }
            is_dir
        });
        let log_format = match log_format.as_deref().unwrap_or("text") {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            _ => {
                errors.push(ConfigError { variable: "LOG_FORMAT", problem: "must be text or json".into() });
                LogFormat::Text
            }
        };
        let log_filter = log_filter.unwrap_or_else(|| "info".to_owned());
        if tracing_subscriber::EnvFilter::try_new(&log_filter).is_err() {
            errors.push(ConfigError {
                variable: "RUST_LOG",
                problem: "is not a valid log filter (for example: info,wecom_provider=debug)".into(),
            });
        }

        match (database, listen_addr, public_base_url, wecom_api_base) {
            (Some(database), Some(listen_addr), Some(public_base_url), Some(wecom_api_base)) if errors.is_empty() => {
                Ok(Config {
                    database,
                    listen_addr,
                    public_base_url,
                    wecom_api_base,
                    admin_token: admin_token.map(SecretString::from),
                    master_key,
                    provider,
                    suite,
                    install_auth_type,
                    effect_concurrency: usize::try_from(effect_concurrency).unwrap_or(16),
                    shutdown_grace,
                    event_retention_days: u32::try_from(event_retention_days).unwrap_or(30),
                    license_expiry_notice_days: u32::try_from(license_expiry_notice_days).unwrap_or(7),
                    edge,
                    http_workers: usize::try_from(http_workers).unwrap_or(1),
                    metrics_addr,
                    templates_dir,
                    console_session: std::time::Duration::from_secs(console_session_hours * 3600),
                    log_filter,
                    log_format,
                })
            }
            _ => Err(ConfigErrors(errors)),
        }
    }
}

/// The edge settings, in the order of their variables in [`VARIABLES`]; all unset
/// gives the defaults.
fn edge_limits(
    values: [Option<String>; 5],
    trusted_proxies: Option<&str>,
    errors: &mut Vec<ConfigError>,
) -> EdgeLimits {
    let [read_timeout, connections, body_budget, api_rate, install_rate] = values;
    let mut number = |variable, value: Option<String>, default, range| {
        // The ranges keep every value within usize and u32.
        whole_number(variable, value.as_deref(), default, range, errors)
    };
    let read_timeout = number("REQUEST_READ_TIMEOUT_SECONDS", read_timeout, 10, 1..=300);
    let connections = number("MAX_CONNECTIONS", connections, 2048, 16..=1_000_000);
    let body_budget_mib = number("CALLBACK_BODY_BUDGET_MIB", body_budget, 32, 1..=4096);
    let api_rate = number("API_RATE_LIMIT_PER_MINUTE", api_rate, 6000, 1..=10_000_000);
    let install_rate = number("INSTALL_RATE_LIMIT_PER_MINUTE", install_rate, 60, 1..=1_000_000);
    let trusted_proxies = trusted_proxies
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|address| !address.is_empty())
        .filter_map(|address| {
            address
                .parse()
                .map_err(|_| {
                    let problem = "must be a comma-separated list of IP addresses, such as 127.0.0.1,10.0.0.2".into();
                    errors.push(ConfigError { variable: "TRUSTED_PROXIES", problem });
                })
                .ok()
        })
        .collect();
    EdgeLimits {
        request_read_timeout: std::time::Duration::from_secs(read_timeout),
        max_connections: usize::try_from(connections).unwrap_or(usize::MAX),
        callback_body_budget_bytes: usize::try_from(body_budget_mib << 20).unwrap_or(usize::MAX),
        api_requests_per_minute: u32::try_from(api_rate).unwrap_or(u32::MAX),
        install_requests_per_minute: u32::try_from(install_rate).unwrap_or(u32::MAX),
        trusted_proxies,
    }
}

/// A whole number in `range`, `default` when unset.
fn whole_number(
    variable: &'static str,
    value: Option<&str>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
    errors: &mut Vec<ConfigError>,
) -> u64 {
    let Some(value) = value else {
        return default;
    };
    match value.parse::<u64>() {
        Ok(number) if range.contains(&number) => number,
        _ => {
            let problem = format!("must be a whole number from {} to {}", range.start(), range.end());
            errors.push(ConfigError { variable, problem });
            default
        }
    }
}

fn is_base64_of_32_bytes(text: &str) -> bool {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text).is_ok_and(|bytes| bytes.len() == 32)
}

fn required_with(variable: &'static str, because: &str) -> ConfigError {
    ConfigError { variable, problem: format!("must be set when {because} is set") }
}

/// Identifiers become URL path segments and database keys: keep them to WeCom's alphabet.
fn check_identifier(variable: &'static str, value: &str, errors: &mut Vec<ConfigError>) {
    let valid = value.len() <= 64 && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !valid {
        errors.push(ConfigError { variable, problem: "must be letters, digits, '-' or '_' (at most 64)".into() });
    }
}

fn callback_seed(
    (token_var, token): (&'static str, Option<String>),
    (key_var, aes_key): (&'static str, Option<String>),
    errors: &mut Vec<ConfigError>,
) -> Option<CallbackSeed> {
    match (token, aes_key) {
        (Some(token), Some(aes_key)) => match CallbackKeys::new(&token, &aes_key) {
            Ok(_) => Some(CallbackSeed { token: token.into(), encoding_aes_key: aes_key.into() }),
            Err(error) => {
                let variable = match error {
                    KeyError::TokenInvalid => token_var,
                    _ => key_var,
                };
                errors.push(ConfigError { variable, problem: key_problem(&error) });
                None
            }
        },
        (None, None) => None,
        (Some(_), None) => {
            errors.push(required_with(key_var, token_var));
            None
        }
        (None, Some(_)) => {
            errors.push(required_with(token_var, key_var));
            None
        }
    }
}

fn key_problem(error: &KeyError) -> String {
    match error {
        KeyError::TokenInvalid => "must be 1 to 32 letters or digits".into(),
        _ => "must be 43 characters of base64 ([A-Za-z0-9]) decoding to 32 bytes".into(),
    }
}

fn parse_database_url(raw: &str) -> Result<DatabaseUrl, String> {
    if let Some(path) = raw.strip_prefix("sqlite://") {
        if path.is_empty() {
            return Err("sqlite:// needs a file path, such as sqlite://data/wecom-provider.db".into());
        }
        Ok(DatabaseUrl::Sqlite(PathBuf::from(path)))
    } else if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
        Url::parse(raw).map_err(|_| "is not a valid postgres:// URL".to_owned())?;
        Ok(DatabaseUrl::Postgres(raw.to_owned()))
    } else {
        Err("must start with sqlite://, postgres:// or postgresql://".into())
    }
}

fn parse_http_url(variable: &'static str, raw: &str, errors: &mut Vec<ConfigError>) -> Option<Url> {
    match Url::parse(raw) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Some(url),
        _ => {
            errors.push(ConfigError { variable, problem: "must be an http:// or https:// URL".into() });
            None
        }
    }
}

impl CallbackSeed {
    /// The verified keys; the seed was validated when the configuration was read.
    pub fn keys(&self) -> Result<CallbackKeys, KeyError> {
        CallbackKeys::new(self.token.expose_secret(), self.encoding_aes_key.expose_secret())
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::{BTreeSet, HashMap};

    use super::*;

    const AES_KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    fn problems(vars: &[(&str, &str)]) -> Vec<&'static str> {
        config(vars).expect_err("config should be rejected").0.iter().map(|e| e.variable).collect()
    }

    fn full() -> Vec<(&'static str, &'static str)> {
        vec![
            ("WECOM_PROVIDER_CORPID", "wwprovider"),
            ("WECOM_PROVIDER_SECRET", "provider-secret-value"),
            ("WECOM_SUITE_ID", "wwsuite"),
            ("WECOM_SUITE_SECRET", "suite-secret-value"),
            ("WECOM_SUITE_TOKEN", "QDG6eK"),
            ("WECOM_SUITE_ENCODING_AES_KEY", AES_KEY),
            ("ADMIN_TOKEN", "admin-token-value-0123456789abcdef"),
        ]
    }

    #[test]
    fn env_example_lists_exactly_the_variables_the_code_reads() {
        let read = RefCell::new(BTreeSet::new());
        let _ = Config::from_lookup(|name| {
            read.borrow_mut().insert(name.to_owned());
            None
        });
        let example =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.env.example")).expect(".env.example exists");
        let listed: BTreeSet<String> = example
            .lines()
            .map(|line| line.trim().trim_start_matches('#').trim())
            .filter_map(|line| line.split_once('=').map(|(name, _)| name.trim().to_owned()))
            .filter(|name| !name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
            .collect();
        let declared: BTreeSet<String> = VARIABLES.iter().map(|v| v.to_string()).collect();
        assert_eq!(read.into_inner(), declared, "VARIABLES differs from what from_lookup reads");
        assert_eq!(listed, declared, ".env.example differs from the variables the code reads");
    }

    #[test]
    fn defaults_apply_on_an_empty_environment() {
        let config = config(&[]).expect("empty environment is valid");
        assert_eq!(config.database, DatabaseUrl::Sqlite(PathBuf::from("data/wecom-provider.db")));
        assert_eq!(config.listen_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(config.public_base_url.as_str(), "http://127.0.0.1:8080/");
        assert_eq!(config.wecom_api_base.as_str(), "https://qyapi.weixin.qq.com/");
        assert!(config.admin_token.is_none() && config.provider.is_none() && config.suite.is_none());
        assert_eq!(config.install_auth_type, 0);
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        assert_eq!(config.http_workers, cores, "one HTTP worker per core");
        assert_eq!(self::config(&[("HTTP_WORKERS", "3")]).expect("valid").http_workers, 3);
    }

    #[test]
    fn a_full_seed_is_accepted_with_the_official_key_and_its_trailing_bits() {
        let config = config(&full()).expect("valid");
        let suite = config.suite.expect("suite seeded");
        assert_eq!(suite.suite_id.as_str(), "wwsuite");
        assert!(suite.callback.keys().is_ok());
        assert_eq!(config.provider.expect("provider").corpid.as_str(), "wwprovider");
    }

    #[test]
    fn each_bad_value_is_named() {
        assert_eq!(problems(&[("DATABASE_URL", "mysql://x")]), ["DATABASE_URL"]);
        assert_eq!(problems(&[("LISTEN_ADDR", "localhost")]), ["LISTEN_ADDR"]);
        assert_eq!(problems(&[("PUBLIC_BASE_URL", "not a url")]), ["PUBLIC_BASE_URL"]);
        assert_eq!(problems(&[("WECOM_API_BASE", "ftp://x")]), ["WECOM_API_BASE"]);
        assert_eq!(problems(&[("WECOM_INSTALL_AUTH_TYPE", "2")]), ["WECOM_INSTALL_AUTH_TYPE"]);
        assert_eq!(problems(&[("RUST_LOG", "info,[=")]), ["RUST_LOG"]);
        assert_eq!(problems(&[("ADMIN_TOKEN", &"x".repeat(31))]), ["ADMIN_TOKEN"]);
        assert!(config(&[("ADMIN_TOKEN", &"x".repeat(32))]).is_ok());
        for (variable, value) in [
            ("EFFECT_CONCURRENCY", "0"),
            ("SHUTDOWN_GRACE_SECONDS", "ten"),
            ("EVENT_RETENTION_DAYS", "0"),
            ("HTTP_WORKERS", "0"),
        ] {
            assert_eq!(problems(&[(variable, value)]), [variable]);
        }
        let mut short_key = full();
        short_key[5].1 = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2";
        assert_eq!(problems(&short_key), ["WECOM_SUITE_ENCODING_AES_KEY"]);
        let mut bad_token = full();
        bad_token[4].1 = "with space";
        assert_eq!(problems(&bad_token), ["WECOM_SUITE_TOKEN"]);
    }

    #[test]
    fn incomplete_seeds_name_the_missing_variable() {
        assert_eq!(problems(&[("WECOM_PROVIDER_CORPID", "ww1")]), ["WECOM_PROVIDER_SECRET"]);
        let without_secret: Vec<_> = full().into_iter().filter(|(k, _)| *k != "WECOM_SUITE_SECRET").collect();
        assert_eq!(problems(&without_secret), ["WECOM_SUITE_SECRET"]);
        let without_provider: Vec<_> = full().into_iter().filter(|(k, _)| !k.starts_with("WECOM_PROVIDER")).collect();
        assert_eq!(problems(&without_provider), ["WECOM_PROVIDER_CORPID"]);
        assert_eq!(
            problems(&[
                ("WECOM_PROVIDER_CORPID", "ww1"),
                ("WECOM_PROVIDER_SECRET", "s"),
                ("WECOM_PROVIDER_TOKEN", "t")
            ]),
            ["WECOM_PROVIDER_ENCODING_AES_KEY"]
        );
    }

    #[test]
    fn errors_and_debug_output_never_contain_secret_values() {
        let seeded = config(&full()).expect("valid");
        let debug = format!("{seeded:?}");
        for secret in ["provider-secret-value", "suite-secret-value", "QDG6eK", AES_KEY, "admin-token-value"] {
            assert!(!debug.contains(secret), "Debug leaks {secret}");
        }
        let mut bad = full();
        bad[5].1 = "short-key-value!";
        let message = config(&bad).expect_err("rejected").to_string();
        assert!(!message.contains("short-key-value"), "error echoes the value: {message}");
        assert!(message.contains("WECOM_SUITE_ENCODING_AES_KEY"));
    }
}
