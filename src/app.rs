//! Assembling the service: database, seeds, intake, worker and HTTP server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::access::Authenticator;
use crate::config::Config;
use crate::events::effects::Effects;
use crate::events::gateway::Gateway;
use crate::events::intake::Intake;
use crate::events::retention::Retention;
use crate::events::worker::{Worker, WorkerHandle};
use crate::ids::Ids;
use crate::licenses::Licenses;
use crate::lifecycle::Lifecycle;
use crate::login::Login;
use crate::registry::{Registry, RegistryError, seed_from_environment};
use crate::store::sealing::{self, KeyringError, ResealError, Sealer};
use crate::store::{Db, StoreError};
use crate::tokens::Tokens;
use crate::web::edge::Edge;
use crate::web::install::InstallSettings;
use crate::web::pages::{Pages, PagesError};
use crate::web::{self, AppState};
use crate::webhooks::{Deliverer, RetrySchedule};
use crate::wecom::client::WecomClient;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("master key: {0}")]
    Keys(#[from] KeyringError),
    #[error(transparent)]
    Sealing(#[from] ResealError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot start the event writer: {0}")]
    Writer(std::io::Error),
    #[error("cannot record metrics: {0}")]
    Metrics(#[from] metrics_exporter_prometheus::BuildError),
    #[error(transparent)]
    Pages(#[from] PagesError),
}

/// Knobs that are not configuration: tests use them to shape a run.
#[derive(Debug, Clone)]
pub struct StartOptions {
    /// Apply effects of stored events. Off, events are stored and acknowledged only,
    /// which is how a test stands for a process that died before its worker ran.
    pub run_worker: bool,
    /// HTTP worker threads; 0 means as configured (`HTTP_WORKERS`).
    pub http_workers: usize,
    /// Stop on SIGINT/SIGTERM (the binary, through [`Running::wait`]); tests stop
    /// the server themselves.
    pub handle_signals: bool,
    /// Deliver webhooks from this instance.
    pub run_webhooks: bool,
    /// The webhook retry schedule; tests shrink it.
    pub webhook_retries: RetrySchedule,
}

impl Default for StartOptions {
    fn default() -> Self {
        StartOptions {
            run_worker: true,
            http_workers: 0,
            handle_signals: true,
            run_webhooks: true,
            webhook_retries: RetrySchedule::default(),
        }
    }
}

/// A started service.
pub struct Running {
    pub addr: SocketAddr,
    pub db: Db,
    server: ServerHandle,
    server_task: JoinHandle<std::io::Result<()>>,
    /// The `/metrics` listener, when `METRICS_ADDR` is set.
    metrics: Option<ServerHandle>,
    worker: Option<WorkerHandle>,
    webhooks: Option<Deliverer>,
    lifecycle: Arc<Lifecycle>,
    background: Vec<JoinHandle<()>>,
    shutdown_grace: Duration,
    handle_signals: bool,
}

/// The public listener, bound once for the preparing answer and then the service.
fn listen(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    // As actix binds: address reuse for quick restarts, and a backlog deep enough
    // for a burst of callbacks.
    const BACKLOG: i32 = 2048;
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Answers `503` on every path of `listener` until stopped: `/readyz` reads
/// `{"ready": false, "migrations": "running"}`.
fn answer_preparing(listener: &std::net::TcpListener) -> std::io::Result<ServerHandle> {
    let server = actix_web::HttpServer::new(|| {
        actix_web::App::new().default_service(actix_web::web::to(|| async {
            actix_web::HttpResponse::ServiceUnavailable()
                .insert_header(("Retry-After", "5"))
                .json(serde_json::json!({"ready": false, "migrations": "running"}))
        }))
    })
    .workers(1)
    .disable_signals()
    .listen(listener.try_clone()?)?
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    Ok(handle)
}

/// Migrates, seals, seeds the configured provider and suite, and starts serving.
pub async fn start(config: &Config, options: StartOptions) -> Result<Running, StartError> {
    let addr = config.listen_addr;
    let listener = listen(addr).map_err(|source| StartError::Bind { addr, source })?;
    // Migrations can wait on another instance's lock: meanwhile the address answers
    // 503 (`/readyz` says why) instead of refusing connections.
    let preparing = answer_preparing(&listener).map_err(|source| StartError::Bind { addr, source })?;
    let prepared = prepare(config).await;
    preparing.stop(false).await;
    let Prepared { db, registry } = prepared?;

    let stored = Arc::new(Notify::new());
    let pages = Pages::load(config.templates_dir.as_deref())?;
    let intake = Intake::start(db.clone(), stored.clone()).map_err(StartError::Writer)?;
    let tokens = Arc::new(Tokens::new(db.clone(), registry.clone(), WecomClient::new(config.wecom_api_base.clone())));
    let lifecycle = Arc::new(Lifecycle::new(db.clone(), registry.clone(), tokens.clone()));
    let ids = Arc::new(Ids::new(db.clone(), tokens.clone()));
    let licenses =
        Arc::new(Licenses::new(db.clone(), tokens.clone(), registry.clone(), config.license_expiry_notice_days));
    let worker = options.run_worker.then(|| {
        let effects = Effects::new(db.clone(), lifecycle.clone(), ids.clone(), licenses.clone());
        Arc::new(Worker::new(db.clone(), effects, stored, config.effect_concurrency)).spawn()
    });
    let retention = Retention::days(config.event_retention_days);

    let state = actix_web::web::Data::new(Arc::new(AppState {
        db: db.clone(),
        gateway: Gateway::new(db.clone(), intake, retention, registry.clone()),
        registry: registry.clone(),
        login: Arc::new(Login::new(db.clone(), registry.clone(), tokens.clone())),
        tokens,
        lifecycle: lifecycle.clone(),
        ids,
        licenses: licenses.clone(),
        access: Authenticator::new(db.clone(), config.admin_token.clone()),
        install: InstallSettings {
            public_base_url: config.public_base_url.clone(),
            auth_type: config.install_auth_type,
        },
        edge: Edge::new(config.edge.clone()),
        console: web::console::ConsoleSettings {
            session_lifetime: config.console_session,
            secure: config.public_base_url.scheme() == "https",
        },
        pages,
    }));
    let mut server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .wrap(actix_web::middleware::from_fn(web::request_id::tag))
            .app_data(state.clone())
            .configure(web::routes)
    });
    let workers = match options.http_workers {
        0 => config.http_workers,
        workers => workers,
    };
    let max_connections = connection_cap(config.edge.max_connections);
    server = server
        .workers(workers)
        .max_connections(max_connections.div_ceil(workers))
        .client_request_timeout(config.edge.request_read_timeout)
        .client_disconnect_timeout(Duration::from_secs(1));
    // Signals are handled in `Running::wait`, so effects and HTTP stop together.
    server = server.disable_signals().shutdown_timeout(config.shutdown_grace.as_secs());
    let server = server.listen(listener).map_err(|source| StartError::Bind { addr, source })?;
    let bound = server.addrs().first().copied().unwrap_or(addr);
    let server = server.run();
    let handle = server.handle();
    let server_task = tokio::spawn(server);
    tracing::info!(addr = %bound, database = db.backend_name(), "wecom-provider listening");
    let metrics = match config.metrics_addr {
        Some(addr) => {
            let (bound, handle) = crate::telemetry::serve(addr, db.clone(), crate::telemetry::recorder()?)
                .map_err(|source| StartError::Bind { addr, source })?;
            tracing::info!(addr = %bound, "metrics listening");
            Some(handle)
        }
        None => None,
    };
    let api_enabled = config.admin_token.is_some() || db.run(crate::store::api_keys::any_active).await?;
    log_diagnostics(&registry, api_enabled);
    let mut background: Vec<JoinHandle<()>> = db.spawn_checkpointer().into_iter().collect();
    background.push(registry.spawn_refresher());
    background.push(retention.spawn_pruner(db.clone()));
    if options.run_worker {
        background.push(licenses.spawn_expiry_scan());
    }
    let webhooks = options.run_webhooks.then(|| Deliverer::start(db.clone(), options.webhook_retries));
    Ok(Running {
        addr: bound,
        db,
        server: handle,
        server_task,
        metrics,
        worker,
        webhooks,
        lifecycle,
        background,
        shutdown_grace: config.shutdown_grace,
        handle_signals: options.handle_signals,
    })
}

impl Running {
    /// Serves until SIGINT/SIGTERM (with `handle_signals`) or the server stops, then
    /// shuts down: HTTP stops accepting while effects in flight finish within the
    /// grace period, on this runtime, which outlives the HTTP workers.
    pub async fn wait(mut self) -> std::io::Result<()> {
        let result = tokio::select! {
            result = &mut self.server_task => Some(result.unwrap_or(Ok(()))),
            () = shutdown_signal(), if self.handle_signals => None,
        };
        tracing::info!(grace = ?self.shutdown_grace, "shutting down");
        let Running { server, server_task, metrics, worker, webhooks, lifecycle, background, shutdown_grace, .. } =
            self;
        let http = async {
            if result.is_none() {
                server.stop(true).await;
                let _ = server_task.await;
            }
            stop_metrics(metrics).await;
        };
        tokio::join!(http, stop_worker(worker, shutdown_grace), stop_webhooks(webhooks));
        lifecycle.release_unsent_codes().await;
        background.iter().for_each(JoinHandle::abort);
        result.unwrap_or(Ok(()))
    }

    /// Stops accepting, lets requests in flight finish, stops the worker.
    pub async fn stop(self) {
        self.server.stop(true).await;
        let _ = self.server_task.await;
        stop_metrics(self.metrics).await;
        stop_webhooks(self.webhooks).await;
        stop_worker(self.worker, self.shutdown_grace).await;
        self.lifecycle.release_unsent_codes().await;
        self.background.iter().for_each(JoinHandle::abort);
    }
}

async fn stop_metrics(metrics: Option<ServerHandle>) {
    if let Some(metrics) = metrics {
        metrics.stop(true).await;
    }
}

async fn stop_worker(worker: Option<WorkerHandle>, grace: Duration) {
    if let Some(worker) = worker {
        worker.shutdown(grace).await;
    }
}

async fn stop_webhooks(webhooks: Option<Deliverer>) {
    if let Some(deliverer) = webhooks {
        deliverer.stop().await;
    }
}

/// Descriptors kept free of connections, for the database, the key file and logs.
const RESERVED_FILE_DESCRIPTORS: u64 = 128;

/// Raises the open-file limit to what the system allows (the soft limit is often
/// 1,024) and caps connections below it, so that a flood of idle connections is
/// held in the backlog instead of failing the database's and the listener's own files.
fn connection_cap(configured: usize) -> usize {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(%error, "cannot read or raise the open-file limit");
            return configured;
        }
    };
    let allowed = usize::try_from(limit.saturating_sub(RESERVED_FILE_DESCRIPTORS).max(16)).unwrap_or(usize::MAX);
    if allowed < configured {
        tracing::warn!(
            configured,
            allowed,
            open_file_limit = limit,
            "MAX_CONNECTIONS lowered to fit the open-file limit; raise LimitNOFILE to allow more"
        );
    }
    configured.min(allowed)
}

/// SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the service");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

/// The ID service on the prepared database, for command-line tools.
pub async fn id_service(config: &Config) -> Result<Ids, StartError> {
    let Prepared { db, registry } = prepare(config).await?;
    let tokens = Arc::new(Tokens::new(db.clone(), registry, WecomClient::new(config.wecom_api_base.clone())));
    Ok(Ids::new(db, tokens))
}

/// The license service on the prepared database, for `licenses sync`.
pub async fn license_service(config: &Config) -> Result<Licenses, StartError> {
    let Prepared { db, registry } = prepare(config).await?;
    let tokens = Arc::new(Tokens::new(db.clone(), registry.clone(), WecomClient::new(config.wecom_api_base.clone())));
    Ok(Licenses::new(db, tokens, registry, config.license_expiry_notice_days))
}

/// A migrated database whose secrets are sealed under the configured key, and the
/// registry of its providers and suites.
pub struct Prepared {
    pub db: Db,
    pub registry: Arc<Registry>,
}

/// Opens the database, runs pending migrations, seals what is stored unsealed (or
/// stops when the key cannot open what is sealed), loads the registry and seeds it
/// from the environment: what `serve` and the command-line tools start from.
pub async fn prepare(config: &Config) -> Result<Prepared, StartError> {
    let db = open_sealed(config).await?;
    let registry = Registry::load(db.clone(), config.public_base_url.clone()).await?;
    seed_from_environment(&registry, config).await?;
    Ok(Prepared { db, registry })
}

