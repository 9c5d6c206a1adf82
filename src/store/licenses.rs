//! License state per corp: orders, active codes and their holders, members reported
//! unlicensed, the app's trial per (suite, corp), and the sync cursor. Every change
//! is written with its derived events in one transaction.

use diesel::prelude::*;

use super::events::{InsertEvents, NewEvent};
use super::schema::{corps, license_apps, license_codes, license_orders, license_sync, license_unlicensed, suites};
use super::{Conn, StoreResult, WriteTransaction, now_ms};
use crate::model::{CorpId, CorpStatus, ProviderCorpId, SuiteId, UserId};
use crate::with_backend;

/// WeCom's code status 1: bought, bound to nobody yet.
pub const CODE_UNBOUND: i32 = 1;
/// 2: bound to a member and valid.
pub const CODE_BOUND: i32 = 2;
/// 5: merged into a newer code of the same member (dead).
pub const CODE_MERGED: i32 = 5;
/// Ours: its order was refunded before it was used.
pub const CODE_VOID: i32 = 0;
/// WeCom's order status after a refund, and after a refused one.
pub const ORDER_REFUNDED: i32 = 5;
pub const ORDER_REFUND_REJECTED: i32 = 6;

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = license_orders)]
pub struct OrderRow {
    pub provider_corpid: ProviderCorpId,
    pub order_id: String,
    pub corpid: CorpId,
    pub order_type: i32,
    pub order_status: i32,
    pub base_count: i64,
    pub external_contact_count: i64,
    pub months: i64,
    pub days: i64,
    pub price: i64,
    pub create_time: i64,
    pub pay_time: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = license_codes)]
pub struct CodeRow {
    pub provider_corpid: ProviderCorpId,
    pub active_code: String,
    pub corpid: CorpId,
    pub order_id: Option<String>,
    pub account_type: i32,
    pub status: i32,
    pub userid: Option<UserId>,
    pub active_time: Option<i64>,
    pub expire_time: Option<i64>,
    pub expiry_notice: Option<String>,
    pub updated_at: i64,
}

/// A code bound to a member, as WeCom reports it.
#[derive(Debug, Clone)]
pub struct BoundCode {
    pub active_code: String,
    pub account_type: i32,
    pub userid: UserId,
    pub active_time: i64,
    pub expire_time: i64,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = license_apps)]
pub struct AppRow {
    pub suite_id: SuiteId,
    pub corpid: CorpId,
    pub license_status: i32,
    pub trial_start_time: i64,
    pub trial_end_time: i64,
    pub license_check_time: i64,
    pub auto_active_status: Option<i32>,
    pub trial_notice: Option<String>,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = license_unlicensed)]
pub struct UnlicensedRow {
    pub userid: UserId,
    pub noticed_at: i64,
}

/// Everything stored about one corp's licenses.
pub struct CorpLicenses {
    pub app: Option<AppRow>,
    pub codes: Vec<CodeRow>,
    pub unlicensed: Vec<UnlicensedRow>,
}

/// The suites of `provider` that `corpid` has authorized and not cancelled: the
/// suites a provider-wide license event is reported under.
pub fn active_suites(conn: &mut Conn, provider: &ProviderCorpId, corpid: &CorpId) -> StoreResult<Vec<SuiteId>> {
    let rows = with_backend!(conn, c => corps::table
        .inner_join(suites::table.on(suites::suite_id.eq(corps::suite_id)))
        .filter(suites::provider_corpid.eq(provider))
        .filter(corps::corpid.eq(corpid))
        .filter(corps::status.eq(CorpStatus::Active))
        .order(corps::suite_id)
        .select(corps::suite_id)
        .load(c)?);
    Ok(rows)
}

pub fn corp_licenses(
    conn: &mut Conn,
    provider: &ProviderCorpId,
    suite_id: &SuiteId,
    corpid: &CorpId,
) -> StoreResult<CorpLicenses> {
    with_backend!(conn, c => {
        let app = license_apps::table.find((suite_id, corpid)).select(AppRow::as_select()).first(c).optional()?;
        let codes = license_codes::table
            .filter(license_codes::provider_corpid.eq(provider))
            .filter(license_codes::corpid.eq(corpid))
            .order(license_codes::active_code)
            .select(CodeRow::as_select())
            .load(c)?;
        let unlicensed = license_unlicensed::table
            .filter(license_unlicensed::provider_corpid.eq(provider))
            .filter(license_unlicensed::corpid.eq(corpid))
            .order(license_unlicensed::userid)
            .select(UnlicensedRow::as_select())
            .load(c)?;
        Ok(CorpLicenses { app, codes, unlicensed })
    })
}

