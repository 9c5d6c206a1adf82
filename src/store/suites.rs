//! Providers and their suites, as managed records, and the newest suite_ticket of
//! each suite. Every change increments the row's `version` and is written with its
//! audit entry in one transaction; secrets arrive and leave sealed.

use diesel::prelude::*;

use super::audit::{self, NewAuditEntry};
use super::schema::{corps, providers, suites, tokens};
use super::sealing::Sealed;
use super::{Conn, StoreResult, WriteTransaction, now_ms};
use crate::model::{CorpStatus, PermanentCodeApi, ProviderCorpId, SuiteId, SuiteKind};
use crate::with_backend;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = providers)]
pub struct ProviderRow {
    pub provider_corpid: ProviderCorpId,
    pub name: String,
    pub provider_secret: Sealed,
    pub callback_token: Option<Sealed>,
    pub encoding_aes_key: Option<Sealed>,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = suites)]
pub struct SuiteRow {
    pub suite_id: SuiteId,
    pub provider_corpid: ProviderCorpId,
    pub kind: SuiteKind,
    pub name: String,
    pub enabled: bool,
    pub suite_secret: Sealed,
    pub callback_token: Sealed,
    pub encoding_aes_key: Sealed,
    pub ticket_updated_at: Option<i64>,
    pub permanent_code_api: PermanentCodeApi,
    pub description: String,
    pub logo_url: Option<String>,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = providers)]
pub struct NewProvider {
    pub provider_corpid: ProviderCorpId,
    pub name: String,
    pub provider_secret: Sealed,
    pub callback_token: Option<Sealed>,
    pub encoding_aes_key: Option<Sealed>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = suites)]
pub struct NewSuite {
    pub suite_id: SuiteId,
    pub provider_corpid: ProviderCorpId,
    pub kind: SuiteKind,
    pub name: String,
    pub enabled: bool,
    pub suite_secret: Sealed,
    pub callback_token: Sealed,
    pub encoding_aes_key: Sealed,
    pub permanent_code_api: PermanentCodeApi,
    pub description: String,
    pub logo_url: Option<String>,
}

/// The fields a provider update sets; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, AsChangeset)]
#[diesel(table_name = providers)]
pub struct ProviderChanges {
    pub name: Option<String>,
    pub provider_secret: Option<Sealed>,
    pub callback_token: Option<Option<Sealed>>,
    pub encoding_aes_key: Option<Option<Sealed>>,
}

/// The fields a suite update sets; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, AsChangeset)]
#[diesel(table_name = suites)]
pub struct SuiteChanges {
    pub kind: Option<SuiteKind>,
    pub name: Option<String>,
    pub enabled: Option<bool>,
    pub suite_secret: Option<Sealed>,
    pub callback_token: Option<Sealed>,
    pub encoding_aes_key: Option<Sealed>,
    pub permanent_code_api: Option<PermanentCodeApi>,
    pub description: Option<String>,
    pub logo_url: Option<Option<String>>,
}

impl SuiteChanges {
    pub fn is_empty(&self) -> bool {
        self.kind.is_none()
            && self.permanent_code_api.is_none()
            && self.description.is_none()
            && self.logo_url.is_none()
            && self.name.is_none()
            && self.enabled.is_none()
            && self.suite_secret.is_none()
            && self.callback_token.is_none()
            && self.encoding_aes_key.is_none()
    }
}

impl ProviderChanges {
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.provider_secret.is_none()
            && self.callback_token.is_none()
            && self.encoding_aes_key.is_none()
    }
}

/// What a removal found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    Removed,
    NotFound,
    /// Refused: a suite still has this many active corps, or a provider this many suites.
    InUse(i64),
}

pub fn list_providers(conn: &mut Conn) -> StoreResult<Vec<ProviderRow>> {
    Ok(with_backend!(conn, c => providers::table
        .select(ProviderRow::as_select())
        .order(providers::provider_corpid)
        .load(c)?))
}

