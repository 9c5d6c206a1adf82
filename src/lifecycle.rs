//! The authorization lifecycle of a corp in a suite: exchanging auth codes for
//! permanent codes (from the create_auth callback or the install redirect, whichever
//! comes first: the other is a no-op), refreshing auth info, cancelling, and
//! replacing a customized app's secret.

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::store::{Db, StoreError, auth_codes, corps};
use crate::tokens::{TokenError, TokenKey, Tokens};
use crate::wecom::client::first_agent_id;

/// How long an exchange may take before another path may take the code over.
const CODE_CLAIM_MS: i64 = 60_000;
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
}

/// A corp whose authorization is stored.
#[derive(Debug, Clone)]
pub struct Authorized {
    pub corpid: String,
    pub corp_name: String,
    /// The code had been exchanged already (by the other path).
    pub already_exchanged: bool,
}

pub struct Lifecycle {
    db: Db,
    tokens: Arc<Tokens>,
}

impl Lifecycle {
    pub fn new(db: Db, tokens: Arc<Tokens>) -> Self {
        Lifecycle { db, tokens }
    }

    /// Exchanges an auth code exactly once per code, and stores the corp.
    pub async fn exchange_auth_code(
        &self,
        suite_id: &str,
        auth_code: &SecretString,
    ) -> Result<Authorized, LifecycleError> {
        let code_hash = hex::encode(Sha256::digest(auth_code.expose_secret().as_bytes()));
        let deadline = tokio::time::Instant::now() + WAIT_FOR_OTHER_PATH;
        loop {
            let (sid, hash) = (suite_id.to_owned(), code_hash.clone());
            let claim = self.db.run(move |conn| auth_codes::claim(conn, &sid, &hash, CODE_CLAIM_MS)).await?;
            match claim {
                auth_codes::CodeClaim::Claimed => break,
                auth_codes::CodeClaim::Done { corpid } => {
                    let (sid, cid) = (suite_id.to_owned(), corpid.clone());
                    let corp = self.db.run(move |conn| corps::find(conn, &sid, &cid)).await?;
                    return Ok(Authorized {
                        corpid,
                        corp_name: corp.map(|c| c.corp_name).unwrap_or_default(),
                        already_exchanged: true,
                    });
                }
                auth_codes::CodeClaim::InProgress if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                auth_codes::CodeClaim::InProgress => {
                    return Err(LifecycleError::ExchangeInProgress);
                }
            }
        }
        let outcome = self.exchange_claimed(suite_id, auth_code).await;
        let (sid, hash) = (suite_id.to_owned(), code_hash);
        match &outcome {
            Ok(authorized) => {
                let corpid = authorized.corpid.clone();
                self.db.run(move |conn| auth_codes::finish(conn, &sid, &hash, &corpid)).await?;
            }
            Err(_) => {
                self.db.run(move |conn| auth_codes::release(conn, &sid, &hash)).await?;
            }
        }
        outcome
    }

    async fn exchange_claimed(&self, suite_id: &str, auth_code: &SecretString) -> Result<Authorized, LifecycleError> {
        let suite_key = TokenKey::suite(suite_id);
        let client = self.tokens.client();
        let grant = self
            .tokens
            .call(&suite_key, |suite_token| async move { client.get_permanent_code(&suite_token, auth_code).await })
            .await?;
        let corp_key = TokenKey::corp(suite_id, &grant.corpid);
        // A re-install or a reset secret makes any cached corp token stale.
        self.tokens.forget(&corp_key, None).await?;
        let mut auth_info = grant.auth_info;
        let permanent_code = grant.permanent_code.expose_secret().to_owned();
        let (sid, corpid, corp_name, agent_id) =
            (suite_id.to_owned(), grant.corpid.clone(), grant.corp_name.clone(), grant.agent_id);
        let stored_info = auth_info.to_string();
        self.db
            .run(move |conn| {
                corps::upsert_authorized(
                    conn,
                    &corps::Authorization {
                        suite_id: &sid,
                        corpid: &corpid,
                        corp_name: &corp_name,
                        agent_id,
                        permanent_code: &permanent_code,
                        auth_info: &stored_info,
                    },
                )
            })
            .await?;
        if let Some(corp_token) = &grant.corp_token {
            self.tokens.put(&corp_key, corp_token).await?;
        }
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
                        .run(move |conn| corps::update_auth_info(conn, &sid, &cid, &name, Some(agent_id), &info))
                        .await?;
                }
                Err(error) => {
                    tracing::warn!(suite = suite_id, corpid = %grant.corpid, %error, "could not fetch the app's admins")
                }
            }
        }
        tracing::info!(suite = suite_id, corpid = %grant.corpid, "corp authorized");
        Ok(Authorized { corpid: grant.corpid, corp_name: grant.corp_name, already_exchanged: false })
    }

    async fn admins(&self, corp_key: &TokenKey, agent_id: i64) -> Result<Value, TokenError> {
        let client = self.tokens.client();
        self.tokens.call(corp_key, |corp_token| async move { client.get_admin_list(&corp_token, agent_id).await }).await
    }

    /// change_auth: fetches and stores the current auth info.
    pub async fn refresh_auth_info(&self, suite_id: &str, corpid: &str) -> Result<(), LifecycleError> {
        let (sid, cid) = (suite_id.to_owned(), corpid.to_owned());
        let credentials =
            self.db.run(move |conn| corps::credentials(conn, &sid, &cid)).await?.ok_or(LifecycleError::UnknownCorp)?;
        let Some(permanent_code) = credentials.permanent_code.map(SecretString::from) else {
            return Err(LifecycleError::Token(TokenError::CorpNotActive));
        };
        let client = self.tokens.client();
        let permanent_code = &permanent_code;
        let fetched = self
            .tokens
            .call(&TokenKey::suite(suite_id), |suite_token| async move {
                client.get_auth_info(&suite_token, corpid, permanent_code).await
            })
            .await;
        let info = self.tokens.mark_if_revoked(suite_id, corpid, fetched).await?;
        let corp_name = info["auth_corp_info"]["corp_name"].as_str().unwrap_or_default().to_owned();
        let agent_id = first_agent_id(&info).or(credentials.agent_id);
        let (sid, cid, stored) = (suite_id.to_owned(), corpid.to_owned(), info.to_string());
        self.db.run(move |conn| corps::update_auth_info(conn, &sid, &cid, &corp_name, agent_id, &stored)).await?;
        Ok(())
    }

    /// cancel_auth: the corp is cancelled and its token dropped.
    pub async fn cancel(&self, suite_id: &str, corpid: &str) -> Result<(), LifecycleError> {
        let (sid, cid) = (suite_id.to_owned(), corpid.to_owned());
        let known = self.db.run(move |conn| corps::cancel(conn, &sid, &cid)).await?;
        self.tokens.forget(&TokenKey::corp(suite_id, corpid), None).await?;
        if !known {
            tracing::info!(suite = suite_id, corpid, "cancel_auth for a corp never stored");
        }
        Ok(())
    }
}