pub fn app(conn: &mut Conn, suite_id: &SuiteId, corpid: &CorpId) -> StoreResult<Option<AppRow>> {
    let row = with_backend!(conn, c => license_apps::table
        .find((suite_id, corpid))
        .select(AppRow::as_select())
        .first(c)
        .optional()?);
    Ok(row)
}

pub fn find_order(conn: &mut Conn, provider: &ProviderCorpId, order_id: &str) -> StoreResult<Option<OrderRow>> {
    let row = with_backend!(conn, c => license_orders::table
        .find((provider, order_id))
        .select(OrderRow::as_select())
        .first(c)
        .optional()?);
    Ok(row)
}

pub fn orders_of(conn: &mut Conn, provider: &ProviderCorpId, corpid: &CorpId) -> StoreResult<Vec<OrderRow>> {
    let rows = with_backend!(conn, c => license_orders::table
        .filter(license_orders::provider_corpid.eq(provider))
        .filter(license_orders::corpid.eq(corpid))
        .order(license_orders::create_time)
        .select(OrderRow::as_select())
        .load(c)?);
    Ok(rows)
}

/// Stores an order as WeCom shows it, with its unbound codes (a code already known
/// keeps what is known of it), and appends `events`.
pub fn store_order(conn: &mut Conn, order: &OrderRow, codes: &[(String, i32)], events: &[NewEvent]) -> StoreResult<()> {
    let now = now_ms();
    with_backend!(conn, c => c.write_transaction(|c| {
        diesel::insert_into(license_orders::table)
            .values(order)
            .on_conflict((license_orders::provider_corpid, license_orders::order_id))
            .do_update()
            .set(order)
            .execute(c)?;
        for (code, account_type) in codes {
            diesel::insert_into(license_codes::table)
                .values((
                    license_codes::provider_corpid.eq(&order.provider_corpid),
                    license_codes::active_code.eq(code),
                    license_codes::corpid.eq(&order.corpid),
                    license_codes::order_id.eq(&order.order_id),
                    license_codes::account_type.eq(account_type),
                    license_codes::status.eq(CODE_UNBOUND),
                    license_codes::updated_at.eq(now),
                ))
                .on_conflict((license_codes::provider_corpid, license_codes::active_code))
                .do_update()
                .set(license_codes::order_id.eq(&order.order_id))
                .execute(c)?;
        }
        c.insert_events(events)?;
        Ok::<_, diesel::result::Error>(())
    })?);
    Ok(())
}

/// license_refund: the order's new status; refunded, its unbound codes become void.
pub fn settle_refund(
    conn: &mut Conn,
    provider: &ProviderCorpId,
    order_id: &str,
    refunded: bool,
    events: &[NewEvent],
) -> StoreResult<()> {
    let now = now_ms();
    let status = if refunded { ORDER_REFUNDED } else { ORDER_REFUND_REJECTED };
    with_backend!(conn, c => c.write_transaction(|c| {
        diesel::update(license_orders::table.find((provider, order_id)))
            .set((license_orders::order_status.eq(status), license_orders::updated_at.eq(now)))
            .execute(c)?;
        if refunded {
            diesel::update(
                license_codes::table
                    .filter(license_codes::provider_corpid.eq(provider))
                    .filter(license_codes::order_id.eq(order_id))
                    .filter(license_codes::status.eq(CODE_UNBOUND)),
            )
            .set((license_codes::status.eq(CODE_VOID), license_codes::updated_at.eq(now)))
            .execute(c)?;
        }
        c.insert_events(events)?;
        Ok::<_, diesel::result::Error>(())
    })?);
    Ok(())
}

