//! Logging people in: members of an installed corp on the app's H5 pages (OAuth),
//! members from a browser (web login, with the suite of kind `login`), and the
//! provider's admins (get_login_info).
//!
//! Invariants: a login code is recorded (its SHA-256, never the code) in the
//! database before it is sent, so on every instance a second exchange is refused
//! without calling WeCom; the record is dropped only when the code certainly did not
//! reach WeCom. A user_ticket is used here and never leaves the service.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use secrecy::SecretString;
use serde::Serialize;
use sha2::{Digest, Sha256};
use url::Url;
use utoipa::ToSchema;

use crate::model::{CorpId, ProviderCorpId, SuiteId, SuiteKind, UserId};
use crate::registry::Registry;
use crate::store::{Db, StoreError, login_codes};
use crate::tokens::{TokenError, TokenKey, Tokens};
use crate::wecom::client::WecomError;
use crate::wecom::errcodes::{ErrcodeClass, SPENT_CODE_ERRCODES};
use crate::wecom::front::{CodeUser, LoginInfo, UserDetail};

const OAUTH_URL: &str = "https://open.weixin.qq.com/connect/oauth2/authorize";
const WEB_LOGIN_URL: &str = "https://login.work.weixin.qq.com/wwlogin/sso/login";
const MAX_CODE_BYTES: usize = 512;
const MAX_STATE_BYTES: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    #[error("suite {0} is not of kind {1}")]
    WrongSuiteKind(SuiteId, SuiteKind),
    #[error("this code was used already; codes are single use")]
    CodeUsed,
    #[error("WeCom does not know this code: it expired or was used elsewhere (codes live 5 minutes)")]
    CodeInvalid,
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(code: &'static str, message: impl Into<String>) -> LoginError {
    LoginError::Invalid { code, message: message.into() }
}

/// The OAuth scopes of a third-party app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthScope {
    /// Silent: who the member is.
    Base,
    /// With consent: also the member's detail.
    PrivateInfo,
}

impl OAuthScope {
    pub fn parse(text: Option<&str>) -> Result<Self, LoginError> {
        match text {
            None | Some("snsapi_base") => Ok(Self::Base),
            Some("snsapi_privateinfo") => Ok(Self::PrivateInfo),
            Some(_) => Err(invalid("invalid_scope", "scope must be snsapi_base or snsapi_privateinfo")),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Base => "snsapi_base",
            Self::PrivateInfo => "snsapi_privateinfo",
        }
    }
}

/// A member as an OAuth or web-login code names them.
#[derive(Debug, Serialize, ToSchema)]
pub struct CodeMember {
    pub corpid: Option<CorpId>,
    pub userid: Option<UserId>,
    pub open_userid: Option<String>,
    /// Only for someone who is not a member of the corp.
    pub openid: Option<String>,
    /// With snsapi_privateinfo consent; absent otherwise.
    pub detail: Option<UserDetail>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuthorizeUrl {
    pub url: String,
}

/// A code whose use is recorded, about to be sent.
struct Recorded {
    kind: CodeKind,
    owner: String,
    hash: String,
    code: SecretString,
}

/// Which kind of login a code belongs to: its single use is recorded per kind.
#[derive(Debug, Clone, Copy)]
enum CodeKind {
    OAuth,
    WebLogin,
    AdminLogin,
}

impl CodeKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::OAuth => "oauth",
            Self::WebLogin => "web_login",
            Self::AdminLogin => "admin_login",
        }
    }
}

pub struct Login {
    db: Db,
    registry: Arc<Registry>,
    tokens: Arc<Tokens>,
}

impl Login {
    pub fn new(db: Db, registry: Arc<Registry>, tokens: Arc<Tokens>) -> Self {
        Login { db, registry, tokens }
    }

