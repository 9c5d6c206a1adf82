//! The registry of providers and suites: the one owner of their records. It
//! validates and writes changes (with their audit entries), and keeps every
//! instance's view of them in memory — secrets opened, callback keys derived once
//! per row version — refreshed from the database every second, so a change made on
//! any instance takes effect everywhere within [`REFRESH_INTERVAL`] and a little.

pub mod apply;
mod seed;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::json;
use url::Url;
use utoipa::ToSchema;

use crate::crypto::{CallbackKeys, KeyError};
use crate::feed::rfc3339;
use crate::model::{PermanentCodeApi, ProviderCorpId, SuiteId, SuiteKind};
use crate::store::audit::NewAuditEntry;
use crate::store::sealing::SealError;
use crate::store::suites::{
    self, NewProvider, NewSuite, ProviderChanges, ProviderRow, Removal, SuiteChanges, SuiteRow,
};
use crate::store::{Db, StoreError};

pub use seed::seed_from_environment;

/// How often each instance re-reads the records.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(1);
const MAX_NAME_CHARS: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{field}: {problem}")]
    Invalid { field: &'static str, problem: String },
    #[error("{0} {1} already exists")]
    AlreadyExists(&'static str, String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("suite {0} still has {1} active corps; remove it with force to delete them too")]
    SuiteHasCorps(String, i64),
    #[error("provider {0} still has {1} suites; remove them first")]
    ProviderHasSuites(String, i64),
    #[error("{0}")]
    Sealing(#[from] SealError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(field: &'static str, problem: impl Into<String>) -> RegistryError {
    RegistryError::Invalid { field, problem: problem.into() }
}

/// A suite as the gateway and the token center use it.
pub struct Suite {
    pub suite_id: SuiteId,
    pub provider_corpid: ProviderCorpId,
    pub kind: SuiteKind,
    pub name: String,
    pub enabled: bool,
    pub secret: SecretString,
    pub callback: CallbackKeys,
    pub permanent_code_api: PermanentCodeApi,
    /// Shown on the install page.
    pub description: String,
    pub logo_url: Option<String>,
    version: i64,
}

pub struct Provider {
    pub provider_corpid: ProviderCorpId,
    pub name: String,
    pub secret: SecretString,
    /// The provider's system-event URL keys, when it has them.
    pub callback: Option<CallbackKeys>,
    version: i64,
}

#[derive(Default)]
struct Snapshot {
    suites: HashMap<SuiteId, Arc<Suite>>,
    providers: HashMap<ProviderCorpId, Arc<Provider>>,
}

pub struct Registry {
    db: Db,
    public_base_url: Url,
    snapshot: RwLock<Arc<Snapshot>>,
    /// One reload at a time: else the refresher's, reading before a change commits,
    /// could replace the snapshot of the change's own reload after it, and the change
    /// would vanish on this instance until the next refresh.
    reloading: tokio::sync::Mutex<()>,
}

/// A new provider; the secret is required.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderInput {
    pub provider_corpid: ProviderCorpId,
    pub name: Option<String>,
    #[schema(value_type = String)]
    pub secret: SecretString,
    #[schema(value_type = Option<String>)]
    pub callback_token: Option<SecretString>,
    #[schema(value_type = Option<String>)]
    pub encoding_aes_key: Option<SecretString>,
}

#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderPatch {
    pub name: Option<String>,
    #[schema(value_type = Option<String>)]
    pub secret: Option<SecretString>,
    #[schema(value_type = Option<String>)]
    pub callback_token: Option<SecretString>,
    #[schema(value_type = Option<String>)]
    pub encoding_aes_key: Option<SecretString>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuiteInput {
    pub suite_id: SuiteId,
    pub provider_corpid: ProviderCorpId,
    pub kind: SuiteKind,
    pub name: Option<String>,
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    #[schema(value_type = String)]
    pub secret: SecretString,
    #[schema(value_type = String)]
    pub callback_token: SecretString,
    #[schema(value_type = String)]
    pub encoding_aes_key: SecretString,
    #[serde(default)]
    pub permanent_code_api: PermanentCodeApi,
    /// For the install page: what the app does, and its logo (an http(s) URL).
    pub description: Option<String>,
    pub logo_url: Option<String>,
}

#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuitePatch {
    pub kind: Option<SuiteKind>,
    pub name: Option<String>,
    pub enabled: Option<bool>,
    #[schema(value_type = Option<String>)]
    pub secret: Option<SecretString>,
    #[schema(value_type = Option<String>)]
    pub callback_token: Option<SecretString>,
    #[schema(value_type = Option<String>)]
    pub encoding_aes_key: Option<SecretString>,
    pub permanent_code_api: Option<PermanentCodeApi>,
    pub description: Option<String>,
    /// An empty string removes the logo.
    pub logo_url: Option<String>,
}

