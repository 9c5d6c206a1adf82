//! Corps: the list (search, filter by suite and status), one corp's authorization,
//! its recent events and token, and "refresh token" through the token center.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use minijinja::{Value, context};
use serde::Serialize;
use serde_json::Value as Json;

use super::events::event_rows;
use super::overview::token_row;
use super::session::{Console, redirect};
use super::{Plain, at, done_message, failed, given};
use crate::feed::EventFilter;
use crate::model::{CorpId, CorpStatus, SuiteId};
use crate::store::console::{self as rows, CorpFilter};
use crate::store::corps::{self, CorpView};
use crate::store::{StoreError, now_ms};
use crate::tokens::TokenKey;

const LIST_LIMIT: i64 = 500;
const CORP_EVENTS: i64 = 20;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/corps", web::get().to(list))
        .route("/corps/{suite_id}/{corpid}", web::get().to(detail))
        .route("/corps/{suite_id}/{corpid}/refresh-token", web::post().to(refresh_token));
}

#[derive(Serialize)]
struct CorpRow {
    suite_id: String,
    corpid: String,
    corp_name: String,
    agent_id: Option<i64>,
    status: &'static str,
    auth_error: Option<String>,
    edition: Option<String>,
    admins: Vec<String>,
    authorized_at: String,
    updated_at: String,
}

fn corp_row(corp: &CorpView, info: &Json) -> CorpRow {
    let agent = &info["edition_info"]["agent"][0];
    let edition =
        agent["edition_name"].as_str().map(str::to_owned).or_else(|| agent["edition_id"].as_str().map(str::to_owned));
    let admins = info["admins"]
        .as_array()
        .map(|admins| {
            admins
                .iter()
                .filter_map(|admin| admin["userid"].as_str().or(admin["open_userid"].as_str()).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    CorpRow {
        suite_id: corp.suite_id.to_string(),
        corpid: corp.corpid.to_string(),
        corp_name: corp.corp_name.clone(),
        agent_id: corp.agent_id,
        status: corp.status.as_str(),
        auth_error: corp.auth_error.clone(),
        edition,
        admins,
        authorized_at: at(corp.authorized_at),
        updated_at: at(corp.updated_at),
    }
}

fn info_of(corp: &CorpView) -> Json {
    serde_json::from_str(&corp.auth_info).unwrap_or(Json::Null)
}

async fn list(console: Console, query: web::Query<HashMap<String, String>>) -> Result<HttpResponse, actix_web::Error> {
    let filter = CorpFilter {
        suite_id: given(query.get("suite_id")).map(SuiteId::from),
        status: given(query.get("status")).and_then(|s| s.parse::<CorpStatus>().ok()),
        search: given(query.get("q")),
    };
    let shown = (
        filter.suite_id.as_ref().map(ToString::to_string),
        filter.status.map(CorpStatus::as_str),
        filter.search.clone(),
    );
    let found = console
        .state
        .db
        .run(move |conn| rows::corps(conn, &filter, LIST_LIMIT))
        .await
        .map_err(|e| failed(&console, e))?;
    let corps: Vec<CorpRow> = found.iter().map(|corp| corp_row(corp, &info_of(corp))).collect();
    let suites: Vec<String> = console.state.registry.suites().iter().map(|s| s.suite_id.to_string()).collect();
    let ctx = context! {
        nav => "corps",
        corps,
        suites,
        statuses => CorpStatus::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        suite_id => shown.0,
        status => shown.1,
        q => shown.2,
    };
    Ok(console.page(StatusCode::OK, "admin/corps.html", ctx))
}

async fn detail(
    console: Console,
    path: web::Path<(SuiteId, CorpId)>,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, actix_web::Error> {
    let (suite_id, corpid) = path.into_inner();
    let (sid, cid) = (suite_id.clone(), corpid.clone());
    let found = console
        .state
        .db
        .run(move |conn| {
            let Some(corp) = corps::find(conn, &sid, &cid)? else {
                return Ok::<_, StoreError>(None);
            };
            let filter =
                EventFilter { suite_id: Some(sid.clone()), corpid: Some(cid.clone()), ..EventFilter::default() };
            let events = rows::recent_events(conn, &filter, None, CORP_EVENTS)?;
            let key = format!("{sid}/{cid}");
            let token = rows::token_states(conn)?.into_iter().find(|t| t.scope == "corp" && t.key == key);
            Ok(Some((corp, events, token)))
        })
        .await
        .map_err(|e| failed(&console, e))?;
    let Some((corp, events, token)) = found else {
        return Err(console.fail(StatusCode::NOT_FOUND, "admin.error.not_found", None));
    };
    let info = info_of(&corp);
    let auth_info = serde_json::to_string_pretty(&info).unwrap_or_default();
    let ctx = context! {
        nav => "corps",
        corp => Value::from_serialize(corp_row(&corp, &info)),
        auth_info,
        events => event_rows(events),
        token => token.map(|t| token_row(&t, now_ms())),
        done => done_message(query.get("done").map(String::as_str)),
    };
    Ok(console.page(StatusCode::OK, "admin/corp.html", ctx))
}

/// A new corp token from WeCom now, through the token center (as the API's `?refresh=true`).
async fn refresh_token(
    console: Console,
    path: web::Path<(SuiteId, CorpId)>,
    form: web::Form<Plain>,
) -> Result<HttpResponse, actix_web::Error> {
    console.check(&form.csrf)?;
    let (suite_id, corpid) = path.into_inner();
    console.state.tokens.refresh(&TokenKey::corp(&suite_id, &corpid)).await.map_err(|e| failed(&console, e))?;
    tracing::info!(actor = console.actor.as_str(), suite = %suite_id, %corpid, "corp token refreshed from the console");
    Ok(redirect(&format!("/admin/corps/{suite_id}/{corpid}?done=token_refreshed")))
}
