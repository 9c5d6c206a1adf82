//! Events: a verified callback becomes a durable event row before WeCom hears
//! `success`; the worker then applies its effects, at least once and idempotently.
//!
//! Invariants: an acknowledged event is committed (fsync'd) first; the same
//! plaintext delivered again to the same URL is stored once; events of one suite
//! are applied in id order, except order-free kinds (suite_ticket: newest wins);
//! an event without an effect (most of them: contact changes, messages) is stored
//! as done, so the worker and the disk see it once.

pub mod effects;
pub mod gateway;
pub mod intake;
pub mod worker;

use sha2::{Digest, Sha256};

use crate::store::events::{NewEvent, STATUS_DONE, STATUS_PENDING};
use crate::wecom::callback::{self, Message, XmlError};

/// Which callback URL an event came in on; it scopes dedupe and ordering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Suite { provider_corpid: String, suite_id: String },
    Provider { provider_corpid: String },
}

impl Source {
    fn provider_corpid(&self) -> &str {
        match self {
            Self::Suite { provider_corpid, .. } | Self::Provider { provider_corpid } => provider_corpid,
        }
    }

    fn ordering_key(&self) -> String {
        match self {
            Self::Suite { suite_id, .. } => format!("suite:{suite_id}"),
            Self::Provider { provider_corpid } => format!("provider:{provider_corpid}"),
        }
    }
}

/// An event the service itself appends to the feed (`identity_linked`, …): already
/// done, no plaintext, deduped on its kind and `identity` parts.
pub fn derived_event(
    provider_corpid: &str,
    suite_id: &str,
    corpid: &str,
    kind: &str,
    fields: serde_json::Value,
) -> NewEvent {
    let now = crate::store::now_ms();
    let mut hasher = Sha256::new();
    for part in [kind, provider_corpid, suite_id, corpid, &fields.to_string()] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    NewEvent {
        provider_corpid: provider_corpid.to_owned(),
        suite_id: Some(suite_id.to_owned()),
        corpid: Some(corpid.to_owned()),
        kind: kind.to_owned(),
        dedupe_key: hex::encode(hasher.finalize()),
        ordering_key: None,
        plaintext: None,
        fields: fields.to_string(),
        received_at: now,
        status: STATUS_DONE,
        processed_at: Some(now),
    }
}

/// Parses a decrypted plaintext into the row to store: kind, corp, redacted fields,
/// and a dedupe key over what WeCom signed, so a retry with fresh ciphertext (new
/// random prefix, nonce or timestamp) is recognised as the same message.
pub fn prepare(source: &Source, receive_id: &str, plaintext: String, received_at: i64) -> Result<NewEvent, XmlError> {
    let mut fields = callback::parse_fields(&plaintext)?;
    let message = callback::message_from_fields(&fields)?;
    callback::redact(&mut fields);

    let scope = source.ordering_key();
    let mut hasher = Sha256::new();
    for part in [scope.as_bytes(), receive_id.as_bytes(), plaintext.as_bytes()] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    let dedupe_key = hex::encode(hasher.finalize());

    let ordering_key = match message {
        // Newest ticket wins by arrival time, so tickets never wait behind a retry.
        Message::SuiteTicket { .. } => None,
        _ => Some(scope),
    };
    let suite_id = match source {
        Source::Suite { suite_id, .. } => Some(suite_id.clone()),
        Source::Provider { .. } => None,
    };
    // Only suite events have effects (the provider URL's are for the feed).
    let pending = suite_id.is_some() && effects::needs_effect(&message);
    Ok(NewEvent {
        provider_corpid: source.provider_corpid().to_owned(),
        suite_id,
        corpid: message.corpid().map(str::to_owned),
        kind: message.kind().to_owned(),
        dedupe_key,
        ordering_key,
        // The plaintext is kept only until the effect has run: it may hold secrets.
        plaintext: pending.then_some(plaintext),
        fields: serde_json::Value::Object(fields).to_string(),
        received_at,
        status: if pending { STATUS_PENDING } else { STATUS_DONE },
        processed_at: (!pending).then_some(received_at),
    })
}