/// A provider as `/api/v1/admin/providers` and the command line show it: no secret.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProviderView {
    pub provider_corpid: ProviderCorpId,
    pub name: String,
    pub has_callback: bool,
    /// Paste into the provider admin's 通用开发参数 system-event URL.
    pub callback_url: String,
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CallbackUrls {
    /// 指令回调URL
    pub command: String,
    /// 数据回调URL
    pub data: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SuiteView {
    pub suite_id: SuiteId,
    pub provider_corpid: ProviderCorpId,
    pub kind: SuiteKind,
    pub name: String,
    pub enabled: bool,
    pub permanent_code_api: PermanentCodeApi,
    pub description: String,
    pub logo_url: Option<String>,
    pub has_ticket: bool,
    pub ticket_updated_at: Option<String>,
    pub active_corps: i64,
    pub callback_urls: CallbackUrls,
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
}

impl Registry {
    /// Loads the records once; [`Registry::spawn_refresher`] keeps them current.
    pub async fn load(db: Db, public_base_url: Url) -> Result<Arc<Self>, StoreError> {
        let registry =
            Arc::new(Registry { db, public_base_url, snapshot: RwLock::default(), reloading: Default::default() });
        registry.reload().await?;
        Ok(registry)
    }

    pub fn suite(&self, suite_id: &SuiteId) -> Option<Arc<Suite>> {
        read(&self.snapshot).suites.get(suite_id).cloned()
    }

    pub fn provider(&self, provider_corpid: &ProviderCorpId) -> Option<Arc<Provider>> {
        read(&self.snapshot).providers.get(provider_corpid).cloned()
    }

    pub fn suites(&self) -> Vec<Arc<Suite>> {
        let mut suites: Vec<_> = read(&self.snapshot).suites.values().cloned().collect();
        suites.sort_by(|a, b| a.suite_id.cmp(&b.suite_id));
        suites
    }

    pub fn providers(&self) -> Vec<Arc<Provider>> {
        let mut providers: Vec<_> = read(&self.snapshot).providers.values().cloned().collect();
        providers.sort_by(|a, b| a.provider_corpid.cmp(&b.provider_corpid));
        providers
    }

    /// Re-reads the records; rows whose version is unchanged keep their opened
    /// secrets and derived keys. A row that cannot be opened is left out, loudly.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let _one_at_a_time = self.reloading.lock().await;
        let (provider_rows, suite_rows) =
            self.db.run(|conn| Ok((suites::list_providers(conn)?, suites::list_suites(conn)?))).await?;
        let previous = read(&self.snapshot).clone();
        let mut next = Snapshot::default();
        for row in provider_rows {
            match previous.providers.get(&row.provider_corpid) {
                Some(known) if known.version == row.version => {
                    next.providers.insert(row.provider_corpid.clone(), known.clone());
                }
                _ => match self.open_provider(&row) {
                    Ok(provider) => {
                        next.providers.insert(row.provider_corpid.clone(), Arc::new(provider));
                    }
                    Err(error) => tracing::error!(provider = %row.provider_corpid, %error, "provider left out"),
                },
            }
        }
        for row in suite_rows {
            match previous.suites.get(&row.suite_id) {
                Some(known) if known.version == row.version => {
                    next.suites.insert(row.suite_id.clone(), known.clone());
                }
                _ => match self.open_suite(&row) {
                    Ok(suite) => {
                        next.suites.insert(row.suite_id.clone(), Arc::new(suite));
                    }
                    Err(error) => tracing::error!(suite = %row.suite_id, %error, "suite left out"),
                },
            }
        }
        *write(&self.snapshot) = Arc::new(next);
        Ok(())
    }

    /// Re-reads the records every [`REFRESH_INTERVAL`], for changes other instances make.
    pub fn spawn_refresher(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let registry = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REFRESH_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(registry) = registry.upgrade() else { return };
                if let Err(error) = registry.reload().await {
                    tracing::warn!(%error, "cannot re-read providers and suites; keeping the last ones");
                }
            }
        })
    }

    fn open_provider(&self, row: &ProviderRow) -> Result<Provider, String> {
        let sealer = self.db.sealer();
        let open = |sealed| sealer.open(sealed).map_err(|e| e.to_string());
        let callback = match (&row.callback_token, &row.encoding_aes_key) {
            (Some(token), Some(aes_key)) => Some(
                CallbackKeys::new(open(token)?.expose_secret(), open(aes_key)?.expose_secret())
                    .map_err(|e| key_problem(&e))?,
            ),
            _ => None,
        };
        Ok(Provider {
            provider_corpid: row.provider_corpid.clone(),
            name: row.name.clone(),
            secret: open(&row.provider_secret)?,
            callback,
            version: row.version,
        })
    }

    fn open_suite(&self, row: &SuiteRow) -> Result<Suite, String> {
        let sealer = self.db.sealer();
        let open = |sealed| sealer.open(sealed).map_err(|e| e.to_string());
        let callback =
            CallbackKeys::new(open(&row.callback_token)?.expose_secret(), open(&row.encoding_aes_key)?.expose_secret())
                .map_err(|e| key_problem(&e))?;
        Ok(Suite {
            suite_id: row.suite_id.clone(),
            provider_corpid: row.provider_corpid.clone(),
            kind: row.kind,
            name: row.name.clone(),
            enabled: row.enabled,
            secret: open(&row.suite_secret)?,
            callback,
            permanent_code_api: row.permanent_code_api,
            description: row.description.clone(),
            logo_url: row.logo_url.clone(),
            version: row.version,
        })
    }

    pub fn callback_urls(&self, suite_id: &SuiteId) -> CallbackUrls {
        CallbackUrls {
            command: self.url(&format!("callback/{suite_id}/command")),
            data: self.url(&format!("callback/{suite_id}/data")),
        }
    }

    pub fn provider_callback_url(&self, provider_corpid: &ProviderCorpId) -> String {
        self.url(&format!("callback/provider/{provider_corpid}"))
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.public_base_url.as_str().trim_end_matches('/'))
    }

    pub async fn provider_views(&self) -> Result<Vec<ProviderView>, RegistryError> {
        let rows = self.db.run(suites::list_providers).await?;
        Ok(rows.iter().map(|row| self.provider_view_of(row)).collect())
    }

    pub async fn provider_view(&self, provider_corpid: &ProviderCorpId) -> Result<ProviderView, RegistryError> {
        let row = self.find_provider_row(provider_corpid).await?;
        Ok(self.provider_view_of(&row))
    }

    fn provider_view_of(&self, row: &ProviderRow) -> ProviderView {
        ProviderView {
            provider_corpid: row.provider_corpid.clone(),
            name: row.name.clone(),
            has_callback: row.callback_token.is_some() && row.encoding_aes_key.is_some(),
            callback_url: self.provider_callback_url(&row.provider_corpid),
            version: row.version,
            created_at: rfc3339(row.created_at),
            updated_at: rfc3339(row.updated_at),
        }
    }

    pub async fn suite_views(&self) -> Result<Vec<SuiteView>, RegistryError> {
        let (rows, counts) =
            self.db.run(|conn| Ok((suites::list_suites(conn)?, suites::active_corp_counts(conn)?))).await?;
        let counts: HashMap<SuiteId, i64> = counts.into_iter().collect();
        Ok(rows.iter().map(|row| self.suite_view_of(row, counts.get(&row.suite_id).copied().unwrap_or(0))).collect())
    }

    pub async fn suite_view(&self, suite_id: &SuiteId) -> Result<SuiteView, RegistryError> {
        let id = suite_id.to_owned();
        let (row, counts) =
            self.db.run(move |conn| Ok((suites::find_suite(conn, &id)?, suites::active_corp_counts(conn)?))).await?;
        let row = row.ok_or(RegistryError::NotFound("suite"))?;
        let active = counts.into_iter().find(|(id, _)| *id == row.suite_id).map_or(0, |(_, n)| n);
        Ok(self.suite_view_of(&row, active))
    }

    fn suite_view_of(&self, row: &SuiteRow, active_corps: i64) -> SuiteView {
        SuiteView {
            suite_id: row.suite_id.clone(),
            provider_corpid: row.provider_corpid.clone(),
            kind: row.kind,
            name: row.name.clone(),
            enabled: row.enabled,
            permanent_code_api: row.permanent_code_api,
            description: row.description.clone(),
            logo_url: row.logo_url.clone(),
            has_ticket: row.ticket_updated_at.is_some(),
            ticket_updated_at: row.ticket_updated_at.map(rfc3339),
            active_corps,
            callback_urls: self.callback_urls(&row.suite_id),
            version: row.version,
            created_at: rfc3339(row.created_at),
            updated_at: rfc3339(row.updated_at),
        }
    }

    async fn find_provider_row(&self, provider_corpid: &ProviderCorpId) -> Result<ProviderRow, RegistryError> {
        let id = provider_corpid.to_owned();
        self.db.run(move |conn| suites::find_provider(conn, &id)).await?.ok_or(RegistryError::NotFound("provider"))
    }

    async fn find_suite_row(&self, suite_id: &SuiteId) -> Result<SuiteRow, RegistryError> {
        let id = suite_id.to_owned();
        self.db.run(move |conn| suites::find_suite(conn, &id)).await?.ok_or(RegistryError::NotFound("suite"))
    }

    pub async fn create_provider(&self, actor: &str, input: ProviderInput) -> Result<ProviderView, RegistryError> {
        check_identifier("provider_corpid", input.provider_corpid.as_str())?;
        let name = checked_name(input.name)?.unwrap_or_default();
        check_secret("secret", &input.secret)?;
        let callback = match (&input.callback_token, &input.encoding_aes_key) {
            (Some(token), Some(aes_key)) => Some(checked_keys(token, aes_key)?),
            (None, None) => None,
            (Some(_), None) => return Err(invalid("encoding_aes_key", "is required with callback_token")),
            (None, Some(_)) => return Err(invalid("callback_token", "is required with encoding_aes_key")),
        };
        let sealer = self.db.sealer();
        let row = NewProvider {
            provider_corpid: input.provider_corpid.clone(),
            name,
            provider_secret: sealer.seal(input.secret.expose_secret()),
            callback_token: callback.map(|(token, _)| sealer.seal(token)),
            encoding_aes_key: callback.map(|(_, aes_key)| sealer.seal(aes_key)),
        };
        let entry = NewAuditEntry::new(actor, "provider.create", input.provider_corpid.as_str(), json!({}));
        let inserted = self.db.run(move |conn| suites::insert_provider(conn, &row, &entry)).await?;
        if !inserted {
            return Err(RegistryError::AlreadyExists("provider", input.provider_corpid.into_string()));
        }
        self.reload().await?;
        self.provider_view(&input.provider_corpid).await
    }

    /// Applies a patch; the names of the fields it changed (none when every given
    /// value equals the stored one).
    pub async fn update_provider(
        &self,
        actor: &str,
        provider_corpid: &ProviderCorpId,
        patch: ProviderPatch,
    ) -> Result<Vec<&'static str>, RegistryError> {
        let row = self.find_provider_row(provider_corpid).await?;
        let sealer = self.db.sealer();
        let stored = self.open_provider(&row).ok();
        let name = checked_name(patch.name)?;
        let mut changes = ProviderChanges::default();
        let mut changed = Vec::new();
        if let Some(name) = name.filter(|name| *name != row.name) {
            changes.name = Some(name);
            changed.push("name");
        }
        if let Some(secret) = &patch.secret {
            check_secret("secret", secret)?;
            if stored.as_ref().is_none_or(|p| p.secret.expose_secret() != secret.expose_secret()) {
                changes.provider_secret = Some(sealer.seal(secret.expose_secret()));
                changed.push("secret");
            }
        }
        if patch.callback_token.is_some() || patch.encoding_aes_key.is_some() {
            let opened = |sealed: &Option<_>| sealed.as_ref().and_then(|s| sealer.open(s).ok());
            let token = patch.callback_token.clone().or_else(|| opened(&row.callback_token));
            let aes_key = patch.encoding_aes_key.clone().or_else(|| opened(&row.encoding_aes_key));
            let (Some(token), Some(aes_key)) = (token, aes_key) else {
                let missing = if patch.callback_token.is_none() { "callback_token" } else { "encoding_aes_key" };
                return Err(invalid(missing, "is required: the provider has none yet"));
            };
            checked_keys(&token, &aes_key)?;
            let same = |new: &SecretString, old: &Option<_>| {
                opened(old).is_some_and(|old: SecretString| old.expose_secret() == new.expose_secret())
            };
            if !same(&token, &row.callback_token) {
                changes.callback_token = Some(Some(sealer.seal(token.expose_secret())));
                changed.push("callback_token");
            }
            if !same(&aes_key, &row.encoding_aes_key) {
                changes.encoding_aes_key = Some(Some(sealer.seal(aes_key.expose_secret())));
                changed.push("encoding_aes_key");
            }
        }
        if changed.is_empty() {
            return Ok(changed);
        }
        let entry =
            NewAuditEntry::new(actor, "provider.update", provider_corpid.as_str(), json!({ "fields": changed }));
        let id = provider_corpid.to_owned();
        if !self.db.run(move |conn| suites::update_provider(conn, &id, &changes, &entry)).await? {
            return Err(RegistryError::NotFound("provider"));
        }
        self.reload().await?;
        Ok(changed)
    }

    pub async fn remove_provider(&self, actor: &str, provider_corpid: &ProviderCorpId) -> Result<(), RegistryError> {
        let entry = NewAuditEntry::new(actor, "provider.remove", provider_corpid.as_str(), json!({}));
        let id = provider_corpid.to_owned();
        match self.db.run(move |conn| suites::delete_provider(conn, &id, &entry)).await? {
            Removal::Removed => {}
            Removal::NotFound => return Err(RegistryError::NotFound("provider")),
            Removal::InUse(suites) => {
                return Err(RegistryError::ProviderHasSuites(provider_corpid.to_string(), suites));
            }
        }
        self.reload().await?;
        Ok(())
    }

    pub async fn create_suite(&self, actor: &str, input: SuiteInput) -> Result<SuiteView, RegistryError> {
        check_identifier("suite_id", input.suite_id.as_str())?;
        let name = checked_name(input.name)?.unwrap_or_default();
        check_secret("secret", &input.secret)?;
        let (token, aes_key) = checked_keys(&input.callback_token, &input.encoding_aes_key)?;
        self.find_provider_row(&input.provider_corpid)
            .await
            .map_err(|_| invalid("provider_corpid", format!("no provider {} exists", input.provider_corpid)))?;
        let sealer = self.db.sealer();
        let row = NewSuite {
            suite_id: input.suite_id.clone(),
            provider_corpid: input.provider_corpid,
            kind: input.kind,
            name,
            enabled: input.enabled,
            suite_secret: sealer.seal(input.secret.expose_secret()),
            callback_token: sealer.seal(token),
            encoding_aes_key: sealer.seal(aes_key),
            permanent_code_api: input.permanent_code_api,
            description: checked_description(input.description)?.unwrap_or_default(),
            logo_url: checked_logo_url(input.logo_url)?.flatten(),
        };
        let entry = NewAuditEntry::new(actor, "suite.create", input.suite_id.as_str(), json!({ "kind": input.kind }));
        let inserted = self.db.run(move |conn| suites::insert_suite(conn, &row, &entry)).await?;
        if !inserted {
            return Err(RegistryError::AlreadyExists("suite", input.suite_id.to_string()));
        }
        self.reload().await?;
        self.suite_view(&input.suite_id).await
    }

    /// Applies a patch; the names of the fields it changed.
    pub async fn update_suite(
        &self,
        actor: &str,
        suite_id: &SuiteId,
        patch: SuitePatch,
    ) -> Result<Vec<&'static str>, RegistryError> {
        let row = self.find_suite_row(suite_id).await?;
        let sealer = self.db.sealer();
        let open = |sealed| sealer.open(sealed);
        let mut changes = SuiteChanges::default();
        let mut changed = Vec::new();
        if let Some(name) = checked_name(patch.name)?.filter(|name| *name != row.name) {
            changes.name = Some(name);
            changed.push("name");
        }
        if let Some(kind) = patch.kind.filter(|kind| *kind != row.kind) {
            changes.kind = Some(kind);
            changed.push("kind");
        }
        if let Some(api) = patch.permanent_code_api.filter(|api| *api != row.permanent_code_api) {
            changes.permanent_code_api = Some(api);
            changed.push("permanent_code_api");
        }
        if let Some(description) = checked_description(patch.description)?.filter(|d| *d != row.description) {
            changes.description = Some(description);
            changed.push("description");
        }
        if let Some(logo_url) = checked_logo_url(patch.logo_url)?.filter(|url| *url != row.logo_url) {
            changes.logo_url = Some(logo_url);
            changed.push("logo_url");
        }
        if let Some(enabled) = patch.enabled.filter(|enabled| *enabled != row.enabled) {
            changes.enabled = Some(enabled);
            changed.push("enabled");
        }
        if let Some(secret) = &patch.secret {
            check_secret("secret", secret)?;
            if open(&row.suite_secret)?.expose_secret() != secret.expose_secret() {
                changes.suite_secret = Some(sealer.seal(secret.expose_secret()));
                changed.push("secret");
            }
        }
        if patch.callback_token.is_some() || patch.encoding_aes_key.is_some() {
            let token = patch.callback_token.clone().map_or_else(|| open(&row.callback_token), Ok)?;
            let aes_key = patch.encoding_aes_key.clone().map_or_else(|| open(&row.encoding_aes_key), Ok)?;
            checked_keys(&token, &aes_key)?;
            if open(&row.callback_token)?.expose_secret() != token.expose_secret() {
                changes.callback_token = Some(sealer.seal(token.expose_secret()));
                changed.push("callback_token");
            }
            if open(&row.encoding_aes_key)?.expose_secret() != aes_key.expose_secret() {
                changes.encoding_aes_key = Some(sealer.seal(aes_key.expose_secret()));
                changed.push("encoding_aes_key");
            }
        }
        if changed.is_empty() {
            return Ok(changed);
        }
        let action = match changes.enabled {
            Some(false) if changed.len() == 1 => "suite.disable",
            Some(true) if changed.len() == 1 => "suite.enable",
            _ => "suite.update",
        };
        let entry = NewAuditEntry::new(actor, action, suite_id.as_str(), json!({ "fields": changed }));
        let id = suite_id.to_owned();
        if !self.db.run(move |conn| suites::update_suite(conn, &id, &changes, &entry)).await? {
            return Err(RegistryError::NotFound("suite"));
        }
        self.reload().await?;
        Ok(changed)
    }

    /// Deletes a suite; one with active corps only with `force`, which deletes its
    /// corps and tokens too (its events stay in the feed).
    pub async fn remove_suite(&self, actor: &str, suite_id: &SuiteId, force: bool) -> Result<(), RegistryError> {
        let entry = NewAuditEntry::new(actor, "suite.remove", suite_id.as_str(), json!({ "force": force }));
        let id = suite_id.to_owned();
        match self.db.run(move |conn| suites::delete_suite(conn, &id, force, &entry)).await? {
            Removal::Removed => {}
            Removal::NotFound => return Err(RegistryError::NotFound("suite")),
            Removal::InUse(corps) => return Err(RegistryError::SuiteHasCorps(suite_id.to_string(), corps)),
        }
        self.reload().await?;
        Ok(())
    }
}