    /// WeCom's OAuth URL for an H5 page of a third-party app (the suite id as appid).
    pub fn oauth_url(
        &self,
        suite_id: &SuiteId,
        redirect_uri: Option<&str>,
        scope: OAuthScope,
        state: Option<&str>,
    ) -> Result<AuthorizeUrl, LoginError> {
        self.suite_of_kind(suite_id, SuiteKind::ThirdParty)?;
        let (redirect_uri, state) = (checked_redirect(redirect_uri)?, checked_state(state)?);
        let mut url = Url::parse(OAUTH_URL).map_err(|e| invalid("invalid_redirect_uri", e.to_string()))?;
        url.query_pairs_mut()
            .append_pair("appid", suite_id.as_str())
            .append_pair("redirect_uri", redirect_uri.as_str())
            .append_pair("response_type", "code")
            .append_pair("scope", scope.as_str())
            .append_pair("state", state);
        url.set_fragment(Some("wechat_redirect"));
        Ok(AuthorizeUrl { url: url.into() })
    }

    /// WeCom's web-login URL (`login_type=ServiceApp`, the login suite as appid).
    pub fn web_login_url(
        &self,
        suite_id: &SuiteId,
        redirect_uri: Option<&str>,
        state: Option<&str>,
    ) -> Result<AuthorizeUrl, LoginError> {
        self.suite_of_kind(suite_id, SuiteKind::Login)?;
        let (redirect_uri, state) = (checked_redirect(redirect_uri)?, checked_state(state)?);
        let mut url = Url::parse(WEB_LOGIN_URL).map_err(|e| invalid("invalid_redirect_uri", e.to_string()))?;
        url.query_pairs_mut()
            .append_pair("login_type", "ServiceApp")
            .append_pair("appid", suite_id.as_str())
            .append_pair("redirect_uri", redirect_uri.as_str())
            .append_pair("state", state);
        Ok(AuthorizeUrl { url: url.into() })
    }

    /// Exchanges a member's OAuth code; with a user_ticket (snsapi_privateinfo)
    /// the member's detail is fetched too.
    pub async fn oauth_member(&self, suite_id: &SuiteId, code: &str) -> Result<CodeMember, LoginError> {
        self.suite_of_kind(suite_id, SuiteKind::ThirdParty)?;
        let user = self.exchange_member_code(CodeKind::OAuth, suite_id, code).await?;
        let detail = match &user.user_ticket {
            Some(ticket) => {
                let client = self.tokens.client();
                let fetched =
                    self.tokens
                        .call(&TokenKey::suite(suite_id), |token| async move {
                            client.getuserdetail3rd(&token, ticket).await
                        })
                        .await;
                match fetched {
                    Ok(detail) => Some(detail),
                    // The identity stands without the detail; the code is spent.
                    Err(error) => {
                        tracing::warn!(suite = %suite_id, %error, "getuserdetail3rd failed; answering without the detail");
                        None
                    }
                }
            }
            None => None,
        };
        Ok(member(user, detail))
    }

    /// Exchanges a web-login code with the login suite's token.
    pub async fn web_login_member(&self, suite_id: &SuiteId, code: &str) -> Result<CodeMember, LoginError> {
        self.suite_of_kind(suite_id, SuiteKind::Login)?;
        let user = self.exchange_member_code(CodeKind::WebLogin, suite_id, code).await?;
        Ok(member(user, None))
    }

    /// The provider admin's login: get_login_info with the provider token.
    pub async fn admin_login(
        &self,
        provider_corpid: &ProviderCorpId,
        auth_code: &str,
    ) -> Result<LoginInfo, LoginError> {
        if self.registry.provider(provider_corpid).is_none() {
            return Err(LoginError::Token(TokenError::Unknown("provider")));
        }
        let recorded = self.record(CodeKind::AdminLogin, provider_corpid.as_str(), auth_code).await?;
        let key = TokenKey::Provider { provider_corpid: provider_corpid.clone() };
        let (client, sent, code) = (self.tokens.client(), AtomicBool::new(false), &recorded.code);
        let result = self
            .tokens
            .call(&key, |token| {
                sent.store(true, Ordering::SeqCst);
                async move { client.get_login_info(&token, code).await }
            })
            .await;
        self.settle(recorded, result, sent.load(Ordering::SeqCst)).await
    }

