//! The authorization lifecycle of a corp in a suite: exchanging auth codes for
//! permanent codes (from the create_auth callback or the install redirect, whichever
//! comes first: the other is a no-op), refreshing auth info and cancelling. Each
//! change is stored with its derived event (`corp_authorized`, `corp_auth_changed`,
//! `corp_cancelled`, `corp_permanent_code_reset`, `corp_auth_lost`) in one
//! transaction.

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::model::{CorpId, EventId, PermanentCodeApi, ProviderCorpId, SuiteId, SuiteKind};
use crate::registry::Registry;
use crate::store::auth_codes::{self, CodeClaim};
use crate::store::events::NewEvent;
use crate::store::{Db, StoreError, corps, suites};
use crate::tokens::{TokenError, TokenKey, Tokens};
use crate::wecom::client::{PermanentCodeGrant, WecomError, first_agent_id};
use crate::wecom::errcodes::ErrcodeClass;

/// A claim on an auth code lapses this long after its holder stopped renewing it
/// (it died): the code is then taken over, or known lost if it had been sent.
const CODE_CLAIM_MS: i64 = 10_000;
const CODE_CLAIM_RENEW: Duration = Duration::from_secs(3);
/// How long a path waits for the other path's exchange of the same code.
const WAIT_FOR_OTHER_PATH: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the auth code is being exchanged by another request")]
    ExchangeInProgress,
    #[error("unknown corp")]
    UnknownCorp,
    #[error(
        "WeCom's answer to the auth code's exchange was lost; the code is spent, so the admin must install the app again"
    )]
    AuthCodeLost,
}

/// The derived event of a new authorization, and of a reset permanent code.
pub const CORP_AUTHORIZED: &str = "corp_authorized";
pub const CORP_PERMANENT_CODE_RESET: &str = "corp_permanent_code_reset";

/// Which path carried an auth code: the feed tells the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallPath {
    Callback,
    InstallPage,
}

impl InstallPath {
    fn as_str(self) -> &'static str {
        match self {
            Self::Callback => "callback",
            Self::InstallPage => "install_page",
        }
    }
}

/// A corp whose authorization is stored.
#[derive(Debug, Clone)]
pub struct Authorized {
    pub corpid: CorpId,
    pub corp_name: String,
    /// The code had been exchanged already (by the other path).
    pub already_exchanged: bool,
}

pub struct Lifecycle {
    db: Db,
    registry: Arc<Registry>,
    tokens: Arc<Tokens>,
    /// Names this process on the auth-code claims it holds.
    holder: String,
}

/// The suite's provider, for derived events.
/// An unknown suite's events name no provider (an empty corpid).
async fn provider_of(db: &Db, suite_id: &SuiteId) -> Result<ProviderCorpId, StoreError> {
    let id = suite_id.clone();
    let suite = db.run(move |conn| suites::find_suite(conn, &id)).await?;
    Ok(suite.map_or_else(|| ProviderCorpId::from(""), |suite| suite.provider_corpid))
}

impl Lifecycle {
    pub fn new(db: Db, registry: Arc<Registry>, tokens: Arc<Tokens>) -> Self {
        let holder = format!("{}-{:016x}", std::process::id(), rand::random::<u64>());
        Lifecycle { db, registry, tokens, holder }
    }

