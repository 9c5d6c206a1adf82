//! JS-SDK tickets and the signatures made with them. Both tickets are fetched with
//! the corp's access token and kept like tokens (database, single flight across
//! instances, five minutes of margin). WeCom allows 400 fetches per hour per corp
//! (jsapi_ticket) and 100 per app (agent_config): every fetch first spends from a
//! budget in the database that all instances share, and past it the caller gets
//! [`TokenError::TicketLimit`] instead of WeCom banning the corp.

use rand::distr::{Alphanumeric, SampleString};
use secrecy::ExposeSecret;
use serde::Serialize;
use utoipa::ToSchema;

use super::{TokenError, TokenKey, Tokens};
use crate::model::{CorpId, CorpStatus, SuiteId};
use crate::store::{corps, now_ms, ticket_budgets};
use crate::wecom::client::Grant;
use crate::wecom::errcodes::JSAPI_TICKET_UNUSABLE;
use crate::wecom::jssdk::{self, PageUrl};

pub const JSAPI_FETCHES_PER_CORP_HOUR: usize = 400;
pub const AGENT_CONFIG_FETCHES_PER_APP_HOUR: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TicketKind {
    /// The corp's jsapi_ticket, for `wx.config`.
    Jsapi,
    /// The app's ticket, for `wx.agentConfig`.
    AgentConfig,
}

/// What `wx.config` takes.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigSignature {
    pub app_id: CorpId,
    pub timestamp: i64,
    pub nonce_str: String,
    pub signature: String,
}

/// What `wx.agentConfig` takes.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentConfigSignature {
    pub corpid: CorpId,
    pub agentid: i64,
    pub timestamp: i64,
    pub nonce_str: String,
    pub signature: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JsapiSignatures {
    pub config: ConfigSignature,
    /// Absent while the corp's agent id is unknown.
    pub agent_config: Option<AgentConfigSignature>,
}

impl Tokens {
    /// Signs `url` for wx.config and wx.agentConfig of an active corp.
    pub async fn jsapi_signatures(
        &self,
        suite_id: &SuiteId,
        corpid: &CorpId,
        url: &PageUrl,
    ) -> Result<JsapiSignatures, TokenError> {
        let (sid, cid) = (suite_id.to_owned(), corpid.to_owned());
        let corp =
            self.db.run(move |conn| corps::credentials(conn, &sid, &cid)).await?.ok_or(TokenError::Unknown("corp"))?;
        if corp.status != CorpStatus::Active {
            return Err(TokenError::CorpNotActive);
        }
        let timestamp = now_ms() / 1000;
        let nonce = || Alphanumeric.sample_string(&mut rand::rng(), 16);
        let ticket = |kind| TokenKey::Ticket { suite_id: suite_id.clone(), corpid: corpid.clone(), kind };
        let jsapi = self.get(&ticket(TicketKind::Jsapi)).await?;
        let nonce_str = nonce();
        let signature = jssdk::signature(jsapi.access_token.expose_secret(), &nonce_str, timestamp, url.as_str());
        let config = ConfigSignature { app_id: corpid.clone(), timestamp, nonce_str, signature };
        let agent_config = match corp.agent_id {
            Some(agentid) => {
                let agent = self.get(&ticket(TicketKind::AgentConfig)).await?;
                let nonce_str = nonce();
                let signature =
                    jssdk::signature(agent.access_token.expose_secret(), &nonce_str, timestamp, url.as_str());
                Some(AgentConfigSignature { corpid: corpid.clone(), agentid, timestamp, nonce_str, signature })
            }
            None => None,
        };
        Ok(JsapiSignatures { config, agent_config })
    }

    /// Fetches a ticket with the corp's token, within WeCom's hourly limit. 42012
    /// (the ticket cannot be used: fetched with a token of another app) drops the
    /// corp token and tries once more.
    pub(super) async fn fetch_ticket(
        &self,
        suite_id: &SuiteId,
        corpid: &CorpId,
        kind: TicketKind,
    ) -> Result<Grant, TokenError> {
        let (counter, limit, name) = match kind {
            TicketKind::Jsapi => (format!("jsapi_ticket:{corpid}"), JSAPI_FETCHES_PER_CORP_HOUR, "jsapi_ticket"),
            TicketKind::AgentConfig => {
                (format!("agent_config:{suite_id}/{corpid}"), AGENT_CONFIG_FETCHES_PER_APP_HOUR, "agent_config ticket")
            }
        };
        let corp_key = TokenKey::corp(suite_id, corpid);
        let client = &self.client;
        let mut retried = false;
        loop {
            let counter = counter.clone();
            if let Err(wait_ms) = self.db.run(move |conn| ticket_budgets::spend(conn, &counter, limit)).await? {
                let retry_after_secs = u64::try_from(wait_ms / 1000 + 1).unwrap_or(1);
                tracing::warn!(suite = %suite_id, %corpid, kind = name, "hourly ticket budget spent");
                return Err(TokenError::TicketLimit { kind: name, limit, retry_after_secs });
            }
            let fetched = self
                .call(&corp_key, |token| async move {
                    match kind {
                        TicketKind::Jsapi => client.get_jsapi_ticket(&token).await,
                        TicketKind::AgentConfig => client.get_agent_config_ticket(&token).await,
                    }
                })
                .await;
            match fetched {
                Err(TokenError::Upstream(error)) if error.errcode() == Some(JSAPI_TICKET_UNUSABLE) && !retried => {
                    tracing::info!(suite = %suite_id, %corpid, kind = name, "ticket unusable (42012); retrying once");
                    self.forget(&corp_key, None).await?;
                    retried = true;
                }
                other => return other,
            }
        }
    }
}
