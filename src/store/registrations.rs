//! Corps registered through the provider's promotion packages, each stored with its
//! `corp_registered` event in one transaction, once per triggering event.

use diesel::prelude::*;

use super::events::{InsertEvents, NewEvent};
use super::schema::registrations;
use super::sealing::Sealed;
use super::{Conn, StoreResult, WriteTransaction};
use crate::model::{CorpId, EventId, ProviderCorpId};
use crate::with_backend;

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = registrations)]
pub struct NewRegistration {
    pub event_id: EventId,
    pub provider_corpid: ProviderCorpId,
    pub kind: String,
    pub corpid: CorpId,
    pub register_code: String,
    pub template_id: String,
    pub state: String,
    pub userid: String,
    pub contact_sync_token: Option<Sealed>,
    pub contact_sync_expires_at: Option<i64>,
    pub created_at: i64,
}

/// Stores the registration and appends `events`; false if it was stored already.
pub fn record(conn: &mut Conn, registration: &NewRegistration, events: &[NewEvent]) -> StoreResult<bool> {
    let stored = with_backend!(conn, c => c.write_transaction(|c| {
        let inserted =
            diesel::insert_into(registrations::table).values(registration).on_conflict_do_nothing().execute(c)?;
        if inserted == 1 {
            c.insert_events(events)?;
        }
        Ok::<_, diesel::result::Error>(inserted == 1)
    })?);
    Ok(stored)
}
