//! The token center: provider, suite and per-corp tokens, JS-SDK tickets and the
//! install page's pre_auth_code.
//!
//! Invariants: a token is handed out only with more than its margin
//! ([`MARGIN_MS`], 2 minutes for a pre_auth_code) of life left;
//! tokens live in the database so restarts and other instances reuse them; at most
//! one caller in the deployment refreshes a given token at a time (a per-process
//! lock in front of a claim row in the database, re-checked after the claim); no
//! transaction is open while WeCom is called. A token WeCom calls invalid is
//! dropped, refreshed and the call retried once.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::model::{CorpId, CorpStatus, ProviderCorpId, SuiteId, SuiteKind};
use crate::registry::Registry;
use crate::store::events::NewEvent;
use crate::store::sealing::{SealError, Sealed};
use crate::store::{Db, StoreError, corps, now_ms, suites, tokens};
use crate::telemetry;
use crate::wecom::client::{Grant, WecomClient, WecomError};
use crate::wecom::errcodes::{self, ErrcodeClass};

/// Tokens are handed out only while more than this remains of their life.
pub const MARGIN_MS: i64 = 5 * 60 * 1000;
const PRE_AUTH_CODE_MARGIN_MS: i64 = 2 * 60 * 1000;
/// A suite_ticket older than this is expired at WeCom.
pub const TICKET_LIFETIME_MS: i64 = 30 * 60 * 1000;
/// A refresh claim lapses after this, should its holder die mid-call; a live holder
/// renews it every [`CLAIM_RENEW`] while WeCom answers.
const CLAIM_MS: i64 = 10_000;
const CLAIM_RENEW: Duration = Duration::from_secs(3);
/// How long a caller waits for another instance's refresh before giving up.
const WAIT_FOR_OTHERS: Duration = Duration::from_secs(35);
/// A token read from the database is served from memory this long: the hot path
/// then costs no query, and a token another instance dropped (WeCom called it
/// invalid) stops being handed out here within this time.
const MEMORY_TTL_MS: i64 = 1_000;

/// Which token. A JS-SDK ticket is one too: cached, refreshed and shared the same way.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TokenKey {
    Provider {
        provider_corpid: ProviderCorpId,
    },
    Suite {
        suite_id: SuiteId,
    },
    Corp {
        suite_id: SuiteId,
        corpid: CorpId,
    },
    Ticket {
        suite_id: SuiteId,
        corpid: CorpId,
        kind: TicketKind,
    },
    /// The install page's code (20 minutes), shared by every view; `test_install`:
    /// set_session_info marked it as a test install when it was fetched.
    PreAuthCode {
        suite_id: SuiteId,
        test_install: bool,
    },
}

impl TokenKey {
    pub fn corp(suite_id: &SuiteId, corpid: &CorpId) -> Self {
        Self::Corp { suite_id: suite_id.clone(), corpid: corpid.clone() }
    }

    pub fn suite(suite_id: &SuiteId) -> Self {
        Self::Suite { suite_id: suite_id.clone() }
    }

    fn scope(&self) -> &'static str {
        match self {
            Self::Provider { .. } => "provider",
            Self::Suite { .. } => "suite",
            Self::Corp { .. } => "corp",
            Self::Ticket { kind: TicketKind::Jsapi, .. } => "jsapi_ticket",
            Self::Ticket { kind: TicketKind::AgentConfig, .. } => "agent_config_ticket",
            Self::PreAuthCode { .. } => "pre_auth_code",
        }
    }

    /// A pre_auth_code is handed out while it has more than 2 of its 20 minutes
    /// left: long enough for an admin to read the page and consent.
    fn margin_ms(&self) -> i64 {
        match self {
            Self::PreAuthCode { .. } => PRE_AUTH_CODE_MARGIN_MS,
            _ => MARGIN_MS,
        }
    }

    /// A suite belongs to one provider, so (suite, corp) names a corp token uniquely
    /// even when two suites of different providers share a corp.
    fn key(&self) -> String {
        match self {
            Self::Provider { provider_corpid } => provider_corpid.to_string(),
            Self::Suite { suite_id } => suite_id.to_string(),
            Self::PreAuthCode { suite_id, test_install: false } => suite_id.to_string(),
            Self::PreAuthCode { suite_id, test_install: true } => format!("{suite_id}/test"),
            Self::Corp { suite_id, corpid } | Self::Ticket { suite_id, corpid, .. } => format!("{suite_id}/{corpid}"),
        }
    }
}

