//! Providers and their suites: credentials seeded from the configuration, and the
//! newest suite_ticket of each suite.

use diesel::prelude::*;

use super::schema::{providers, suites};
use super::{Conn, StoreResult, WriteTransaction, now_ms};
use crate::with_backend;

#[derive(Debug, Clone, Insertable, AsChangeset)]
#[diesel(table_name = providers)]
pub struct ProviderSeedRow {
    pub provider_corpid: String,
    pub provider_secret: String,
    #[diesel(treat_none_as_null = true)]
    pub callback_token: Option<String>,
    #[diesel(treat_none_as_null = true)]
    pub encoding_aes_key: Option<String>,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Insertable, AsChangeset)]
#[diesel(table_name = suites)]
pub struct SuiteSeedRow {
    pub suite_id: String,
    pub provider_corpid: String,
    pub suite_secret: String,
    pub callback_token: String,
    pub encoding_aes_key: String,
    pub updated_at: i64,
}

/// A provider as the callback gateway needs it.
#[derive(Clone, Queryable, Selectable)]
#[diesel(table_name = providers)]
pub struct ProviderRow {
    pub provider_corpid: String,
    pub provider_secret: String,
    pub callback_token: Option<String>,
    pub encoding_aes_key: Option<String>,
}

#[derive(Clone, Queryable, Selectable)]
#[diesel(table_name = suites)]
pub struct SuiteRow {
    pub suite_id: String,
    pub provider_corpid: String,
    pub suite_secret: String,
    pub callback_token: String,
    pub encoding_aes_key: String,
    pub ticket: Option<String>,
    pub ticket_updated_at: Option<i64>,
}

pub fn upsert_provider(conn: &mut Conn, row: &ProviderSeedRow) -> StoreResult<()> {
    let created_at = row.updated_at;
    with_backend!(conn, c => {
        diesel::insert_into(providers::table)
            .values((row, providers::created_at.eq(created_at)))
            .on_conflict(providers::provider_corpid)
            .do_update()
            .set(row)
            .execute(c)?;
    });
    Ok(())
}

pub fn upsert_suite(conn: &mut Conn, row: &SuiteSeedRow) -> StoreResult<()> {
    let created_at = row.updated_at;
    with_backend!(conn, c => {
        diesel::insert_into(suites::table)
            .values((row, suites::created_at.eq(created_at)))
            .on_conflict(suites::suite_id)
            .do_update()
            .set(row)
            .execute(c)?;
    });
    Ok(())
}

pub fn find_suite(conn: &mut Conn, suite_id: &str) -> StoreResult<Option<SuiteRow>> {
    let row = with_backend!(conn, c => suites::table
        .find(suite_id)
        .select(SuiteRow::as_select())
        .first(c)
        .optional()?);
    Ok(row)
}

/// The providers the given suites belong to, each once.
pub fn providers_of(conn: &mut Conn, suite_ids: &[String]) -> StoreResult<Vec<String>> {
    let providers = with_backend!(conn, c => suites::table
        .filter(suites::suite_id.eq_any(suite_ids))
        .select(suites::provider_corpid)
        .distinct()
        .load(c)?);
    Ok(providers)
}

pub fn all_suites(conn: &mut Conn) -> StoreResult<Vec<SuiteRow>> {
    let rows = with_backend!(conn, c => suites::table
        .select(SuiteRow::as_select())
        .order(suites::suite_id)
        .load(c)?);
    Ok(rows)
}

pub fn find_provider(conn: &mut Conn, provider_corpid: &str) -> StoreResult<Option<ProviderRow>> {
    let row = with_backend!(conn, c => providers::table
        .find(provider_corpid)
        .select(ProviderRow::as_select())
        .first(c)
        .optional()?);
    Ok(row)
}

/// Stores a ticket unless a newer one (by arrival time) is already stored, so replays
/// and out-of-order processing never put an older ticket back.
pub fn store_ticket(conn: &mut Conn, suite_id: &str, ticket: &str, arrived_at: i64) -> StoreResult<bool> {
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
