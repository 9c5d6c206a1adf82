//! Typed client of WeCom's server API (qyapi). One request helper turns every
//! answer into a typed result: a missing `errcode` means success (several token
//! endpoints omit it), anything else non-zero becomes [`WecomError::Api`].
//! `-1`, HTTP 5xx and network failures are retried here, at most 3 times with
//! backoff and all within one 20 s deadline per operation; token errors are the token center's business, everything else is
//! surfaced. Errors never carry a URL: URLs hold tokens.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::{Value, json};
use url::Url;

use super::errcodes::{self, ErrcodeClass};
use crate::model::{CorpId, PermanentCodeApi, ProviderCorpId, SuiteId, SuiteKind};

const RETRIES: u32 = 3;
/// One API operation, its retries included, answers within this.
pub const API_DEADLINE: Duration = Duration::from_secs(20);
/// One attempt waits at most this (and never past the operation's deadline).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// A request that spends a single-use code is sent once and waited for this long:
/// WeCom's v1 get_permanent_code can take many seconds.
const SINGLE_USE_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, thiserror::Error)]
pub enum WecomError {
    #[error("WeCom answered errcode {errcode}: {errmsg}")]
    Api { errcode: i64, errmsg: String },
    #[error("WeCom is unreachable: {0}")]
    Transport(String),
    #[error("WeCom answered HTTP {0}")]
    Http(u16),
    #[error("unexpected answer from WeCom: {0}")]
    Decode(String),
    /// A single-use request may have reached WeCom, but no answer says what it did.
    #[error("WeCom's answer was lost ({0}); the request may have been applied")]
    AnswerLost(String),
}

impl WecomError {
    pub fn errcode(&self) -> Option<i64> {
        match self {
            Self::Api { errcode, .. } => Some(*errcode),
            _ => None,
        }
    }

    /// What the failure means ([`errcodes::classify`]); 5xx and network failures are
    /// transient, an answer that cannot be read or was lost is final.
    pub fn class(&self) -> ErrcodeClass {
        match self {
            Self::Api { errcode, .. } => errcodes::classify(*errcode),
            Self::Transport(_) | Self::Http(_) => ErrcodeClass::Transient,
            Self::Decode(_) | Self::AnswerLost(_) => ErrcodeClass::Final,
        }
    }
}

/// Which query parameter carries the token: WeCom names it per token type.
#[derive(Debug, Clone, Copy)]
pub enum TokenParam {
    Provider,
    Suite,
    Corp,
    /// The provider token under the name `access_token`: get_login_info wants it so.
    ProviderAsAccessToken,
}

impl TokenParam {
    fn name(self) -> &'static str {
        match self {
            Self::Provider => "provider_access_token",
            Self::Suite => "suite_access_token",
            Self::Corp | Self::ProviderAsAccessToken => "access_token",
        }
    }
}

/// A token as WeCom grants it.
pub struct Grant {
    pub token: SecretString,
    pub expires_in: i64,
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant").field("expires_in", &self.expires_in).finish_non_exhaustive()
    }
}

/// What get_permanent_code answers, secrets split from the information to keep.
pub struct PermanentCodeGrant {
    pub permanent_code: SecretString,
    pub corpid: CorpId,
    pub corp_name: String,
    pub agent_id: Option<i64>,
    /// Third-party apps receive a first corp token with the code; customized apps do not.
    pub corp_token: Option<Grant>,
    /// The rest of the answer (auth_corp_info, auth_info, auth_user_info, edition_info, …).
    pub auth_info: Value,
}

impl PermanentCodeGrant {
    /// A v2 grant completed with get_auth_info's answer: its corp info, agents and
    /// edition, plus what only the exchange tells (the installing admin, the state,
    /// the register code).
    pub fn with_details(self, mut details: Value) -> Self {
        if let (Some(merged), Value::Object(exchanged)) = (details.as_object_mut(), self.auth_info) {
            for (field, value) in exchanged {
                merged.entry(field).or_insert(value);
            }
        }
        let corp_name = details["auth_corp_info"]["corp_name"].as_str().filter(|n| !n.is_empty());
        PermanentCodeGrant {
            agent_id: first_agent_id(&details),
            corp_name: corp_name.map_or(self.corp_name, str::to_owned),
            auth_info: details,
            ..self
        }
    }
}

