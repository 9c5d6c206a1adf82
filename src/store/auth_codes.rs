//! Single use of auth codes across the create_auth callback and the install redirect.
//!
//! A code is claimed by one holder at a time (a short claim, renewed while its
//! exchange runs, so a dead holder's claim lapses within seconds). Before the
//! request that spends it leaves, `sent_at` is committed: from then on the code is
//! never sent again. A claim that lapsed after it was sent means its answer was lost
//! (the process died waiting), and the code is marked `lost`.

use diesel::prelude::*;

use super::events::{InsertEvents, NewEvent};
use super::schema::auth_codes;
use super::{Conn, StoreResult, WriteTransaction, now_ms};
use crate::model::{CodeStatus, CorpId, SuiteId};
use crate::with_backend;

#[derive(Debug, PartialEq, Eq)]
pub enum CodeClaim {
    /// This holder exchanges the code.
    Claimed,
    /// Exchanged already, for this corp.
    Done { corpid: CorpId },
    /// Another holder is exchanging it right now.
    InProgress,
    /// Sent once and its answer lost: it must not be sent again.
    Lost,
}

/// Claims `code_hash` for `holder` for `claim_ms`. A lapsed claim whose code was
/// never sent is taken over; one whose code was sent is marked lost, appending
/// `lost_event` in the same transaction (once: it is deduped like any event).
pub fn claim(
    conn: &mut Conn,
    suite_id: &SuiteId,
    code_hash: &str,
    holder: &str,
    claim_ms: i64,
    lost_event: &NewEvent,
) -> StoreResult<CodeClaim> {
    let now = now_ms();
    let outcome = with_backend!(conn, c => c.write_transaction(|c| {
        let inserted = diesel::insert_into(auth_codes::table)
            .values((
                auth_codes::suite_id.eq(suite_id),
                auth_codes::code_hash.eq(code_hash),
                auth_codes::status.eq(CodeStatus::Exchanging),
                auth_codes::holder.eq(holder),
                auth_codes::claimed_until.eq(now + claim_ms),
                auth_codes::created_at.eq(now),
            ))
            .on_conflict_do_nothing()
            .execute(c)?;
        if inserted == 1 {
            return Ok::<_, diesel::result::Error>(CodeClaim::Claimed);
        }
        let lapsed = auth_codes::table
            .find((suite_id, code_hash))
            .filter(auth_codes::status.eq(CodeStatus::Exchanging))
            .filter(auth_codes::claimed_until.lt(now));
        let taken_over = diesel::update(lapsed.filter(auth_codes::sent_at.is_null()))
            .set((auth_codes::claimed_until.eq(now + claim_ms), auth_codes::holder.eq(holder)))
            .execute(c)?;
        if taken_over == 1 {
            return Ok(CodeClaim::Claimed);
        }
        let lost = diesel::update(lapsed.filter(auth_codes::sent_at.is_not_null()))
            .set(auth_codes::status.eq(CodeStatus::Lost))
            .execute(c)?;
        if lost == 1 {
            c.insert_events(std::slice::from_ref(lost_event))?;
            return Ok(CodeClaim::Lost);
        }
        let (status, corpid): (CodeStatus, Option<CorpId>) = auth_codes::table
            .find((suite_id, code_hash))
            .select((auth_codes::status, auth_codes::corpid))
            .first(c)?;
        Ok(match (status, corpid) {
            (CodeStatus::Done, Some(corpid)) => CodeClaim::Done { corpid },
            (CodeStatus::Lost, _) => CodeClaim::Lost,
            _ => CodeClaim::InProgress,
        })
    })?);
    Ok(outcome)
}

/// Extends `holder`'s claim while its exchange runs; false when it is no longer ours.
pub fn renew(conn: &mut Conn, suite_id: &SuiteId, code_hash: &str, holder: &str, claim_ms: i64) -> StoreResult<bool> {
    let until = now_ms() + claim_ms;
    let renewed = with_backend!(conn, c => diesel::update(
        auth_codes::table
            .find((suite_id, code_hash))
            .filter(auth_codes::status.eq(CodeStatus::Exchanging))
            .filter(auth_codes::holder.eq(holder)),
    )
    .set(auth_codes::claimed_until.eq(until))
    .execute(c)?);
    Ok(renewed == 1)
}

/// Commits that the code is about to be sent; false (send nothing) when the claim
/// is no longer `holder`'s.
pub fn mark_sent(conn: &mut Conn, suite_id: &SuiteId, code_hash: &str, holder: &str) -> StoreResult<bool> {
    let now = now_ms();
    let marked = with_backend!(conn, c => diesel::update(
        auth_codes::table
            .find((suite_id, code_hash))
            .filter(auth_codes::status.eq(CodeStatus::Exchanging))
            .filter(auth_codes::holder.eq(holder))
            .filter(auth_codes::sent_at.is_null()),
    )
    .set(auth_codes::sent_at.eq(now))
    .execute(c)?);
    Ok(marked == 1)
}

/// Gives a claim up when the code provably never reached WeCom (or was refused
/// outright), so the other path, or a retry, may send it.
pub fn release(conn: &mut Conn, suite_id: &SuiteId, code_hash: &str, holder: &str) -> StoreResult<()> {
    with_backend!(conn, c => {
        diesel::delete(
            auth_codes::table
                .find((suite_id, code_hash))
                .filter(auth_codes::status.eq(CodeStatus::Exchanging))
                .filter(auth_codes::holder.eq(holder)),
        )
        .execute(c)?;
    });
    Ok(())
}

/// Gives up every claim of `holder` whose code was never sent (shutdown), so another
/// instance exchanges those at once; sent ones stay, to be known lost.
pub fn release_unsent(conn: &mut Conn, holder: &str) -> StoreResult<usize> {
    let released = with_backend!(conn, c => diesel::delete(
        auth_codes::table
            .filter(auth_codes::holder.eq(holder))
            .filter(auth_codes::status.eq(CodeStatus::Exchanging))
            .filter(auth_codes::sent_at.is_null()),
    )
    .execute(c)?);
    Ok(released)
}

/// The answer to a sent code never came (timeout, cut connection, an ambiguous
/// error): the code is lost, and `lost_event` is appended with the mark.
pub fn mark_lost(conn: &mut Conn, suite_id: &SuiteId, code_hash: &str, lost_event: &NewEvent) -> StoreResult<()> {
    with_backend!(conn, c => c.write_transaction(|c| {
        diesel::update(auth_codes::table.find((suite_id, code_hash)).filter(auth_codes::status.eq(CodeStatus::Exchanging)))
            .set(auth_codes::status.eq(CodeStatus::Lost))
            .execute(c)?;
        c.insert_events(std::slice::from_ref(lost_event))?;
        Ok::<_, diesel::result::Error>(())
    })?);
    Ok(())
}
