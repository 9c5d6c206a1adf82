//! Typed client of WeCom's license endpoints (`license/*`), every one called with
//! the provider token. Requests and answers carry WeCom's own field names, its
//! misspellings included (`trail_info`, `list_actived_account`).
//!
//! Reads are retried like every other call; a request that buys (create_new_order,
//! submit_order_job) or changes a binding (activation, transfer, share, cancel) is
//! sent once: a lost answer is reported as lost, never sent again.

use secrecy::SecretString;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::model::{CorpId, SuiteId, UserId};
use crate::wecom::client::{TokenParam, WecomClient, WecomError};

/// How many of each account type an order buys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccountCount {
    #[serde(default)]
    pub base_count: i64,
    #[serde(default)]
    pub external_contact_count: i64,
}

/// How long: `months` × 31 + `days` days, or (renewals) up to `new_expire_time`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccountDuration {
    #[serde(default)]
    pub months: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub days: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_expire_time: Option<i64>,
}

fn is_zero(value: &i64) -> bool {
    *value == 0
}

/// WeCom writes list flags as 0/1 in some answers and as booleans in others.
fn flag<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag {
        Bool(bool),
        Int(i64),
    }
    Ok(match Option::<Flag>::deserialize(deserializer)? {
        Some(Flag::Bool(value)) => value,
        Some(Flag::Int(value)) => value != 0,
        None => false,
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct CreateNewOrder<'a> {
    pub corpid: &'a CorpId,
    pub buyer_userid: &'a str,
    pub account_count: AccountCount,
    pub account_duration: AccountDuration,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OrderCreated {
    pub order_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountRef {
    pub userid: UserId,
    #[serde(rename = "type")]
    pub account_type: i32,
}

#[derive(Debug, Clone, Serialize)]
pub struct CreateRenewOrderJob<'a> {
    pub corpid: &'a CorpId,
    pub account_list: &'a [AccountRef],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jobid: Option<&'a str>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InvalidAccount {
    pub errcode: i64,
    #[serde(default)]
    pub errmsg: String,
    pub userid: UserId,
    #[serde(rename = "type")]
    pub account_type: i32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RenewJob {
    pub jobid: String,
    #[serde(default)]
    pub invalid_account_list: Vec<InvalidAccount>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SubmitOrderJob<'a> {
    pub jobid: &'a str,
    pub buyer_userid: &'a str,
    pub account_duration: AccountDuration,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ListOrder<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub corpid: Option<&'a CorpId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OrderRef {
    pub order_id: String,
    #[serde(default)]
    pub order_type: i32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OrderList {
    #[serde(default)]
    pub order_list: Vec<OrderRef>,
    #[serde(default, deserialize_with = "flag")]
    pub has_more: bool,
    #[serde(default)]
    pub next_cursor: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct OrderIdOf<'a> {
    pub order_id: &'a str,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Order {
    pub order_id: String,
    #[serde(default)]
    pub order_type: i32,
    #[serde(default)]
    pub order_status: i32,
    pub corpid: CorpId,
    #[serde(default)]
    pub price: i64,
    #[serde(default)]
    pub account_count: AccountCount,
    #[serde(default)]
    pub account_duration: AccountDuration,
    #[serde(default)]
    pub create_time: i64,
    #[serde(default)]
    pub pay_time: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OrderDetail {
    pub order: Order,
}

#[derive(Debug, Clone, Serialize)]
pub struct Page<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub corpid: Option<&'a CorpId>,
    pub limit: i64,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub cursor: &'a str,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OrderAccount {
    /// Buy orders list codes; renew orders list members.
    #[serde(default)]
    pub active_code: Option<String>,
    #[serde(default)]
    pub userid: Option<UserId>,
    #[serde(rename = "type")]
    pub account_type: i32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OrderAccounts {
    #[serde(default)]
    pub account_list: Vec<OrderAccount>,
    #[serde(default, deserialize_with = "flag")]
    pub has_more: bool,
    #[serde(default)]
    pub next_cursor: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CancelOrder<'a> {
    pub corpid: &'a CorpId,
    pub order_id: &'a str,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Activation {
    pub active_code: String,
    pub userid: UserId,
}

#[derive(Debug, Clone, Serialize)]
pub struct ActiveAccount<'a> {
    pub active_code: &'a str,
    pub corpid: &'a CorpId,
    pub userid: &'a UserId,
}

#[derive(Debug, Clone, Serialize)]
pub struct BatchActiveAccount<'a> {
    pub corpid: &'a CorpId,
    pub active_list: &'a [Activation],
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActivationResult {
    pub active_code: String,
    pub userid: UserId,
    #[serde(default)]
    pub errcode: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BatchActivated {
    #[serde(default)]
    pub active_result: Vec<ActivationResult>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CodeOf<'a> {
    pub corpid: &'a CorpId,
    pub active_code: &'a str,
}

#[derive(Debug, Clone, Serialize)]
pub struct CodesOf<'a> {
    pub corpid: &'a CorpId,
    pub active_code_list: &'a [String],
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MergeInfo {
    #[serde(default)]
    pub to_active_code: Option<String>,
    #[serde(default)]
    pub from_active_code: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShareInfo {
    #[serde(default)]
    pub to_corpid: Option<CorpId>,
    #[serde(default)]
    pub from_corpid: Option<CorpId>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ActiveInfo {
    pub active_code: String,
    #[serde(rename = "type")]
    pub account_type: i32,
    pub status: i32,
    #[serde(default)]
    pub userid: Option<UserId>,
    #[serde(default)]
    pub create_time: i64,
    #[serde(default)]
    pub active_time: i64,
    #[serde(default)]
    pub expire_time: i64,
    #[serde(default)]
    pub merge_info: Option<MergeInfo>,
    #[serde(default)]
    pub share_info: Option<ShareInfo>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CodeInfo {
    pub active_info: ActiveInfo,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CodesInfo {
    #[serde(default)]
    pub active_info_list: Vec<ActiveInfo>,
    #[serde(default)]
    pub invalid_active_code_list: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ActivedAccount {
    pub userid: UserId,
    #[serde(rename = "type")]
    pub account_type: i32,
    #[serde(default)]
    pub expire_time: i64,
    #[serde(default)]
    pub active_time: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ActivedAccounts {
    #[serde(default)]
    pub account_list: Vec<ActivedAccount>,
    #[serde(default, deserialize_with = "flag")]
    pub has_more: bool,
    #[serde(default)]
    pub next_cursor: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct UserOf<'a> {
    pub corpid: &'a CorpId,
    pub userid: &'a UserId,
}

#[derive(Debug, Clone, Deserialize)]
pub struct UserCode {
    pub active_code: String,
    #[serde(rename = "type")]
    pub account_type: i32,
    #[serde(default)]
    pub active_time: i64,
    #[serde(default)]
    pub expire_time: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct UserActiveInfo {
    #[serde(default)]
    pub active_status: i32,
    #[serde(default)]
    pub active_info_list: Vec<UserCode>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Transfer {
    pub handover_userid: UserId,
    pub takeover_userid: UserId,
}

#[derive(Debug, Clone, Serialize)]
pub struct BatchTransferLicense<'a> {
    pub corpid: &'a CorpId,
    pub transfer_list: &'a [Transfer],
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TransferResult {
    pub handover_userid: UserId,
    pub takeover_userid: UserId,
    #[serde(default)]
    pub errcode: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Transferred {
    #[serde(default)]
    pub transfer_result: Vec<TransferResult>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SharedCode<'a> {
    pub active_code: &'a str,
}

#[derive(Debug, Clone, Serialize)]
pub struct BatchShareActiveCode<'a> {
    pub from_corpid: &'a CorpId,
    pub to_corpid: &'a CorpId,
    pub share_list: &'a [SharedCode<'a>],
    pub corp_link_type: i32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ShareFailure {
    pub active_code: String,
    #[serde(default)]
    pub errcode: i64,
    #[serde(default)]
    pub errmsg: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Shared {
    /// Failures only.
    #[serde(default)]
    pub share_result: Vec<ShareFailure>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CorpOf<'a> {
    pub corpid: &'a CorpId,
}

#[derive(Debug, Clone, Serialize)]
pub struct SetAutoActiveStatus<'a> {
    pub corpid: &'a CorpId,
    pub auto_active_status: i32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AutoActiveStatus {
    #[serde(default)]
    pub auto_active_status: i32,
}

#[derive(Debug, Clone, Serialize)]
pub struct AppOf<'a> {
    pub corpid: &'a CorpId,
    pub suite_id: &'a SuiteId,
}

/// The free trial, as WeCom spells it.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct TrailInfo {
    #[serde(default)]
    pub start_time: i64,
    #[serde(default)]
    pub end_time: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AppLicenseInfo {
    #[serde(default)]
    pub license_status: i32,
    #[serde(default)]
    pub trail_info: TrailInfo,
    #[serde(default)]
    pub license_check_time: i64,
}

/// An answer with nothing but `errcode`/`errmsg`.
#[derive(Debug, Clone, Deserialize)]
pub struct Done {}

/// How a request may be sent.
#[derive(Clone, Copy)]
enum Sending {
    /// A read: retried on busy, 5xx and network failures.
    Retried,
    /// Buys or changes something: sent once.
    Once,
}

/// The license endpoints over one [`WecomClient`].
#[derive(Clone)]
pub struct LicenseClient {
    wecom: WecomClient,
}

/// One typed method per endpoint: its path, request, answer and how it is sent.
macro_rules! endpoints {
    ($($(#[$doc:meta])* $name:ident($request:ty) -> $answer:ty, $sending:ident;)+) => {
        impl LicenseClient {
            $(
                $(#[$doc])*
                pub async fn $name(&self, token: &SecretString, request: &$request) -> Result<$answer, WecomError> {
                    self.call(concat!("cgi-bin/license/", stringify!($name)), token, request, Sending::$sending).await
                }
            )+
        }
    };
}

endpoints! {
    /// Buys new accounts; answers the unpaid order (test corps: paid at once).
    create_new_order(CreateNewOrder<'_>) -> OrderCreated, Once;
    /// Adds members to renew to a job (a new one, or `jobid`'s).
    create_renew_order_job(CreateRenewOrderJob<'_>) -> RenewJob, Once;
    /// Turns a renew job into an order.
    submit_order_job(SubmitOrderJob<'_>) -> OrderCreated, Once;
    list_order(ListOrder<'_>) -> OrderList, Retried;
    get_order(OrderIdOf<'_>) -> OrderDetail, Retried;
    /// The codes (buy orders) or members (renew orders) of a paid order.
    list_order_account(Page<'_>) -> OrderAccounts, Retried;
    cancel_order(CancelOrder<'_>) -> Done, Once;
    active_account(ActiveAccount<'_>) -> Done, Once;
    batch_active_account(BatchActiveAccount<'_>) -> BatchActivated, Once;
    get_active_info_by_code(CodeOf<'_>) -> CodeInfo, Retried;
    batch_get_active_info_by_code(CodesOf<'_>) -> CodesInfo, Retried;
    /// The corp's activated accounts, expired ones included.
    list_actived_account(Page<'_>) -> ActivedAccounts, Retried;
    get_active_info_by_user(UserOf<'_>) -> UserActiveInfo, Retried;
    batch_transfer_license(BatchTransferLicense<'_>) -> Transferred, Once;
    batch_share_active_code(BatchShareActiveCode<'_>) -> Shared, Once;
    get_auto_active_status(CorpOf<'_>) -> AutoActiveStatus, Retried;
    set_auto_active_status(SetAutoActiveStatus<'_>) -> Done, Once;
    get_app_license_info(AppOf<'_>) -> AppLicenseInfo, Retried;
}

impl LicenseClient {
    pub fn new(wecom: WecomClient) -> Self {
        LicenseClient { wecom }
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        token: &SecretString,
        body: &B,
        sending: Sending,
    ) -> Result<T, WecomError> {
        let token = Some((TokenParam::Provider, token));
        let answer = match sending {
            Sending::Retried => self.wecom.post(path, token, body).await?,
            Sending::Once => self.wecom.post_once(path, token, body).await?,
        };
        serde_json::from_value(answer).map_err(|e| WecomError::Decode(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn answers_parse_with_wecoms_names_and_flags_of_either_shape() {
        let info: AppLicenseInfo = serde_json::from_value(json!({
            "errcode": 0, "license_status": 1, "license_check_time": 1700000000,
            "trail_info": {"start_time": 1690000000, "end_time": 1697776000}
        }))
        .unwrap();
        assert_eq!((info.license_status, info.trail_info.end_time), (1, 1697776000));
        let page: OrderAccounts = serde_json::from_value(json!({
            "account_list": [{"active_code": "LC1", "type": 2}], "has_more": 1, "next_cursor": "c"
        }))
        .unwrap();
        assert!(page.has_more);
        assert_eq!(page.account_list[0].account_type, 2);
        let page: ActivedAccounts = serde_json::from_value(json!({"has_more": false})).unwrap();
        assert!(!page.has_more && page.account_list.is_empty());
    }

    #[test]
    fn requests_carry_wecoms_field_names() {
        let corpid = CorpId::from("wpcorp");
        let order = CreateNewOrder {
            corpid: &corpid,
            buyer_userid: "boss",
            account_count: AccountCount { base_count: 2, external_contact_count: 0 },
            account_duration: AccountDuration { months: 1, ..AccountDuration::default() },
        };
        assert_eq!(
            serde_json::to_value(&order).unwrap(),
            json!({"corpid": "wpcorp", "buyer_userid": "boss",
                   "account_count": {"base_count": 2, "external_contact_count": 0},
                   "account_duration": {"months": 1}})
        );
        let page = Page { order_id: None, corpid: Some(&corpid), limit: 1000, cursor: "" };
        assert_eq!(serde_json::to_value(&page).unwrap(), json!({"corpid": "wpcorp", "limit": 1000}));
    }
}
