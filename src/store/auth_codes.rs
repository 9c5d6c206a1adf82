//! Single use of auth codes across the create_auth callback and the install redirect.

use diesel::prelude::*;

use super::schema::auth_codes;
use super::{Conn, StoreResult, WriteTransaction, now_ms};
use crate::with_backend;

const STATUS_EXCHANGING: &str = "exchanging";
const STATUS_DONE: &str = "done";

pub enum CodeClaim {
    /// This caller exchanges the code.
    Claimed,
    /// Exchanged already, for this corp.
    Done { corpid: String },
    /// Another path is exchanging it right now.
    InProgress,
}

/// Claims `code_hash` for exchange for `claim_ms`; a lapsed claim (its holder died)
/// can be taken over.
pub fn claim(conn: &mut Conn, suite_id: &str, code_hash: &str, claim_ms: i64) -> StoreResult<CodeClaim> {
    let now = now_ms();
    let outcome = with_backend!(conn, c => c.write_transaction(|c| {
        let inserted = diesel::insert_into(auth_codes::table)
            .values((
                auth_codes::suite_id.eq(suite_id),
                auth_codes::code_hash.eq(code_hash),
                auth_codes::status.eq(STATUS_EXCHANGING),
                auth_codes::claimed_until.eq(now + claim_ms),
                auth_codes::created_at.eq(now),
            ))
            .on_conflict_do_nothing()
            .execute(c)?;
        if inserted == 1 {
            return Ok::<_, diesel::result::Error>(CodeClaim::Claimed);
        }
        let taken_over = diesel::update(auth_codes::table.find((suite_id, code_hash)))
            .filter(auth_codes::status.eq(STATUS_EXCHANGING))
            .filter(auth_codes::claimed_until.lt(now))
            .set(auth_codes::claimed_until.eq(now + claim_ms))
            .execute(c)?;
        if taken_over == 1 {
            return Ok(CodeClaim::Claimed);
        }
        let (status, corpid): (String, Option<String>) = auth_codes::table
            .find((suite_id, code_hash))
            .select((auth_codes::status, auth_codes::corpid))
            .first(c)?;
        Ok(match (status.as_str(), corpid) {
            (STATUS_DONE, Some(corpid)) => CodeClaim::Done { corpid },
            _ => CodeClaim::InProgress,
        })
    })?);
    Ok(outcome)
}

pub fn finish(conn: &mut Conn, suite_id: &str, code_hash: &str, corpid: &str) -> StoreResult<()> {
    with_backend!(conn, c => {
        diesel::update(auth_codes::table.find((suite_id, code_hash)))
            .set((auth_codes::status.eq(STATUS_DONE), auth_codes::corpid.eq(corpid)))
            .execute(c)?;
    });
    Ok(())
}

/// Gives a claim up after a failed exchange, so the other path may try.
pub fn release(conn: &mut Conn, suite_id: &str, code_hash: &str) -> StoreResult<()> {
    with_backend!(conn, c => {
        diesel::delete(
            auth_codes::table
                .find((suite_id, code_hash))
                .filter(auth_codes::status.eq(STATUS_EXCHANGING)),
        )
        .execute(c)?;
    });
    Ok(())
}
