//! Ciphertext-ID mappings and the identity graph, always scoped by provider.

use std::collections::HashMap;

use diesel::prelude::*;

use super::events::{InsertEvents, NewEvent};
use super::schema::{id_mappings, identities, identity_links, pending_matches};
use super::{Conn, StoreResult, WriteTransaction, now_ms};
use crate::model::{CorpId, ExternalUserId, LinkStatus, PendingId, ProviderCorpId, SuiteId};
use crate::with_backend;

/// SQL parameter lists stay well below every backend's limit.
const LOOKUP_CHUNK: usize = 500;

/// The `corpid` column of a mapping: empty for ids no corp scopes (corpids themselves).
fn mapping_scope(corpid: Option<&CorpId>) -> &str {
    corpid.map_or("", CorpId::as_str)
}

/// Known targets of `sources`, as a map from source to target.
pub fn find_mappings(
    conn: &mut Conn,
    provider_corpid: &ProviderCorpId,
    kind: &str,
    corpid: Option<&CorpId>,
    sources: &[String],
) -> StoreResult<HashMap<String, String>> {
    let corpid = mapping_scope(corpid);
    let mut found = HashMap::with_capacity(sources.len());
    for chunk in sources.chunks(LOOKUP_CHUNK) {
        let rows: Vec<(String, String)> = with_backend!(conn, c => id_mappings::table
            .filter(id_mappings::provider_corpid.eq(provider_corpid))
            .filter(id_mappings::kind.eq(kind))
            .filter(id_mappings::corpid.eq(corpid))
            .filter(id_mappings::source.eq_any(chunk))
            .select((id_mappings::source, id_mappings::target))
            .load(c)?);
        found.extend(rows);
    }
    Ok(found)
}

/// Stores conversions; a mapping already stored is kept (WeCom's never change).
pub fn store_mappings(
    conn: &mut Conn,
    provider_corpid: &ProviderCorpId,
    kind: &str,
    corpid: Option<&CorpId>,
    pairs: &[(String, String)],
) -> StoreResult<()> {
    let corpid = mapping_scope(corpid);
    let now = now_ms();
    let rows: Vec<_> = pairs
        .iter()
        .map(|(source, target)| {
            (
                id_mappings::provider_corpid.eq(provider_corpid),
                id_mappings::kind.eq(kind),
                id_mappings::corpid.eq(corpid),
                id_mappings::source.eq(source),
                id_mappings::target.eq(target),
                id_mappings::created_at.eq(now),
            )
        })
        .collect();
    with_backend!(conn, c => c.write_transaction(|c| {
        for chunk in rows.chunks(LOOKUP_CHUNK / 6) {
            diesel::insert_into(id_mappings::table).values(chunk).on_conflict_do_nothing().execute(c)?;
        }
        Ok::<_, diesel::result::Error>(())
    })?);
    Ok(())
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = identities)]
pub struct Identity {
    pub id: i64,
    pub provider_corpid: ProviderCorpId,
    pub unionid: String,
    pub openid: String,
    pub subject_type: i32,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = identity_links)]
pub struct Link {
    pub identity_id: i64,
    pub corpid: CorpId,
    pub suite_id: SuiteId,
    pub external_userid: Option<ExternalUserId>,
    pub pending_id: Option<PendingId>,
    pub pending_since: Option<i64>,
    pub status: LinkStatus,
    pub updated_at: i64,
}

/// What WeCom answered for a unionid in one corp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    Linked { external_userid: ExternalUserId },
    Pending { pending_id: PendingId },
}

pub struct NewLink<'a> {
    pub provider_corpid: &'a ProviderCorpId,
    pub unionid: &'a str,
    pub openid: &'a str,
    pub subject_type: i32,
    pub suite_id: &'a SuiteId,
    pub corpid: &'a CorpId,
}