    /// Exchanges an auth code at most once per code, whichever path carries it, and
    /// stores the corp with its `corp_authorized` event.
    pub async fn exchange_auth_code(
        &self,
        suite_id: &SuiteId,
        auth_code: &SecretString,
        path: InstallPath,
        kind: &'static str,
    ) -> Result<Authorized, LifecycleError> {
        let code_hash = hex::encode(Sha256::digest(auth_code.expose_secret().as_bytes()));
        let provider = provider_of(&self.db, suite_id).await?;
        let lost_event = NewEvent::derived(
            &provider,
            suite_id,
            None,
            "corp_auth_lost",
            &[&code_hash],
            json!({"suite_id": suite_id, "install_path": path.as_str(), "reason": LifecycleError::AuthCodeLost.to_string()}),
        );
        let deadline = tokio::time::Instant::now() + WAIT_FOR_OTHER_PATH;
        loop {
            let (sid, hash, holder, lost) =
                (suite_id.to_owned(), code_hash.clone(), self.holder.clone(), lost_event.clone());
            let claim =
                self.db.run(move |conn| auth_codes::claim(conn, &sid, &hash, &holder, CODE_CLAIM_MS, &lost)).await?;
            match claim {
                CodeClaim::Claimed => break,
                CodeClaim::Done { corpid } => {
                    let (sid, cid) = (suite_id.to_owned(), corpid.clone());
                    let corp = self.db.run(move |conn| corps::find(conn, &sid, &cid)).await?;
                    return Ok(Authorized {
                        corpid,
                        corp_name: corp.map(|c| c.corp_name).unwrap_or_default(),
                        already_exchanged: true,
                    });
                }
                CodeClaim::Lost => {
                    self.db.notify_appended();
                    return Err(LifecycleError::AuthCodeLost);
                }
                CodeClaim::InProgress if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                CodeClaim::InProgress => return Err(LifecycleError::ExchangeInProgress),
            }
        }
        let claimed = ClaimedCode { suite_id, code_hash: &code_hash, holder: &self.holder };
        let spent = {
            let exchange = self.spend_claimed(&claimed, auth_code);
            tokio::pin!(exchange);
            let mut renew = tokio::time::interval(CODE_CLAIM_RENEW);
            renew.tick().await;
            loop {
                tokio::select! {
                    outcome = &mut exchange => break outcome,
                    _ = renew.tick() => {
                        let (sid, hash, holder) = (suite_id.to_owned(), code_hash.clone(), self.holder.clone());
                        if let Err(error) = self.db.run(move |conn| auth_codes::renew(conn, &sid, &hash, &holder, CODE_CLAIM_MS)).await {
                            tracing::warn!(%error, "could not renew an auth code's claim");
                        }
                    }
                }
            }
        };
        let (sid, hash, holder) = (suite_id.to_owned(), code_hash.clone(), self.holder.clone());
        match spent {
            Ok(grant) => Ok(self.store_grant(suite_id, &provider, &code_hash, grant, path, kind).await?),
            Err(LifecycleError::Token(TokenError::Upstream(WecomError::AnswerLost(reason)))) => {
                tracing::error!(suite = %suite_id, %reason, "auth code spent without an answer; the admin must reinstall");
                self.db.run(move |conn| auth_codes::mark_lost(conn, &sid, &hash, &lost_event)).await?;
                self.db.notify_appended();
                Err(LifecycleError::AuthCodeLost)
            }
            Err(error) => {
                // Not sent, or refused outright: the code was not spent by us.
                self.db.run(move |conn| auth_codes::release(conn, &sid, &hash, &holder)).await?;
                Err(error)
            }
        }
    }

    /// On shutdown: auth codes this process claimed but never sent are freed for
    /// another instance at once.
    pub async fn release_unsent_codes(&self) {
        let holder = self.holder.clone();
        if let Err(error) = self.db.run(move |conn| auth_codes::release_unsent(conn, &holder)).await {
            tracing::warn!(%error, "could not release auth code claims; they lapse in 10 s");
        }
    }

