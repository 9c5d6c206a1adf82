//! Ciphertext IDs per provider: conversions and the identity graph.
//!
//! Invariants: a conversion WeCom answered is stored before it is returned and never
//! asked again (mappings never change); every row is scoped by provider, so two
//! providers never share one; IDs are compared and stored exactly as WeCom wrote
//! them (case-sensitive). Upstream batch limits are handled here, whatever the
//! caller sends. A pending link becomes linked only through a pending_id WeCom
//! matched to the new customer's external_userid, within its 90 days.

pub mod bulk;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use crate::backoff::backoff_ms;
use crate::model::{CorpId, CorpStatus, ExternalUserId, LinkStatus, ProviderCorpId, SuiteId, UserId};
use crate::store::events::NewEvent;
use crate::store::ids::{self as store, CorpRef, IdentityKey, Link, LinkState, Match, NewLink};
use crate::store::{Db, StoreError, corps, now_ms, suites};
use crate::telemetry;
use crate::tokens::{TokenError, TokenKey, Tokens};
use crate::wecom::client::WecomError;
use crate::wecom::errcodes::ErrcodeClass;
use crate::wecom::idconvert::{Converted, EXTERNAL_USERID_BATCH, PENDING_ID_BATCH, USERID_BATCH};

/// WeCom matches a pending_id for 90 days after issuing it.
pub const PENDING_ID_LIFETIME_MS: i64 = 90 * 24 * 60 * 60 * 1000;
/// Queued matches taken per worker pass.
const MATCH_BATCH: i64 = 1_000;
/// A match that keeps failing is dropped after this many attempts.
const MATCH_ATTEMPTS: i32 = 10;

/// The kinds of plaintext → ciphertext conversion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Corpid,
    Userid,
    ExternalUserid,
}