/// Records the identity (newest openid wins) and its link in the corp.
pub fn record_link(conn: &mut Conn, link: &NewLink<'_>, state: &LinkState) -> StoreResult<()> {
    let now = now_ms();
    with_backend!(conn, c => c.write_transaction(|c| {
        diesel::insert_into(identities::table)
            .values((
                identities::provider_corpid.eq(link.provider_corpid),
                identities::unionid.eq(link.unionid),
                identities::openid.eq(link.openid),
                identities::subject_type.eq(link.subject_type),
                identities::created_at.eq(now),
                identities::updated_at.eq(now),
            ))
            .on_conflict((identities::provider_corpid, identities::unionid))
            .do_update()
            .set((
                identities::openid.eq(link.openid),
                identities::subject_type.eq(link.subject_type),
                identities::updated_at.eq(now),
            ))
            .execute(c)?;
        let identity_id: i64 = identities::table
            .filter(identities::provider_corpid.eq(link.provider_corpid))
            .filter(identities::unionid.eq(link.unionid))
            .select(identities::id)
            .first(c)?;
        let (external_userid, pending_id, pending_since, status) = match state {
            LinkState::Linked { external_userid } => (Some(external_userid), None, None, LinkStatus::Linked),
            LinkState::Pending { pending_id } => (None, Some(pending_id), Some(now), LinkStatus::Pending),
        };
        // A pending_id keeps its first issue time: its 90 days run from then.
        let existing: Option<Link> = identity_links::table
            .find((identity_id, link.corpid))
            .select(Link::as_select())
            .first(c)
            .optional()?;
        let pending_since = match (&existing, pending_id) {
            (Some(old), Some(new_id)) if old.pending_id.as_ref() == Some(new_id) => old.pending_since.or(pending_since),
            _ => pending_since,
        };
        diesel::insert_into(identity_links::table)
            .values((
                identity_links::identity_id.eq(identity_id),
                identity_links::corpid.eq(link.corpid),
                identity_links::suite_id.eq(link.suite_id),
                identity_links::external_userid.eq(external_userid),
                identity_links::pending_id.eq(pending_id),
                identity_links::pending_since.eq(pending_since),
                identity_links::status.eq(status),
                identity_links::updated_at.eq(now),
            ))
            .on_conflict((identity_links::identity_id, identity_links::corpid))
            .do_update()
            .set((
                identity_links::suite_id.eq(link.suite_id),
                identity_links::external_userid.eq(external_userid),
                identity_links::pending_id.eq(pending_id),
                identity_links::pending_since.eq(pending_since),
                identity_links::status.eq(status),
                identity_links::updated_at.eq(now),
            ))
            .execute(c)?;
        Ok::<_, diesel::result::Error>(())
    })?);
    Ok(())
}

/// The link of a unionid in a corp, if any.
pub fn link_of(
    conn: &mut Conn,
    provider_corpid: &ProviderCorpId,
    unionid: &str,
    corpid: &CorpId,
) -> StoreResult<Option<Link>> {
    let link = with_backend!(conn, c => identity_links::table
        .inner_join(identities::table)
        .filter(identities::provider_corpid.eq(provider_corpid))
        .filter(identities::unionid.eq(unionid))
        .filter(identity_links::corpid.eq(corpid))
        .select(Link::as_select())
        .first(c)
        .optional()?);
    Ok(link)
}

/// How an identity is looked up.
#[derive(Debug, Clone)]
pub enum IdentityKey {
    Unionid(String),
    ExternalUserid { corpid: CorpId, external_userid: ExternalUserId },
    PendingId(PendingId),
}