    /// Commits that the code is being sent, then sends it once, with the suite's
    /// `permanent_code_api`; after v2, get_auth_info adds what v2 leaves out, so
    /// the stored corp is the same either way.
    async fn spend_claimed(
        &self,
        claimed: &ClaimedCode<'_>,
        auth_code: &SecretString,
    ) -> Result<PermanentCodeGrant, LifecycleError> {
        let (sid, hash, holder) =
            (claimed.suite_id.to_owned(), claimed.code_hash.to_owned(), claimed.holder.to_owned());
        if !self.db.run(move |conn| auth_codes::mark_sent(conn, &sid, &hash, &holder)).await? {
            return Err(LifecycleError::ExchangeInProgress);
        }
        let suite = self.registry.suite(claimed.suite_id).ok_or(TokenError::Unknown("suite"))?;
        let (api, kind) = (suite.permanent_code_api, suite.kind);
        let client = self.tokens.client();
        let suite_key = TokenKey::suite(claimed.suite_id);
        let grant = self
            .tokens
            .call(
                &suite_key,
                |suite_token| async move { client.get_permanent_code(api, &suite_token, auth_code).await },
            )
            .await?;
        if api == PermanentCodeApi::V1 {
            return Ok(grant);
        }
        let (permanent_code, corpid) = (&grant.permanent_code, &grant.corpid);
        let details = self
            .tokens
            .call(&suite_key, |suite_token| async move {
                client.get_auth_info(kind, &suite_token, corpid, permanent_code).await
            })
            .await;
        match details {
            Ok(details) => Ok(grant.with_details(details)),
            Err(error) => {
                // The permanent code is what matters: it is stored, and the next
                // change_auth brings the details.
                tracing::warn!(suite = %claimed.suite_id, %corpid, %error, "get_auth_info after a v2 exchange failed");
                Ok(grant)
            }
        }
    }

    async fn store_grant(
        &self,
        suite_id: &SuiteId,
        provider: &ProviderCorpId,
        code_hash: &str,
        grant: PermanentCodeGrant,
        path: InstallPath,
        kind: &'static str,
    ) -> Result<Authorized, LifecycleError> {
        let corp_key = TokenKey::corp(suite_id, &grant.corpid);
        // A re-install or a reset secret makes any cached corp token stale. The
        // exchange's own token is stored before the corp becomes visible, so a caller
        // who sees the corp and refreshes its token is never overtaken by this one.
        self.tokens.forget(&corp_key, None).await?;
        if let Some(corp_token) = &grant.corp_token {
            self.tokens.put(&corp_key, corp_token).await?;
        }
        let mut auth_info = grant.auth_info;
        let event = NewEvent::derived(
            provider,
            suite_id,
            Some(&grant.corpid),
            kind,
            &[code_hash],
            json!({
                "suite_id": suite_id,
                "corpid": grant.corpid,
                "corp_name": grant.corp_name,
                "agent_id": grant.agent_id,
                "auth_mode": auth_info["auth_info"]["agent"][0]["auth_mode"],
                "edition": edition(&auth_info),
                "install_path": path.as_str(),
            }),
        );
        let permanent_code = self.db.sealer().seal(grant.permanent_code.expose_secret());
        let (sid, corpid, corp_name, agent_id, hash) =
            (suite_id.to_owned(), grant.corpid.clone(), grant.corp_name.clone(), grant.agent_id, code_hash.to_owned());
        let stored_info = auth_info.to_string();
        self.db
            .run(move |conn| {
                let authorization = corps::Authorization {
                    suite_id: &sid,
                    corpid: &corpid,
                    corp_name: &corp_name,
                    agent_id,
                    permanent_code: &permanent_code,
                    auth_info: &stored_info,
                };
                corps::upsert_authorized(conn, &authorization, &hash, &[event])
            })
            .await?;
        self.db.notify_appended();
        if let Some(agent_id) = grant.agent_id {
            // Admins are useful, not essential: the authorization stands without them.
            match self.admins(&corp_key, agent_id).await {
                Ok(admins) => {
                    if let Some(object) = auth_info.as_object_mut() {
                        object.insert("admins".into(), admins);
                    }
                    let (sid, cid, name, info) =
                        (suite_id.to_owned(), grant.corpid.clone(), grant.corp_name.clone(), auth_info.to_string());
                    self.db
                        .run(move |conn| corps::update_auth_info(conn, (&sid, &cid), &name, Some(agent_id), &info, &[]))
                        .await?;
                }
                Err(error) => {
                    tracing::warn!(suite = %suite_id, corpid = %grant.corpid, %error, "could not fetch the app's admins")
                }
            }
        }
        tracing::info!(suite = %suite_id, corpid = %grant.corpid, install_path = path.as_str(), "corp authorized");
        Ok(Authorized { corpid: grant.corpid, corp_name: grant.corp_name, already_exchanged: false })
    }

