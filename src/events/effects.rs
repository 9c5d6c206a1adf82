//! What each kind of event does once it is stored. Every effect is idempotent: the
//! worker may apply an event again after a crash or a lost lease.

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};

use crate::ids::Ids;
use crate::licenses::{self, LicenseError, Licenses};
use crate::lifecycle::{self, GrantChange, InstallPath, Lifecycle, LifecycleError};
use crate::model::{CorpId, SuiteId};
use crate::store::events::NewEvent;
use crate::store::events::PendingEvent;
use crate::store::registrations::{self, NewRegistration};
use crate::store::{Db, StoreError, now_ms, suites};
use crate::tokens::TokenError;
use crate::wecom::callback::{self, Message};
use crate::wecom::errcodes::ErrcodeClass;

/// Why an effect did not complete, and whether trying again can help.
#[derive(Debug, thiserror::Error)]
pub enum EffectError {
    #[error("{0}")]
    Retryable(String),
    #[error("{0}")]
    Permanent(String),
}

impl From<StoreError> for EffectError {
    fn from(error: StoreError) -> Self {
        Self::Retryable(error.to_string())
    }
}

impl From<LifecycleError> for EffectError {
    fn from(error: LifecycleError) -> Self {
        let retryable = match &error {
            LifecycleError::Store(_) | LifecycleError::ExchangeInProgress => true,
            LifecycleError::UnknownCorp | LifecycleError::AuthCodeLost => false,
            LifecycleError::Token(token) => match token {
                TokenError::Upstream(upstream) => matches!(
                    upstream.class(),
                    ErrcodeClass::Transient | ErrcodeClass::BadToken | ErrcodeClass::RateLimited
                ),
                // A ticket arrives every 10 minutes; another instance may finish its refresh.
                // A disabled suite's events wait for it to be enabled again; a ring
                // missing a key may get it back.
                TokenError::NoSuiteTicket
                | TokenError::TicketRejected { .. }
                | TokenError::RefreshTimeout
                | TokenError::Store(_)
                | TokenError::SuiteDisabled
                | TokenError::Sealing(_) => true,
                TokenError::Unknown(_)
                | TokenError::CorpNotActive
                | TokenError::PermanentCodeRejected(_)
                | TokenError::TicketLimit { .. } => false,
            },
        };
        if retryable { Self::Retryable(error.to_string()) } else { Self::Permanent(error.to_string()) }
    }
}

impl From<LicenseError> for EffectError {
    fn from(error: LicenseError) -> Self {
        match error {
            // Codes still being generated, or a concurrent change: later will do.
            LicenseError::Refused { errcode: 701022 | 701081, .. } => Self::Retryable(error.to_string()),
            LicenseError::Refused { .. } | LicenseError::Token(TokenError::Unknown(_)) | LicenseError::Invalid(_) => {
                Self::Permanent(error.to_string())
            }
            LicenseError::Token(TokenError::CorpNotActive) | LicenseError::AnswerLost => {
                Self::Permanent(error.to_string())
            }
            LicenseError::Token(token) => LifecycleError::Token(token).into(),
            LicenseError::Store(store) => store.into(),
        }
    }
}

/// Whether a suite's message has an effect. Every other event is stored as done:
/// the worker never touches it, and ingest pays no second write for it.
pub fn needs_effect(message: &Message) -> bool {
    match message {
        Message::SuiteTicket { .. }
        | Message::CreateAuth { .. }
        | Message::ResetPermanentCode { .. }
        | Message::ChangeAuth { .. }
        | Message::CancelAuth { .. } => true,
        Message::ChangeExternalContact { change_type, external_userid: Some(_), .. } => {
            is_added(change_type) || is_removed(change_type)
        }
        Message::Data { event: Some(event), .. } => event == CHANGE_APP_ADMIN,
        Message::Other { kind, corpid: Some(_) } => GrantChange::from_kind(kind).is_some(),
        _ => false,
    }
}

