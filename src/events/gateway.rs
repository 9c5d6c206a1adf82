//! The callback gateway: finds the keys of the URL called, verifies and decrypts,
//! applies the receiveid rule of that URL, and stores the event. Key material is
//! derived once per suite and kept in memory; nothing here is per-request setup.

use std::sync::Arc;

use percent_encoding::percent_decode_str;

use super::intake::{Intake, IntakeError, Stored};
use super::retention::Retention;
use super::{PrepareError, Source, prepare};
use crate::crypto::{CallbackKeys, CryptoError};
use crate::model::{CorpId, EventStatus, ProviderCorpId, SuiteId};
use crate::registry::Registry;
use crate::store::{Db, StoreError, corps, now_ms};
use crate::wecom::callback::{XmlError, parse_envelope};

/// The callback URLs of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// Instruction (指令) URL of a suite: receiveid is the suite_id.
    Command,
    /// Data URL of a suite: receiveid is a corp that authorized the suite.
    Data,
    /// The provider's system-event URL: receiveid is the provider corpid.
    Provider,
}

#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    #[error("unknown suite")]
    UnknownSuite,
    #[error("unknown provider or no callback credentials configured for it")]
    UnknownProvider,
    #[error("missing or empty query parameter {0}")]
    MissingParameter(&'static str),
    #[error("malformed envelope: {0}")]
    Envelope(XmlError),
    #[error("{0}")]
    Crypto(#[from] CryptoError),
    #[error("receiveid does not match this URL")]
    ReceiveIdMismatch,
    #[error("decrypted message is not UTF-8")]
    NotUtf8,
    #[error("malformed message: {0}")]
    Message(XmlError),
    #[error("the message names another suite")]
    SuiteMismatch,
    #[error("stale timestamp")]
    StaleTimestamp,
    #[error("storage unavailable, try again")]
    Unavailable,
}

impl From<StoreError> for CallbackError {
    fn from(error: StoreError) -> Self {
        tracing::error!(%error, "callback lookup failed");
        Self::Unavailable
    }
}

impl From<IntakeError> for CallbackError {
    fn from(_: IntakeError) -> Self {
        Self::Unavailable
    }
}

/// WeCom's query parameters, percent-decoded without turning `+` into a space:
/// base64 text keeps its `+` whether or not the sender encoded it.
#[derive(Debug, Default)]
pub struct CallbackQuery {
    msg_signature: Option<String>,
    timestamp: Option<String>,
    nonce: Option<String>,
    echostr: Option<String>,
}

impl CallbackQuery {
    pub fn parse(query: &str) -> Self {
        let mut parsed = CallbackQuery::default();
        for pair in query.split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let slot = match name {
                "msg_signature" => &mut parsed.msg_signature,
                "timestamp" => &mut parsed.timestamp,
                "nonce" => &mut parsed.nonce,
                "echostr" => &mut parsed.echostr,
                _ => continue,
            };
            *slot = percent_decode_str(value).decode_utf8().ok().map(|v| v.into_owned()).filter(|v| !v.is_empty());
        }
        parsed
    }

    fn required<'a>(value: &'a Option<String>, name: &'static str) -> Result<&'a str, CallbackError> {
        value.as_deref().ok_or(CallbackError::MissingParameter(name))
    }
}

/// The keys of one callback URL and where its events belong.
struct Target {
    keys: CallbackKeys,
    source: Source,
}

/// Verifies and stores callbacks with the keys the registry holds in memory: a
/// callback costs no lookup, and rotated keys verify within the registry's refresh.
pub struct Gateway {
    db: Db,
    intake: Intake,
    retention: Retention,
    registry: Arc<Registry>,
}

impl Gateway {
    pub fn new(db: Db, intake: Intake, retention: Retention, registry: Arc<Registry>) -> Self {
        Gateway { db, intake, retention, registry }
    }

    fn target(&self, endpoint: Endpoint, id: &str) -> Result<Target, CallbackError> {
        if endpoint == Endpoint::Provider {
            let provider = self.registry.provider(&ProviderCorpId::from(id)).ok_or(CallbackError::UnknownProvider)?;
            let keys = provider.callback.clone().ok_or(CallbackError::UnknownProvider)?;
            return Ok(Target { keys, source: Source::Provider { provider_corpid: provider.provider_corpid.clone() } });
        }
        // A disabled suite is answered as an unknown one: WeCom stops calling a 404.
        let suite =
            self.registry.suite(&SuiteId::from(id)).filter(|suite| suite.enabled).ok_or(CallbackError::UnknownSuite)?;
        Ok(Target {
            keys: suite.callback.clone(),
            source: Source::Suite { provider_corpid: suite.provider_corpid.clone(), suite_id: suite.suite_id.clone() },
        })
    }

