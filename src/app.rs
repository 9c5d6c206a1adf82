//! Assembling the service: database, seeds, intake, worker and HTTP server.

use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::dev::ServerHandle;
use secrecy::ExposeSecret;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::events::effects::Effects;
use crate::events::gateway::Gateway;
use crate::events::intake::Intake;
use crate::events::worker::Worker;
use crate::ids::Ids;
use crate::lifecycle::Lifecycle;
use crate::store::{Db, StoreError, now_ms, suites};
use crate::tokens::Tokens;
use crate::web::install::InstallSettings;
use crate::web::{self, AppState};
use crate::webhooks::{Deliverer, RetrySchedule};
use crate::wecom::client::WecomClient;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot start the event writer: {0}")]
    Writer(std::io::Error),
}

/// Knobs that are not configuration: tests use them to shape a run.
#[derive(Debug, Clone)]
pub struct StartOptions {
    /// Apply effects of stored events. Off, events are stored and acknowledged only,
    /// which is how a test stands for a process that died before its worker ran.
    pub run_worker: bool,
    /// HTTP worker threads; 0 means one per core.
    pub http_workers: usize,
    /// Stop on SIGINT/SIGTERM (the binary); tests stop the server themselves.
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
    worker: Option<(Arc<Worker>, JoinHandle<()>)>,
    checkpointer: Option<JoinHandle<()>>,
    webhooks: Option<Deliverer>,
}

/// Migrates, seeds the configured provider and suite, and starts serving.
pub async fn start(config: &Config, options: StartOptions) -> Result<Running, StartError> {
    let db = prepare_database(config).await?;

    let stored = Arc::new(Notify::new());
    let intake = Intake::start(db.clone(), stored.clone()).map_err(StartError::Writer)?;
    let tokens = Arc::new(Tokens::new(db.clone(), WecomClient::new(config.wecom_api_base.clone())));
    let lifecycle = Arc::new(Lifecycle::new(db.clone(), tokens.clone()));
    let ids = Arc::new(Ids::new(db.clone(), tokens.clone()));
    let worker = options.run_worker.then(|| {
        let effects = Effects::new(db.clone(), lifecycle.clone(), ids.clone());
        let worker = Arc::new(Worker::new(db.clone(), effects, stored));
        (worker.clone(), worker.spawn())
    });

    let state = actix_web::web::Data::new(Arc::new(AppState {
        db: db.clone(),
        gateway: Gateway::new(db.clone(), intake),
        tokens,
        lifecycle,
        ids,
        admin_token: config.admin_token.clone(),
        install: InstallSettings {
            public_base_url: config.public_base_url.clone(),
            auth_type: config.install_auth_type,
        },
    }));
    let mut server =
        actix_web::HttpServer::new(move || actix_web::App::new().app_data(state.clone()).configure(web::routes));
    if options.http_workers > 0 {
        server = server.workers(options.http_workers);
    }
    if !options.handle_signals {
        server = server.disable_signals();
    }
    let addr = config.listen_addr;
    let server = server.bind(addr).map_err(|source| StartError::Bind { addr, source })?;
    let bound = server.addrs().first().copied().unwrap_or(addr);
    let server = server.run();
    let handle = server.handle();
    let server_task = tokio::spawn(server);
    tracing::info!(addr = %bound, database = db.backend_name(), "wecom-provider listening");
    let checkpointer = db.spawn_checkpointer();
    let webhooks = options.run_webhooks.then(|| Deliverer::start(db.clone(), options.webhook_retries));
    Ok(Running { addr: bound, db, server: handle, server_task, worker, checkpointer, webhooks })
}

impl Running {
    /// Serves until the server stops (a signal, with `handle_signals`), then shuts down.
    pub async fn wait(self) -> std::io::Result<()> {
        let Running { server_task, worker, checkpointer, webhooks, .. } = self;
        let result = server_task.await.unwrap_or(Ok(()));
        stop_webhooks(webhooks).await;
        stop_worker(worker).await;
        checkpointer.inspect(JoinHandle::abort);
        result
    }

    /// Stops accepting, lets requests in flight finish, stops the worker.
    pub async fn stop(self) {
        self.server.stop(true).await;
        let _ = self.server_task.await;
        stop_webhooks(self.webhooks).await;
        stop_worker(self.worker).await;
        self.checkpointer.inspect(JoinHandle::abort);
    }
}

async fn stop_worker(worker: Option<(Arc<Worker>, JoinHandle<()>)>) {
    if let Some((worker, task)) = worker {
        task.abort();
        let _ = task.await;
        worker.release().await;
    }
}

async fn stop_webhooks(webhooks: Option<Deliverer>) {
    if let Some(deliverer) = webhooks {
        deliverer.stop().await;
    }
}

/// The ID service on the prepared database, for command-line tools.
pub async fn id_service(config: &Config) -> Result<Ids, StoreError> {
    let db = prepare_database(config).await?;
    let tokens = Arc::new(Tokens::new(db.clone(), WecomClient::new(config.wecom_api_base.clone())));
    Ok(Ids::new(db, tokens))
}

/// Opens the database, runs pending migrations and seeds the configured provider
/// and suite: what `serve` and the command-line tools start from.
pub async fn prepare_database(config: &Config) -> Result<Db, StoreError> {
    let db = Db::open(&config.database)?;
    db.migrate().await?;
    seed(&db, config).await?;
    Ok(db)
}

async fn seed(db: &Db, config: &Config) -> Result<(), StoreError> {
    let now = now_ms();
    let provider = config.provider.as_ref().map(|p| suites::ProviderSeedRow {
        provider_corpid: p.corpid.clone(),
        provider_secret: p.secret.expose_secret().to_owned(),
        callback_token: p.callback.as_ref().map(|c| c.token.expose_secret().to_owned()),
        encoding_aes_key: p.callback.as_ref().map(|c| c.encoding_aes_key.expose_secret().to_owned()),
        updated_at: now,
    });
    let suite = match (&config.suite, &config.provider) {
        (Some(s), Some(p)) => Some(suites::SuiteSeedRow {
            suite_id: s.suite_id.clone(),
            provider_corpid: p.corpid.clone(),
            suite_secret: s.secret.expose_secret().to_owned(),
            callback_token: s.callback.token.expose_secret().to_owned(),
            encoding_aes_key: s.callback.encoding_aes_key.expose_secret().to_owned(),
            updated_at: now,
        }),
        _ => None,
    };
    db.run(move |conn| {
        if let Some(provider) = &provider {
            suites::upsert_provider(conn, provider)?;
        }
        if let Some(suite) = &suite {
            suites::upsert_suite(conn, suite)?;
        }
        Ok(())
    })
    .await
}