impl IdKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Corpid => "corpid",
            Self::Userid => "userid",
            Self::ExternalUserid => "external_userid",
        }
    }

    /// WeCom's name of the converted value.
    pub fn target_name(self) -> &'static str {
        match self {
            Self::Corpid => "open_corpid",
            Self::Userid => "open_userid",
            Self::ExternalUserid => "new_external_userid",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IdError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The result of one conversion request, in the order asked (duplicates once).
#[derive(Debug, Default)]
pub struct Conversion {
    pub items: Vec<(String, String)>,
    pub invalid: Vec<(String, String)>,
    /// Upstream calls this request made (0 when everything was known).
    pub upstream_calls: usize,
}

/// An active corp of a suite, and its provider: where corp-scoped work runs.
#[derive(Debug, Clone)]
pub struct CorpScope {
    pub provider_corpid: ProviderCorpId,
    pub suite_id: SuiteId,
    pub corpid: CorpId,
}

impl CorpScope {
    /// Where this corp's mappings of `kind` are stored.
    fn mappings(&self, kind: IdKind) -> (&ProviderCorpId, IdKind, Option<&CorpId>) {
        (&self.provider_corpid, kind, Some(&self.corpid))
    }
}

/// Spaces upstream calls evenly, for bulk work under WeCom's frequency limits.
pub struct Pacer {
    interval: Duration,
    next: tokio::sync::Mutex<Instant>,
}

impl Pacer {
    pub fn per_minute(calls: u32) -> Self {
        let interval = Duration::from_secs(60) / calls.max(1);
        Pacer { interval, next: tokio::sync::Mutex::new(Instant::now()) }
    }

    async fn wait(&self) {
        let mut next = self.next.lock().await;
        tokio::time::sleep_until(*next).await;
        *next = Instant::now().max(*next) + self.interval;
    }
}

pub struct Ids {
    db: Db,
    tokens: Arc<Tokens>,
}

impl Ids {
    pub fn new(db: Db, tokens: Arc<Tokens>) -> Self {
        Ids { db, tokens }
    }

    /// The corp, checked to exist and be active.
    pub async fn corp_scope(&self, suite_id: &SuiteId, corpid: &CorpId) -> Result<CorpScope, IdError> {
        let sid = suite_id.to_owned();
        let suite = self
            .db
            .run(move |conn| suites::find_suite(conn, &sid))
            .await?
            .ok_or(IdError::Token(TokenError::Unknown("suite")))?;
        let (sid, cid) = (suite_id.to_owned(), corpid.to_owned());
        let corp = self
            .db
            .run(move |conn| corps::find(conn, &sid, &cid))
            .await?
            .ok_or(IdError::Token(TokenError::Unknown("corp")))?;
        if corp.status != CorpStatus::Active {
            return Err(IdError::Token(TokenError::CorpNotActive));
        }
        Ok(CorpScope { provider_corpid: suite.provider_corpid, suite_id: suite.suite_id, corpid: corp.corpid })
    }

    /// corpid → open_corpid (provider token), one upstream call per unknown corpid.
    pub async fn open_corpids(
        &self,
        provider_corpid: &ProviderCorpId,
        corpids: &[String],
        pace: Option<&Pacer>,
    ) -> Result<Conversion, IdError> {
        let id = provider_corpid.to_owned();
        self.db
            .run(move |conn| suites::find_provider(conn, &id))
            .await?
            .ok_or(IdError::Token(TokenError::Unknown("provider")))?;
        let key = TokenKey::Provider { provider_corpid: provider_corpid.to_owned() };
        let client = self.tokens.client();
        self.convert((provider_corpid, IdKind::Corpid, None), corpids, 1, pace, |batch| {
            let key = &key;
            async move {
                let mut converted = Converted::default();
                for corpid in batch {
                    let asked = corpid.as_str();
                    let answer =
                        self.tokens.call(key, |token| async move { client.corpid_to_opencorpid(&token, asked).await });
                    match answer.await {
                        Ok(open_corpid) => converted.pairs.push((corpid, open_corpid)),
                        Err(TokenError::Upstream(error)) if is_per_id(&error) => {
                            converted.invalid.push((corpid, reason(&error)));
                        }
                        Err(error) => return Err(error),
                    }
                }
                Ok(converted)
            }
        })
        .await
    }

    /// userid → open_userid in a corp, 1000 a call.
    pub async fn open_userids(
        &self,
        scope: &CorpScope,
        userids: &[UserId],
        pace: Option<&Pacer>,
    ) -> Result<Conversion, IdError> {
        let key = TokenKey::corp(&scope.suite_id, &scope.corpid);
        let client = self.tokens.client();
        // One path converts every kind, keyed by kind in the mapping table: as text.
        let sources: Vec<String> = userids.iter().map(|userid| userid.as_str().to_owned()).collect();
        self.convert(scope.mappings(IdKind::Userid), &sources, USERID_BATCH, pace, |batch| {
            let key = &key;
            async move {
                let answer = self.tokens.call(key, |token| {
                    let batch = &batch;
                    async move { client.userid_to_openuserid(&token, batch).await }
                });
                answer.await
            }
        })
        .await
    }

    /// Old → new external_userid in a corp (the groupchat variant with a chat_id).
    pub async fn new_external_userids(
        &self,
        scope: &CorpScope,
        external_userids: &[String],
        chat_id: Option<&str>,
        pace: Option<&Pacer>,
    ) -> Result<Conversion, IdError> {
        let key = TokenKey::corp(&scope.suite_id, &scope.corpid);
        let client = self.tokens.client();
        let kind = IdKind::ExternalUserid;
        self.convert(scope.mappings(kind), external_userids, EXTERNAL_USERID_BATCH, pace, |batch| {
            let key = &key;
            async move {
                let answer = self.tokens.call(key, |token| {
                    let batch = &batch;
                    async move { client.get_new_external_userid(&token, batch, chat_id).await }
                });
                answer.await
            }
        })
        .await
    }

    /// The shared path of every conversion: known mappings from the table, the rest
    /// upstream in batches, each batch stored as soon as it is answered (so an
    /// interrupted bulk run resumes where it stopped).
    async fn convert<F, Fut>(
        &self,
        (provider_corpid, kind, corpid): (&ProviderCorpId, IdKind, Option<&CorpId>),
        sources: &[String],
        batch_size: usize,
        pace: Option<&Pacer>,
        upstream: F,
    ) -> Result<Conversion, IdError>
    where
        F: Fn(Vec<String>) -> Fut,
        Fut: Future<Output = Result<Converted, TokenError>>,
    {
        let mut seen = HashSet::with_capacity(sources.len());
        let unique: Vec<String> = sources.iter().filter(|id| seen.insert(id.as_str())).cloned().collect();
        let (provider, scope, lookup) = (provider_corpid.clone(), corpid.cloned(), unique.clone());
        let mut known = self
            .db
            .run(move |conn| store::find_mappings(conn, &provider, kind.name(), scope.as_ref(), &lookup))
            .await?;
        let missing: Vec<String> = unique.iter().filter(|id| !known.contains_key(*id)).cloned().collect();
        let from_stored = (unique.len() - missing.len()) as u64;
        metrics::counter!(telemetry::ID_CONVERSIONS, "kind" => kind.name(), "source" => "stored")
            .increment(from_stored);
        metrics::counter!(telemetry::ID_CONVERSIONS, "kind" => kind.name(), "source" => "wecom")
            .increment(missing.len() as u64);
        let mut conversion = Conversion::default();
        let mut invalid: HashMap<String, String> = HashMap::new();
        for batch in missing.chunks(batch_size) {
            if let Some(pace) = pace {
                pace.wait().await;
            }
            let converted = upstream(batch.to_vec()).await?;
            conversion.upstream_calls += 1;
            let (provider, scope, pairs) = (provider_corpid.clone(), corpid.cloned(), converted.pairs.clone());
            self.db
                .run(move |conn| store::store_mappings(conn, &provider, kind.name(), scope.as_ref(), &pairs))
                .await?;
            known.extend(converted.pairs);
            invalid.extend(converted.invalid);
        }
        for id in unique {
            match (known.remove(&id), invalid.remove(&id)) {
                (Some(target), _) => conversion.items.push((id, target)),
                (None, Some(reason)) => conversion.invalid.push((id, reason)),
                (None, None) => conversion.invalid.push((id, "not_converted: WeCom gave no answer for it".into())),
            }
        }
        Ok(conversion)
    }

    /// unionid (+ openid of the same MP or mini program) → external_userid or a
    /// pending_id in a corp, recorded in the identity graph. A linked identity is
    /// answered from the graph; a pending one is asked again (the user may be a
    /// customer by now).
    pub async fn lookup_unionid(
        &self,
        scope: &CorpScope,
        unionid: &str,
        openid: &str,
        subject_type: i32,
    ) -> Result<LinkState, IdError> {
        let (provider, uid, cid) = (scope.provider_corpid.clone(), unionid.to_owned(), scope.corpid.clone());
        let existing = self.db.run(move |conn| store::link_of(conn, &provider, &uid, &cid)).await?;
        if let Some(Link { external_userid: Some(external_userid), .. }) = existing {
            return Ok(LinkState::Linked { external_userid });
        }
        let key = TokenKey::corp(&scope.suite_id, &scope.corpid);
        let client = self.tokens.client();
        let answer = self
            .tokens
            .call(&key, |token| async move {
                client.unionid_to_external_userid(&token, unionid, openid, subject_type).await
            })
            .await;
        let answer = answer?;
        let state = match (answer.external_userid, answer.pending_id) {
            (Some(external_userid), _) if !external_userid.as_str().is_empty() => LinkState::Linked { external_userid },
            (_, Some(pending_id)) if !pending_id.as_str().is_empty() => LinkState::Pending { pending_id },
            _ => {
                let error = WecomError::Decode("neither external_userid nor pending_id in the answer".into());
                return Err(IdError::Token(TokenError::Upstream(error)));
            }
        };
        let (scope, uid, oid, recorded) = (scope.clone(), unionid.to_owned(), openid.to_owned(), state.clone());
        self.db
            .run(move |conn| {
                let link = NewLink {
                    provider_corpid: &scope.provider_corpid,
                    unionid: &uid,
                    openid: &oid,
                    subject_type,
                    suite_id: &scope.suite_id,
                    corpid: &scope.corpid,
                };
                store::record_link(conn, &link, &recorded)
            })
            .await?;
        Ok(state)
    }

    pub async fn identity(
        &self,
        provider_corpid: &ProviderCorpId,
        key: IdentityKey,
    ) -> Result<Option<(store::Identity, Vec<Link>)>, IdError> {
        let id = provider_corpid.to_owned();
        self.db
            .run(move |conn| suites::find_provider(conn, &id))
            .await?
            .ok_or(IdError::Token(TokenError::Unknown("provider")))?;
        let provider = provider_corpid.to_owned();
        Ok(self.db.run(move |conn| store::find_identity(conn, &provider, &key)).await?)
    }

    /// A member and a customer became friends (add_external_contact or
    /// add_half_external_contact): a known customer is linked again, a new one is
    /// queued to be matched against pending_ids.
    pub async fn contact_added(
        &self,
        provider_corpid: &ProviderCorpId,
        suite_id: &SuiteId,
        corpid: &CorpId,
        external_userid: &ExternalUserId,
    ) -> Result<(), StoreError> {
        let (provider, sid, cid, eid) =
            (provider_corpid.to_owned(), suite_id.to_owned(), corpid.to_owned(), external_userid.to_owned());
        self.db
            .run(move |conn| {
                if store::is_known_external_userid(conn, &provider, &cid, &eid)? {
                    store::set_status_by_external_userid(conn, &provider, &cid, &eid, LinkStatus::Linked)?;
                    Ok(())
                } else {
                    store::queue_match(conn, &sid, &cid, &eid)
                }
            })
            .await
    }

    /// del_external_contact / del_follow_user: the link is marked removed.
    pub async fn contact_removed(
        &self,
        provider_corpid: &ProviderCorpId,
        corpid: &CorpId,
        external_userid: &ExternalUserId,
    ) -> Result<(), StoreError> {
        let (provider, cid, eid) = (provider_corpid.to_owned(), corpid.to_owned(), external_userid.to_owned());
        self.db
            .run(move |conn| store::set_status_by_external_userid(conn, &provider, &cid, &eid, LinkStatus::Removed))
            .await?;
        Ok(())
    }

    /// Works off queued new customers: per corp, asks WeCom for their pending_ids
    /// (100 a call), links the matching pending identities and appends an
    /// `identity_linked` event for each. Returns how many links were made.
    pub async fn match_pending(&self) -> Result<usize, StoreError> {
        let due = self.db.run(|conn| store::due_matches(conn, MATCH_BATCH)).await?;
        let mut linked = 0;
        for corp in due.chunk_by(|a, b| a.suite_id == b.suite_id && a.corpid == b.corpid) {
            let (suite_id, corpid) = (corp[0].suite_id.clone(), corp[0].corpid.clone());
            for chunk in corp.chunks(PENDING_ID_BATCH) {
                let ids: Vec<ExternalUserId> = chunk.iter().map(|queued| queued.external_userid.clone()).collect();
                let attempts = chunk.iter().map(|queued| queued.attempts).max().unwrap_or(0);
                match self.match_chunk(&suite_id, &corpid, &ids).await {
                    Ok(made) => linked += made,
                    Err(error) if attempts + 1 >= MATCH_ATTEMPTS => {
                        tracing::warn!(suite = %suite_id, corpid = %corpid, %error, "pending_id matching given up");
                        self.finish_chunk(&suite_id, &corpid, &[], &ids).await?;
                    }
                    Err(error) => {
                        tracing::warn!(suite = %suite_id, corpid = %corpid, %error, "pending_id matching failed; retrying later");
                        let (sid, cid, not_before) =
                            (suite_id.clone(), corpid.clone(), now_ms() + backoff_ms(attempts));
                        self.db.run(move |conn| store::defer_matches(conn, &sid, &cid, &ids, not_before)).await?;
                    }
                }
            }
        }
        Ok(linked)
    }

    async fn match_chunk(&self, suite_id: &SuiteId, corpid: &CorpId, ids: &[ExternalUserId]) -> Result<usize, IdError> {
        let sid = suite_id.to_owned();
        let suite = self
            .db
            .run(move |conn| suites::find_suite(conn, &sid))
            .await?
            .ok_or(IdError::Token(TokenError::Unknown("suite")))?;
        let since = now_ms() - PENDING_ID_LIFETIME_MS;
        let (provider, cid) = (suite.provider_corpid.clone(), corpid.to_owned());
        let worth_asking = self.db.run(move |conn| store::has_pending_links(conn, &provider, &cid, since)).await?;
        if !worth_asking {
            // Nobody waits in this corp: spend no quota.
            return Ok(self.finish_chunk(suite_id, corpid, &[], ids).await?);
        }
        let key = TokenKey::corp(suite_id, corpid);
        let client = self.tokens.client();
        let answer = self
            .tokens
            .call(&key, |token| async move { client.external_userid_to_pending_id(&token, ids).await })
            .await;
        let pairs = answer?;
        let matches: Vec<Match> =
            pairs.into_iter().map(|(external_userid, pending_id)| Match { external_userid, pending_id }).collect();
        Ok(self.finish_chunk(suite_id, corpid, &matches, ids).await?)
    }

    async fn finish_chunk(
        &self,
        suite_id: &SuiteId,
        corpid: &CorpId,
        matches: &[Match],
        ids: &[ExternalUserId],
    ) -> Result<usize, StoreError> {
        let sid = suite_id.to_owned();
        let Some(suite) = self.db.run(move |conn| suites::find_suite(conn, &sid)).await? else {
            return Ok(0);
        };
        let provider = suite.provider_corpid;
        let since = now_ms() - PENDING_ID_LIFETIME_MS;
        let (sid, cid) = (suite_id.to_owned(), corpid.to_owned());
        let matches: Vec<Match> = matches
            .iter()
            .map(|m| Match { external_userid: m.external_userid.clone(), pending_id: m.pending_id.clone() })
            .collect();
        let ids = ids.to_vec();
        let made = self
            .db
            .run(move |conn| {
                let event_for = |unionid: &str, found: &Match| {
                    let fields = json!({
                            "provider_corpid": provider,
                            "corpid": cid,
                            "unionid": unionid,
                            "external_userid": found.external_userid,
                            "pending_id": found.pending_id,
                    });
                    let identity = fields.to_string();
                    NewEvent::derived(&provider, &sid, Some(&cid), "identity_linked", &[&identity], fields)
                };
                let corp = CorpRef { provider_corpid: &provider, suite_id: &sid, corpid: &cid };
                store::link_matches(conn, &corp, &matches, &ids, since, &event_for)
            })
            .await?;
        if made > 0 {
            self.db.notify_appended();
            tracing::info!(suite = %suite_id, %corpid, linked = made, "pending identities linked");
        }
        Ok(made)
    }
}

/// An errcode about this one ID (no relation with the corp, invalid corpid …), not
/// about the token or WeCom's health: reported per ID instead of failing the request.
fn is_per_id(error: &WecomError) -> bool {
    error.errcode().is_some()
        && matches!(
            error.class(),
            ErrcodeClass::ItemRejected | ErrcodeClass::AuthorizationRevoked | ErrcodeClass::Final
        )
}

fn reason(error: &WecomError) -> String {
    match error {
        WecomError::Api { errcode, errmsg } => format!("errcode {errcode}: {errmsg}"),
        other => other.to_string(),
    }
}