/// The database migrated, with every secret sealed under the configured key.
pub async fn open_sealed(config: &Config) -> Result<Db, StartError> {
    let sealer = Sealer::load(&config.master_key)?;
    let db = Db::open(&config.database, sealer.clone())?;
    db.migrate().await?;
    let report = db.run(move |conn| Ok(sealing::ensure_sealed(conn, &sealer))).await??;
    if let Some(report) = report.filter(|report| report.were_unsealed > 0) {
        tracing::info!(secrets = report.were_unsealed, "sealed the secrets stored before sealing existed");
    }
    Ok(db)
}

/// One line per provider and suite with the URLs to paste into WeCom, and a
/// warning for what a newcomer would otherwise wonder about.
fn log_diagnostics(registry: &Registry, api_enabled: bool) {
    let (providers, suites) = (registry.providers(), registry.suites());
    if providers.is_empty() || suites.is_empty() {
        tracing::warn!(
            providers = providers.len(),
            suites = suites.len(),
            "no provider or suite is configured: add them with `wecom-provider apply FILE.toml`, `providers add`/`suites add`, or the WECOM_* variables"
        );
    }
    for provider in &providers {
        if provider.callback.is_some() {
            tracing::info!(
                provider = %provider.provider_corpid,
                system_event_url = %registry.provider_callback_url(&provider.provider_corpid),
                "provider"
            );
        }
    }
    for suite in &suites {
        let urls = registry.callback_urls(&suite.suite_id);
        tracing::info!(
            suite = %suite.suite_id,
            kind = %suite.kind,
            enabled = suite.enabled,
            command_url = %urls.command,
            data_url = %urls.data,
            "suite: paste these into its 回调配置"
        );
    }
    if !api_enabled {
        tracing::warn!(
            "/api/v1 is disabled: set ADMIN_TOKEN (at least 32 characters) or create a key with `wecom-provider api-keys create`"
        );
    }
}