/// On the provider's system-event URL only registrations have an effect.
pub fn needs_provider_effect(message: &Message) -> bool {
    matches!(message, Message::Other { kind, corpid: Some(_) } if is_registration(kind))
}

/// A corp registered through a promotion package, or scanned one while authorized.
fn is_registration(kind: &str) -> bool {
    matches!(kind, "register_corp" | "enter_register_package")
}

/// On the data URL: the app's admins changed.
const CHANGE_APP_ADMIN: &str = "change_app_admin";

fn is_added(change_type: &str) -> bool {
    matches!(change_type, "add_external_contact" | "add_half_external_contact")
}

fn is_removed(change_type: &str) -> bool {
    matches!(change_type, "del_external_contact" | "del_follow_user")
}

#[derive(Clone)]
pub struct Effects {
    db: Db,
    lifecycle: Arc<Lifecycle>,
    ids: Arc<Ids>,
    licenses: Arc<Licenses>,
}

impl Effects {
    pub fn new(db: Db, lifecycle: Arc<Lifecycle>, ids: Arc<Ids>, licenses: Arc<Licenses>) -> Self {
        Effects { db, lifecycle, ids, licenses }
    }

    /// Work that batches across events, run when no event is due: matching new
    /// customers to pending identities.
    pub async fn after_events(&self) {
        if let Err(error) = self.ids.match_pending().await {
            tracing::warn!(%error, "pending_id matching failed; retrying on the next pass");
        }
    }

