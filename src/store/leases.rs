//! Named leases: at most one holder at a time across every instance sharing the
//! database, taken and renewed with a single conditional write.

use diesel::prelude::*;

use super::schema::leases;
use super::{Conn, StoreResult, WriteTransaction, now_ms};
use crate::with_backend;

/// Takes or renews `name` for `holder` until `ttl_ms` from now; false while another
/// holder's lease is unexpired.
pub fn acquire(conn: &mut Conn, name: &str, holder: &str, ttl_ms: i64) -> StoreResult<bool> {
    let now = now_ms();
    let expires_at = now + ttl_ms;
    let taken = with_backend!(conn, c => c.write_transaction(|c| {
        let renewed = diesel::update(
            leases::table
                .find(name)
                .filter(leases::holder.eq(holder).or(leases::expires_at.lt(now))),
        )
        .set((leases::holder.eq(holder), leases::expires_at.eq(expires_at)))
        .execute(c)?;
        if renewed == 1 {
            return Ok::<_, diesel::result::Error>(true);
        }
        let inserted = diesel::insert_into(leases::table)
            .values((leases::name.eq(name), leases::holder.eq(holder), leases::expires_at.eq(expires_at)))
            .on_conflict_do_nothing()
            .execute(c)?;
        Ok(inserted == 1)
    })?);
    Ok(taken)
}

/// Gives the lease up so another instance can take it at once.
pub fn release(conn: &mut Conn, name: &str, holder: &str) -> StoreResult<()> {
    with_backend!(conn, c => {
        diesel::delete(leases::table.find(name).filter(leases::holder.eq(holder))).execute(c)?;
    });
    Ok(())
}