    /// Whether `id` names a suite or provider with callback keys, so a body for it is
    /// worth reading.
    pub fn check_target(&self, endpoint: Endpoint, id: &str) -> Result<(), CallbackError> {
        self.target(endpoint, id).map(drop)
    }

    /// Whether the event writer is alive: callbacks can be stored.
    pub fn writer_alive(&self) -> bool {
        self.intake.is_alive()
    }

    /// GET URL verification: the decrypted echostr, to be answered verbatim.
    pub async fn verify_url(
        &self,
        endpoint: Endpoint,
        id: &str,
        query: &CallbackQuery,
    ) -> Result<Vec<u8>, CallbackError> {
        let target = self.target(endpoint, id)?;
        let (signature, timestamp, nonce) = signed_parts(query)?;
        let echostr = CallbackQuery::required(&query.echostr, "echostr")?;
        let opened = target.keys.open(signature, timestamp, nonce, echostr)?;
        // WeCom verifies provider-side URLs with the provider corpid as receiveid,
        // though it signs pushes to the same URL with the suite_id: accept both.
        let allowed = match &target.source {
            Source::Suite { provider_corpid, suite_id } => {
                opened.receive_id == provider_corpid.as_str() || opened.receive_id == suite_id.as_str()
            }
            Source::Provider { provider_corpid } => opened.receive_id == provider_corpid.as_str(),
        };
        if !allowed {
            return Err(CallbackError::ReceiveIdMismatch);
        }
        Ok(opened.message)
    }

    /// POST: verifies, decrypts and stores one callback; returns once it is committed.
    /// An event whose effect is still to run keeps `request_id` for the effect's spans.
    pub async fn receive(
        &self,
        endpoint: Endpoint,
        id: &str,
        query: &CallbackQuery,
        body: &[u8],
        request_id: Option<&str>,
    ) -> Result<Accepted, CallbackError> {
        let target = self.target(endpoint, id)?;
        let (signature, timestamp, nonce) = signed_parts(query)?;
        let envelope = parse_envelope(body).map_err(CallbackError::Envelope)?;
        let opened = target.keys.open(signature, timestamp, nonce, &envelope.encrypt)?;
        if self.retention.is_stale(timestamp) {
            return Err(CallbackError::StaleTimestamp);
        }
        let receive_id = opened.receive_id;
        let allowed = match (&target.source, endpoint) {
            (Source::Suite { suite_id, .. }, Endpoint::Data) => {
                let (suite_id, corpid) = (suite_id.clone(), CorpId::from(receive_id.as_str()));
                self.db.run(move |conn| corps::is_active(conn, &suite_id, &corpid)).await?
            }
            (Source::Suite { suite_id, .. }, _) => receive_id == suite_id.as_str(),
            (Source::Provider { provider_corpid }, _) => receive_id == provider_corpid.as_str(),
        };
        if !allowed {
            return Err(CallbackError::ReceiveIdMismatch);
        }
        let plaintext = String::from_utf8(opened.message).map_err(|_| CallbackError::NotUtf8)?;
        let mut event = prepare(&target.source, &receive_id, plaintext, now_ms(), self.db.sealer()).map_err(
            |error| match error {
                PrepareError::Malformed(error) => CallbackError::Message(error),
                PrepareError::SuiteMismatch => CallbackError::SuiteMismatch,
            },
        )?;
        if event.status == EventStatus::Pending {
            event.request_id = request_id.map(str::to_owned);
        }
        let (suite_id, kind) = (event.suite_id.clone(), event.kind.clone());
        let stored = self.intake.submit(event).await?;
        Ok(Accepted { suite_id, kind, stored })
    }
}

/// A callback stored (or found stored before), for its log line.
#[derive(Debug)]
pub struct Accepted {
    pub suite_id: Option<SuiteId>,
    pub kind: String,
    pub stored: Stored,
}

fn signed_parts(query: &CallbackQuery) -> Result<(&str, &str, &str), CallbackError> {
    Ok((
        CallbackQuery::required(&query.msg_signature, "msg_signature")?,
        CallbackQuery::required(&query.timestamp, "timestamp")?,
        CallbackQuery::required(&query.nonce, "nonce")?,
    ))
}
