//! The client's front-door endpoints: member OAuth and web login
//! (getuserinfo3rd, getuserdetail3rd), the provider admin's login (get_login_info)
//! and the JS-SDK tickets. Login codes are single use: sent once, never retried.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::client::{Grant, TokenParam, WecomClient, WecomError, grant};
use crate::model::{CorpId, UserId};

/// Who a member OAuth or web-login code names. WeCom's legacy path spells the keys
/// `CorpId`/`UserId`; both spellings are read. A non-member has only `openid`.
#[derive(Deserialize)]
pub struct CodeUser {
    #[serde(default, alias = "CorpId", deserialize_with = "non_empty")]
    pub corpid: Option<String>,
    #[serde(default, alias = "UserId", deserialize_with = "non_empty")]
    pub userid: Option<String>,
    #[serde(default, alias = "OpenUserId", deserialize_with = "non_empty")]
    pub open_userid: Option<String>,
    #[serde(default, alias = "OpenId", deserialize_with = "non_empty")]
    pub openid: Option<String>,
    /// Only for snsapi_privateinfo; it never leaves the service.
    #[serde(default)]
    pub user_ticket: Option<SecretString>,
}

impl CodeUser {
    pub fn corpid(&self) -> Option<CorpId> {
        self.corpid.as_deref().map(CorpId::from)
    }

    pub fn userid(&self) -> Option<UserId> {
        self.userid.as_deref().map(UserId::from)
    }
}

/// A member's detail (getuserdetail3rd); mobile and email are not for third parties.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct UserDetail {
    #[serde(default)]
    pub name: String,
    /// "0" unknown, "1" male, "2" female (a string, as WeCom sends it).
    #[serde(default)]
    pub gender: String,
    #[serde(default)]
    pub avatar: String,
    #[serde(default)]
    pub qr_code: String,
}

/// The provider admin's login (get_login_info).
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct LoginInfo {
    /// 1 creator, 2 internal sysadmin, 3 external sysadmin, 4 分级管理员, 5 member.
    pub usertype: i64,
    // WeCom's own objects, passed through (null when WeCom left them out).
    #[serde(rename(deserialize = "user_info"), default)]
    #[schema(value_type = Option<Object>)]
    pub user: Value,
    #[serde(rename(deserialize = "corp_info"), default)]
    #[schema(value_type = Option<Object>)]
    pub corp: Value,
    #[serde(rename(deserialize = "agent"), default)]
    #[schema(value_type = Vec<Object>)]
    pub agents: Vec<Value>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub auth_info: Value,
}

fn non_empty<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.filter(|text| !text.is_empty()))
}

fn decode<T: for<'de> Deserialize<'de>>(answer: Value) -> Result<T, WecomError> {
    serde_json::from_value(answer).map_err(|e| WecomError::Decode(e.to_string()))
}

impl WecomClient {
    /// Exchanges a member's OAuth or web-login code (single use) with the token of
    /// the suite it was issued for.
    pub async fn getuserinfo3rd(
        &self,
        suite_token: &SecretString,
        code: &SecretString,
    ) -> Result<CodeUser, WecomError> {
        let url = self.url(
            "cgi-bin/service/auth/getuserinfo3rd",
            Some((TokenParam::Suite, suite_token)),
            &[("code", code.expose_secret())],
        )?;
        decode(self.spend_once(self.http.get(url)).await?)
    }

    pub async fn getuserdetail3rd(
        &self,
        suite_token: &SecretString,
        user_ticket: &SecretString,
    ) -> Result<UserDetail, WecomError> {
        let body = json!({"user_ticket": user_ticket.expose_secret()});
        decode(self.post("cgi-bin/service/auth/getuserdetail3rd", Some((TokenParam::Suite, suite_token)), &body).await?)
    }

    /// Exchanges the provider admin's login auth_code (single use).
    pub async fn get_login_info(
        &self,
        provider_token: &SecretString,
        auth_code: &SecretString,
    ) -> Result<LoginInfo, WecomError> {
        let url =
            self.url("cgi-bin/service/get_login_info", Some((TokenParam::ProviderAsAccessToken, provider_token)), &[])?;
        let body = json!({"auth_code": auth_code.expose_secret()});
        decode(self.spend_once(self.http.post(url).json(&body)).await?)
    }

    /// The corp's jsapi_ticket, for wx.config (corp token).
    pub async fn get_jsapi_ticket(&self, corp_token: &SecretString) -> Result<Grant, WecomError> {
        let answer = self.get("cgi-bin/get_jsapi_ticket", Some((TokenParam::Corp, corp_token)), &[]).await?;
        grant(&answer, "ticket")
    }

    /// The app's ticket, for wx.agentConfig (the same corp token).
    pub async fn get_agent_config_ticket(&self, corp_token: &SecretString) -> Result<Grant, WecomError> {
        let answer =
            self.get("cgi-bin/ticket/get", Some((TokenParam::Corp, corp_token)), &[("type", "agent_config")]).await?;
        grant(&answer, "ticket")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_spellings_of_the_code_answer_are_read() {
        let lower: CodeUser =
            decode(json!({"errcode": 0, "corpid": "wpC", "userid": "u1", "open_userid": "wo1"})).unwrap();
        let camel: CodeUser =
            decode(json!({"CorpId": "wpC", "UserId": "u1", "DeviceId": "", "open_userid": "wo1"})).unwrap();
        for user in [lower, camel] {
            assert_eq!(user.corpid().map(CorpId::into_string).as_deref(), Some("wpC"));
            assert_eq!(user.userid().map(UserId::into_string).as_deref(), Some("u1"));
            assert_eq!(user.open_userid.as_deref(), Some("wo1"));
        }
        let outsider: CodeUser = decode(json!({"openid": "oX", "userid": ""})).unwrap();
        assert_eq!((outsider.openid.as_deref(), outsider.userid), (Some("oX"), None));
    }
}
