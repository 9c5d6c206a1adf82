//! Cached tokens and their refresh claims. A claim is a conditional write, so at most
//! one caller in the whole deployment refreshes a token at a time, and no database
//! transaction stays open while WeCom is called.

use diesel::prelude::*;

use super::schema::tokens;
use super::sealing::Sealed;
use super::{Conn, StoreResult, WriteTransaction, now_ms};
use crate::with_backend;

/// A stored token and its expiry (Unix ms).
#[derive(Clone, Queryable, Selectable)]
#[diesel(table_name = tokens)]
pub struct TokenRow {
    pub access_token: Option<Sealed>,
    pub expires_at: Option<i64>,
    pub refreshing_until: Option<i64>,
}

/// Outcome of trying to claim a refresh.
pub enum Claim {
    /// A token with more than `margin` of life is stored (possibly just now by another caller).
    Fresh { access_token: Sealed, expires_at: i64 },
    /// This caller refreshes; the claim lapses at `until` if it dies on the way.
    Claimed,
    /// Another caller is refreshing right now.
    Busy,
}

/// Claims the refresh of (scope, key) unless a fresh token is there or another
/// caller holds an unexpired claim.
pub fn claim_refresh(
    conn: &mut Conn,
    scope: &str,
    key: &str,
    holder: &str,
    margin_ms: i64,
    claim_ms: i64,
) -> StoreResult<Claim> {
    let now = now_ms();
    let claim = with_backend!(conn, c => c.write_transaction(|c| {
        diesel::insert_into(tokens::table)
            .values((tokens::scope.eq(scope), tokens::key.eq(key), tokens::updated_at.eq(now)))
            .on_conflict_do_nothing()
            .execute(c)?;
        let claimed = diesel::update(tokens::table.find((scope, key)))
            .filter(tokens::refreshing_until.is_null().or(tokens::refreshing_until.lt(now)))
            .filter(
                tokens::access_token
                    .is_null()
                    .or(tokens::expires_at.is_null())
                    .or(tokens::expires_at.le(now + margin_ms)),
            )
            .set((tokens::refreshing_until.eq(now + claim_ms), tokens::refresh_holder.eq(holder)))
            .execute(c)?;
        if claimed == 1 {
            return Ok::<_, diesel::result::Error>(Claim::Claimed);
        }
        let row: TokenRow = tokens::table.find((scope, key)).select(TokenRow::as_select()).first(c)?;
        Ok(match (row.access_token, row.expires_at) {
            (Some(access_token), Some(expires_at)) if expires_at > now + margin_ms => {
                Claim::Fresh { access_token, expires_at }
            }
            _ => Claim::Busy,
        })
    })?);
    Ok(claim)
}

/// A token with more than `margin_ms` of life, without claiming anything.
pub fn fresh(conn: &mut Conn, scope: &str, key: &str, margin_ms: i64) -> StoreResult<Option<(Sealed, i64)>> {
    let now = now_ms();
    let row: Option<TokenRow> = with_backend!(conn, c => tokens::table
        .find((scope, key))
        .select(TokenRow::as_select())
        .first(c)
        .optional()?);
    Ok(row.and_then(|row| match (row.access_token, row.expires_at) {
        (Some(token), Some(expires_at)) if expires_at > now + margin_ms => Some((token, expires_at)),
        _ => None,
    }))
}

/// Stores a refreshed token and ends the claim.
pub fn store(conn: &mut Conn, scope: &str, key: &str, access_token: &Sealed, expires_at: i64) -> StoreResult<()> {
    let now = now_ms();
    with_backend!(conn, c => {
        diesel::insert_into(tokens::table)
            .values((
                tokens::scope.eq(scope),
                tokens::key.eq(key),
                tokens::access_token.eq(access_token),
                tokens::expires_at.eq(expires_at),
                tokens::updated_at.eq(now),
            ))
            .on_conflict((tokens::scope, tokens::key))
            .do_update()
            .set((
                tokens::access_token.eq(access_token),
                tokens::expires_at.eq(expires_at),
                tokens::refreshing_until.eq(None::<i64>),
                tokens::refresh_holder.eq(None::<String>),
                tokens::updated_at.eq(now),
            ))
            .execute(c)?;
    });
    Ok(())
}

/// Ends a claim without a token (the refresh failed), so the next caller may try.
/// Extends `holder`'s refresh claim while its WeCom call runs.
pub fn renew_claim(conn: &mut Conn, scope: &str, key: &str, holder: &str, claim_ms: i64) -> StoreResult<()> {
    let until = now_ms() + claim_ms;
    with_backend!(conn, c => {
        diesel::update(tokens::table.find((scope, key)).filter(tokens::refresh_holder.eq(holder)))
            .set(tokens::refreshing_until.eq(until))
            .execute(c)?;
    });
    Ok(())
}

pub fn release_claim(conn: &mut Conn, scope: &str, key: &str, holder: &str) -> StoreResult<()> {
    with_backend!(conn, c => {
        diesel::update(tokens::table.find((scope, key)).filter(tokens::refresh_holder.eq(holder)))
            .set((tokens::refreshing_until.eq(None::<i64>), tokens::refresh_holder.eq(None::<String>)))
            .execute(c)?;
    });
    Ok(())
}

/// Drops the cached token if it is still the bad one, told by its expiry (a newer
/// one stays; tokens are sealed, so their values cannot be compared here), or
/// whatever is cached when `bad_expires_at` is `None`.
pub fn drop_token(conn: &mut Conn, scope: &str, key: &str, bad_expires_at: Option<i64>) -> StoreResult<()> {
    let now = now_ms();
    with_backend!(conn, c => {
        let target = tokens::table.find((scope, key));
        let changes = (
            tokens::access_token.eq(None::<Sealed>),
            tokens::expires_at.eq(None::<i64>),
            tokens::updated_at.eq(now),
        );
        match bad_expires_at {
            Some(bad) => diesel::update(target.filter(tokens::expires_at.eq(bad))).set(changes).execute(c)?,
            None => diesel::update(target).set(changes).execute(c)?,
        };
    });
    Ok(())
}
