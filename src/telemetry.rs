//! Metrics in Prometheus' text format, on a listener of their own (`METRICS_ADDR`)
//! so they are never served beside the public callback URLs. Labels are bounded
//! and never secret: routes, outcomes, kinds, suite and webhook ids; never a corp
//! or a user. Counters and histograms are recorded where the work happens; the
//! gauges that describe stored state are read from the database at each scrape.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{HttpResponse, web};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;

use crate::store::now_ms;
use crate::store::{Db, StoreResult, events, suites, webhooks};

/// Callbacks answered: `route` (`command`, `data`, `provider`), `method`, `status`.
pub const CALLBACKS: &str = "wecom_callbacks_total";
/// From a callback's arrival to its answer: `route`.
pub const CALLBACK_SECONDS: &str = "wecom_callback_ack_seconds";
/// Callbacks committed together by the event writer.
pub const INTAKE_BATCH_SIZE: &str = "wecom_intake_batch_size";
/// Seconds since each suite's ticket arrived: `suite_id`.
pub const SUITE_TICKET_AGE: &str = "wecom_suite_ticket_age_seconds";
/// 1 when the suite has a ticket, 0 before its first: `suite_id`.
pub const SUITE_HAS_TICKET: &str = "wecom_suite_has_ticket";
/// Token refreshes from WeCom: `kind` (`provider`, `suite`, `corp`), `outcome`.
pub const TOKEN_REFRESHES: &str = "wecom_token_refreshes_total";
/// WeCom's latency for a token refresh: `kind`.
pub const TOKEN_REFRESH_SECONDS: &str = "wecom_token_refresh_seconds";
/// Events whose effects are not applied yet.
pub const EFFECTS_PENDING: &str = "wecom_effects_pending";
/// Age of the oldest of them, 0 when there is none.
pub const EFFECTS_OLDEST_PENDING_AGE: &str = "wecom_effects_oldest_pending_age_seconds";
/// Webhook delivery attempts: `outcome` (`delivered`, `failed`); `dead` once given up.
pub const WEBHOOK_DELIVERIES: &str = "wecom_webhook_deliveries_total";
/// Events stored after a subscription's cursor: `webhook_id`.
pub const WEBHOOK_LAG: &str = "wecom_webhook_lag_events";
/// Non-zero errcodes WeCom answered: `endpoint` (its path), `errcode`.
pub const WECOM_ERRCODES: &str = "wecom_api_errcodes_total";
/// IDs converted: `kind`, `source` (`stored`: known already, or `wecom`: asked upstream).
pub const ID_CONVERSIONS: &str = "wecom_id_conversions_total";

/// Seconds, for latency histograms: from a fast commit to WeCom's deadline and past it.
const LATENCY_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
/// A gauge not set for this long is dropped: a removed suite or webhook stops reporting.
const GAUGE_IDLE: Duration = Duration::from_secs(600);

static RECORDER: OnceLock<PrometheusHandle> = OnceLock::new();

/// This process's WeCom errcodes of the last hour, oldest first, for the console.
static RECENT_ERRCODES: Mutex<VecDeque<ErrcodeSeen>> = Mutex::new(VecDeque::new());
const RECENT_WINDOW_MS: i64 = 60 * 60 * 1000;
/// Enough for a bad hour; past it the oldest are forgotten (the counter keeps them).
const RECENT_CAPACITY: usize = 4096;

/// One errcode WeCom answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrcodeSeen {
    pub at_ms: i64,
    pub endpoint: String,
    pub errcode: i64,
}

/// Records an errcode WeCom answered on `endpoint`.
pub fn wecom_errcode(endpoint: &str, errcode: i64) {
    metrics::counter!(WECOM_ERRCODES, "endpoint" => endpoint.to_owned(), "errcode" => errcode.to_string()).increment(1);
    let now = now_ms();
    let mut recent = RECENT_ERRCODES.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    while recent.front().is_some_and(|seen| seen.at_ms < now - RECENT_WINDOW_MS) || recent.len() >= RECENT_CAPACITY {
        recent.pop_front();
    }
    recent.push_back(ErrcodeSeen { at_ms: now, endpoint: endpoint.to_owned(), errcode });
}