pub fn list_suites(conn: &mut Conn) -> StoreResult<Vec<SuiteRow>> {
    Ok(with_backend!(conn, c => suites::table
        .select(SuiteRow::as_select())
        .order(suites::suite_id)
        .load(c)?))
}

pub fn find_suite(conn: &mut Conn, suite_id: &SuiteId) -> StoreResult<Option<SuiteRow>> {
    Ok(with_backend!(conn, c => suites::table
        .find(suite_id)
        .select(SuiteRow::as_select())
        .first(c)
        .optional()?))
}

/// The providers the given suites belong to, each once.
pub fn providers_of(conn: &mut Conn, suite_ids: &[String]) -> StoreResult<Vec<String>> {
    Ok(with_backend!(conn, c => suites::table
        .filter(suites::suite_id.eq_any(suite_ids))
        .select(suites::provider_corpid)
        .distinct()
        .load(c)?))
}

pub fn find_provider(conn: &mut Conn, provider_corpid: &ProviderCorpId) -> StoreResult<Option<ProviderRow>> {
    Ok(with_backend!(conn, c => providers::table
        .find(provider_corpid)
        .select(ProviderRow::as_select())
        .first(c)
        .optional()?))
}

/// Inserts a provider unless one with its corpid exists; whether it inserted.
pub fn insert_provider(conn: &mut Conn, row: &NewProvider, entry: &NewAuditEntry) -> StoreResult<bool> {
    let now = now_ms();
    with_backend!(conn, c => c.write_transaction(|c| {
        let inserted = diesel::insert_into(providers::table)
            .values((row, providers::created_at.eq(now), providers::updated_at.eq(now), providers::version.eq(1)))
            .on_conflict_do_nothing()
            .execute(c)?;
        if inserted == 1 {
            audit::append_to(c, entry)?;
        }
        Ok(inserted == 1)
    }))
}

/// Applies `changes` and bumps the version; whether the provider exists.
pub fn update_provider(
    conn: &mut Conn,
    provider_corpid: &ProviderCorpId,
    changes: &ProviderChanges,
    entry: &NewAuditEntry,
) -> StoreResult<bool> {
    with_backend!(conn, c => c.write_transaction(|c| {
        let target = providers::table.find(provider_corpid);
        let found = if changes.is_empty() {
            diesel::update(target).set(providers::version.eq(providers::version)).execute(c)?
        } else {
            diesel::update(target)
                .set((changes, providers::version.eq(providers::version + 1), providers::updated_at.eq(now_ms())))
                .execute(c)?
        };
        if found == 1 && !changes.is_empty() {
            audit::append_to(c, entry)?;
        }
        Ok(found == 1)
    }))
}

/// Deletes a provider that has no suites.
pub fn delete_provider(
    conn: &mut Conn,
    provider_corpid: &ProviderCorpId,
    entry: &NewAuditEntry,
) -> StoreResult<Removal> {
    with_backend!(conn, c => c.write_transaction(|c| {
        let suites: i64 = suites::table
            .filter(suites::provider_corpid.eq(provider_corpid))
            .count()
            .get_result(c)?;
        if suites > 0 {
            return Ok(Removal::InUse(suites));
        }
        diesel::delete(tokens::table.filter(tokens::scope.eq("provider")).filter(tokens::key.eq(provider_corpid)))
            .execute(c)?;
        let deleted = diesel::delete(providers::table.find(provider_corpid)).execute(c)?;
        if deleted == 0 {
            return Ok(Removal::NotFound);
        }
        audit::append_to(c, entry)?;
        Ok(Removal::Removed)
    }))
}

/// Inserts a suite unless one with its id exists; whether it inserted.
pub fn insert_suite(conn: &mut Conn, row: &NewSuite, entry: &NewAuditEntry) -> StoreResult<bool> {
    let now = now_ms();
    with_backend!(conn, c => c.write_transaction(|c| {
        let inserted = diesel::insert_into(suites::table)
            .values((row, suites::created_at.eq(now), suites::updated_at.eq(now), suites::version.eq(1)))
            .on_conflict_do_nothing()
            .execute(c)?;
        if inserted == 1 {
            audit::append_to(c, entry)?;
        }
        Ok(inserted == 1)
    }))
}

