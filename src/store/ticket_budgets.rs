//! Hourly budgets of WeCom calls that WeCom limits per hour (the JS-SDK tickets),
//! shared by every instance: each spend is a compare-and-set on the counter's row.

use diesel::prelude::*;

use super::schema::ticket_budgets;
use super::{Conn, StoreResult, WriteTransaction, now_ms};
use crate::with_backend;

const HOUR_MS: i64 = 60 * 60 * 1000;

/// Spends one call of `counter` if fewer than `limit` were spent in the last hour;
/// otherwise answers how many milliseconds remain until one is free again.
pub fn spend(conn: &mut Conn, counter: &str, limit: usize) -> StoreResult<Result<(), i64>> {
    loop {
        let now = now_ms();
        let outcome = with_backend!(conn, c => c.write_transaction(|c| {
            let row: Option<(String, i64)> = ticket_budgets::table
                .find(counter)
                .select((ticket_budgets::fetched_at, ticket_budgets::version))
                .first(c)
                .optional()?;
            let (mut spent, version) = match &row {
                Some((times, version)) => (serde_json::from_str::<Vec<i64>>(times).unwrap_or_default(), Some(*version)),
                None => (Vec::new(), None),
            };
            spent.retain(|at| *at > now - HOUR_MS);
            if spent.len() >= limit {
                let oldest = spent.iter().min().copied().unwrap_or(now);
                return Ok::<_, diesel::result::Error>(Some(Err(oldest + HOUR_MS - now)));
            }
            spent.push(now);
            let times = serde_json::to_string(&spent).unwrap_or_else(|_| "[]".into());
            let written = match version {
                Some(version) => diesel::update(
                    ticket_budgets::table.find(counter).filter(ticket_budgets::version.eq(version)),
                )
                .set((ticket_budgets::fetched_at.eq(&times), ticket_budgets::version.eq(version + 1)))
                .execute(c)?,
                None => diesel::insert_into(ticket_budgets::table)
                    .values((
                        ticket_budgets::counter.eq(counter),
                        ticket_budgets::fetched_at.eq(&times),
                        ticket_budgets::version.eq(0),
                    ))
                    .on_conflict_do_nothing()
                    .execute(c)?,
            };
            // Another instance spent in between: read again.
            Ok(if written == 1 { Some(Ok(())) } else { None })
        })?);
        if let Some(outcome) = outcome {
            return Ok(outcome);
        }
    }
}
