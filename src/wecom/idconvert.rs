//! WeCom's ID-conversion endpoints (PROTOCOL.md §4.2): typed requests and answers
//! with WeCom's field names. Batch limits are the caller's to respect.

use secrecy::SecretString;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::client::{TokenParam, WecomClient, WecomError};
use crate::model::{ExternalUserId, PendingId};

/// Most userids or external_userids one conversion call takes.
pub const USERID_BATCH: usize = 1000;
/// WeCom suggests 200 external_userids a call (1000 at most).
pub const EXTERNAL_USERID_BATCH: usize = 200;
/// external_userid_to_pending_id takes at most 100 ids a call.
pub const PENDING_ID_BATCH: usize = 100;

#[derive(Debug, Deserialize)]
struct OpenCorpidAnswer {
    open_corpid: String,
}

#[derive(Debug, Deserialize)]
struct OpenUseridAnswer {
    #[serde(default)]
    open_userid_list: Vec<OpenUserid>,
    #[serde(default)]
    invalid_userid_list: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct OpenUserid {
    userid: String,
    open_userid: String,
}

#[derive(Debug, Deserialize)]
struct NewExternalUseridAnswer {
    #[serde(default)]
    items: Vec<NewExternalUserid>,
}

#[derive(Debug, Deserialize)]
struct NewExternalUserid {
    external_userid: String,
    new_external_userid: String,
}

/// `idconvert/unionid_to_external_userid`: exactly one of the two is set.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct UnionidAnswer {
    #[serde(default)]
    pub external_userid: Option<ExternalUserId>,
    #[serde(default)]
    pub pending_id: Option<PendingId>,
}

#[derive(Debug, Deserialize)]
struct PendingIdAnswer {
    #[serde(default)]
    result: Vec<PendingIdItem>,
}

#[derive(Debug, Deserialize)]
struct PendingIdItem {
    external_userid: ExternalUserId,
    pending_id: PendingId,
}

/// Converted pairs and the ids WeCom refused, with its reason.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Converted {
    pub pairs: Vec<(String, String)>,
    pub invalid: Vec<(String, String)>,
}

fn decode<T: DeserializeOwned>(answer: Value) -> Result<T, WecomError> {
    serde_json::from_value(answer).map_err(|error| WecomError::Decode(error.to_string()))
}

impl WecomClient {
    /// `service/corpid_to_opencorpid` (provider token): one corpid a call.
    pub async fn corpid_to_opencorpid(
        &self,
        provider_token: &SecretString,
        corpid: &str,
    ) -> Result<String, WecomError> {
        let answer = self
            .post(
                "cgi-bin/service/corpid_to_opencorpid",
                Some((TokenParam::Provider, provider_token)),
                &json!({"corpid": corpid}),
            )
            .await?;
        Ok(decode::<OpenCorpidAnswer>(answer)?.open_corpid)
    }

    /// `batch/userid_to_openuserid` (corp token), at most [`USERID_BATCH`] ids.
    pub async fn userid_to_openuserid(
        &self,
        corp_token: &SecretString,
        userids: &[String],
    ) -> Result<Converted, WecomError> {
        let answer = self
            .post(
                "cgi-bin/batch/userid_to_openuserid",
                Some((TokenParam::Corp, corp_token)),
                &json!({"userid_list": userids}),
            )
            .await?;
        let answer: OpenUseridAnswer = decode(answer)?;
        Ok(Converted {
            pairs: answer.open_userid_list.into_iter().map(|item| (item.userid, item.open_userid)).collect(),
            invalid: answer
                .invalid_userid_list
                .into_iter()
                .map(|userid| (userid, "invalid_userid: not a member visible to the app".to_owned()))
                .collect(),
        })
    }

    /// `externalcontact/get_new_external_userid`, or its groupchat variant when a
    /// chat_id is given (corp token). Ids WeCom does not answer for are invalid.
    pub async fn get_new_external_userid(
        &self,
        corp_token: &SecretString,
        external_userids: &[String],
        chat_id: Option<&str>,
    ) -> Result<Converted, WecomError> {
        let (path, body) = match chat_id {
            Some(chat_id) => (
                "cgi-bin/externalcontact/groupchat/get_new_external_userid",
                json!({"chat_id": chat_id, "external_userid_list": external_userids}),
            ),
            None => {
                ("cgi-bin/externalcontact/get_new_external_userid", json!({"external_userid_list": external_userids}))
            }
        };
        let answer: NewExternalUseridAnswer =
            decode(self.post(path, Some((TokenParam::Corp, corp_token)), &body).await?)?;
        let pairs: Vec<(String, String)> =
            answer.items.into_iter().map(|item| (item.external_userid, item.new_external_userid)).collect();
        let invalid = external_userids
            .iter()
            .filter(|id| !pairs.iter().any(|(source, _)| source == *id))
            .map(|id| (id.clone(), "not_converted: unknown to WeCom or its follow member is not visible".to_owned()))
            .collect();
        Ok(Converted { pairs, invalid })
    }

    /// `idconvert/unionid_to_external_userid` (corp token).
    pub async fn unionid_to_external_userid(
        &self,
        corp_token: &SecretString,
        unionid: &str,
        openid: &str,
        subject_type: i32,
    ) -> Result<UnionidAnswer, WecomError> {
        let body = json!({"unionid": unionid, "openid": openid, "subject_type": subject_type});
        decode(
            self.post("cgi-bin/idconvert/unionid_to_external_userid", Some((TokenParam::Corp, corp_token)), &body)
                .await?,
        )
    }

    /// `idconvert/batch/external_userid_to_pending_id` (corp token), at most
    /// [`PENDING_ID_BATCH`] ids: the pending_ids issued to this app for them.
    pub async fn external_userid_to_pending_id(
        &self,
        corp_token: &SecretString,
        external_userids: &[ExternalUserId],
    ) -> Result<Vec<(ExternalUserId, PendingId)>, WecomError> {
        let body = json!({"external_userid": external_userids});
        let answer: PendingIdAnswer = decode(
            self.post(
                "cgi-bin/idconvert/batch/external_userid_to_pending_id",
                Some((TokenParam::Corp, corp_token)),
                &body,
            )
            .await?,
        )?;
        Ok(answer.result.into_iter().map(|item| (item.external_userid, item.pending_id)).collect())
    }
}