    /// Applies `event`; answers the corp it turned out to concern, when only the
    /// effect could tell (a create_auth names its corp through the exchange).
    pub async fn apply(&self, event: &PendingEvent) -> Result<Option<CorpId>, EffectError> {
        let Some(sealed) = &event.plaintext else {
            // Derived events (written by effects themselves) carry no callback to apply.
            return Ok(None);
        };
        // A key ring that cannot open it now may after the key file is restored.
        let plaintext = self.db.sealer().open(sealed).map_err(|e| EffectError::Retryable(e.to_string()))?;
        let elements = callback::parse(plaintext.expose_secret()).map_err(|e| EffectError::Permanent(e.to_string()))?;
        let message = callback::message_from(&elements).map_err(|e| EffectError::Permanent(e.to_string()))?;
        let fields = elements.into_fields();
        // License callbacks come to the provider URL too, where no suite verified them.
        if licenses::handles(&message) {
            self.licenses.apply(event.id, &event.provider_corpid, &fields, &message).await?;
            return Ok(None);
        }
        // Suite events belong to the suite whose URL and keys verified them, whatever
        // the plaintext's SuiteId claims.
        let suite_id = event.suite_id.as_ref();
        match (message, suite_id) {
            (Message::SuiteTicket { ticket, .. }, Some(suite_id)) => {
                self.store_ticket(event, suite_id, ticket).await.map(|()| None)
            }
            (Message::CreateAuth { auth_code, .. }, Some(suite_id)) => {
                self.exchange(suite_id, auth_code, lifecycle::CORP_AUTHORIZED).await
            }
            (Message::ResetPermanentCode { auth_code, .. }, Some(suite_id)) => {
                self.exchange(suite_id, auth_code, lifecycle::CORP_PERMANENT_CODE_RESET).await
            }
            (Message::ChangeAuth { auth_corp_id, .. }, Some(suite_id)) => {
                self.lifecycle.refresh_auth_info(suite_id, &auth_corp_id, event.id).await?;
                Ok(None)
            }
            (Message::CancelAuth { auth_corp_id, .. }, Some(suite_id)) => {
                self.lifecycle.cancel(suite_id, &auth_corp_id, event.id).await?;
                Ok(None)
            }
            (
                Message::ChangeExternalContact { auth_corp_id, change_type, external_userid: Some(external_userid) },
                Some(suite_id),
            ) => {
                let provider = &event.provider_corpid;
                if is_added(&change_type) {
                    self.ids.contact_added(provider, suite_id, &auth_corp_id, &external_userid).await?;
                } else if is_removed(&change_type) {
                    self.ids.contact_removed(provider, &auth_corp_id, &external_userid).await?;
                }
                Ok(None)
            }
            (Message::Data { corpid, event: Some(data_event), .. }, Some(suite_id))
                if data_event == CHANGE_APP_ADMIN =>
            {
                self.lifecycle.refresh_admins(suite_id, &corpid, event.id).await?;
                Ok(None)
            }
            (Message::Other { kind, corpid: Some(corpid) }, None) if is_registration(&kind) => {
                self.store_registration(event, kind, corpid, &fields).await.map(|()| None)
            }
            (Message::Other { kind, corpid: Some(corpid) }, Some(suite_id)) => {
                if let Some(change) = GrantChange::from_kind(&kind) {
                    let auth_type = fields.get("AuthType").and_then(serde_json::Value::as_str);
                    self.lifecycle.record_grant(suite_id, &corpid, change, &kind, auth_type, event.id).await?;
                }
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    /// A lost answer is not retried: the code is spent, and `corp_auth_lost` (appended
    /// with the mark) tells the provider to have the admin install again.
    async fn exchange(
        &self,
        suite_id: &SuiteId,
        auth_code: String,
        kind: &'static str,
    ) -> Result<Option<CorpId>, EffectError> {
        let code = SecretString::from(auth_code);
        match self.lifecycle.exchange_auth_code(suite_id, &code, InstallPath::Callback, kind).await {
            Ok(authorized) => Ok(Some(authorized.corpid)),
            Err(LifecycleError::AuthCodeLost) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// register_corp / enter_register_package: the registration, its contact-sync
    /// token sealed, with a `corp_registered` event.
    async fn store_registration(
        &self,
        event: &PendingEvent,
        kind: String,
        corpid: CorpId,
        fields: &callback::Fields,
    ) -> Result<(), EffectError> {
        let text = |value: &serde_json::Value| value.as_str().unwrap_or_default().to_owned();
        let field = |name: &str| fields.get(name).map(text).unwrap_or_default();
        let sync = fields.get("ContactSync");
        let token = sync.and_then(|s| s.get("AccessToken")).and_then(|t| t.as_str()).filter(|t| !t.is_empty());
        let expires_in = sync.and_then(|s| s.get("ExpiresIn")).and_then(|e| e.as_str()?.parse::<i64>().ok());
        let userid = fields.get("AuthUserInfo").and_then(|u| u.get("UserId")).map(text).unwrap_or_default();
        let registered = NewEvent::provider_derived(
            &event.provider_corpid,
            Some(&corpid),
            "corp_registered",
            &[&event.id.to_string()],
            serde_json::json!({
                "provider_corpid": event.provider_corpid,
                "corpid": corpid,
                "via": kind,
                "register_code": field("RegisterCode"),
                "template_id": field("TemplateId"),
                "state": field("State"),
                "userid": userid,
                "has_contact_sync": token.is_some(),
            }),
        );
        let registration = NewRegistration {
            event_id: event.id,
            provider_corpid: event.provider_corpid.clone(),
            kind,
            corpid,
            register_code: field("RegisterCode"),
            template_id: field("TemplateId"),
            state: field("State"),
            userid,
            contact_sync_token: token.map(|token| self.db.sealer().seal(token)),
            contact_sync_expires_at: token.and(expires_in).map(|seconds| event.received_at + seconds * 1000),
            created_at: now_ms(),
        };
        self.db.run(move |conn| registrations::record(conn, &registration, &[registered])).await?;
        self.db.notify_appended();
        Ok(())
    }

    async fn store_ticket(&self, event: &PendingEvent, suite_id: &SuiteId, ticket: String) -> Result<(), EffectError> {
        let (suite_id, arrived_at) = (suite_id.clone(), event.received_at);
        let ticket = self.db.sealer().seal(&ticket);
        let stored = self.db.run(move |conn| suites::store_ticket(conn, &suite_id, &ticket, arrived_at)).await?;
        if !stored {
            tracing::debug!(event = %event.id, "an equally new or newer suite_ticket is already stored");
        }
        Ok(())
    }
}