/// An identity and all its links.
pub fn find_identity(
    conn: &mut Conn,
    provider_corpid: &ProviderCorpId,
    key: &IdentityKey,
) -> StoreResult<Option<(Identity, Vec<Link>)>> {
    let found = with_backend!(conn, c => {
        let by_link = identity_links::table
            .inner_join(identities::table)
            .filter(identities::provider_corpid.eq(provider_corpid))
            .select(identities::id)
            .into_boxed();
        let identity_id: Option<i64> = match key {
            IdentityKey::Unionid(unionid) => identities::table
                .filter(identities::provider_corpid.eq(provider_corpid))
                .filter(identities::unionid.eq(unionid))
                .select(identities::id)
                .first(c)
                .optional()?,
            IdentityKey::ExternalUserid { corpid, external_userid } => by_link
                .filter(identity_links::corpid.eq(corpid))
                .filter(identity_links::external_userid.eq(external_userid))
                .first(c)
                .optional()?,
            IdentityKey::PendingId(pending_id) => by_link
                .filter(identity_links::pending_id.eq(pending_id))
                .first(c)
                .optional()?,
        };
        match identity_id {
            None => None,
            Some(id) => {
                let identity = identities::table.find(id).select(Identity::as_select()).first(c)?;
                let links = identity_links::table
                    .filter(identity_links::identity_id.eq(id))
                    .order(identity_links::corpid)
                    .select(Link::as_select())
                    .load(c)?;
                Some((identity, links))
            }
        }
    });
    Ok(found)
}

/// A customer came back or left: sets the status of the link holding that
/// external_userid. Returns how many links changed.
pub fn set_status_by_external_userid(
    conn: &mut Conn,
    provider_corpid: &ProviderCorpId,
    corpid: &CorpId,
    external_userid: &ExternalUserId,
    status: LinkStatus,
) -> StoreResult<usize> {
    let now = now_ms();
    let changed = with_backend!(conn, c => {
        let ids = identities::table.filter(identities::provider_corpid.eq(provider_corpid)).select(identities::id);
        diesel::update(
            identity_links::table
                .filter(identity_links::identity_id.eq_any(ids))
                .filter(identity_links::corpid.eq(corpid))
                .filter(identity_links::external_userid.eq(external_userid))
                .filter(identity_links::status.ne(status)),
        )
        .set((identity_links::status.eq(status), identity_links::updated_at.eq(now)))
        .execute(c)?
    });
    Ok(changed)
}

/// Is an external_userid already linked (or removed) in this corp?
pub fn is_known_external_userid(
    conn: &mut Conn,
    provider_corpid: &ProviderCorpId,
    corpid: &CorpId,
    external_userid: &ExternalUserId,
) -> StoreResult<bool> {
    let found: Option<i64> = with_backend!(conn, c => identity_links::table
        .inner_join(identities::table)
        .filter(identities::provider_corpid.eq(provider_corpid))
        .filter(identity_links::corpid.eq(corpid))
        .filter(identity_links::external_userid.eq(external_userid))
        .select(identity_links::identity_id)
        .first(c)
        .optional()?);
    Ok(found.is_some())
}

/// Queues a new customer's external_userid for matching against pending_ids.
pub fn queue_match(
    conn: &mut Conn,
    suite_id: &SuiteId,
    corpid: &CorpId,
    external_userid: &ExternalUserId,
) -> StoreResult<()> {
    let now = now_ms();
    with_backend!(conn, c => {
        diesel::insert_into(pending_matches::table)
            .values((
                pending_matches::suite_id.eq(suite_id),
                pending_matches::corpid.eq(corpid),
                pending_matches::external_userid.eq(external_userid),
                pending_matches::attempts.eq(0),
                pending_matches::not_before.eq(now),
            ))
            .on_conflict_do_nothing()
            .execute(c)?;
    });
    Ok(())
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = pending_matches)]
pub struct QueuedMatch {
    pub suite_id: SuiteId,
    pub corpid: CorpId,
    pub external_userid: ExternalUserId,
    pub attempts: i32,
}

/// Queued matches that are due, ordered so each (suite, corp) is contiguous.
pub fn due_matches(conn: &mut Conn, limit: i64) -> StoreResult<Vec<QueuedMatch>> {
    let now = now_ms();
    let rows = with_backend!(conn, c => pending_matches::table
        .filter(pending_matches::not_before.le(now))
        .order((pending_matches::suite_id, pending_matches::corpid, pending_matches::external_userid))
        .limit(limit)
        .select(QueuedMatch::as_select())
        .load(c)?);
    Ok(rows)
}