/// A token and when WeCom expires it (Unix ms).
#[derive(Clone)]
pub struct Token {
    pub access_token: SecretString,
    pub expires_at: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(
        "no suite_ticket younger than 30 minutes; WeCom pushes one every 10 minutes to the command URL, or press 刷新ticket in the provider admin"
    )]
    NoSuiteTicket,
    #[error(
        "WeCom rejected the suite_ticket received {age_seconds} s ago (40085); wait for the next push (every 10 minutes) or press 刷新ticket in the provider admin"
    )]
    TicketRejected { age_seconds: i64 },
    #[error("unknown {0}")]
    Unknown(&'static str),
    #[error("the suite is disabled")]
    SuiteDisabled,
    #[error("the corp has cancelled its authorization")]
    CorpNotActive,
    #[error("WeCom rejected the corp's permanent code ({0}); it must authorize the app again")]
    PermanentCodeRejected(String),
    #[error(transparent)]
    Upstream(#[from] WecomError),
    #[error("another instance is still refreshing this token")]
    RefreshTimeout,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Sealing(#[from] SealError),
    #[error(
        "WeCom allows {limit} {kind} fetches per hour and this hour's are spent; try again in {retry_after_secs} s"
    )]
    TicketLimit { kind: &'static str, limit: usize, retry_after_secs: u64 },
}

type Fetch<'a> = Pin<Box<dyn Future<Output = Result<Grant, TokenError>> + Send + 'a>>;

/// A token in memory: trusted until `until` (Unix ms); after that one caller
/// re-reads the database while the others keep getting it (it is still fresh by
/// its own expiry), so an expiring entry never sends every request to the database.
struct Remembered {
    token: Token,
    until: i64,
    rereading: bool,
}

mod tickets;

pub use tickets::{JsapiSignatures, TicketKind};

pub struct Tokens {
    db: Db,
    registry: Arc<Registry>,
    client: WecomClient,
    holder: String,
    refreshing: Mutex<HashMap<TokenKey, Arc<tokio::sync::Mutex<()>>>>,
    /// Recently seen fresh tokens.
    memory: Mutex<HashMap<TokenKey, Remembered>>,
    /// The last refresh that WeCom failed, per token, and when it ended: callers that
    /// waited for it share its outcome instead of repeating its retries.
    failed: Mutex<HashMap<TokenKey, (tokio::time::Instant, WecomError)>>,
}

impl Tokens {
    pub fn new(db: Db, registry: Arc<Registry>, client: WecomClient) -> Self {
        Tokens {
            db,
            registry,
            client,
            holder: format!("{}-{:016x}", std::process::id(), rand::random::<u64>()),
            refreshing: Mutex::default(),
            memory: Mutex::default(),
            failed: Mutex::default(),
        }
    }

    pub fn client(&self) -> &WecomClient {
        &self.client
    }

    /// A token with more than five minutes left, refreshed first if need be.
    pub async fn get(&self, key: &TokenKey) -> Result<Token, TokenError> {
        self.check_suite(key)?;
        if let Some(token) = self.cached(key).await? {
            return Ok(token);
        }
        // One refresher per token in this process; the rest wait here and then
        // find the new token in the database.
        let refresh_lock = self.local_lock(key);
        let waiting_since = tokio::time::Instant::now();
        let _guard = refresh_lock.lock().await;
        if let Some(token) = self.cached(key).await? {
            return Ok(token);
        }
        if let Some((failed_at, error)) = lock(&self.failed).get(key)
            && *failed_at >= waiting_since
        {
            return Err(TokenError::Upstream(error.clone()));
        }
        let deadline = tokio::time::Instant::now() + WAIT_FOR_OTHERS;
        loop {
            let (scope, id, holder, margin) = (key.scope(), key.key(), self.holder.clone(), key.margin_ms());
            let claim =
                self.db.run(move |conn| tokens::claim_refresh(conn, scope, &id, &holder, margin, CLAIM_MS)).await?;
            match claim {
                tokens::Claim::Fresh { access_token, expires_at } => {
                    return Ok(Token { access_token: self.db.sealer().open(&access_token)?, expires_at });
                }
                tokens::Claim::Claimed => return self.refresh_claimed(key).await,
                tokens::Claim::Busy if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                tokens::Claim::Busy => return Err(TokenError::RefreshTimeout),
            }
        }
    }

    /// Drops whatever is cached and fetches a new token (`?refresh=true`).
    pub async fn refresh(&self, key: &TokenKey) -> Result<Token, TokenError> {
        self.forget(key, None).await?;
        self.get(key).await
    }

    /// Drops the cached token: all of it, or only if it still is `bad`.
    pub async fn forget(&self, key: &TokenKey, bad: Option<&Token>) -> Result<(), TokenError> {
        lock(&self.memory).remove(key);
        let (scope, id) = (key.scope(), key.key());
        let bad_expires_at = bad.map(|token| token.expires_at);
        self.db.run(move |conn| tokens::drop_token(conn, scope, &id, bad_expires_at)).await?;
        Ok(())
    }

    /// A disabled suite's tokens are not handed out, and an unknown suite's never fetched.
    fn check_suite(&self, key: &TokenKey) -> Result<(), TokenError> {
        let (TokenKey::Suite { suite_id }
        | TokenKey::Corp { suite_id, .. }
        | TokenKey::Ticket { suite_id, .. }
        | TokenKey::PreAuthCode { suite_id, .. }) = key
        else {
            return Ok(());
        };
        match self.registry.suite(suite_id) {
            Some(suite) if suite.enabled => Ok(()),
            Some(_) => Err(TokenError::SuiteDisabled),
            None => Err(TokenError::Unknown("suite")),
        }
    }

    /// Calls WeCom with the token of `key`; if WeCom calls the token invalid, drops
    /// it, fetches a new one and calls once more.
    pub async fn call<T, F, Fut>(&self, key: &TokenKey, call: F) -> Result<T, TokenError>
    where
        F: Fn(SecretString) -> Fut,
        Fut: Future<Output = Result<T, WecomError>>,
    {
        let token = self.get(key).await?;
        match call(token.access_token.clone()).await {
            Err(error) if error.class() == ErrcodeClass::BadToken => {
                tracing::info!(
                    scope = key.scope(),
                    errcode = error.errcode(),
                    "token rejected by WeCom; refreshing once"
                );
                self.forget(key, Some(&token)).await?;
                let token = self.get(key).await?;
                Ok(call(token.access_token).await?)
            }
            other => Ok(other?),
        }
    }

    /// Stores a token obtained elsewhere (get_permanent_code hands out a first corp token).
    pub async fn put(&self, key: &TokenKey, grant: &Grant) -> Result<(), TokenError> {
        let (scope, id) = (key.scope(), key.key());
        let sealed = self.db.sealer().seal(grant.token.expose_secret());
        let expires_at = now_ms() + grant.expires_in.saturating_mul(1000);
        self.db.run(move |conn| tokens::store(conn, scope, &id, &sealed, expires_at)).await?;
        Ok(())
    }

    async fn cached(&self, key: &TokenKey) -> Result<Option<Token>, TokenError> {
        let now = now_ms();
        if let Some(entry) = lock(&self.memory).get_mut(key) {
            let still_fresh = now < entry.token.expires_at - key.margin_ms();
            if now < entry.until || (entry.rereading && still_fresh) {
                return Ok(Some(entry.token.clone()));
            }
            entry.rereading = true;
        }
        let (scope, id, margin) = (key.scope(), key.key(), key.margin_ms());
        let found = self.db.run(move |conn| tokens::fresh(conn, scope, &id, margin)).await;
        let found = match found {
            Ok(Some((sealed, expires_at))) => Some(Token { access_token: self.db.sealer().open(&sealed)?, expires_at }),
            Ok(None) => None,
            Err(error) => {
                lock(&self.memory).remove(key);
                return Err(error.into());
            }
        };
        match &found {
            Some(token) => self.remember(key, token),
            None => {
                lock(&self.memory).remove(key);
            }
        }
        Ok(found)
    }

    fn remember(&self, key: &TokenKey, token: &Token) {
        let until = (now_ms() + MEMORY_TTL_MS).min(token.expires_at - key.margin_ms());
        lock(&self.memory).insert(key.clone(), Remembered { token: token.clone(), until, rereading: false });
    }

    fn local_lock(&self, key: &TokenKey) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.refreshing).entry(key.clone()).or_default().clone()
    }

    async fn refresh_claimed(&self, key: &TokenKey) -> Result<Token, TokenError> {
        let (scope, id, holder) = (key.scope(), key.key(), self.holder.clone());
        let started = std::time::Instant::now();
        let fetched = {
            let fetch = self.fetch(key);
            tokio::pin!(fetch);
            let mut renew = tokio::time::interval(CLAIM_RENEW);
            renew.tick().await;
            loop {
                tokio::select! {
                    fetched = &mut fetch => break fetched,
                    _ = renew.tick() => {
                        let (id, holder) = (id.clone(), holder.clone());
                        if let Err(error) = self.db.run(move |conn| tokens::renew_claim(conn, scope, &id, &holder, CLAIM_MS)).await {
                            tracing::warn!(%error, "could not renew a token refresh claim");
                        }
                    }
                }
            }
        };
        let kind = key.scope();
        let outcome = if fetched.is_ok() { "ok" } else { "error" };
        metrics::counter!(telemetry::TOKEN_REFRESHES, "kind" => kind, "outcome" => outcome).increment(1);
        metrics::histogram!(telemetry::TOKEN_REFRESH_SECONDS, "kind" => kind).record(started.elapsed().as_secs_f64());
        match fetched {
            Ok(grant) => {
                let expires_at = now_ms() + grant.expires_in.saturating_mul(1000);
                let sealed: Sealed = self.db.sealer().seal(grant.token.expose_secret());
                self.db.run(move |conn| tokens::store(conn, scope, &id, &sealed, expires_at)).await?;
                let token = Token { access_token: grant.token, expires_at };
                self.remember(key, &token);
                lock(&self.failed).remove(key);
                Ok(token)
            }
            Err(error) => {
                if let TokenError::Upstream(upstream) = &error {
                    lock(&self.failed).insert(key.clone(), (tokio::time::Instant::now(), upstream.clone()));
                }
                self.db.run(move |conn| tokens::release_claim(conn, scope, &id, &holder)).await?;
                Err(error)
            }
        }
    }

    /// Asks WeCom for a new token of `key`.
    fn fetch<'a>(&'a self, key: &'a TokenKey) -> Fetch<'a> {
        Box::pin(async move {
            match key {
                TokenKey::Provider { provider_corpid } => {
                    let provider = self.registry.provider(provider_corpid).ok_or(TokenError::Unknown("provider"))?;
                    Ok(self.client.get_provider_token(provider_corpid, &provider.secret).await?)
                }
                TokenKey::Suite { suite_id } => self.fetch_suite_token(suite_id).await,
                TokenKey::Corp { suite_id, corpid } => self.fetch_corp_token(suite_id, corpid).await,
                TokenKey::Ticket { suite_id, corpid, kind } => self.fetch_ticket(suite_id, corpid, *kind).await,
                TokenKey::PreAuthCode { suite_id, test_install } => {
                    self.fetch_pre_auth_code(suite_id, *test_install).await
                }
            }
        })
    }

    async fn fetch_suite_token(&self, suite_id: &SuiteId) -> Result<Grant, TokenError> {
        // The registry's view: a rotated secret is used by the next refresh.
        let suite = self.registry.suite(suite_id).ok_or(TokenError::Unknown("suite"))?;
        let id = suite_id.to_owned();
        let (ticket, arrived_at) = match self.db.run(move |conn| suites::ticket(conn, &id)).await? {
            Some((ticket, at)) if now_ms() - at < TICKET_LIFETIME_MS => (self.db.sealer().open(&ticket)?, at),
            _ => return Err(TokenError::NoSuiteTicket),
        };
        match self.client.get_suite_token(suite_id, &suite.secret, &ticket).await {
            Err(error) if error.errcode() == Some(errcodes::INVALID_SUITE_TICKET) => {
                let age_seconds = (now_ms() - arrived_at) / 1000;
                tracing::warn!(suite = %suite_id, age_seconds, "WeCom rejected the stored suite_ticket (40085)");
                Err(TokenError::TicketRejected { age_seconds })
            }
            other => Ok(other?),
        }
    }

    async fn fetch_pre_auth_code(&self, suite_id: &SuiteId, test_install: bool) -> Result<Grant, TokenError> {
        let suite_key = TokenKey::suite(suite_id);
        let client = &self.client;
        let grant = self.call(&suite_key, |token| async move { client.get_pre_auth_code(&token).await }).await?;
        if test_install {
            let code = &grant.token;
            self.call(&suite_key, |token| async move { client.set_session_info(&token, code, 1).await }).await?;
        }
        Ok(grant)
    }

    async fn fetch_corp_token(&self, suite_id: &SuiteId, corpid: &CorpId) -> Result<Grant, TokenError> {
        let (sid, cid) = (suite_id.to_owned(), corpid.to_owned());
        let corp =
            self.db.run(move |conn| corps::credentials(conn, &sid, &cid)).await?.ok_or(TokenError::Unknown("corp"))?;
        if corp.status != CorpStatus::Active {
            return Err(TokenError::CorpNotActive);
        }
        if let Some(error) = corp.auth_error {
            return Err(TokenError::PermanentCodeRejected(error));
        }
        let permanent_code = self.db.sealer().open(&corp.permanent_code.ok_or(TokenError::CorpNotActive)?)?;
        let kind = self.registry.suite(suite_id).map(|suite| suite.kind);
        let result = if kind == Some(SuiteKind::CustomizedTemplate) {
            // 代开发: the permanent code is the app's secret; get_corp_token answers 48002.
            self.client.gettoken(corpid, &permanent_code).await.map_err(TokenError::from)
        } else {
            self.call(&TokenKey::suite(suite_id), |suite_token| {
                let permanent_code = permanent_code.clone();
                async move { self.client.get_corp_token(&suite_token, corpid, &permanent_code).await }
            })
            .await
        };
        self.mark_if_revoked(suite_id, corpid, result).await
    }

    /// Marks the corp when WeCom rejects its permanent code (40084, 48004), so later
    /// callers get `permanent_code_rejected` at once instead of retrying forever. Only
    /// for calls that present the permanent code (get_corp_token, get_auth_info,
    /// gettoken): from an API called with a corp token, 48004 means that API is not
    /// permitted, which says nothing about the authorization.
    pub async fn mark_if_revoked<T>(
        &self,
        suite_id: &SuiteId,
        corpid: &CorpId,
        result: Result<T, TokenError>,
    ) -> Result<T, TokenError> {
        match result {
            Err(TokenError::Upstream(error)) if error.class() == ErrcodeClass::AuthorizationRevoked => {
                let reason = format!("errcode {}", error.errcode().unwrap_or_default());
                let (sid, cid, note) = (suite_id.to_owned(), corpid.to_owned(), reason.clone());
                self.db
                    .run(move |conn| {
                        let provider = suites::find_suite(conn, &sid)?
                            .map_or_else(|| ProviderCorpId::from(""), |s| s.provider_corpid);
                        let authorized_at =
                            corps::find(conn, &sid, &cid)?.map(|c| c.authorized_at.to_string()).unwrap_or_default();
                        // Once per authorization: a reinstall that is rejected again reports again.
                        let event = NewEvent::derived(
                            &provider,
                            &sid,
                            Some(&cid),
                            "corp_auth_rejected",
                            &[&authorized_at],
                            serde_json::json!({"suite_id": sid, "corpid": cid, "reason": note}),
                        );
                        corps::mark_auth_error(conn, &sid, &cid, &note, &[event])
                    })
                    .await?;
                self.db.notify_appended();
                tracing::warn!(suite = %suite_id, %corpid, %reason, "permanent code rejected; corp marked");
                Err(TokenError::PermanentCodeRejected(reason))
            }
            other => other,
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