    /// Whether a 代开发 app is enabled in the corp: change_auth fires when the corp
    /// disables or re-enables it, and `agent/get` (`close`) says which. No agent in
    /// the auth info, or an app WeCom refuses to describe, is disabled: nothing can
    /// be done with it. A busy or rate-limited WeCom is retried by the effect.
    async fn customized_app_enabled(
        &self,
        suite_id: &SuiteId,
        corpid: &CorpId,
        agent_id: Option<i64>,
    ) -> Result<bool, LifecycleError> {
        let Some(agent_id) = agent_id else { return Ok(false) };
        let client = self.tokens.client();
        let agent = self
            .tokens
            .call(&TokenKey::corp(suite_id, corpid), |corp_token| async move {
                client.get_agent(&corp_token, agent_id).await
            })
            .await;
        match agent {
            Ok(agent) => Ok(agent["close"].as_i64() != Some(1)),
            Err(TokenError::Upstream(error))
                if !matches!(error.class(), ErrcodeClass::Transient | ErrcodeClass::RateLimited) =>
            {
                tracing::info!(suite = %suite_id, %corpid, %error, "agent/get refused: the customized app counts as disabled");
                Ok(false)
            }
            Err(error) => Err(error.into()),
        }
    }

    async fn admins(&self, corp_key: &TokenKey, agent_id: i64) -> Result<Value, TokenError> {
        let client = self.tokens.client();
        self.tokens.call(corp_key, |corp_token| async move { client.get_admin_list(&corp_token, agent_id).await }).await
    }

    /// change_auth: fetches and stores the current auth info, with a
    /// `corp_auth_changed` event (once per triggering event `cause`).
    pub async fn refresh_auth_info(
        &self,
        suite_id: &SuiteId,
        corpid: &CorpId,
        cause: EventId,
    ) -> Result<(), LifecycleError> {
        let (sid, cid) = (suite_id.to_owned(), corpid.to_owned());
        let credentials =
            self.db.run(move |conn| corps::credentials(conn, &sid, &cid)).await?.ok_or(LifecycleError::UnknownCorp)?;
        let Some(sealed) = credentials.permanent_code else {
            return Err(LifecycleError::Token(TokenError::CorpNotActive));
        };
        let permanent_code = self.db.sealer().open(&sealed).map_err(TokenError::from)?;
        let client = self.tokens.client();
        let permanent_code = &permanent_code;
        let kind = self.registry.suite(suite_id).ok_or(TokenError::Unknown("suite"))?.kind;
        let fetched = self
            .tokens
            .call(&TokenKey::suite(suite_id), |suite_token| async move {
                client.get_auth_info(kind, &suite_token, corpid, permanent_code).await
            })
            .await;
        let mut info = self.tokens.mark_if_revoked(suite_id, corpid, fetched).await?;
        let mut stored_app_state = None;
        if let (Some(stored), Some(fresh)) = (self.stored_corp(suite_id, corpid).await.ok(), info.as_object_mut()) {
            let stored: Value = serde_json::from_str(&stored.auth_info).unwrap_or_default();
            for field in KEPT_INFO_FIELDS {
                if !stored[field].is_null() {
                    fresh.insert(field.into(), stored[field].clone());
                }
            }
            stored_app_state = Some(stored["app_state"].clone()).filter(|state| !state.is_null());
        }
        let corp_name = info["auth_corp_info"]["corp_name"].as_str().unwrap_or_default().to_owned();
        let agent_id = first_agent_id(&info).or(credentials.agent_id);
        let provider = provider_of(&self.db, suite_id).await?;
        let mut fields = json!({
            "suite_id": suite_id,
            "corpid": corpid,
            "corp_name": corp_name,
            "agent_id": agent_id,
            "auth_mode": info["auth_info"]["agent"][0]["auth_mode"],
            "edition": edition(&info),
        });
        let mut events = Vec::new();
        if kind == SuiteKind::CustomizedTemplate {
            let enabled = self.customized_app_enabled(suite_id, corpid, first_agent_id(&info)).await?;
            fields["app_enabled"] = json!(enabled);
            let was = stored_app_state.as_ref().map(|state| state["enabled"] == json!(true));
            let since = match &stored_app_state {
                Some(state) if was == Some(enabled) => state["since"].clone(),
                _ => json!(crate::feed::rfc3339(crate::store::now_ms())),
            };
            info["app_state"] = json!({"enabled": enabled, "since": since});
            // A business service acts on the switch, not on every change_auth.
            if was != Some(enabled) && !(was.is_none() && enabled) {
                let switched = if enabled { "customized_app_enabled" } else { "customized_app_disabled" };
                let switch_fields = json!({"suite_id": suite_id, "corpid": corpid, "agent_id": agent_id});
                events.push(NewEvent::derived(
                    &provider,
                    suite_id,
                    Some(corpid),
                    switched,
                    &[&cause.to_string()],
                    switch_fields,
                ));
            }
        }
        events.insert(
            0,
            NewEvent::derived(&provider, suite_id, Some(corpid), "corp_auth_changed", &[&cause.to_string()], fields),
        );
        let (sid, cid, stored) = (suite_id.to_owned(), corpid.to_owned(), info.to_string());
        self.db
            .run(move |conn| corps::update_auth_info(conn, (&sid, &cid), &corp_name, agent_id, &stored, &events))
            .await?;
        self.db.notify_appended();
        Ok(())
    }

