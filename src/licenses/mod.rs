//! Interface licenses (接口调用许可): what a provider bought for a corp, which member
//! holds which code until when, and the app's trial, kept in the database and
//! acted on from WeCom's license callbacks, the API and `licenses sync`.
//!
//! Invariants: corpids are the provider's (one state per provider and corp, shared
//! by its suites); a request that buys or binds is sent to WeCom once and what it
//! changed is read back from WeCom before it is stored; a WeCom refusal changes
//! nothing locally; every derived event (`license_paid`, `license_refunded`,
//! `license_activated`, `license_needed`, `license_expiring`) is written in the
//! transaction of the change it reports, once per identity, under every suite of
//! the provider the corp has authorized.

pub mod client;
pub mod errcodes;
pub mod sync;

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use self::client::{
    AccountCount, AccountDuration, Activation, ActiveAccount, AppOf, BatchActiveAccount, BatchTransferLicense, CorpOf,
    CreateNewOrder, LicenseClient, OrderIdOf, Page, SetAutoActiveStatus, Transfer, UserOf,
};
use crate::feed::rfc3339;
use crate::model::{CorpId, CorpStatus, EventId, ProviderCorpId, SuiteId, UserId};
use crate::registry::Registry;
use crate::store::events::NewEvent;
use crate::store::licenses::{self as store, AppState, BoundCode, CodeRow, OrderRow, Retire};
use crate::store::{Conn, Db, StoreError, StoreResult, corps, now_ms};
use crate::tokens::{TokenError, TokenKey, Tokens};
use crate::wecom::callback::{Fields, Message};
use crate::wecom::client::WecomError;

pub const LICENSE_PAID: &str = "license_paid";
pub const LICENSE_REFUNDED: &str = "license_refunded";
pub const LICENSE_ACTIVATED: &str = "license_activated";
pub const LICENSE_NEEDED: &str = "license_needed";
pub const LICENSE_EXPIRING: &str = "license_expiring";

/// The callbacks with a license effect: three on the provider's system-event URL,
/// `unlicensed_notify` on a suite's data URL (accepted on any URL all the same).
const CALLBACK_KINDS: [&str; 4] = ["license_pay_success", "license_refund", "auto_activate", "unlicensed_notify"];

/// The API's "expiring soon" window.
const EXPIRING_WINDOW_SECS: i64 = 30 * 86_400;
/// How often the expiry scan runs (and once at start).
const SCAN_EVERY: Duration = Duration::from_secs(3600);
/// WeCom's page size limit for license lists.
const PAGE_LIMIT: i64 = 1000;
/// The most items one batch call takes.
const MAX_BATCH: usize = 1000;
/// WeCom's limits on a new order.
const MAX_ACCOUNTS: i64 = 1_000_000;
const ORDER_DAYS: std::ops::RangeInclusive<i64> = 31..=1860;

/// Whether a callback kind has a license effect.
pub fn handles(message: &Message) -> bool {
    CALLBACK_KINDS.contains(&message.kind())
}

#[derive(Debug, thiserror::Error)]
pub enum LicenseError {
    /// WeCom refused with a license errcode: nothing was changed.
    #[error("{meaning}")]
    Refused { errcode: i64, errmsg: String, meaning: &'static str },
    #[error(transparent)]
    Token(TokenError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
    /// A request that buys or binds reached WeCom, maybe, but its answer did not.
    #[error(
        "WeCom's answer was lost; the request may have been applied: its callback or `licenses sync` will tell, do not repeat it blindly"
    )]
    AnswerLost,
}

impl From<TokenError> for LicenseError {
    fn from(error: TokenError) -> Self {
        match error {
            TokenError::Upstream(WecomError::Api { errcode, errmsg }) => match errcodes::meaning(errcode) {
                Some(meaning) => Self::Refused { errcode, errmsg, meaning },
                None => Self::Token(TokenError::Upstream(WecomError::Api { errcode, errmsg })),
            },
            TokenError::Upstream(WecomError::AnswerLost(cause)) => {
                tracing::warn!(%cause, "a license request's answer was lost");
                Self::AnswerLost
            }
            other => Self::Token(other),
        }
    }
}

/// The account type's name in our API: WeCom's `type` 1 and 2.
fn type_name(account_type: i32) -> &'static str {
    match account_type {
        1 => "base",
        2 => "external_contact",
        _ => "unknown",
    }
}

