//! The overview: each provider and suite with its ticket and health, the cached
//! tokens' states, the effects backlog and what failed in the last hour.

use std::collections::BTreeMap;

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use minijinja::{Value, context};
use serde::Serialize;

use super::session::Console;
use super::{at, failed, minutes_since};
use crate::store::console::{self as rows, TokenState};
use crate::store::{StoreError, events, now_ms};
use crate::telemetry::recent_wecom_errcodes;

/// WeCom pushes a suite_ticket every 10 minutes and each lasts 30: one older than
/// this means pushes stopped.
const TICKET_STALE_MINUTES: i64 = 30;

#[derive(Serialize)]
struct SuiteRow {
    suite_id: String,
    provider_corpid: String,
    name: String,
    kind: &'static str,
    active_corps: i64,
    ticket_age_minutes: Option<i64>,
    /// A catalog key: `admin.health.ok`, …
    health: &'static str,
    healthy: bool,
}

#[derive(Serialize)]
struct TokenRow {
    scope: String,
    key: String,
    state: &'static str,
    expires_at: Option<String>,
}

#[derive(Serialize)]
struct ErrcodeRow {
    endpoint: String,
    errcode: i64,
    count: usize,
}

fn token_state(token: &TokenState, now: i64) -> &'static str {
    match (token.refreshing_until, token.expires_at) {
        (Some(until), _) if until > now => "admin.token.refreshing",
        (_, Some(expires_at)) if expires_at > now => "admin.token.fresh",
        (_, Some(_)) => "admin.token.expired",
        (_, None) => "admin.token.none",
    }
}

pub(super) fn token_row(token: &TokenState, now: i64) -> Value {
    Value::from_serialize(TokenRow {
        scope: token.scope.clone(),
        key: token.key.clone(),
        state: token_state(token, now),
        expires_at: token.expires_at.map(at),
    })
}

fn ticket_age(ticket_updated_at: Option<&str>) -> Option<i64> {
    let parsed =
        time::OffsetDateTime::parse(ticket_updated_at?, &time::format_description::well_known::Rfc3339).ok()?;
    let unix_ms = i64::try_from(parsed.unix_timestamp_nanos() / 1_000_000).ok()?;
    Some(minutes_since(unix_ms))
}

pub async fn page(console: Console) -> Result<HttpResponse, actix_web::Error> {
    let state = &console.state;
    let providers = state.registry.provider_views().await.map_err(|e| failed(&console, e))?;
    let suites: Vec<SuiteRow> = state
        .registry
        .suite_views()
        .await
        .map_err(|e| failed(&console, e))?
        .into_iter()
        .map(|suite| {
            let ticket_age_minutes = ticket_age(suite.ticket_updated_at.as_deref());
            let health = match (suite.enabled, ticket_age_minutes) {
                (false, _) => "admin.health.disabled",
                (true, None) => "admin.health.no_ticket",
                (true, Some(age)) if age > TICKET_STALE_MINUTES => "admin.health.stale_ticket",
                (true, Some(_)) => "admin.health.ok",
            };
            SuiteRow {
                suite_id: suite.suite_id.to_string(),
                provider_corpid: suite.provider_corpid.to_string(),
                name: suite.name,
                kind: suite.kind.as_str(),
                active_corps: suite.active_corps,
                ticket_age_minutes,
                health,
                healthy: health == "admin.health.ok",
            }
        })
        .collect();
    let (tokens, backlog, last_hour) = state
        .db
        .run(|conn| Ok::<_, StoreError>((rows::token_states(conn)?, events::backlog(conn)?, rows::last_hour(conn)?)))
        .await
        .map_err(|e| failed(&console, e))?;
    let now = now_ms();
    let tokens: Vec<Value> = tokens.iter().map(|token| token_row(token, now)).collect();
    let mut errcodes: BTreeMap<(String, i64), usize> = BTreeMap::new();
    for seen in recent_wecom_errcodes() {
        *errcodes.entry((seen.endpoint, seen.errcode)).or_default() += 1;
    }
    let wecom_errors: Vec<ErrcodeRow> =
        errcodes.into_iter().map(|((endpoint, errcode), count)| ErrcodeRow { endpoint, errcode, count }).collect();
    let ctx = context! {
        nav => "overview",
        providers,
        suites,
        tokens,
        backlog => context! {
            count => backlog.count,
            oldest_minutes => backlog.oldest_received_at.map(minutes_since),
        },
        failed_events => last_hour.failed_events,
        failed_deliveries => last_hour.failed_deliveries,
        wecom_error_count => wecom_errors.iter().map(|row| row.count).sum::<usize>(),
        wecom_errors,
    };
    Ok(console.page(StatusCode::OK, "admin/overview.html", ctx))
}