/// Applies `changes` and bumps the version; whether the suite exists.
pub fn update_suite(
    conn: &mut Conn,
    suite_id: &SuiteId,
    changes: &SuiteChanges,
    entry: &NewAuditEntry,
) -> StoreResult<bool> {
    with_backend!(conn, c => c.write_transaction(|c| {
        let target = suites::table.find(suite_id);
        let found = if changes.is_empty() {
            diesel::update(target).set(suites::version.eq(suites::version)).execute(c)?
        } else {
            diesel::update(target)
                .set((changes, suites::version.eq(suites::version + 1), suites::updated_at.eq(now_ms())))
                .execute(c)?
        };
        if found == 1 && !changes.is_empty() {
            audit::append_to(c, entry)?;
        }
        Ok(found == 1)
    }))
}

/// Deletes a suite with its corps and tokens; refused while corps are active unless `force`.
pub fn delete_suite(conn: &mut Conn, suite_id: &SuiteId, force: bool, entry: &NewAuditEntry) -> StoreResult<Removal> {
    with_backend!(conn, c => c.write_transaction(|c| {
        let active: i64 = corps::table
            .filter(corps::suite_id.eq(suite_id))
            .filter(corps::status.eq(CorpStatus::Active))
            .count()
            .get_result(c)?;
        if active > 0 && !force {
            return Ok(Removal::InUse(active));
        }
        let corp_prefix = format!("{suite_id}/");
        // Corp tokens and both JS-SDK tickets are keyed "suite/corp".
        diesel::delete(
            tokens::table
                .filter(tokens::scope.eq_any(["corp", "jsapi_ticket", "agent_config_ticket"]))
                .filter(tokens::key.like(format!("{corp_prefix}%"))),
        )
        .execute(c)?;
        diesel::delete(tokens::table.filter(tokens::scope.eq("suite")).filter(tokens::key.eq(suite_id))).execute(c)?;
        diesel::delete(corps::table.filter(corps::suite_id.eq(suite_id))).execute(c)?;
        let deleted = diesel::delete(suites::table.find(suite_id)).execute(c)?;
        if deleted == 0 {
            return Ok(Removal::NotFound);
        }
        audit::append_to(c, entry)?;
        Ok(Removal::Removed)
    }))
}

/// Corps with an active authorization, per suite.
pub fn active_corp_counts(conn: &mut Conn) -> StoreResult<Vec<(SuiteId, i64)>> {
    Ok(with_backend!(conn, c => corps::table
        .filter(corps::status.eq(CorpStatus::Active))
        .group_by(corps::suite_id)
        .select((corps::suite_id, diesel::dsl::count_star()))
        .load(c)?))
}

/// The newest ticket of a suite and when it arrived (Unix ms).
pub fn ticket(conn: &mut Conn, suite_id: &SuiteId) -> StoreResult<Option<(Sealed, i64)>> {
    let row: Option<(Option<Sealed>, Option<i64>)> = with_backend!(conn, c => suites::table
        .find(suite_id)
        .select((suites::ticket, suites::ticket_updated_at))
        .first(c)
        .optional()?);
    Ok(row.and_then(|(ticket, at)| ticket.zip(at)))
}

/// Stores a ticket unless a newer one (by arrival time) is already stored, so replays
/// and out-of-order processing never put an older ticket back.
pub fn store_ticket(conn: &mut Conn, suite_id: &SuiteId, ticket: &Sealed, arrived_at: i64) -> StoreResult<bool> {
    let updated = with_backend!(conn, c => c.write_transaction(|c| {
        diesel::update(
            suites::table.find(suite_id).filter(
                suites::ticket_updated_at
                    .is_null()
                    .or(suites::ticket_updated_at.le(arrived_at)),
            ),
        )
        .set((
            suites::ticket.eq(ticket),
            suites::ticket_updated_at.eq(arrived_at),
            suites::updated_at.eq(now_ms()),
        ))
        .execute(c)
    })?);
    Ok(updated == 1)
}