    /// cancel_auth: the corp is cancelled and its token dropped, with a
    /// `corp_cancelled` event (once per triggering event `cause`).
    pub async fn cancel(&self, suite_id: &SuiteId, corpid: &CorpId, cause: EventId) -> Result<(), LifecycleError> {
        let provider = provider_of(&self.db, suite_id).await?;
        let event = NewEvent::derived(
            &provider,
            suite_id,
            Some(corpid),
            "corp_cancelled",
            &[&cause.to_string()],
            json!({"suite_id": suite_id, "corpid": corpid}),
        );
        let (sid, cid) = (suite_id.to_owned(), corpid.to_owned());
        let known = self.db.run(move |conn| corps::cancel(conn, &sid, &cid, &[event])).await?;
        self.db.notify_appended();
        self.tokens.forget(&TokenKey::corp(suite_id, corpid), None).await?;
        if !known {
            tracing::info!(suite = %suite_id, %corpid, "cancel_auth for a corp never stored");
        }
        Ok(())
    }
}

/// The app's edition (paid apps): the first agent's `edition_info` entry.
fn edition(auth_info: &Value) -> Value {
    let agent = &auth_info["edition_info"]["agent"][0];
    if agent.is_null() {
        return Value::Null;
    }
    json!({"edition_id": agent["edition_id"], "edition_name": agent["edition_name"], "app_status": agent["app_status"]})
}

/// An auth code this process holds the claim on.
struct ClaimedCode<'a> {
    suite_id: &'a SuiteId,
    code_hash: &'a str,
    holder: &'a str,
}

/// What an instruction callback says the corp granted or withdrew.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantChange {
    /// corp_arch_auth: the admin approved the 组织架构 permission.
    CorpArchitecture,
    /// approve_special_auth / cancel_special_auth (e.g. customer_acquisition).
    SpecialAuth { granted: bool },
    /// auth_data_permission: a data permission granted (90 days).
    DataPermission,
    /// expire_remind_data_permission: a data permission expires in 7 days.
    DataPermissionExpiring,
}

impl GrantChange {
    pub fn from_kind(kind: &str) -> Option<Self> {
        Some(match kind {
            "corp_arch_auth" => Self::CorpArchitecture,
            "approve_special_auth" => Self::SpecialAuth { granted: true },
            "cancel_special_auth" => Self::SpecialAuth { granted: false },
            "auth_data_permission" => Self::DataPermission,
            "expire_remind_data_permission" => Self::DataPermissionExpiring,
            _ => return None,
        })
    }