#[derive(Clone)]
pub struct WecomClient {
    pub(super) http: reqwest::Client,
    base: Url,
}

fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("wecom-provider/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

impl WecomClient {
    pub fn new(mut base: Url) -> Self {
        // Url::join replaces the last path segment unless the base ends with '/'.
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        WecomClient { http: http_client(ATTEMPT_TIMEOUT), base }
    }

    pub async fn get_provider_token(
        &self,
        corpid: &ProviderCorpId,
        provider_secret: &SecretString,
    ) -> Result<Grant, WecomError> {
        let body = json!({"corpid": corpid, "provider_secret": provider_secret.expose_secret()});
        let answer = self.post("cgi-bin/service/get_provider_token", None, &body).await?;
        grant(&answer, "provider_access_token")
    }

    pub async fn get_suite_token(
        &self,
        suite_id: &SuiteId,
        suite_secret: &SecretString,
        suite_ticket: &SecretString,
    ) -> Result<Grant, WecomError> {
        let body = json!({
            "suite_id": suite_id,
            "suite_secret": suite_secret.expose_secret(),
            "suite_ticket": suite_ticket.expose_secret(),
        });
        let answer = self.post("cgi-bin/service/get_suite_token", None, &body).await?;
        grant(&answer, "suite_access_token")
    }

    /// A pre_auth_code for one install session.
    pub async fn get_pre_auth_code(&self, suite_token: &SecretString) -> Result<Grant, WecomError> {
        let answer = self.get("cgi-bin/service/get_pre_auth_code", Some((TokenParam::Suite, suite_token)), &[]).await?;
        grant(&answer, "pre_auth_code")
    }

    /// `auth_type` 1 marks the session's install as a test install.
    pub async fn set_session_info(
        &self,
        suite_token: &SecretString,
        pre_auth_code: &SecretString,
        auth_type: u8,
    ) -> Result<(), WecomError> {
        let body = json!({
            "pre_auth_code": pre_auth_code.expose_secret(),
            "session_info": {"auth_type": auth_type},
        });
        self.post("cgi-bin/service/set_session_info", Some((TokenParam::Suite, suite_token)), &body).await.map(drop)
    }

    /// Exchanges an auth code (single use: sent once). v1 answers the whole
    /// authorization (and, for third-party apps, a first corp token); v2 only the
    /// permanent code, the corp's identity and the installing admin, so the rest is
    /// for [`WecomClient::get_auth_info`].
    pub async fn get_permanent_code(
        &self,
        api: PermanentCodeApi,
        suite_token: &SecretString,
        auth_code: &SecretString,
    ) -> Result<PermanentCodeGrant, WecomError> {
        let path = match api {
            PermanentCodeApi::V1 => "cgi-bin/service/get_permanent_code",
            PermanentCodeApi::V2 => "cgi-bin/service/v2/get_permanent_code",
        };
        let body = json!({"auth_code": auth_code.expose_secret()});
        let url = self.url(path, Some((TokenParam::Suite, suite_token)), &[])?;
        let mut answer = self.spend_once(self.http.post(url).json(&body)).await?;
        let permanent_code = take_string(&mut answer, "permanent_code")?;
        let corp_token = match take_string(&mut answer, "access_token") {
            Ok(token) => {
                Some(Grant { token: token.into(), expires_in: take_i64(&mut answer, "expires_in").unwrap_or(7200) })
            }
            Err(_) => None,
        };
        strip_status(&mut answer);
        let (corpid, corp_name) = corp_identity(&answer)?;
        Ok(PermanentCodeGrant {
            permanent_code: permanent_code.into(),
            agent_id: first_agent_id(&answer),
            corpid,
            corp_name,
            corp_token,
            auth_info: answer,
        })
    }

    /// Current authorization details of a corp: after a v2 exchange and after
    /// change_auth. Customized-app templates use v2 (documented for them), other
    /// suites v1. The answer comes without errcode and errmsg.
    pub async fn get_auth_info(
        &self,
        kind: SuiteKind,
        suite_token: &SecretString,
        auth_corpid: &CorpId,
        permanent_code: &SecretString,
    ) -> Result<Value, WecomError> {
        let path = match kind {
            SuiteKind::CustomizedTemplate => "cgi-bin/service/v2/get_auth_info",
            SuiteKind::ThirdParty | SuiteKind::Login => "cgi-bin/service/get_auth_info",
        };
        let body = json!({"auth_corpid": auth_corpid, "permanent_code": permanent_code.expose_secret()});
        let mut answer = self.post(path, Some((TokenParam::Suite, suite_token)), &body).await?;
        strip_status(&mut answer);
        Ok(answer)
    }

    /// Corp token of a third-party app.
    pub async fn get_corp_token(
        &self,
        suite_token: &SecretString,
        auth_corpid: &CorpId,
        permanent_code: &SecretString,
    ) -> Result<Grant, WecomError> {
        let body = json!({"auth_corpid": auth_corpid, "permanent_code": permanent_code.expose_secret()});
        let answer = self.post("cgi-bin/service/get_corp_token", Some((TokenParam::Suite, suite_token)), &body).await?;
        grant(&answer, "access_token")
    }

    /// Corp token of a customized (代开发) app: its permanent code is the secret.
    pub async fn gettoken(&self, corpid: &CorpId, corpsecret: &SecretString) -> Result<Grant, WecomError> {
        let query = [("corpid", corpid.as_str()), ("corpsecret", corpsecret.expose_secret())];
        let answer = self.get("cgi-bin/gettoken", None, &query).await?;
        grant(&answer, "access_token")
    }

    /// Admins of the app in a corp (`agent/get_admin_list`, corp token).
    pub async fn get_admin_list(&self, corp_token: &SecretString, agent_id: i64) -> Result<Value, WecomError> {
        let mut answer = self
            .post("cgi-bin/agent/get_admin_list", Some((TokenParam::Corp, corp_token)), &json!({"agentid": agent_id}))
            .await?;
        Ok(answer.get_mut("admin").map(Value::take).unwrap_or_else(|| json!([])))
    }

    /// The app's settings in the corp (`agent/get`); `close` 1 means the corp disabled it.
    pub async fn get_agent(&self, corp_token: &SecretString, agent_id: i64) -> Result<Value, WecomError> {
        let agent_id = agent_id.to_string();
        self.get("cgi-bin/agent/get", Some((TokenParam::Corp, corp_token)), &[("agentid", &agent_id)]).await
    }

    /// POST JSON to a path, with the token (if any) in the query.
    pub async fn post<B: Serialize>(
        &self,
        path: &str,
        token: Option<(TokenParam, &SecretString)>,
        body: &B,
    ) -> Result<Value, WecomError> {
        let url = self.url(path, token, &[])?;
        observed(path, self.send(|| self.http.post(url.clone()).json(body)).await)
    }

    /// POST JSON that spends money or changes state at WeCom (an order, an
    /// activation): sent once, never retried once it may have reached WeCom.
    pub async fn post_once<B: Serialize>(
        &self,
        path: &str,
        token: Option<(TokenParam, &SecretString)>,
        body: &B,
    ) -> Result<Value, WecomError> {
        let url = self.url(path, token, &[])?;
        observed(path, self.spend_once(self.http.post(url).json(body)).await)
    }

    pub async fn get(
        &self,
        path: &str,
        token: Option<(TokenParam, &SecretString)>,
        query: &[(&str, &str)],
    ) -> Result<Value, WecomError> {
        let url = self.url(path, token, query)?;
        observed(path, self.send(|| self.http.get(url.clone())).await)
    }

    pub(super) fn url(
        &self,
        path: &str,
        token: Option<(TokenParam, &SecretString)>,
        query: &[(&str, &str)],
    ) -> Result<Url, WecomError> {
        let mut url = self.base.join(path).map_err(|e| WecomError::Decode(e.to_string()))?;
        {
            let mut pairs = url.query_pairs_mut();
            if let Some((param, token)) = token {
                pairs.append_pair(param.name(), token.expose_secret());
            }
            for (name, value) in query {
                pairs.append_pair(name, value);
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        Ok(url)
    }

    /// Sends with retries, all within [`API_DEADLINE`]: each attempt gets what is left.
    async fn send(&self, request: impl Fn() -> reqwest::RequestBuilder) -> Result<Value, WecomError> {
        let deadline = tokio::time::Instant::now() + API_DEADLINE;
        let mut attempt = 0;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let result = self.send_once(request().timeout(left.min(ATTEMPT_TIMEOUT))).await;
            match result {
                Err(error) if error.class() == ErrcodeClass::Transient && attempt < RETRIES => {
                    let delay = FIRST_BACKOFF * 2u32.pow(attempt);
                    if tokio::time::Instant::now() + delay >= deadline {
                        tracing::warn!(%error, attempts = attempt + 1, "WeCom call failed; its deadline is spent");
                        return Err(error);
                    }
                    tracing::warn!(%error, attempt = attempt + 1, ?delay, "WeCom call failed; retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Sends a request that spends a single-use code, exactly once. Only a failure to
    /// connect proves it was not sent ([`WecomError::Transport`], safe to retry); a
    /// refused token proves it was not applied (the token center retries); any other
    /// failure after sending, 5xx or `-1` included, is [`WecomError::AnswerLost`].
    pub(super) async fn spend_once(&self, request: reqwest::RequestBuilder) -> Result<Value, WecomError> {
        let lost = |e: reqwest::Error| {
            if e.is_connect() {
                WecomError::Transport(e.without_url().to_string())
            } else {
                WecomError::AnswerLost(e.without_url().to_string())
            }
        };
        let response = request.timeout(SINGLE_USE_TIMEOUT).send().await.map_err(lost)?;
        let status = response.status();
        if status.is_server_error() {
            return Err(WecomError::AnswerLost(format!("HTTP {}", status.as_u16())));
        }
        let bytes = response.bytes().await.map_err(lost)?;
        let answer: Value = serde_json::from_slice(&bytes)
            .map_err(|_| WecomError::AnswerLost(format!("HTTP {} without a JSON answer", status.as_u16())))?;
        match check_errcode(answer) {
            Err(error) if error.errcode() == Some(errcodes::SYSTEM_BUSY) => {
                Err(WecomError::AnswerLost("WeCom answered -1 (system busy)".into()))
            }
            other => other,
        }
    }

    async fn send_once(&self, request: reqwest::RequestBuilder) -> Result<Value, WecomError> {
        let response = request.send().await.map_err(|e| WecomError::Transport(e.without_url().to_string()))?;
        let status = response.status();
        if status.is_server_error() {
            return Err(WecomError::Http(status.as_u16()));
        }
        let bytes = response.bytes().await.map_err(|e| WecomError::Transport(e.without_url().to_string()))?;
        let answer: Value = serde_json::from_slice(&bytes).map_err(|_| {
            if status.is_success() {
                WecomError::Decode("answer is not JSON".into())
            } else {
                WecomError::Http(status.as_u16())
            }
        })?;
        check_errcode(answer)
    }
}

/// Counts an errcode WeCom answered, by endpoint (a fixed path: a bounded label).
fn observed(path: &str, result: Result<Value, WecomError>) -> Result<Value, WecomError> {
    if let Err(WecomError::Api { errcode, .. }) = &result {
        crate::telemetry::wecom_errcode(path.strip_prefix("cgi-bin/").unwrap_or(path), *errcode);
    }
    result
}

/// A missing errcode means success: get_suite_token, get_corp_token,
/// get_permanent_code and get_provider_token omit it on success.
pub fn check_errcode(answer: Value) -> Result<Value, WecomError> {
    let errcode = answer.get("errcode").and_then(Value::as_i64).unwrap_or(0);
    if errcode == 0 {
        Ok(answer)
    } else {
        let errmsg = answer.get("errmsg").and_then(Value::as_str).unwrap_or_default();
        Err(WecomError::Api { errcode, errmsg: errmsg.chars().take(300).collect() })
    }
}

pub(super) fn grant(answer: &Value, token_field: &str) -> Result<Grant, WecomError> {
    let token = answer
        .get(token_field)
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| WecomError::Decode(format!("{token_field} missing")))?;
    let expires_in = answer.get("expires_in").and_then(Value::as_i64).unwrap_or(7200);
    Ok(Grant { token: token.to_owned().into(), expires_in })
}

fn take_string(answer: &mut Value, field: &str) -> Result<String, WecomError> {
    match answer.as_object_mut().and_then(|object| object.remove(field)) {
        Some(Value::String(value)) if !value.is_empty() => Ok(value),
        _ => Err(WecomError::Decode(format!("{field} missing"))),
    }
}

/// errcode and errmsg say how the call went, not what the corp authorized.
fn strip_status(answer: &mut Value) {
    if let Some(object) = answer.as_object_mut() {
        object.remove("errcode");
        object.remove("errmsg");
    }
}

fn take_i64(answer: &mut Value, field: &str) -> Option<i64> {
    answer.as_object_mut().and_then(|object| object.remove(field)).and_then(|v| v.as_i64())
}

fn corp_identity(answer: &Value) -> Result<(CorpId, String), WecomError> {
    let info = &answer["auth_corp_info"];
    let corpid = info["corpid"]
        .as_str()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| WecomError::Decode("auth_corp_info.corpid missing".into()))?;
    Ok((CorpId::from(corpid), info["corp_name"].as_str().unwrap_or_default().to_owned()))
}

/// The app's agent id: single-app installs carry exactly one agent.
pub fn first_agent_id(answer: &Value) -> Option<i64> {
    answer["auth_info"]["agent"].as_array()?.first()?["agentid"].as_i64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_errcode_means_success() {
        let answer = json!({"suite_access_token": "t", "expires_in": 7200});
        assert!(check_errcode(answer).is_ok());
        assert!(check_errcode(json!({"errcode": 0, "errmsg": "ok"})).is_ok());
    }

    #[test]
    fn a_non_zero_errcode_is_an_error_with_its_message() {
        let error = check_errcode(json!({"errcode": 40085, "errmsg": "invalid suite_ticket"})).unwrap_err();
        assert_eq!(error.errcode(), Some(40085));
        assert!(error.to_string().contains("invalid suite_ticket"));
    }

    #[test]
    fn failures_without_an_errcode_are_classified_by_what_went_wrong() {
        assert_eq!(WecomError::Api { errcode: -1, errmsg: String::new() }.class(), ErrcodeClass::Transient);
        assert_eq!(WecomError::Transport("reset".into()).class(), ErrcodeClass::Transient);
        assert_eq!(WecomError::Http(502).class(), ErrcodeClass::Transient);
        assert_eq!(WecomError::Api { errcode: 45009, errmsg: String::new() }.class(), ErrcodeClass::RateLimited);
        assert_eq!(WecomError::Decode("x".into()).class(), ErrcodeClass::Final);
        assert_eq!(WecomError::AnswerLost("x".into()).class(), ErrcodeClass::Final);
    }

    #[test]
    fn grants_never_show_their_token_in_debug() {
        let grant = Grant { token: "very-secret-token".to_owned().into(), expires_in: 7200 };
        assert!(!format!("{grant:?}").contains("very-secret-token"));
    }

    #[test]
    fn urls_carry_the_token_under_the_parameter_name_of_its_type() {
        let client = WecomClient::new(Url::parse("http://127.0.0.1:9/").unwrap());
        let token: SecretString = "tok".to_owned().into();
        let url = client.url("cgi-bin/service/get_pre_auth_code", Some((TokenParam::Suite, &token)), &[]).unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:9/cgi-bin/service/get_pre_auth_code?suite_access_token=tok");
        let url = client.url("cgi-bin/x", Some((TokenParam::Provider, &token)), &[]).unwrap();
        assert_eq!(url.query(), Some("provider_access_token=tok"));
        let url = client.url("cgi-bin/x", Some((TokenParam::Corp, &token)), &[]).unwrap();
        assert_eq!(url.query(), Some("access_token=tok"));
    }
}
