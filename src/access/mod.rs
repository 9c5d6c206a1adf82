//! Access to `/api/v1`: named API keys, each with scopes and, optionally, the suites
//! it is restricted to.
//!
//! A key is `wpk_` and 43 characters of base64url (32 random bytes). It is shown once,
//! in the answer to its creation; only its SHA-256 is stored, so neither the database
//! nor a log can give it back. `ADMIN_TOKEN`, when set, is one more key, `bootstrap`,
//! with the admin scope. The admin scope implies every other, and an admin key is never
//! restricted to suites: it could make itself an unrestricted key. Everything here
//! validates before it writes: a refused request changes nothing.

mod authenticator;
mod throttle;

use std::collections::BTreeSet;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

pub use authenticator::{Authenticator, Refusal};

use crate::feed::rfc3339;
use crate::model::SuiteId;
use crate::store::api_keys::{self as rows, ApiKeyRow, Insert, NewApiKey};
use crate::store::audit::{ACTOR_CLI, ACTOR_ENVIRONMENT, NewAuditEntry};
use crate::store::events::EventFilter;
use crate::store::{Db, StoreError, now_ms};
use crate::text::excerpt;

/// The name `ADMIN_TOKEN` goes by in logs and audit entries.
pub const BOOTSTRAP_KEY: &str = "bootstrap";
/// Actors of audit entries that are not keys: no key may take their names.
const RESERVED_NAMES: [&str; 3] = [BOOTSTRAP_KEY, ACTOR_CLI, ACTOR_ENVIRONMENT];
const KEY_PREFIX: &str = "wpk_";
const KEY_BYTES: usize = 32;
/// Base64 of [`KEY_BYTES`] without padding.
const KEY_CHARS: usize = 43;
const MAX_NAME_LEN: usize = 64;

/// What a key may do. `Admin` implies the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// `/api/v1/admin/*`: managing keys, providers and suites.
    Admin,
    /// Suite, corp and provider tokens, and the suite and corp views.
    Tokens,
    /// Ciphertext-ID conversions and the identity graph.
    Ids,
    /// The event feed and webhook subscriptions.
    Events,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::Admin, Scope::Tokens, Scope::Ids, Scope::Events];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Tokens => "tokens",
            Self::Ids => "ids",
            Self::Events => "events",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|scope| scope.as_str() == name)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an authenticated caller is refused; the message names what it lacks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("this key lacks the {0} scope")]
    Scope(Scope),
    #[error("this key is not allowed suite {}", excerpt(.0))]
    Suite(String),
    #[error("this key is not allowed provider {}: none of its suites belongs to it", excerpt(.0))]
    Provider(String),
    /// Something spanning every suite (a subscription or feed without a suite) asked
    /// for by a key restricted to some.
    #[error("this key is restricted to suites: name one of them")]
    EverySuite,
}

/// The suites a caller reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Suites {
    All,
    /// These suites, and the providers they belong to (whose provider routes it may use).
    Only {
        suite_ids: BTreeSet<String>,
        providers: BTreeSet<String>,
    },
}

impl Suites {
    pub fn check(&self, suite_id: &str) -> Result<(), Denied> {
        match self {
            Self::Only { suite_ids, .. } if !suite_ids.contains(suite_id) => Err(Denied::Suite(suite_id.to_owned())),
            _ => Ok(()),
        }
    }

    pub fn check_provider(&self, provider_corpid: &str) -> Result<(), Denied> {
        match self {
            Self::Only { providers, .. } if !providers.contains(provider_corpid) => {
                Err(Denied::Provider(provider_corpid.to_owned()))
            }
            _ => Ok(()),
        }
    }

    /// A suite or, for `None`, every suite.
    pub fn check_optional(&self, suite_id: Option<&str>) -> Result<(), Denied> {
        match (self, suite_id) {
            (Self::All, _) => Ok(()),
            (Self::Only { .. }, None) => Err(Denied::EverySuite),
            (Self::Only { .. }, Some(suite_id)) => self.check(suite_id),
        }
    }