    /// Applies the change to the corp's `grants`: `corp_architecture` (bool),
    /// `special_auth` and `data_permissions` (by AuthType).
    fn apply(self, grants: &mut Value, auth_type: Option<&str>, at: &str) {
        if !grants.is_object() {
            *grants = json!({});
        }
        let auth_type = auth_type.unwrap_or("unknown");
        match self {
            Self::CorpArchitecture => grants["corp_architecture"] = json!(true),
            Self::SpecialAuth { granted } => grants["special_auth"][auth_type] = json!(granted),
            Self::DataPermission => {
                grants["data_permissions"][auth_type] = json!({"status": "granted", "granted_at": at});
            }
            Self::DataPermissionExpiring => {
                grants["data_permissions"][auth_type]["status"] = json!("expiring");
                grants["data_permissions"][auth_type]["remind_at"] = json!(at);
            }
        }
    }
}

/// Kept across a change_auth's refresh: they do not come from get_auth_info.
const KEPT_INFO_FIELDS: [&str; 2] = ["admins", "grants"];

impl Lifecycle {
    /// change_app_admin: fetches the app's admins again into the corp's auth info,
    /// with a `corp_admins_changed` event (once per triggering event `cause`).
    pub async fn refresh_admins(
        &self,
        suite_id: &SuiteId,
        corpid: &CorpId,
        cause: EventId,
    ) -> Result<(), LifecycleError> {
        let corp = self.stored_corp(suite_id, corpid).await?;
        let Some(agent_id) = corp.agent_id else {
            tracing::info!(suite = %suite_id, %corpid, "change_app_admin for a corp whose agent id is unknown");
            return Ok(());
        };
        let admins = self.admins(&TokenKey::corp(suite_id, corpid), agent_id).await?;
        let fields = json!({"suite_id": suite_id, "corpid": corpid, "admins": admins});
        self.store_info(suite_id, corp, "corp_admins_changed", cause, fields, |info| info["admins"] = admins).await
    }

    /// An instruction callback about what the corp granted: recorded under the
    /// corp's `auth_info.grants`, with a `corp_grants_changed` event.
    pub async fn record_grant(
        &self,
        suite_id: &SuiteId,
        corpid: &CorpId,
        change: GrantChange,
        kind: &str,
        auth_type: Option<&str>,
        cause: EventId,
    ) -> Result<(), LifecycleError> {
        let corp = self.stored_corp(suite_id, corpid).await?;
        let mut info: Value = serde_json::from_str(&corp.auth_info).unwrap_or_else(|_| json!({}));
        change.apply(&mut info["grants"], auth_type, &crate::feed::rfc3339(crate::store::now_ms()));
        let grants = info["grants"].clone();
        let fields =
            json!({"suite_id": suite_id, "corpid": corpid, "change": kind, "auth_type": auth_type, "grants": grants});
        self.store_info(suite_id, corp, "corp_grants_changed", cause, fields, |stored| stored["grants"] = grants).await
    }

    async fn stored_corp(&self, suite_id: &SuiteId, corpid: &CorpId) -> Result<corps::CorpView, LifecycleError> {
        let (sid, cid) = (suite_id.to_owned(), corpid.to_owned());
        self.db.run(move |conn| corps::find(conn, &sid, &cid)).await?.ok_or(LifecycleError::UnknownCorp)
    }

    async fn store_info(
        &self,
        suite_id: &SuiteId,
        corp: corps::CorpView,
        kind: &str,
        cause: EventId,
        fields: Value,
        change: impl FnOnce(&mut Value),
    ) -> Result<(), LifecycleError> {
        let provider = provider_of(&self.db, suite_id).await?;
        let event = NewEvent::derived(&provider, suite_id, Some(&corp.corpid), kind, &[&cause.to_string()], fields);
        let mut info: Value = serde_json::from_str(&corp.auth_info).unwrap_or_else(|_| json!({}));
        change(&mut info);
        let stored = info.to_string();
        self.db
            .run(move |conn| {
                let key = (&corp.suite_id, &corp.corpid);
                corps::update_auth_info(conn, key, &corp.corp_name, corp.agent_id, &stored, &[event])
            })
            .await?;
        self.db.notify_appended();
        Ok(())
    }
}