    async fn exchange_member_code(
        &self,
        kind: CodeKind,
        suite_id: &SuiteId,
        code: &str,
    ) -> Result<CodeUser, LoginError> {
        let recorded = self.record(kind, suite_id.as_str(), code).await?;
        let (client, sent, code) = (self.tokens.client(), AtomicBool::new(false), &recorded.code);
        let result = self
            .tokens
            .call(&TokenKey::suite(suite_id), |token| {
                sent.store(true, Ordering::SeqCst);
                async move { client.getuserinfo3rd(&token, code).await }
            })
            .await;
        self.settle(recorded, result, sent.load(Ordering::SeqCst)).await
    }

    /// Records a code's single use before it is sent.
    async fn record(&self, kind: CodeKind, owner: &str, code: &str) -> Result<Recorded, LoginError> {
        if code.is_empty() || code.len() > MAX_CODE_BYTES || code.chars().any(char::is_control) {
            return Err(invalid("invalid_body", format!("code must be 1 to {MAX_CODE_BYTES} bytes")));
        }
        let recorded = Recorded {
            kind,
            owner: owner.to_owned(),
            hash: hex::encode(Sha256::digest(code.as_bytes())),
            code: SecretString::from(code.to_owned()),
        };
        let (o, h) = (recorded.owner.clone(), recorded.hash.clone());
        if !self.db.run(move |conn| login_codes::record(conn, kind.as_str(), &o, &h)).await? {
            return Err(LoginError::CodeUsed);
        }
        Ok(recorded)
    }

    /// The record stays unless the code certainly did not reach WeCom (never sent,
    /// no connection) or WeCom refused the token it came with (not applied).
    async fn settle<T>(&self, recorded: Recorded, result: Result<T, TokenError>, sent: bool) -> Result<T, LoginError> {
        let error = match result {
            Ok(value) => return Ok(value),
            Err(TokenError::Upstream(WecomError::Api { errcode, .. })) if SPENT_CODE_ERRCODES.contains(&errcode) => {
                return Err(LoginError::CodeInvalid);
            }
            Err(error) => error,
        };
        let unspent = !sent
            || matches!(&error, TokenError::Upstream(WecomError::Transport(_)))
            || matches!(&error, TokenError::Upstream(e) if e.class() == ErrcodeClass::BadToken);
        if unspent {
            let Recorded { kind, owner, hash, .. } = recorded;
            self.db.run(move |conn| login_codes::forget(conn, kind.as_str(), &owner, &hash)).await?;
        }
        Err(error.into())
    }

    fn suite_of_kind(&self, suite_id: &SuiteId, kind: SuiteKind) -> Result<(), LoginError> {
        match self.registry.suite(suite_id) {
            None => Err(LoginError::Token(TokenError::Unknown("suite"))),
            Some(suite) if suite.kind != kind => Err(LoginError::WrongSuiteKind(suite_id.clone(), kind)),
            Some(suite) if !suite.enabled => Err(LoginError::Token(TokenError::SuiteDisabled)),
            Some(_) => Ok(()),
        }
    }
}

fn member(user: CodeUser, detail: Option<UserDetail>) -> CodeMember {
    CodeMember {
        corpid: user.corpid(),
        userid: user.userid(),
        open_userid: user.open_userid,
        openid: user.openid,
        detail,
    }
}

fn checked_redirect(redirect_uri: Option<&str>) -> Result<Url, LoginError> {
    let problem = || invalid("invalid_redirect_uri", "redirect_uri must be an absolute http or https URL");
    let url = Url::parse(redirect_uri.ok_or_else(problem)?).map_err(|_| problem())?;
    if matches!(url.scheme(), "http" | "https") && url.has_host() { Ok(url) } else { Err(problem()) }
}

fn checked_state(state: Option<&str>) -> Result<&str, LoginError> {
    let state = state.unwrap_or_default();
    if state.len() <= MAX_STATE_BYTES && state.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(state)
    } else {
        Err(invalid("invalid_state", format!("state must be at most {MAX_STATE_BYTES} letters or digits")))
    }
}