    /// Narrows a feed filter to these suites; a filter naming another suite is refused.
    pub fn restrict(&self, filter: &mut EventFilter) -> Result<(), Denied> {
        if let Some(suite_id) = &filter.suite_id {
            self.check(suite_id.as_str())?;
        }
        if let Self::Only { suite_ids, .. } = self {
            filter.suites = Some(suite_ids.iter().map(|id| SuiteId::from(id.as_str())).collect());
        }
        Ok(())
    }
}

/// An authenticated caller.
#[derive(Debug)]
pub struct Principal {
    /// The key's name ([`BOOTSTRAP_KEY`] for `ADMIN_TOKEN`): what logs and audits show.
    pub name: String,
    scopes: BTreeSet<Scope>,
    pub suites: Suites,
}

impl Principal {
    fn bootstrap() -> Self {
        Principal { name: BOOTSTRAP_KEY.to_owned(), scopes: BTreeSet::from([Scope::Admin]), suites: Suites::All }
    }

    pub fn require(&self, scope: Scope) -> Result<(), Denied> {
        if self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin) {
            Ok(())
        } else {
            Err(Denied::Scope(scope))
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// Refused input; `field` names what to change.
    #[error("{field}: {problem}")]
    Invalid { field: &'static str, problem: String },
    #[error("an API key named {0} exists already (a revoked key keeps its name)")]
    NameTaken(String),
    #[error("API key not found")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(field: &'static str, problem: impl Into<String>) -> AccessError {
    AccessError::Invalid { field, problem: problem.into() }
}

/// What a new key asks for, unchecked.
pub struct NewKey {
    pub name: String,
    pub scopes: Vec<String>,
    /// `None`: every suite.
    pub suites: Option<Vec<String>>,
}

/// The answer to a creation: the only time the key is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    pub name: String,
    pub scopes: Vec<Scope>,
    pub suites: Option<Vec<String>>,
    pub key: String,
    pub created_at: String,
}

/// A key as listed: never the key, never its hash.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct KeyView {
    pub name: String,
    pub scopes: Vec<Scope>,
    /// `None`: every suite.
    pub suites: Option<Vec<String>>,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

impl From<&ApiKeyRow> for KeyView {
    fn from(row: &ApiKeyRow) -> Self {
        KeyView {
            name: row.name.clone(),
            scopes: stored_scopes(&row.scopes).into_iter().collect(),
            suites: stored_suites(row.suites.as_deref()).map(|suites| suites.into_iter().collect()),
            created_at: rfc3339(row.created_at),
            last_used_at: row.last_used_at.map(rfc3339),
            revoked_at: row.revoked_at.map(rfc3339),
        }
    }
}

/// 1 to 64 letters, digits, `-`, `_` or `.`, starting with a letter or digit (so no
/// name reads as the `-` that logs show for no key); not a reserved name, so that an
/// audit entry's actor names one thing.
fn check_name(name: &str) -> Result<(), AccessError> {
    let well_formed = name.len() <= MAX_NAME_LEN
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !well_formed {
        return Err(invalid(
            "name",
            format!("must be 1 to {MAX_NAME_LEN} letters, digits, '-', '_' or '.', starting with a letter or digit"),
        ));
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(invalid("name", format!("{name} is reserved (one of {})", RESERVED_NAMES.join(", "))));
    }
    Ok(())
}

fn scope_names() -> String {
    Scope::ALL.map(Scope::as_str).join(", ")
}

fn parse_scopes(names: &[String]) -> Result<BTreeSet<Scope>, AccessError> {
    if names.is_empty() {
        return Err(invalid("scopes", format!("give at least one of {}", scope_names())));
    }
    names
        .iter()
        .map(|name| {
            Scope::parse(name).ok_or_else(|| {
                invalid("scopes", format!("unknown scope {:?} (one of {})", excerpt(name), scope_names()))
            })
        })
        .collect()
}

fn parse_suites(
    suites: Option<Vec<String>>,
    scopes: &BTreeSet<Scope>,
) -> Result<Option<BTreeSet<String>>, AccessError> {
    let Some(suites) = suites else {
        return Ok(None);
    };
    if suites.is_empty() {
        return Err(invalid("suites", "list at least one suite, or leave suites out for every suite"));
    }
    if scopes.contains(&Scope::Admin) {
        return Err(invalid("suites", "a key with the admin scope reaches every suite: leave suites out"));
    }
    Ok(Some(suites.into_iter().collect()))
}

fn stored_scopes(stored: &str) -> BTreeSet<Scope> {
    // A scope this version does not know grants nothing.
    serde_json::from_str::<Vec<String>>(stored).unwrap_or_default().iter().filter_map(|s| Scope::parse(s)).collect()
}

/// `None` is every suite; an unreadable list is no suite at all.
fn stored_suites(stored: Option<&str>) -> Option<BTreeSet<String>> {
    stored.map(|text| serde_json::from_str(text).unwrap_or_default())
}

fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "[]".to_owned())
}

