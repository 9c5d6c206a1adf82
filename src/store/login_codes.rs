//! Single-use login codes (OAuth, web login, admin login), recorded by their hash
//! before they are sent: the insert is the claim, so across every instance a code
//! reaches WeCom at most once.

use diesel::prelude::*;

use super::schema::login_codes;
use super::{Conn, StoreResult, WriteTransaction, now_ms};
use crate::with_backend;

/// Codes live 5 minutes at WeCom; their records are kept an hour.
const KEPT_MS: i64 = 60 * 60 * 1000;

/// Records the code; false if it was recorded before (it has been used).
pub fn record(conn: &mut Conn, kind: &str, owner: &str, code_hash: &str) -> StoreResult<bool> {
    let now = now_ms();
    let inserted = with_backend!(conn, c => c.write_transaction(|c| {
        diesel::delete(login_codes::table.filter(login_codes::created_at.lt(now - KEPT_MS))).execute(c)?;
        diesel::insert_into(login_codes::table)
            .values((
                login_codes::kind.eq(kind),
                login_codes::owner.eq(owner),
                login_codes::code_hash.eq(code_hash),
                login_codes::created_at.eq(now),
            ))
            .on_conflict_do_nothing()
            .execute(c)
    })?);
    Ok(inserted == 1)
}

/// Forgets a code that certainly did not reach WeCom, so it can be tried again.
pub fn forget(conn: &mut Conn, kind: &str, owner: &str, code_hash: &str) -> StoreResult<()> {
    with_backend!(conn, c => {
        diesel::delete(login_codes::table.find((kind, owner, code_hash))).execute(c)?;
    });
    Ok(())
}