/// Which codes a binding retires.
pub enum Retire<'a> {
    /// These codes, merged into the new ones (auto_activate's PreviousActiveCode).
    Codes(&'a [String]),
    /// Whatever else the member held bound: `codes` is all the member holds now.
    OthersOf(&'a UserId),
}

/// Codes bound to members as WeCom reports them: each stored bound and valid, the
/// retired ones merged, the members no longer unlicensed, `events` appended.
pub fn bind_codes(
    conn: &mut Conn,
    provider: &ProviderCorpId,
    corpid: &CorpId,
    codes: &[BoundCode],
    retire: Retire<'_>,
    events: &[NewEvent],
) -> StoreResult<()> {
    let now = now_ms();
    with_backend!(conn, c => c.write_transaction(|c| {
        let mine = license_codes::table
            .filter(license_codes::provider_corpid.eq(provider))
            .filter(license_codes::corpid.eq(corpid));
        match retire {
            Retire::Codes(retired) => {
                diesel::update(mine.filter(license_codes::active_code.eq_any(retired)))
                    .set((license_codes::status.eq(CODE_MERGED), license_codes::updated_at.eq(now)))
                    .execute(c)?;
            }
            Retire::OthersOf(userid) => {
                let kept: Vec<&str> = codes.iter().map(|code| code.active_code.as_str()).collect();
                diesel::update(
                    mine.filter(license_codes::userid.eq(userid))
                        .filter(license_codes::status.eq(CODE_BOUND))
                        .filter(license_codes::active_code.ne_all(kept)),
                )
                .set((license_codes::status.eq(CODE_MERGED), license_codes::updated_at.eq(now)))
                .execute(c)?;
            }
        }
        for code in codes {
            let values = (
                license_codes::account_type.eq(code.account_type),
                license_codes::status.eq(CODE_BOUND),
                license_codes::userid.eq(&code.userid),
                license_codes::active_time.eq(code.active_time),
                license_codes::expire_time.eq(code.expire_time),
                license_codes::updated_at.eq(now),
            );
            diesel::insert_into(license_codes::table)
                .values((
                    license_codes::provider_corpid.eq(provider),
                    license_codes::active_code.eq(&code.active_code),
                    license_codes::corpid.eq(corpid),
                    values,
                ))
                .on_conflict((license_codes::provider_corpid, license_codes::active_code))
                .do_update()
                .set(values)
                .execute(c)?;
            diesel::delete(license_unlicensed::table.find((provider, corpid, &code.userid))).execute(c)?;
        }
        c.insert_events(events)?;
        Ok::<_, diesel::result::Error>(())
    })?);
    Ok(())
}

/// unlicensed_notify: the member is recorded as unlicensed (first notice kept).
pub fn mark_unlicensed(
    conn: &mut Conn,
    provider: &ProviderCorpId,
    corpid: &CorpId,
    userid: &UserId,
    events: &[NewEvent],
) -> StoreResult<()> {
    let now = now_ms();
    with_backend!(conn, c => c.write_transaction(|c| {
        diesel::insert_into(license_unlicensed::table)
            .values((
                license_unlicensed::provider_corpid.eq(provider),
                license_unlicensed::corpid.eq(corpid),
                license_unlicensed::userid.eq(userid),
                license_unlicensed::noticed_at.eq(now),
            ))
            .on_conflict_do_nothing()
            .execute(c)?;
        c.insert_events(events)?;
        Ok::<_, diesel::result::Error>(())
    })?);
    Ok(())
}

/// The app's license state as get_app_license_info answered it.
pub struct AppState {
    pub license_status: i32,
    pub trial_start_time: i64,
    pub trial_end_time: i64,
    pub license_check_time: i64,
}

pub fn store_app(conn: &mut Conn, suite_id: &SuiteId, corpid: &CorpId, app: &AppState) -> StoreResult<()> {
    let now = now_ms();
    with_backend!(conn, c => {
        let values = (
            license_apps::license_status.eq(app.license_status),
            license_apps::trial_start_time.eq(app.trial_start_time),
            license_apps::trial_end_time.eq(app.trial_end_time),
            license_apps::license_check_time.eq(app.license_check_time),
            license_apps::updated_at.eq(now),
        );
        diesel::insert_into(license_apps::table)
            .values((license_apps::suite_id.eq(suite_id), license_apps::corpid.eq(corpid), values))
            .on_conflict((license_apps::suite_id, license_apps::corpid))
            .do_update()
            .set(values)
            .execute(c)?
    });
    Ok(())
}

/// The auto-activation switch as last read or set (the app row must exist).
pub fn store_auto_active(conn: &mut Conn, suite_id: &SuiteId, corpid: &CorpId, status: i32) -> StoreResult<()> {
    let now = now_ms();
    with_backend!(conn, c => diesel::update(license_apps::table.find((suite_id, corpid)))
        .set((license_apps::auto_active_status.eq(status), license_apps::updated_at.eq(now)))
        .execute(c)?);
    Ok(())
}

/// Bound codes still valid that expire by `until` (Unix seconds).
pub fn codes_expiring(conn: &mut Conn, until: i64) -> StoreResult<Vec<CodeRow>> {
    let now = now_ms() / 1000;
    let rows = with_backend!(conn, c => license_codes::table
        .filter(license_codes::status.eq(CODE_BOUND))
        .filter(license_codes::expire_time.gt(now))
        .filter(license_codes::expire_time.le(until))
        .select(CodeRow::as_select())
        .load(c)?);
    Ok(rows)
}

/// Trials still running that end by `until` (Unix seconds).
pub fn trials_ending(conn: &mut Conn, until: i64) -> StoreResult<Vec<AppRow>> {
    let now = now_ms() / 1000;
    let rows = with_backend!(conn, c => license_apps::table
        .filter(license_apps::trial_end_time.gt(now))
        .filter(license_apps::trial_end_time.le(until))
        .select(AppRow::as_select())
        .load(c)?);
    Ok(rows)
}

/// Records the expiry notice `tag` of a code, with its events.
pub fn note_code_expiry(
    conn: &mut Conn,
    provider: &ProviderCorpId,
    active_code: &str,
    tag: &str,
    events: &[NewEvent],
) -> StoreResult<()> {
    with_backend!(conn, c => c.write_transaction(|c| {
        diesel::update(license_codes::table.find((provider, active_code)))
            .set(license_codes::expiry_notice.eq(tag))
            .execute(c)?;
        c.insert_events(events)?;
        Ok::<_, diesel::result::Error>(())
    })?);
    Ok(())
}

pub fn note_trial_expiry(
    conn: &mut Conn,
    suite_id: &SuiteId,
    corpid: &CorpId,
    tag: &str,
    events: &[NewEvent],
) -> StoreResult<()> {
    with_backend!(conn, c => c.write_transaction(|c| {
        diesel::update(license_apps::table.find((suite_id, corpid)))
            .set(license_apps::trial_notice.eq(tag))
            .execute(c)?;
        c.insert_events(events)?;
        Ok::<_, diesel::result::Error>(())
    })?);
    Ok(())
}

/// Where a corp's sync stands.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = license_sync)]
pub struct SyncRow {
    pub step: String,
    pub cursor: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
}

pub fn sync_state(conn: &mut Conn, suite_id: &SuiteId, corpid: &CorpId) -> StoreResult<Option<SyncRow>> {
    let row = with_backend!(conn, c => license_sync::table
        .find((suite_id, corpid))
        .select(SyncRow::as_select())
        .first(c)
        .optional()?);
    Ok(row)
}

/// Saves where the sync of a corp stands; `finished` marks it synced whole.
pub fn save_sync(
    conn: &mut Conn,
    suite_id: &SuiteId,
    corpid: &CorpId,
    step: &str,
    cursor: &str,
    finished: bool,
) -> StoreResult<()> {
    let now = now_ms();
    let finished_at = finished.then_some(now);
    with_backend!(conn, c => {
        diesel::insert_into(license_sync::table)
            .values((
                license_sync::suite_id.eq(suite_id),
                license_sync::corpid.eq(corpid),
                license_sync::step.eq(step),
                license_sync::cursor.eq(cursor),
                license_sync::started_at.eq(now),
                license_sync::finished_at.eq(finished_at),
            ))
            .on_conflict((license_sync::suite_id, license_sync::corpid))
            .do_update()
            .set((
                license_sync::step.eq(step),
                license_sync::cursor.eq(cursor),
                license_sync::finished_at.eq(finished_at),
            ))
            .execute(c)?
    });
    Ok(())
}