/// Puts matches back for a later attempt.
pub fn defer_matches(
    conn: &mut Conn,
    suite_id: &SuiteId,
    corpid: &CorpId,
    external_userids: &[ExternalUserId],
    not_before: i64,
) -> StoreResult<()> {
    with_backend!(conn, c => {
        diesel::update(
            pending_matches::table
                .filter(pending_matches::suite_id.eq(suite_id))
                .filter(pending_matches::corpid.eq(corpid))
                .filter(pending_matches::external_userid.eq_any(external_userids)),
        )
        .set((pending_matches::attempts.eq(pending_matches::attempts + 1), pending_matches::not_before.eq(not_before)))
        .execute(c)?;
    });
    Ok(())
}

/// Does the corp have pending links younger than `since`? Without any, asking
/// WeCom for pending_ids would spend quota for nothing.
pub fn has_pending_links(
    conn: &mut Conn,
    provider_corpid: &ProviderCorpId,
    corpid: &CorpId,
    since: i64,
) -> StoreResult<bool> {
    let found: Option<i64> = with_backend!(conn, c => identity_links::table
        .inner_join(identities::table)
        .filter(identities::provider_corpid.eq(provider_corpid))
        .filter(identity_links::corpid.eq(corpid))
        .filter(identity_links::status.eq(LinkStatus::Pending))
        .filter(identity_links::pending_since.ge(since))
        .select(identity_links::identity_id)
        .first(c)
        .optional()?);
    Ok(found.is_some())
}

/// A corp of a suite of a provider.
pub struct CorpRef<'a> {
    pub provider_corpid: &'a ProviderCorpId,
    pub suite_id: &'a SuiteId,
    pub corpid: &'a CorpId,
}

/// A pending_id WeCom matched to an external_userid.
pub struct Match {
    pub external_userid: ExternalUserId,
    pub pending_id: PendingId,
}

/// In one transaction: turns the pending links of the corp whose pending_id matched
/// (and is younger than `since`) into linked ones, appends one event per new link
/// (built by `event_for` from the unionid and the match), and dequeues the batch.
pub fn link_matches(
    conn: &mut Conn,
    corp: &CorpRef<'_>,
    matches: &[Match],
    dequeue: &[ExternalUserId],
    since: i64,
    event_for: &dyn Fn(&str, &Match) -> NewEvent,
) -> StoreResult<usize> {
    let (provider_corpid, suite_id, corpid) = (corp.provider_corpid, corp.suite_id, corp.corpid);
    let now = now_ms();
    let linked = with_backend!(conn, c => c.write_transaction(|c| {
        let mut events = Vec::new();
        for found in matches {
            let candidates: Vec<(i64, String)> = identity_links::table
                .inner_join(identities::table)
                .filter(identities::provider_corpid.eq(provider_corpid))
                .filter(identity_links::corpid.eq(corpid))
                .filter(identity_links::pending_id.eq(&found.pending_id))
                .filter(identity_links::status.eq(LinkStatus::Pending))
                .filter(identity_links::pending_since.ge(since))
                .select((identities::id, identities::unionid))
                .load(c)?;
            for (identity_id, unionid) in candidates {
                diesel::update(identity_links::table.find((identity_id, corpid)))
                    .set((
                        identity_links::external_userid.eq(&found.external_userid),
                        identity_links::status.eq(LinkStatus::Linked),
                        identity_links::updated_at.eq(now),
                    ))
                    .execute(c)?;
                events.push(event_for(&unionid, found));
            }
        }
        c.insert_events(&events)?;
        diesel::delete(
            pending_matches::table
                .filter(pending_matches::suite_id.eq(suite_id))
                .filter(pending_matches::corpid.eq(corpid))
                .filter(pending_matches::external_userid.eq_any(dequeue)),
        )
        .execute(c)?;
        Ok::<_, diesel::result::Error>(events.len())
    })?);
    Ok(linked)
}
