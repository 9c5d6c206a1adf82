//! Who a bearer is, without a database query per request.
//!
//! A lookup (the key's hash → its principal, or no key) is trusted for [`CACHE_TTL`],
//! then made again: a key revoked on any instance sharing the database stops working
//! on every instance within that time. Concurrent requests with one key share one
//! lookup. A client address that failed too often is refused before its bearer is
//! looked at (see `throttle`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use tokio::sync::OnceCell;

use super::throttle::FailedAttempts;
use super::{Principal, Suites, key_hash, looks_like_key, stored_scopes, stored_suites};
use crate::store::{Db, StoreError, api_keys, now_ms, suites};

/// How long a lookup is trusted.
const CACHE_TTL: Duration = Duration::from_secs(2);
/// Lookups kept at most; past it (a flood of made-up keys) new ones are not kept.
const MAX_CACHED: usize = 10_000;
/// `last_used_at` is written at most this often per key.
const LAST_USE_INTERVAL_MS: i64 = 60_000;

/// Why a request is not let in.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// No bearer, or one that is neither `ADMIN_TOKEN` nor an unrevoked key.
    #[error("missing, unknown or revoked key")]
    Unknown,
    /// Neither `ADMIN_TOKEN` nor any unrevoked key exists: nobody can be let in.
    #[error("no ADMIN_TOKEN and no API key")]
    Unconfigured,
    /// The client address failed too often; it may try again after this many seconds.
    #[error("too many failed authentications")]
    Throttled { retry_after_secs: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A key found in the database.
struct Known {
    principal: Arc<Principal>,
    /// Unix ms of the last use written (or being written), to write it once a minute.
    last_used_at: AtomicI64,
}

struct Lookup {
    started: Instant,
    found: Arc<OnceCell<Option<Arc<Known>>>>,
}

pub struct Authenticator {
    db: Db,
    /// `ADMIN_TOKEN` and the principal it stands for.
    bootstrap: Option<(SecretString, Arc<Principal>)>,
    lookups: Mutex<HashMap<String, Lookup>>,
    failures: FailedAttempts,
}

impl Authenticator {
    pub fn new(db: Db, admin_token: Option<SecretString>) -> Self {
        Authenticator {
            db,
            bootstrap: admin_token.map(|token| (token, Arc::new(Principal::bootstrap()))),
            lookups: Mutex::default(),
            failures: FailedAttempts::default(),
        }
    }

    /// The principal `bearer` stands for. A refusal of an unknown bearer counts
    /// against `client`.
    pub async fn authenticate(&self, bearer: Option<&str>, client: Option<IpAddr>) -> Result<Arc<Principal>, Refusal> {
        let now = Instant::now();
        if let Some(retry_after_secs) = client.and_then(|ip| self.failures.blocked(ip, now)) {
            return Err(Refusal::Throttled { retry_after_secs });
        }
        if let Some(principal) = self.identify(bearer).await? {
            return Ok(principal);
        }
        if self.bootstrap.is_none() && !self.db.run(api_keys::any_active).await? {
            return Err(Refusal::Unconfigured);
        }
        if let Some(ip) = client {
            self.failures.record(ip, now);
        }
        Err(Refusal::Unknown)
    }

    async fn identify(&self, bearer: Option<&str>) -> Result<Option<Arc<Principal>>, StoreError> {
        let Some(presented) = bearer else {
            return Ok(None);
        };
        if let Some((token, principal)) = &self.bootstrap
            && bool::from(presented.as_bytes().ct_eq(token.expose_secret().as_bytes()))
        {
            return Ok(Some(principal.clone()));
        }
        if !looks_like_key(presented) {
            return Ok(None);
        }
        let hash = key_hash(presented);
        let cell = self.lookup_cell(&hash);
        let found = cell.get_or_try_init(|| load(&self.db, hash)).await?;
        Ok(found.as_ref().map(|known| {
            self.record_use(known);
            known.principal.clone()
        }))
    }

    /// The lookup of `hash` still trusted, or a new one (kept unless the cache is full).
    fn lookup_cell(&self, hash: &str) -> Arc<OnceCell<Option<Arc<Known>>>> {
        let now = Instant::now();
        let mut lookups = lock(&self.lookups);
        if let Some(lookup) = lookups.get(hash)
            && now.duration_since(lookup.started) < CACHE_TTL
        {
            return lookup.found.clone();
        }
        if lookups.len() >= MAX_CACHED {
            lookups.retain(|_, lookup| now.duration_since(lookup.started) < CACHE_TTL);
        }
        let found = Arc::new(OnceCell::new());
        if lookups.len() < MAX_CACHED {
            lookups.insert(hash.to_owned(), Lookup { started: now, found: found.clone() });
        }
        found
    }

    /// Writes `last_used_at` off the request path, at most once a minute per key; a
    /// failure is logged, never the request's.
    fn record_use(&self, known: &Known) {
        let now = now_ms();
        let last = known.last_used_at.load(Ordering::Relaxed);
        if now - last < LAST_USE_INTERVAL_MS
            || known.last_used_at.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err()
        {
            return;
        }
        let db = self.db.clone();
        let name = known.principal.name.clone();
        tokio::spawn(async move {
            let written = db.run(move |conn| api_keys::record_use(conn, &name, now, LAST_USE_INTERVAL_MS)).await;
            if let Err(error) = written {
                tracing::warn!(%error, "cannot record the last use of an API key");
            }
        });
    }
}

/// The unrevoked key of `hash`, with the providers of the suites it is restricted to.
async fn load(db: &Db, hash: String) -> Result<Option<Arc<Known>>, StoreError> {
    db.run(move |conn| {
        let Some(row) = api_keys::find_active_by_hash(conn, &hash)? else {
            return Ok(None);
        };
        let suites = match stored_suites(row.suites.as_deref()) {
            None => Suites::All,
            Some(suite_ids) => {
                let listed: Vec<String> = suite_ids.iter().cloned().collect();
                let providers = suites::providers_of(conn, &listed)?.into_iter().collect();
                Suites::Only { suite_ids, providers }
            }
        };
        let principal = Principal { name: row.name, scopes: stored_scopes(&row.scopes), suites };
        Ok(Some(Arc::new(Known {
            principal: Arc::new(principal),
            last_used_at: AtomicI64::new(row.last_used_at.unwrap_or(0)),
        })))
    })
    .await
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