fn enabled_by_default() -> bool {
    true
}

/// Identifiers become URL path segments and keys: WeCom's alphabet only.
pub fn check_identifier(field: &'static str, value: &str) -> Result<(), RegistryError> {
    let valid = !value.is_empty()
        && value.len() <= 64
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid { Ok(()) } else { Err(invalid(field, "must be 1 to 64 letters, digits, '-' or '_'")) }
}

fn checked_name(name: Option<String>) -> Result<Option<String>, RegistryError> {
    match name {
        Some(name) if name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) => {
            Err(invalid("name", format!("must be at most {MAX_NAME_CHARS} characters, without control characters")))
        }
        other => Ok(other.map(|name| name.trim().to_owned())),
    }
}

const MAX_DESCRIPTION_CHARS: usize = 500;
const MAX_URL_CHARS: usize = 1000;

fn checked_description(description: Option<String>) -> Result<Option<String>, RegistryError> {
    match description {
        Some(text)
            if text.chars().count() > MAX_DESCRIPTION_CHARS || text.chars().any(|c| c.is_control() && c != '\n') =>
        {
            Err(invalid(
                "description",
                format!("must be at most {MAX_DESCRIPTION_CHARS} characters, without control characters"),
            ))
        }
        other => Ok(other.map(|text| text.trim().to_owned())),
    }
}

