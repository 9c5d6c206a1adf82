//! CSRF states of the install flow.

use diesel::prelude::*;

use super::schema::install_states;
use super::{Conn, StoreResult, now_ms};
use crate::model::SuiteId;
use crate::with_backend;

pub fn issue(conn: &mut Conn, state: &str, suite_id: &SuiteId) -> StoreResult<()> {
    with_backend!(conn, c => {
        diesel::insert_into(install_states::table)
            .values((
                install_states::state.eq(state),
                install_states::suite_id.eq(suite_id),
                install_states::created_at.eq(now_ms()),
            ))
            .execute(c)?;
    });
    Ok(())
}

/// Uses `state` once: true if it was issued for `suite_id` within `max_age_ms` and
/// not used before.
pub fn consume(conn: &mut Conn, state: &str, suite_id: &SuiteId, max_age_ms: i64) -> StoreResult<bool> {
    let now = now_ms();
    let used = with_backend!(conn, c => diesel::update(
        install_states::table
            .find(state)
            .filter(install_states::suite_id.eq(suite_id))
            .filter(install_states::used_at.is_null())
            .filter(install_states::created_at.gt(now - max_age_ms)),
    )
    .set(install_states::used_at.eq(now))
    .execute(c)?);
    Ok(used == 1)
}
