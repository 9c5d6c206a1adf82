//! Webhooks: the subscriptions with their delivery rows, created and deleted, and
//! dead letters replayed, all through `crate::webhooks` as the API does. A new
//! subscription's signing secret is never shown here: no console page shows a
//! secret (create one through the API to receive it).

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use minijinja::context;
use serde::{Deserialize, Serialize};

use super::session::{Console, redirect};
use super::{Plain, at, done_message, failed, given};
use crate::access::Suites;
use crate::model::{EventId, SuiteId};
use crate::store::StoreError;
use crate::store::console as rows;
use crate::store::webhooks::{self as webhook_rows, DeliveryStatus};
use crate::webhooks::{self, NewSubscription, Replay};

const DEAD_LETTERS: i64 = 200;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/webhooks", web::get().to(list))
        .route("/webhooks", web::post().to(create))
        .route("/webhooks/{id}/delete", web::post().to(remove))
        .route("/webhooks/{id}/replay", web::post().to(replay));
}

#[derive(Serialize)]
struct WebhookLine {
    id: String,
    url: String,
    kinds: Vec<String>,
    suite_id: Option<String>,
    enabled: bool,
    /// Events after its cursor, not handled yet.
    behind: i64,
    queued: i64,
    failed: i64,
    dead: i64,
    created_at: String,
}

#[derive(Serialize)]
struct DeadLine {
    webhook_id: String,
    event_id: i64,
    attempts: i32,
    last_status: Option<i32>,
    last_error: Option<String>,
    updated_at: String,
}

async fn list(console: Console, query: web::Query<HashMap<String, String>>) -> Result<HttpResponse, actix_web::Error> {
    let subscriptions = webhooks::list(&console.state.db, &Suites::All).await.map_err(|e| failed(&console, e))?;
    let (counts, dead, newest) = console
        .state
        .db
        .run(|conn| {
            Ok::<_, StoreError>((
                rows::delivery_counts(conn)?,
                rows::dead_deliveries(conn, DEAD_LETTERS)?,
                webhook_rows::newest_event_id(conn)?,
            ))
        })
        .await
        .map_err(|e| failed(&console, e))?;
    let count = |id: &str, status: DeliveryStatus| {
        counts.iter().filter(|(w, s, _)| w == id && *s == status).map(|(_, _, n)| *n).sum::<i64>()
    };
    let webhooks: Vec<WebhookLine> = subscriptions
        .into_iter()
        .map(|s| WebhookLine {
            behind: (newest.get() - s.last_event_id.get()).max(0),
            queued: count(&s.id, DeliveryStatus::Queued),
            failed: count(&s.id, DeliveryStatus::Failed),
            dead: count(&s.id, DeliveryStatus::Dead),
            id: s.id,
            url: s.url,
            kinds: s.kinds,
            suite_id: s.suite_id.map(|id| id.to_string()),
            enabled: s.enabled,
            created_at: s.created_at,
        })
        .collect();
    let dead: Vec<DeadLine> = dead
        .into_iter()
        .map(|row| DeadLine {
            webhook_id: row.webhook_id,
            event_id: row.event_id.get(),
            attempts: row.attempts,
            last_status: row.last_status,
            last_error: row.last_error,
            updated_at: at(row.updated_at),
        })
        .collect();
    let ctx = context! {
        nav => "webhooks",
        webhooks,
        dead,
        suites => console.state.registry.suites().iter().map(|s| s.suite_id.to_string()).collect::<Vec<_>>(),
        done => done_message(query.get("done").map(String::as_str)),
    };
    Ok(console.page(StatusCode::OK, "admin/webhooks.html", ctx))
}

#[derive(Deserialize)]
struct CreateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    url: String,
    /// Kinds separated by commas or spaces; none for every kind.
    #[serde(default)]
    kinds: String,
    #[serde(default)]
    suite_id: String,
}

async fn create(console: Console, form: web::Form<CreateForm>) -> Result<HttpResponse, actix_web::Error> {
    console.check(&form.csrf)?;
    let form = form.into_inner();
    let new = NewSubscription {
        url: form.url.trim().to_owned(),
        kinds: form.kinds.split([',', ' ']).map(str::trim).filter(|k| !k.is_empty()).map(str::to_owned).collect(),
        suite_id: given(Some(&form.suite_id)).map(SuiteId::from),
        enabled: true,
    };
    let created = webhooks::create(&console.state.db, new, &Suites::All).await.map_err(|e| failed(&console, e))?;
    tracing::info!(
        actor = console.actor.as_str(),
        webhook = created.subscription.id.as_str(),
        "webhook created from the console"
    );
    Ok(redirect("/admin/webhooks?done=webhook_created"))
}

async fn remove(
    console: Console,
    id: web::Path<String>,
    form: web::Form<Plain>,
) -> Result<HttpResponse, actix_web::Error> {
    console.check(&form.csrf)?;
    webhooks::remove(&console.state.db, &id, &Suites::All).await.map_err(|e| failed(&console, e))?;
    tracing::info!(actor = console.actor.as_str(), webhook = id.as_str(), "webhook deleted from the console");
    Ok(redirect("/admin/webhooks?done=webhook_deleted"))
}

#[derive(Deserialize)]
struct ReplayForm {
    #[serde(default)]
    csrf: String,
    event_id: i64,
}

/// A dead letter sent again, as the API's replay of `event_ids`.
async fn replay(
    console: Console,
    id: web::Path<String>,
    form: web::Form<ReplayForm>,
) -> Result<HttpResponse, actix_web::Error> {
    console.check(&form.csrf)?;
    let replay = Replay::Events(vec![EventId::new(form.event_id)]);
    webhooks::replay(&console.state.db, &id, replay, &Suites::All).await.map_err(|e| failed(&console, e))?;
    Ok(redirect("/admin/webhooks?done=delivery_replayed"))
}