/// `Some(None)`: the logo removed (an empty string).
fn checked_logo_url(logo_url: Option<String>) -> Result<Option<Option<String>>, RegistryError> {
    let Some(raw) = logo_url.map(|url| url.trim().to_owned()) else { return Ok(None) };
    if raw.is_empty() {
        return Ok(Some(None));
    }
    match Url::parse(&raw) {
        Ok(url) if matches!(url.scheme(), "https" | "http") && raw.len() <= MAX_URL_CHARS => Ok(Some(Some(url.into()))),
        _ => Err(invalid("logo_url", format!("must be an http(s) URL of at most {MAX_URL_CHARS} characters"))),
    }
}

fn check_secret(field: &'static str, secret: &SecretString) -> Result<(), RegistryError> {
    let secret = secret.expose_secret();
    if secret.is_empty() || secret.len() > 256 || secret.chars().any(char::is_control) {
        return Err(invalid(field, "must be 1 to 256 characters without control characters"));
    }
    Ok(())
}

/// The callback Token and EncodingAESKey, checked the way WeCom uses them.
fn checked_keys<'a>(token: &'a SecretString, aes_key: &'a SecretString) -> Result<(&'a str, &'a str), RegistryError> {
    let (token, aes_key) = (token.expose_secret(), aes_key.expose_secret());
    match CallbackKeys::new(token, aes_key) {
        Ok(_) => Ok((token, aes_key)),
        Err(KeyError::TokenInvalid) => Err(invalid("callback_token", key_problem(&KeyError::TokenInvalid))),
        Err(error) => Err(invalid("encoding_aes_key", key_problem(&error))),
    }
}

fn key_problem(error: &KeyError) -> String {
    match error {
        KeyError::TokenInvalid => "must be 1 to 32 letters or digits".into(),
        _ => "must be 43 characters of base64 ([A-Za-z0-9]) decoding to 32 bytes".into(),
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}