fn seconds_rfc3339(seconds: i64) -> String {
    rfc3339(seconds.saturating_mul(1000))
}

fn now_secs() -> i64 {
    now_ms() / 1000
}

/// One member's license, as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberLicense {
    pub userid: UserId,
    pub active_code: String,
    #[serde(rename = "type")]
    pub account_type: &'static str,
    pub active_time: Option<String>,
    pub expire_time: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Trial {
    pub start_time: String,
    pub end_time: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CodeCounts {
    /// Every code bought for the corp and not voided by a refund.
    pub bought: usize,
    pub active: usize,
    pub free: usize,
    pub expiring_within_30_days: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UnlicensedMember {
    pub userid: UserId,
    pub noticed_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LicensesView {
    pub suite_id: SuiteId,
    pub corpid: CorpId,
    /// 0: WeCom does not check licenses for this app; 1: it does.
    pub license_status: Option<i32>,
    pub trial: Option<Trial>,
    pub auto_active_status: Option<i32>,
    pub codes: CodeCounts,
    pub members: Vec<MemberLicense>,
    pub unlicensed: Vec<UnlicensedMember>,
}

/// The outcome of one item of an activation or transfer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ItemResult<T: Serialize> {
    #[serde(flatten)]
    pub item: T,
    pub errcode: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meaning: Option<&'static str>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Results<T: Serialize> {
    pub results: Vec<ItemResult<T>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AutoActive {
    pub auto_active_status: i32,
}

/// `POST …/licenses/orders`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderRequest {
    /// Plaintext userid of a provider-corp admin allowed to buy licenses.
    #[serde(default)]
    pub buyer_userid: Option<String>,
    #[serde(default)]
    pub base_count: i64,
    #[serde(default)]
    pub external_contact_count: i64,
    #[serde(default)]
    pub months: i64,
    #[serde(default)]
    pub days: i64,
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderView {
    pub order_id: Option<String>,
    pub corpid: CorpId,
    pub dry_run: bool,
    pub order_status: Option<i32>,
    pub account_count: AccountCount,
    pub account_duration: AccountDuration,
    /// months × 31 + days: what WeCom will charge for, per account.
    pub total_days: i64,
    pub price: Option<i64>,
}

pub struct Licenses {
    db: Db,
    tokens: Arc<Tokens>,
    registry: Arc<Registry>,
    client: LicenseClient,
    notice_days: i64,
}

impl Licenses {
    pub fn new(db: Db, tokens: Arc<Tokens>, registry: Arc<Registry>, notice_days: u32) -> Self {
        let client = LicenseClient::new(tokens.client().clone());
        Licenses { db, tokens, registry, client, notice_days: i64::from(notice_days) }
    }

    /// The suite's provider, once the corp is known to authorize the suite.
    async fn active_corp(&self, suite_id: &SuiteId, corpid: &CorpId) -> Result<ProviderCorpId, LicenseError> {
        let suite = self.registry.suite(suite_id).ok_or(LicenseError::Token(TokenError::Unknown("suite")))?;
        let (sid, cid) = (suite_id.clone(), corpid.clone());
        let corp = self
            .db
            .run(move |conn| corps::find(conn, &sid, &cid))
            .await?
            .ok_or(LicenseError::Token(TokenError::Unknown("corp")))?;
        if corp.status != CorpStatus::Active {
            return Err(LicenseError::Token(TokenError::CorpNotActive));
        }
        Ok(suite.provider_corpid.clone())
    }

    /// Calls WeCom with the provider token (refreshed once if WeCom rejects it).
    async fn call<T, F, Fut>(&self, provider: &ProviderCorpId, call: F) -> Result<T, LicenseError>
    where
        F: Fn(SecretString) -> Fut,
        Fut: Future<Output = Result<T, WecomError>>,
    {
        let key = TokenKey::Provider { provider_corpid: provider.clone() };
        Ok(self.tokens.call(&key, call).await?)
    }

    pub async fn overview(&self, suite_id: &SuiteId, corpid: &CorpId) -> Result<LicensesView, LicenseError> {
        let provider = self.active_corp(suite_id, corpid).await?;
        let mut stored = self.load(&provider, suite_id, corpid).await?;
        if stored.app.is_none() {
            self.refresh_app(&provider, suite_id, corpid).await?;
            stored = self.load(&provider, suite_id, corpid).await?;
        }
        let now = now_secs();
        let live = |code: &&CodeRow| code.status == store::CODE_BOUND && code.expire_time.is_some_and(|t| t > now);
        let active: Vec<&CodeRow> = stored.codes.iter().filter(live).collect();
        let codes = CodeCounts {
            bought: stored.codes.iter().filter(|c| c.order_id.is_some() && c.status != store::CODE_VOID).count(),
            active: active.len(),
            free: stored.codes.iter().filter(|c| c.status == store::CODE_UNBOUND).count(),
            expiring_within_30_days: active
                .iter()
                .filter(|c| c.expire_time.is_some_and(|t| t <= now + EXPIRING_WINDOW_SECS))
                .count(),
        };
        let members = active
            .iter()
            .filter_map(|code| {
                Some(MemberLicense {
                    userid: code.userid.clone()?,
                    active_code: code.active_code.clone(),
                    account_type: type_name(code.account_type),
                    active_time: code.active_time.map(seconds_rfc3339),
                    expire_time: code.expire_time.map(seconds_rfc3339),
                })
            })
            .collect();
        let app = stored.app.as_ref();
        Ok(LicensesView {
            suite_id: suite_id.clone(),
            corpid: corpid.clone(),
            license_status: app.map(|app| app.license_status),
            trial: app.filter(|app| app.trial_end_time > 0).map(|app| Trial {
                start_time: seconds_rfc3339(app.trial_start_time),
                end_time: seconds_rfc3339(app.trial_end_time),
            }),
            auto_active_status: app.and_then(|app| app.auto_active_status),
            codes,
            members,
            unlicensed: stored
                .unlicensed
                .into_iter()
                .map(|row| UnlicensedMember { userid: row.userid, noticed_at: rfc3339(row.noticed_at) })
                .collect(),
        })
    }

    async fn load(
        &self,
        provider: &ProviderCorpId,
        suite_id: &SuiteId,
        corpid: &CorpId,
    ) -> Result<store::CorpLicenses, LicenseError> {
        let (p, s, c) = (provider.clone(), suite_id.clone(), corpid.clone());
        Ok(self.db.run(move |conn| store::corp_licenses(conn, &p, &s, &c)).await?)
    }

    /// Reads and stores the app's license state (get_app_license_info).
    async fn refresh_app(
        &self,
        provider: &ProviderCorpId,
        suite_id: &SuiteId,
        corpid: &CorpId,
    ) -> Result<(), LicenseError> {
        let client = &self.client;
        let request = AppOf { corpid, suite_id };
        let request = &request;
        let info =
            self.call(provider, |token| async move { client.get_app_license_info(&token, request).await }).await?;
        let app = AppState {
            license_status: info.license_status,
            trial_start_time: info.trail_info.start_time,
            trial_end_time: info.trail_info.end_time,
            license_check_time: info.license_check_time,
        };
        let (s, c) = (suite_id.clone(), corpid.clone());
        self.db.run(move |conn| store::store_app(conn, &s, &c, &app)).await?;
        Ok(())
    }

    /// Binds codes to members: one pair with active_account, more with
    /// batch_active_account. A single refusal is the answer (409, nothing stored);
    /// in a batch, each item's errcode is reported and the bound ones are stored.
    pub async fn activate(
        &self,
        suite_id: &SuiteId,
        corpid: &CorpId,
        items: Vec<Activation>,
    ) -> Result<Results<Activation>, LicenseError> {
        check_batch(&items, "activations")?;
        if items.iter().any(|item| item.active_code.is_empty() || item.userid.as_str().is_empty()) {
            return Err(LicenseError::Invalid("every activation needs an active_code and a userid".into()));
        }
        let provider = self.active_corp(suite_id, corpid).await?;
        let client = &self.client;
        let outcomes: Vec<(Activation, i64)> = if let [item] = items.as_slice() {
            let request = ActiveAccount { active_code: &item.active_code, corpid, userid: &item.userid };
            let request = &request;
            self.call(&provider, |token| async move { client.active_account(&token, request).await }).await?;
            vec![(item.clone(), 0)]
        } else {
            let request = BatchActiveAccount { corpid, active_list: &items };
            let request = &request;
            let answer =
                self.call(&provider, |token| async move { client.batch_active_account(&token, request).await }).await?;
            let outcomes: Vec<(Activation, i64)> = answer
                .active_result
                .into_iter()
                .map(|r| (Activation { active_code: r.active_code, userid: r.userid }, r.errcode))
                .collect();
            refuse_if_all_failed(outcomes.iter().map(|(_, errcode)| *errcode))?;
            outcomes
        };
        for (item, errcode) in &outcomes {
            if *errcode == 0 {
                self.sync_member(&provider, corpid, &item.userid).await?;
            }
        }
        Ok(results(outcomes))
    }

    /// Moves licenses between members of a corp (batch_transfer_license).
    pub async fn transfer(
        &self,
        suite_id: &SuiteId,
        corpid: &CorpId,
        items: Vec<Transfer>,
    ) -> Result<Results<Transfer>, LicenseError> {
        check_batch(&items, "transfers")?;
        if items.iter().any(|item| item.handover_userid.as_str().is_empty() || item.takeover_userid.as_str().is_empty())
        {
            return Err(LicenseError::Invalid("every transfer needs a handover_userid and a takeover_userid".into()));
        }
        let provider = self.active_corp(suite_id, corpid).await?;
        let client = &self.client;
        let request = BatchTransferLicense { corpid, transfer_list: &items };
        let request = &request;
        let answer =
            self.call(&provider, |token| async move { client.batch_transfer_license(&token, request).await }).await?;
        let outcomes: Vec<(Transfer, i64)> = answer
            .transfer_result
            .into_iter()
            .map(|r| (Transfer { handover_userid: r.handover_userid, takeover_userid: r.takeover_userid }, r.errcode))
            .collect();
        refuse_if_all_failed(outcomes.iter().map(|(_, errcode)| *errcode))?;
        for (item, errcode) in &outcomes {
            if *errcode == 0 {
                // The receiver first: its read moves the code away from the giver.
                self.sync_member(&provider, corpid, &item.takeover_userid).await?;
                self.sync_member(&provider, corpid, &item.handover_userid).await?;
            }
        }
        Ok(results(outcomes))
    }

    /// Reads a member's codes from WeCom and stores them as all the member holds,
    /// with a `license_activated` event per code and expiry not reported before.
    async fn sync_member(
        &self,
        provider: &ProviderCorpId,
        corpid: &CorpId,
        userid: &UserId,
    ) -> Result<(), LicenseError> {
        let client = &self.client;
        let request = UserOf { corpid, userid };
        let request = &request;
        let answer =
            self.call(provider, |token| async move { client.get_active_info_by_user(&token, request).await }).await?;
        let codes: Vec<BoundCode> = answer
            .active_info_list
            .into_iter()
            .map(|code| BoundCode {
                active_code: code.active_code,
                account_type: code.account_type,
                userid: userid.clone(),
                active_time: code.active_time,
                expire_time: code.expire_time,
            })
            .collect();
        let (p, c, u) = (provider.clone(), corpid.clone(), userid.clone());
        self.db
            .run(move |conn| {
                let events = activation_events(conn, &p, &c, &codes, None)?;
                store::bind_codes(conn, &p, &c, &codes, Retire::OthersOf(&u), &events)
            })
            .await?;
        self.db.notify_appended();
        Ok(())
    }

    pub async fn auto_active(&self, suite_id: &SuiteId, corpid: &CorpId) -> Result<AutoActive, LicenseError> {
        let provider = self.active_corp(suite_id, corpid).await?;
        let client = &self.client;
        let request = CorpOf { corpid };
        let request = &request;
        let answer =
            self.call(&provider, |token| async move { client.get_auto_active_status(&token, request).await }).await?;
        self.store_auto_active(&provider, suite_id, corpid, answer.auto_active_status).await?;
        Ok(AutoActive { auto_active_status: answer.auto_active_status })
    }

    pub async fn set_auto_active(
        &self,
        suite_id: &SuiteId,
        corpid: &CorpId,
        status: i32,
    ) -> Result<AutoActive, LicenseError> {
        if !(0..=1).contains(&status) {
            return Err(LicenseError::Invalid("auto_active_status must be 0 (off) or 1 (on)".into()));
        }
        let provider = self.active_corp(suite_id, corpid).await?;
        let client = &self.client;
        let request = SetAutoActiveStatus { corpid, auto_active_status: status };
        let request = &request;
        self.call(&provider, |token| async move { client.set_auto_active_status(&token, request).await }).await?;
        self.store_auto_active(&provider, suite_id, corpid, status).await?;
        Ok(AutoActive { auto_active_status: status })
    }

    async fn store_auto_active(
        &self,
        provider: &ProviderCorpId,
        suite_id: &SuiteId,
        corpid: &CorpId,
        status: i32,
    ) -> Result<(), LicenseError> {
        let (s, c) = (suite_id.clone(), corpid.clone());
        if self.db.run(move |conn| store::app(conn, &s, &c)).await?.is_none() {
            self.refresh_app(provider, suite_id, corpid).await?;
        }
        let (s, c) = (suite_id.clone(), corpid.clone());
        self.db.run(move |conn| store::store_auto_active(conn, &s, &c, status)).await?;
        Ok(())
    }

    /// Buys accounts for a corp (create_new_order), or with `dry_run` only answers
    /// what it would buy. The order is read back and stored.
    pub async fn order(
        &self,
        suite_id: &SuiteId,
        corpid: &CorpId,
        request: OrderRequest,
    ) -> Result<OrderView, LicenseError> {
        let account_count =
            AccountCount { base_count: request.base_count, external_contact_count: request.external_contact_count };
        let account_duration = AccountDuration { months: request.months, days: request.days, new_expire_time: None };
        check_order(&account_count, &account_duration)?;
        let total_days = request.months * 31 + request.days;
        let provider = self.active_corp(suite_id, corpid).await?;
        let plan = OrderView {
            order_id: None,
            corpid: corpid.clone(),
            dry_run: request.dry_run,
            order_status: None,
            account_count,
            account_duration,
            total_days,
            price: None,
        };
        if request.dry_run {
            return Ok(plan);
        }
        let buyer = request.buyer_userid.filter(|buyer| !buyer.trim().is_empty()).ok_or_else(|| {
            LicenseError::Invalid("buyer_userid (a provider admin allowed to buy licenses) is required".into())
        })?;
        let client = &self.client;
        let create = CreateNewOrder { corpid, buyer_userid: &buyer, account_count, account_duration };
        let create = &create;
        let created =
            self.call(&provider, |token| async move { client.create_new_order(&token, create).await }).await?;
        let order = self.fetch_order(&provider, &created.order_id).await?;
        Ok(OrderView {
            order_id: Some(order.order_id),
            order_status: Some(order.order_status),
            price: Some(order.price),
            ..plan
        })
    }

    /// Reads an order (and, once paid, its codes) from WeCom and stores it; a paid
    /// order is reported once as `license_paid`.
    async fn fetch_order(&self, provider: &ProviderCorpId, order_id: &str) -> Result<OrderRow, LicenseError> {
        let client = &self.client;
        let request = OrderIdOf { order_id };
        let request = &request;
        let order = self.call(provider, |token| async move { client.get_order(&token, request).await }).await?.order;
        let paid = order.order_status == 1;
        // Codes exist only once the order is paid.
        let codes = if paid { self.order_codes(provider, order_id).await? } else { Vec::new() };
        let row = OrderRow {
            provider_corpid: provider.clone(),
            order_id: order.order_id,
            corpid: order.corpid,
            order_type: order.order_type,
            order_status: order.order_status,
            base_count: order.account_count.base_count,
            external_contact_count: order.account_count.external_contact_count,
            months: order.account_duration.months,
            days: order.account_duration.days,
            price: order.price,
            create_time: order.create_time,
            pay_time: order.pay_time,
            updated_at: now_ms(),
        };
        let stored = row.clone();
        self.db
            .run(move |conn| {
                let events = if paid {
                    let fields = json!({
                        "corpid": stored.corpid,
                        "order_id": stored.order_id,
                        "order_type": stored.order_type,
                        "account_count": {"base_count": stored.base_count, "external_contact_count": stored.external_contact_count},
                        "account_duration": {"months": stored.months, "days": stored.days},
                        "price": stored.price,
                        "codes": codes.len(),
                    });
                    derived(conn, &stored.provider_corpid, &stored.corpid, LICENSE_PAID, &[&stored.order_id], &fields)?
                } else {
                    Vec::new()
                };
                store::store_order(conn, &stored, &codes, &events)
            })
            .await?;
        self.db.notify_appended();
        Ok(row)
    }

    /// Every code of a paid buy order, page by page.
    async fn order_codes(&self, provider: &ProviderCorpId, order_id: &str) -> Result<Vec<(String, i32)>, LicenseError> {
        let client = &self.client;
        let mut codes = Vec::new();
        let mut cursor = String::new();
        loop {
            let page = Page { order_id: Some(order_id), corpid: None, limit: PAGE_LIMIT, cursor: &cursor };
            let page = &page;
            let answer =
                self.call(provider, |token| async move { client.list_order_account(&token, page).await }).await?;
            codes.extend(answer.account_list.into_iter().filter_map(|a| Some((a.active_code?, a.account_type))));
            if !answer.has_more || answer.next_cursor.is_empty() {
                return Ok(codes);
            }
            cursor = answer.next_cursor;
        }
    }

    /// The effect of a license callback; `Ok(false)`: not a license callback.
    pub async fn apply(
        &self,
        event_id: EventId,
        provider: &ProviderCorpId,
        fields: &Fields,
        message: &Message,
    ) -> Result<bool, LicenseError> {
        let text = |name: &str| fields.get(name).and_then(Value::as_str).filter(|v| !v.is_empty()).map(str::to_owned);
        let required = |name: &'static str| {
            text(name).ok_or_else(|| LicenseError::Invalid(format!("{} without <{name}>", message.kind())))
        };
        match message.kind() {
            "license_pay_success" => {
                self.fetch_order(provider, &required("OrderId")?).await?;
            }
            "license_refund" => {
                let order_id = required("OrderId")?;
                let corpid = CorpId::from(required("AuthCorpId")?);
                // 1: refunded; 2: the refund was refused.
                let refunded = text("OrderStatus").as_deref() == Some("1");
                let (p, id) = (provider.clone(), order_id.clone());
                self.db
                    .run(move |conn| {
                        let fields = json!({"corpid": corpid, "order_id": id, "refunded": refunded});
                        let status = if refunded { "refunded" } else { "rejected" };
                        let events = derived(conn, &p, &corpid, LICENSE_REFUNDED, &[&id, status], &fields)?;
                        store::settle_refund(conn, &p, &id, refunded, &events)
                    })
                    .await?;
                self.db.notify_appended();
            }
            "auto_activate" => {
                let corpid = CorpId::from(required("AuthCorpId")?);
                let active_time = text("TimeStamp").and_then(|t| t.parse().ok()).unwrap_or_else(now_secs);
                let scene = text("Scene");
                let accounts = auto_activated(fields.get("AccountList"), active_time);
                let retired: Vec<String> = accounts.iter().filter_map(|(_, previous)| previous.clone()).collect();
                let codes: Vec<BoundCode> = accounts.into_iter().map(|(code, _)| code).collect();
                let p = provider.clone();
                self.db
                    .run(move |conn| {
                        let events = activation_events(conn, &p, &corpid, &codes, scene.as_deref())?;
                        store::bind_codes(conn, &p, &corpid, &codes, Retire::Codes(&retired), &events)
                    })
                    .await?;
                self.db.notify_appended();
            }
            "unlicensed_notify" => {
                let corpid = CorpId::from(required("ToUserName")?);
                let userid = UserId::from(required("FromUserName")?);
                let p = provider.clone();
                self.db
                    .run(move |conn| {
                        let fields = json!({"corpid": corpid, "userid": userid});
                        let cause = event_id.to_string();
                        let events = derived(conn, &p, &corpid, LICENSE_NEEDED, &[&cause], &fields)?;
                        store::mark_unlicensed(conn, &p, &corpid, &userid, &events)
                    })
                    .await?;
                self.db.notify_appended();
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Appends `license_expiring` for every bound code and trial ending within the
    /// notice days, once per code (or trial), threshold and expiry time.
    pub async fn scan_expiring(&self) -> StoreResult<usize> {
        let days = self.notice_days;
        let until = now_secs() + days * 86_400;
        let noticed = self
            .db
            .run(move |conn| {
                let mut noticed = 0;
                for code in store::codes_expiring(conn, until)? {
                    let Some(expire_time) = code.expire_time else { continue };
                    let tag = format!("{days}:{expire_time}");
                    if code.expiry_notice.as_deref() == Some(tag.as_str()) {
                        continue;
                    }
                    let fields = json!({
                        "subject": "code",
                        "corpid": code.corpid,
                        "active_code": code.active_code,
                        "userid": code.userid,
                        "type": type_name(code.account_type),
                        "expire_time": seconds_rfc3339(expire_time),
                        "notice_days": days,
                    });
                    let identity = [code.active_code.as_str(), tag.as_str()];
                    let events =
                        derived(conn, &code.provider_corpid, &code.corpid, LICENSE_EXPIRING, &identity, &fields)?;
                    store::note_code_expiry(conn, &code.provider_corpid, &code.active_code, &tag, &events)?;
                    noticed += 1;
                }
                for app in store::trials_ending(conn, until)? {
                    let tag = format!("{days}:{}", app.trial_end_time);
                    if app.trial_notice.as_deref() == Some(tag.as_str()) {
                        continue;
                    }
                    let Some(suite) = crate::store::suites::find_suite(conn, &app.suite_id)? else { continue };
                    let fields = json!({
                        "subject": "trial",
                        "suite_id": app.suite_id,
                        "corpid": app.corpid,
                        "expire_time": seconds_rfc3339(app.trial_end_time),
                        "notice_days": days,
                    });
                    let event = NewEvent::derived(
                        &suite.provider_corpid,
                        &app.suite_id,
                        Some(&app.corpid),
                        LICENSE_EXPIRING,
                        &["trial", &tag],
                        fields,
                    );
                    store::note_trial_expiry(conn, &app.suite_id, &app.corpid, &tag, &[event])?;
                    noticed += 1;
                }
                Ok(noticed)
            })
            .await?;
        if noticed > 0 {
            self.db.notify_appended();
        }
        Ok(noticed)
    }

    /// The expiry scan at start, then hourly.
    pub fn spawn_expiry_scan(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let licenses = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SCAN_EVERY);
            loop {
                tick.tick().await;
                if let Err(error) = licenses.scan_expiring().await {
                    tracing::warn!(%error, "license expiry scan failed; retrying within the hour");
                }
            }
        })
    }
}

/// The items of auto_activate's `AccountList` (one element or repeated), each with
/// the code it replaced.
fn auto_activated(list: Option<&Value>, active_time: i64) -> Vec<(BoundCode, Option<String>)> {
    let items: Vec<&Value> = match list {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(item @ Value::Object(_)) => vec![item],
        _ => Vec::new(),
    };
    items
        .into_iter()
        .filter_map(|item| {
            let text = |name: &str| item.get(name).and_then(Value::as_str).filter(|v| !v.is_empty());
            let number = |name: &str| text(name).and_then(|v| v.trim().parse::<i64>().ok());
            let code = BoundCode {
                active_code: text("ActiveCode")?.to_owned(),
                account_type: i32::try_from(number("Type")?).ok()?,
                userid: UserId::from(text("UserId")?),
                active_time,
                expire_time: number("ExpireTime")?,
            };
            let previous = text("PreviousActiveCode").filter(|p| *p != code.active_code).map(str::to_owned);
            Some((code, previous))
        })
        .collect()
}

/// A derived event of a provider-wide change under each suite the corp authorizes.
fn derived(
    conn: &mut Conn,
    provider: &ProviderCorpId,
    corpid: &CorpId,
    kind: &str,
    identity: &[&str],
    fields: &Value,
) -> StoreResult<Vec<NewEvent>> {
    Ok(store::active_suites(conn, provider, corpid)?
        .iter()
        .map(|suite_id| {
            let mut fields = fields.clone();
            fields["suite_id"] = json!(suite_id);
            NewEvent::derived(provider, suite_id, Some(corpid), kind, identity, fields)
        })
        .collect())
}

/// `license_activated` per code, once per code, holder and expiry (a transfer
/// hands the code to a new holder).
fn activation_events(
    conn: &mut Conn,
    provider: &ProviderCorpId,
    corpid: &CorpId,
    codes: &[BoundCode],
    scene: Option<&str>,
) -> StoreResult<Vec<NewEvent>> {
    let mut events = Vec::new();
    for code in codes {
        let fields = json!({
            "corpid": corpid,
            "userid": code.userid,
            "active_code": code.active_code,
            "type": type_name(code.account_type),
            "expire_time": seconds_rfc3339(code.expire_time),
            "scene": scene,
        });
        let expiry = code.expire_time.to_string();
        let identity = [code.active_code.as_str(), code.userid.as_str(), expiry.as_str()];
        events.extend(derived(conn, provider, corpid, LICENSE_ACTIVATED, &identity, &fields)?);
    }
    Ok(events)
}

fn check_batch<T>(items: &[T], what: &str) -> Result<(), LicenseError> {
    if items.is_empty() || items.len() > MAX_BATCH {
        return Err(LicenseError::Invalid(format!("give 1 to {MAX_BATCH} {what}")));
    }
    Ok(())
}

fn check_order(count: &AccountCount, duration: &AccountDuration) -> Result<(), LicenseError> {
    let counts = [count.base_count, count.external_contact_count];
    if counts.iter().any(|n| !(0..=MAX_ACCOUNTS).contains(n)) || counts == [0, 0] {
        return Err(LicenseError::Invalid(format!(
            "base_count and external_contact_count must be 0 to {MAX_ACCOUNTS}, not both 0"
        )));
    }
    let total = duration.months.saturating_mul(31).saturating_add(duration.days);
    if duration.months < 0 || duration.days < 0 || !ORDER_DAYS.contains(&total) {
        return Err(LicenseError::Invalid(format!(
            "months × 31 + days must be {} to {} days",
            ORDER_DAYS.start(),
            ORDER_DAYS.end()
        )));
    }
    Ok(())
}

/// A batch in which every item failed changed nothing: answered as its first refusal.
fn refuse_if_all_failed(errcodes: impl Iterator<Item = i64>) -> Result<(), LicenseError> {
    let codes: Vec<i64> = errcodes.collect();
    match codes.first() {
        Some(&first) if codes.iter().all(|code| *code != 0) => Err(LicenseError::Refused {
            errcode: first,
            errmsg: String::new(),
            meaning: errcodes::meaning(first).unwrap_or("refused by WeCom"),
        }),
        _ => Ok(()),
    }
}

fn results<T: Serialize>(outcomes: Vec<(T, i64)>) -> Results<T> {
    Results {
        results: outcomes
            .into_iter()
            .map(|(item, errcode)| ItemResult {
                item,
                errcode,
                meaning: (errcode != 0).then(|| errcodes::meaning(errcode).unwrap_or("refused by WeCom")),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_outside_wecoms_limits_are_refused_before_any_call() {
        let duration = |months, days| AccountDuration { months, days, new_expire_time: None };
        let count = |base_count, external_contact_count| AccountCount { base_count, external_contact_count };
        assert!(check_order(&count(1, 0), &duration(1, 0)).is_ok());
        assert!(check_order(&count(0, 0), &duration(1, 0)).is_err());
        assert!(check_order(&count(1_000_001, 0), &duration(1, 0)).is_err());
        assert!(check_order(&count(1, 0), &duration(0, 30)).is_err());
        assert!(check_order(&count(0, 5), &duration(60, 0)).is_ok());
        assert!(check_order(&count(0, 5), &duration(60, 1)).is_err());
    }

    #[test]
    fn auto_activate_accounts_parse_one_or_many_with_the_code_they_replace() {
        let one = json!({"ActiveCode": "LC2", "Type": "1", "ExpireTime": "1900000000", "UserId": "u1",
                         "PreviousStatus": "2", "PreviousActiveCode": "LC1"});
        let parsed = auto_activated(Some(&one), 5);
        assert_eq!(parsed.len(), 1);
        assert_eq!((parsed[0].0.active_code.as_str(), parsed[0].0.expire_time), ("LC2", 1_900_000_000));
        assert_eq!(parsed[0].1.as_deref(), Some("LC1"));
        let many = json!([one, {"ActiveCode": "LC3", "Type": "2", "ExpireTime": "1", "UserId": "u2"}]);
        assert_eq!(auto_activated(Some(&many), 5).len(), 2);
        assert!(auto_activated(Some(&json!("")), 5).is_empty());
    }

    #[test]
    fn a_batch_fails_whole_only_when_every_item_did() {
        assert!(refuse_if_all_failed([0, 701003].into_iter()).is_ok());
        let Err(LicenseError::Refused { errcode, .. }) = refuse_if_all_failed([701003, 701082].into_iter()) else {
            panic!("refused")
        };
        assert_eq!(errcode, 701003);
    }
}
