//! Events: a verified callback becomes a durable event row before WeCom hears
//! `success`; the worker then applies its effects, at least once and idempotently.
//!
//! Invariants: an acknowledged event is committed (fsync'd) first; the same
//! plaintext delivered again to the same URL is stored once; events of one corp of
//! a suite are applied in id order, except order-free kinds (suite_ticket: newest
//! wins; create_auth and reset_permanent_code: one install per code);
//! an event without an effect (most of them: contact changes, messages) is stored
//! as done, so the worker and the disk see it once.

pub mod effects;
pub mod gateway;
pub mod intake;
pub mod retention;
pub mod worker;

use crate::model::{EventStatus, ProviderCorpId, SuiteId};
use crate::store::events::{NewEvent, hash_parts};
use crate::store::sealing::Sealer;
use crate::wecom::callback::{self, Message, XmlError};

/// Which callback URL an event came in on; it scopes dedupe and ordering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Suite { provider_corpid: ProviderCorpId, suite_id: SuiteId },
    Provider { provider_corpid: ProviderCorpId },
}

impl Source {
    fn provider_corpid(&self) -> &ProviderCorpId {
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

#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error(transparent)]
    Malformed(#[from] XmlError),
    /// The plaintext names another suite than the URL it came to.
    #[error("the message's SuiteId is not this URL's suite")]
    SuiteMismatch,
}

/// Parses a decrypted plaintext into the row to store: kind, corp, redacted fields,
/// the plaintext sealed (when an effect needs it), and a dedupe key over what WeCom
/// signed, so a retry with fresh ciphertext (new random prefix, nonce or timestamp)
/// is recognised as the same message.
pub fn prepare(
    source: &Source,
    receive_id: &str,
    plaintext: String,
    received_at: i64,
    sealer: &Sealer,
) -> Result<NewEvent, PrepareError> {
    let elements = callback::parse(&plaintext)?;
    let message = callback::message_from(&elements)?;
    if let Source::Suite { suite_id, .. } = source
        && elements.text("SuiteId").is_some_and(|named| named != suite_id.as_str())
    {
        return Err(PrepareError::SuiteMismatch);
    }
    let scope = source.ordering_key();
    let dedupe_key = dedupe_key(&elements, &scope, receive_id, &plaintext);
    let fields = elements.to_redacted_json();

    let ordering_key = match &message {
        // Newest ticket wins by arrival time, so tickets never wait behind a retry;
        // each auth code is its own install, so installs run side by side.
        Message::SuiteTicket { .. } | Message::CreateAuth { .. } | Message::ResetPermanentCode { .. } => None,
        // One corp's events apply in order; other corps never wait for it.
        other => Some(match other.corpid() {
            Some(corpid) => format!("{scope}/corp:{corpid}"),
            None => scope,
        }),
    };
    let suite_id = match source {
        Source::Suite { suite_id, .. } => Some(suite_id.clone()),
        Source::Provider { .. } => None,
    };
    // Suite events have effects; of the provider URL's, registrations and the license
    // callbacks (the others are for the feed).
    let pending = match suite_id {
        Some(_) => effects::needs_effect(&message),
        None => effects::needs_provider_effect(&message),
    } || crate::licenses::handles(&message);
    Ok(NewEvent {
        provider_corpid: source.provider_corpid().clone(),
        suite_id,
        corpid: message.corpid().cloned(),
        kind: message.kind().to_owned(),
        dedupe_key,
        ordering_key,
        // The plaintext is kept only until the effect has run: it may hold secrets.
        plaintext: pending.then(|| sealer.seal(&plaintext)),
        fields,
        received_at,
        status: if pending { EventStatus::Pending } else { EventStatus::Done },
        processed_at: (!pending).then_some(received_at),
        request_id: None,
    })
}

/// `SENT-HASH`: the time WeCom wrote into the message (`TimeStamp` or `CreateTime`,
/// seconds, `0` when it has none), then 128 bits of SHA-256 over the URL's scope,
/// the receiveid and the plaintext. A retry carries the same plaintext, so the same
/// key; leading with the send time keeps the unique index growing at its right edge,
/// so a burst dirties a few index pages, not one random page per event.
fn dedupe_key(elements: &callback::Elements<'_>, scope: &str, receive_id: &str, plaintext: &str) -> String {
    let sent_at = ["TimeStamp", "CreateTime"]
        .iter()
        .find_map(|name| elements.text(name)?.trim().parse::<u32>().ok())
        .unwrap_or(0);
    let digest = hash_parts(&[scope, receive_id, plaintext]);
    format!("{sent_at:010}-{}", hex::encode(&digest[..16]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn suite() -> Source {
        Source::Suite { provider_corpid: "wwprovider".into(), suite_id: "wwsuite".into() }
    }

    fn contact_change(timestamp: &str, userid: &str) -> String {
        format!(
            "<xml><SuiteId>wwsuite</SuiteId><AuthCorpId>wpcorp</AuthCorpId><InfoType>change_contact</InfoType>\
             {timestamp}<ChangeType>update_user</ChangeType><UserID>{userid}</UserID></xml>"
        )
    }

    fn sealer() -> Sealer {
        Sealer::with_keys(vec![crate::store::sealing::MasterKey::generate().0]).expect("one key")
    }

    fn prepare(
        source: &Source,
        receive_id: &str,
        plaintext: String,
        received_at: i64,
    ) -> Result<NewEvent, PrepareError> {
        super::prepare(source, receive_id, plaintext, received_at, &sealer())
    }

    #[test]
    fn a_plaintext_naming_another_suite_is_refused() {
        let plaintext =
            contact_change("", "zhangsan").replace("<SuiteId>wwsuite</SuiteId>", "<SuiteId>wwother</SuiteId>");
        assert!(matches!(prepare(&suite(), "wwsuite", plaintext, 1), Err(PrepareError::SuiteMismatch)));
    }

    #[test]
    fn dedupe_key_leads_with_the_send_time_and_ignores_arrival() {
        let plaintext = contact_change("<TimeStamp>1732700000</TimeStamp>", "zhangsan");
        let first = prepare(&suite(), "wwsuite", plaintext.clone(), 1).unwrap();
        let retry = prepare(&suite(), "wwsuite", plaintext, 9_000_000).unwrap();
        assert_eq!(first.dedupe_key, retry.dedupe_key);
        assert!(first.dedupe_key.starts_with("1732700000-"), "{}", first.dedupe_key);
        assert_eq!(first.dedupe_key.len(), 10 + 1 + 32);
    }

    #[test]
    fn dedupe_key_differs_by_content_scope_and_receiveid() {
        let key = |source: &Source, receive_id: &str, userid: &str| {
            let plaintext = contact_change("<TimeStamp>1732700000</TimeStamp>", userid);
            prepare(source, receive_id, plaintext, 1).unwrap().dedupe_key
        };
        let provider = Source::Provider { provider_corpid: "wwprovider".into() };
        let base = key(&suite(), "wwsuite", "zhangsan");
        assert_ne!(base, key(&suite(), "wwsuite", "lisi"));
        assert_ne!(base, key(&suite(), "wpcorp", "zhangsan"));
        assert_ne!(base, key(&provider, "wwsuite", "zhangsan"));
    }

    #[test]
    fn dedupe_key_uses_create_time_or_zero() {
        let with_create_time = contact_change("<CreateTime>1732700001</CreateTime>", "zhangsan");
        let without_time = contact_change("", "zhangsan");
        let keyed = prepare(&suite(), "wwsuite", with_create_time, 1).unwrap().dedupe_key;
        let unkeyed = prepare(&suite(), "wwsuite", without_time, 1).unwrap().dedupe_key;
        assert!(keyed.starts_with("1732700001-"), "{keyed}");
        assert!(unkeyed.starts_with("0000000000-"), "{unkeyed}");
    }
}