/// The errcodes this process saw in the last hour, oldest first.
pub fn recent_wecom_errcodes() -> Vec<ErrcodeSeen> {
    let since = now_ms() - RECENT_WINDOW_MS;
    let recent = RECENT_ERRCODES.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    recent.iter().filter(|seen| seen.at_ms >= since).cloned().collect()
}

/// Installs the process's recorder (once; later calls answer the same handle).
pub fn recorder() -> Result<PrometheusHandle, BuildError> {
    if let Some(handle) = RECORDER.get() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(INTAKE_BATCH_SIZE.into()), BATCH_BUCKETS)?
        .idle_timeout(MetricKindMask::GAUGE, Some(GAUGE_IDLE))
        .install_recorder()?;
    Ok(RECORDER.get_or_init(|| handle).clone())
}

struct Scrape {
    db: Db,
    handle: PrometheusHandle,
}

/// Serves `GET /metrics` on `addr`; answers the bound address and the server's handle.
pub fn serve(addr: SocketAddr, db: Db, handle: PrometheusHandle) -> std::io::Result<(SocketAddr, ServerHandle)> {
    let scrape = web::Data::new(Scrape { db, handle });
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new().app_data(scrape.clone()).route("/metrics", web::get().to(metrics))
    })
    .workers(1)
    .disable_signals()
    .bind(addr)?;
    let bound = server.addrs().first().copied().unwrap_or(addr);
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    Ok((bound, handle))
}

async fn metrics(scrape: web::Data<Scrape>) -> HttpResponse {
    match scrape.db.run(read_stored_state).await {
        Ok(state) => state.record(now_ms()),
        // The counters still answer; the stale gauges say nothing new.
        Err(error) => tracing::warn!(%error, "metrics: stored state unreadable"),
    }
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(scrape.handle.render())
}

/// What the gauges report, read in one go.
struct StoredState {
    tickets: Vec<(String, Option<i64>)>,
    pending: events::Backlog,
    webhook_lags: Vec<(String, i64)>,
}

fn read_stored_state(conn: &mut crate::store::Conn) -> StoreResult<StoredState> {
    let tickets = suites::list_suites(conn)?
        .into_iter()
        .filter(|suite| suite.enabled)
        .map(|suite| (suite.suite_id.to_string(), suite.ticket_updated_at))
        .collect();
    let pending = events::backlog(conn)?;
    let newest = webhooks::newest_event_id(conn)?;
    let webhook_lags = webhooks::list(conn)?
        .into_iter()
        .filter(|hook| hook.enabled)
        .map(|hook| (hook.id, newest.get().saturating_sub(hook.cursor.get()).max(0)))
        .collect();
    Ok(StoredState { tickets, pending, webhook_lags })
}

impl StoredState {
    fn record(self, now_ms: i64) {
        let seconds = |ms: i64| (ms.max(0) as f64) / 1000.0;
        for (suite_id, arrived_at) in self.tickets {
            metrics::gauge!(SUITE_HAS_TICKET, "suite_id" => suite_id.clone())
                .set(f64::from(u8::from(arrived_at.is_some())));
            if let Some(arrived_at) = arrived_at {
                metrics::gauge!(SUITE_TICKET_AGE, "suite_id" => suite_id).set(seconds(now_ms - arrived_at));
            }
        }
        metrics::gauge!(EFFECTS_PENDING).set(self.pending.count as f64);
        let oldest_age = self.pending.oldest_received_at.map_or(0, |received_at| now_ms - received_at);
        metrics::gauge!(EFFECTS_OLDEST_PENDING_AGE).set(seconds(oldest_age));
        for (webhook_id, lag) in self.webhook_lags {
            metrics::gauge!(WEBHOOK_LAG, "webhook_id" => webhook_id).set(lag as f64);
        }
    }
}