fn new_key() -> String {
    format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(rand::random::<[u8; KEY_BYTES]>()))
}

/// What is stored of a key: the hex SHA-256 of all of it.
fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Shaped as a key: only then is it worth a lookup.
fn looks_like_key(presented: &str) -> bool {
    presented.strip_prefix(KEY_PREFIX).is_some_and(|rest| {
        rest.len() == KEY_CHARS && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// Makes a key on behalf of `actor` (audited as `api_key.create`); the answer holds
/// the key, shown this once.
pub async fn create(db: &Db, new: NewKey, actor: &str) -> Result<CreatedKey, AccessError> {
    check_name(&new.name)?;
    let scopes = parse_scopes(&new.scopes)?;
    let suites = parse_suites(new.suites, &scopes)?;
    let key = new_key();
    let suite_ids: Vec<String> = suites.iter().flatten().cloned().collect();
    let row = NewApiKey {
        name: new.name.clone(),
        key_hash: key_hash(&key),
        scopes: to_json(&scopes),
        suites: suites.as_ref().map(to_json),
        created_at: now_ms(),
    };
    let details = serde_json::json!({ "scopes": scopes, "suites": suites });
    let entry = NewAuditEntry::new(actor, "api_key.create", &new.name, details);
    match db.run(move |conn| rows::insert(conn, &row, &suite_ids, &entry)).await? {
        Insert::Created(row) => Ok(CreatedKey {
            name: row.name,
            scopes: scopes.into_iter().collect(),
            suites: suites.map(|suites| suites.into_iter().collect()),
            key,
            created_at: rfc3339(row.created_at),
        }),
        Insert::NameTaken => Err(AccessError::NameTaken(new.name)),
        Insert::UnknownSuite(suite_id) => Err(invalid("suites", format!("unknown suite {}", excerpt(&suite_id)))),
    }
}

/// Every key, revoked ones included, oldest first.
pub async fn list(db: &Db) -> Result<Vec<KeyView>, AccessError> {
    Ok(db.run(rows::list).await?.iter().map(KeyView::from).collect())
}

pub async fn get(db: &Db, name: &str) -> Result<KeyView, AccessError> {
    let name = name.to_owned();
    let row = db.run(move |conn| rows::find(conn, &name)).await?.ok_or(AccessError::NotFound)?;
    Ok(KeyView::from(&row))
}

/// Revokes a key on behalf of `actor` (audited as `api_key.revoke`; revoking it again
/// changes nothing). Every instance sharing the database refuses it within the 2 s its
/// lookups are cached.
pub async fn revoke(db: &Db, name: &str, actor: &str) -> Result<KeyView, AccessError> {
    let entry = NewAuditEntry::new(actor, "api_key.revoke", name, serde_json::json!({}));
    let name = name.to_owned();
    let row = db.run(move |conn| rows::revoke(conn, &name, now_ms(), &entry)).await?.ok_or(AccessError::NotFound)?;
    Ok(KeyView::from(&row))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_key_is_well_formed_and_its_hash_is_not_the_key() {
        let key = new_key();
        assert!(looks_like_key(&key), "{key}");
        assert_eq!(key.len(), KEY_PREFIX.len() + KEY_CHARS);
        assert_ne!(new_key(), key);
        let hash = key_hash(&key);
        assert_eq!(hash.len(), 64);
        assert!(!hash.contains(&key[KEY_PREFIX.len()..]));
        for not_a_key in ["", "wpk_", "wpk_short", &format!("wpk_{}", "=".repeat(KEY_CHARS)), &key[1..]] {
            assert!(!looks_like_key(not_a_key), "{not_a_key}");
        }
    }

    #[test]
    fn names_are_short_words_and_bootstrap_is_taken() {
        for good in ["ci", "billing-service", "a.b_c-9", "9", &"x".repeat(64)] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "-", ".hidden", "a b", "名字", &"x".repeat(65), "bootstrap", "cli", "environment", "key\n"] {
            assert!(matches!(check_name(bad), Err(AccessError::Invalid { field: "name", .. })), "{bad:?}");
        }
    }

    #[test]
    fn admin_implies_every_scope_and_others_only_themselves() {
        let admin = Principal::bootstrap();
        assert!(Scope::ALL.iter().all(|scope| admin.require(*scope).is_ok()));
        let reader = Principal { name: "r".into(), scopes: BTreeSet::from([Scope::Tokens]), suites: Suites::All };
        assert_eq!(reader.require(Scope::Tokens), Ok(()));
        assert_eq!(reader.require(Scope::Ids), Err(Denied::Scope(Scope::Ids)));
        assert_eq!(reader.require(Scope::Admin).unwrap_err().to_string(), "this key lacks the admin scope");
    }

    #[test]
    fn a_suite_restriction_reaches_its_suites_and_their_providers_only() {
        let only = Suites::Only {
            suite_ids: BTreeSet::from(["wwA".to_owned()]),
            providers: BTreeSet::from(["wxP".to_owned()]),
        };
        assert_eq!(only.check("wwA"), Ok(()));
        assert_eq!(only.check("wwB").unwrap_err().to_string(), "this key is not allowed suite wwB");
        assert_eq!(only.check_provider("wxP"), Ok(()));
        assert!(only.check_provider("wxQ").is_err());
        assert_eq!(only.check_optional(None), Err(Denied::EverySuite));
        let mut filter = EventFilter::default();
        only.restrict(&mut filter).expect("no suite named");
        assert_eq!(filter.suites, Some(vec![SuiteId::from("wwA")]));
        let mut other = EventFilter { suite_id: Some("wwB".into()), ..EventFilter::default() };
        assert!(only.restrict(&mut other).is_err());
        let mut all = EventFilter::default();
        Suites::All.restrict(&mut all).expect("all");
        assert_eq!(all, EventFilter::default());
    }

    #[test]
    fn scopes_and_suites_are_checked_with_the_field_named() {
        fn field<T>(result: Result<T, AccessError>) -> &'static str {
            match result {
                Err(AccessError::Invalid { field, .. }) => field,
                _ => "accepted",
            }
        }
        assert_eq!(field(parse_scopes(&[])), "scopes");
        assert_eq!(field(parse_scopes(&["tokens".into(), "root".into()])), "scopes");
        let scopes = parse_scopes(&["ids".into(), "tokens".into(), "ids".into()]).expect("known scopes");
        assert_eq!(scopes.into_iter().collect::<Vec<_>>(), [Scope::Tokens, Scope::Ids]);
        let admin = BTreeSet::from([Scope::Admin]);
        assert_eq!(field(parse_suites(Some(vec!["wwA".into()]), &admin)), "suites");
        assert_eq!(field(parse_suites(Some(vec![]), &BTreeSet::from([Scope::Ids]))), "suites");
        assert_eq!(parse_suites(None, &admin).expect("every suite"), None);
    }

    #[test]
    fn stored_scopes_it_does_not_know_grant_nothing() {
        assert_eq!(stored_scopes(r#"["tokens","superuser"]"#), BTreeSet::from([Scope::Tokens]));
        assert_eq!(stored_scopes("not json"), BTreeSet::new());
        assert_eq!(stored_suites(None), None);
        assert_eq!(stored_suites(Some("garbage")), Some(BTreeSet::new()));
    }
}
