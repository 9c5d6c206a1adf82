//! The fake's license endpoints (`license/*`), all checked against the provider
//! token it issued: orders (a test corp's are paid at once, with their codes),
//! codes and their binding rules with WeCom's 701xxx errcodes (already bound,
//! another corp's, the 20-days-left rule, the 5-year cap), transfers, the
//! auto-activation switch and the app's trial. It pushes the four license
//! callbacks, encrypted, to the service's real URLs: `license_pay_success`,
//! `license_refund` and `auto_activate` to the provider's system-event URL,
//! `unlicensed_notify` to the suite's data URL.
//!
//! Times are the wall clock's (the service compares expiries with it).

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};

use super::{FakeWecom, State, TokenOwner, error};
use crate::helpers::{PROVIDER_CORPID, Sealed, provider_keys, suite_keys};

const DAY: i64 = 86_400;
/// Stacked validity may not pass five years (701030).
const MAX_STACKED_DAYS: i64 = 1860;
/// A member may take a new code of a type only within the last 20 days of the old one (701082).
const RENEW_WINDOW_DAYS: i64 = 20;
const TRIAL_DAYS: i64 = 90;

fn now() -> i64 {
    i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs())
        .expect("seconds fit")
}

struct Order {
    corpid: String,
    status: i64,
    base_count: i64,
    external_contact_count: i64,
    months: i64,
    days: i64,
    create_time: i64,
    pay_time: i64,
    codes: Vec<String>,
}

#[derive(Clone)]
struct Code {
    corpid: String,
    account_type: i64,
    /// 1 unbound, 2 bound, 5 merged, 0 void (refunded).
    status: i64,
    userid: Option<String>,
    create_time: i64,
    active_time: i64,
    expire_time: i64,
    /// Days it grants once bound.
    days: i64,
}

/// Where the fake delivers license callbacks.
struct Sink {
    base: String,
    suite_id: String,
}

#[derive(Default)]
pub(super) struct Licenses {
    test_corps: HashSet<String>,
    orders: HashMap<String, Order>,
    codes: HashMap<String, Code>,
    auto_active: HashMap<String, i64>,
    trial_start: HashMap<String, i64>,
    /// When a member last handed a license over, per (corp, member).
    handed_over: HashMap<(String, String), i64>,
    /// Callbacks produced by API calls, delivered once the answer is written.
    outbox: Vec<Push>,
    sink: Option<Sink>,
    serial: u64,
}

/// A callback to deliver: to the provider URL, or to the data URL as `corpid`.
pub(super) struct Push {
    data_corpid: Option<String>,
    plaintext: String,
}

impl Licenses {
    fn next(&mut self, prefix: &str) -> String {
        self.serial += 1;
        format!("{prefix}{:06}", self.serial)
    }

    /// The member's bound, unexpired code of a type.
    fn held(&self, corpid: &str, userid: &str, account_type: i64) -> Option<(String, Code)> {
        self.codes
            .iter()
            .find(|(_, c)| {
                c.corpid == corpid
                    && c.status == 2
                    && c.userid.as_deref() == Some(userid)
                    && c.account_type == account_type
                    && c.expire_time > now()
            })
            .map(|(id, c)| (id.clone(), c.clone()))
    }

    /// WeCom's activation rules; Ok binds the code.
    fn activate(&mut self, corpid: &str, code_id: &str, userid: &str) -> Result<(), i64> {
        let code = self.codes.get(code_id).filter(|c| c.corpid == corpid).cloned().ok_or(701021_i64)?;
        match code.status {
            1 => {}
            2 => return Err(701003),
            _ => return Err(701021),
        }
        if now() - code.create_time > 365 * DAY {
            return Err(701012);
        }
        let mut expire_time = now() + code.days * DAY;
        let previous = self.held(corpid, userid, code.account_type);
        if let Some((_, old)) = &previous {
            let left = old.expire_time - now();
            if left > RENEW_WINDOW_DAYS * DAY {
                return Err(701082);
            }
            expire_time += left;
            if expire_time - now() > MAX_STACKED_DAYS * DAY {
                return Err(701030);
            }
        }
        if let Some((old_id, _)) = previous {
            self.codes.get_mut(&old_id).expect("held code").status = 5;
        }
        let bound = self.codes.get_mut(code_id).expect("checked code");
        bound.status = 2;
        bound.userid = Some(userid.to_owned());
        bound.active_time = now();
        bound.expire_time = expire_time;
        Ok(())
    }

    fn transfer(&mut self, corpid: &str, from: &str, to: &str) -> Result<(), i64> {
        let held: Vec<(String, Code)> =
            [1, 2].into_iter().filter_map(|account_type| self.held(corpid, from, account_type)).collect();
        if held.is_empty() {
            return Err(701016);
        }
        if self.handed_over.get(&(corpid.to_owned(), from.to_owned())).is_some_and(|at| now() - at < 30 * DAY) {
            return Err(701017);
        }
        for (_, code) in &held {
            if let Some((_, theirs)) = self.held(corpid, to, code.account_type)
                && theirs.expire_time - now() > RENEW_WINDOW_DAYS * DAY
            {
                return Err(701018);
            }
        }
        for (id, _) in held {
            self.codes.get_mut(&id).expect("held code").userid = Some(to.to_owned());
        }
        self.handed_over.insert((corpid.to_owned(), from.to_owned()), now());
        Ok(())
    }

    fn code_info(&self, id: &str, code: &Code) -> Value {
        json!({
            "active_code": id, "type": code.account_type, "status": code.status, "userid": code.userid,
            "create_time": code.create_time, "active_time": code.active_time, "expire_time": code.expire_time,
        })
    }

    fn pay(&mut self, order_id: &str) {
        let Some(order) = self.orders.get(order_id) else { return };
        if order.status != 0 {
            return;
        }
        let (corpid, days) = (order.corpid.clone(), order.months * 31 + order.days);
        let counts = [(1, order.base_count), (2, order.external_contact_count)];
        let mut codes = Vec::new();
        for (account_type, count) in counts {
            for _ in 0..count {
                let id = self.next("LC");
                let code = Code {
                    corpid: corpid.clone(),
                    account_type,
                    status: 1,
                    userid: None,
                    create_time: now(),
                    active_time: 0,
                    expire_time: 0,
                    days,
                };
                self.codes.insert(id.clone(), code);
                codes.push(id);
            }
        }
        let order = self.orders.get_mut(order_id).expect("known order");
        order.status = 1;
        order.pay_time = now();
        order.codes = codes;
        self.auto_active.entry(corpid.clone()).or_insert(0);
        self.outbox.push(Push {
            data_corpid: None,
            plaintext: format!(
                "<xml><ServiceCorpId><![CDATA[{PROVIDER_CORPID}]]></ServiceCorpId><InfoType><![CDATA[license_pay_success]]></InfoType><AuthCorpId><![CDATA[{corpid}]]></AuthCorpId><OrderId><![CDATA[{order_id}]]></OrderId><BuyerUserId><![CDATA[boss]]></BuyerUserId><TimeStamp>{}</TimeStamp></xml>",
                now()
            ),
        });
    }
}

/// One page holding everything (the fake never pages).
fn page(field: &str, items: Vec<Value>) -> Result<Value, Value> {
    let mut answer = json!({"errcode": 0, "errmsg": "ok", "has_more": 0, "next_cursor": ""});
    answer[field] = json!(items);
    Ok(answer)
}

/// The license endpoints; `None` for any other endpoint.
pub(super) fn route(
    state: &mut State,
    endpoint: &str,
    query: &HashMap<String, String>,
    body: &Value,
) -> Option<Result<Value, Value>> {
    let name = endpoint.strip_prefix("license/")?;
    Some(answer(state, name, query, body))
}

fn answer(state: &mut State, name: &str, query: &HashMap<String, String>, body: &Value) -> Result<Value, Value> {
    let TokenOwner::Provider(_) =
        state.check_token(query.get("provider_access_token").map(String::as_str), "provider")?
    else {
        return Err(error(40082, "invalid provider_access_token"));
    };
    let text = |field: &str| body[field].as_str().unwrap_or_default().to_owned();
    let number = |value: &Value| value.as_i64().unwrap_or(0);
    let corpid = text("corpid");
    let authorized = state.newest_permanent.keys().any(|(_, corp)| *corp == corpid);
    let cancelled = state.revoked_corps.contains(&corpid);
    let licenses = &mut state.licenses;
    let ok = |mut value: Value| {
        value["errcode"] = json!(0);
        value["errmsg"] = json!("ok");
        Ok(value)
    };
    match name {
        "create_new_order" => {
            if !authorized || cancelled {
                return Err(error(701015, "corp has no valid authorization"));
            }
            let (base_count, external_contact_count) = (
                number(&body["account_count"]["base_count"]),
                number(&body["account_count"]["external_contact_count"]),
            );
            let (months, days) =
                (number(&body["account_duration"]["months"]), number(&body["account_duration"]["days"]));
            if text("buyer_userid").is_empty() {
                return Err(error(40003, "invalid buyer_userid"));
            }
            let test = licenses.test_corps.contains(&corpid);
            if test && (months != 1 || days != 0 || base_count + external_contact_count > 1000) {
                return Err(error(701027, "test corp order limits"));
            }
            let order_id = licenses.next("OI");
            let order = Order {
                corpid: corpid.clone(),
                status: 0,
                base_count,
                external_contact_count,
                months,
                days,
                create_time: now(),
                pay_time: 0,
                codes: Vec::new(),
            };
            licenses.orders.insert(order_id.clone(), order);
            if test {
                licenses.pay(&order_id);
            }
            ok(json!({"order_id": order_id}))
        }
        "get_order" => {
            let order_id = text("order_id");
            let order = licenses.orders.get(&order_id).ok_or_else(|| error(701005, "invalid order"))?;
            ok(json!({"order": {
                "order_id": order_id, "order_type": 1, "order_status": order.status, "corpid": order.corpid,
                "price": 0,
                "account_count": {"base_count": order.base_count, "external_contact_count": order.external_contact_count},
                "account_duration": {"months": order.months, "days": order.days},
                "create_time": order.create_time, "pay_time": order.pay_time,
            }}))
        }
        "list_order_account" => {
            let order = licenses.orders.get(&text("order_id")).ok_or_else(|| error(701005, "invalid order"))?;
            let accounts: Vec<Value> = order
                .codes
                .iter()
                .map(|id| json!({"active_code": id, "type": licenses.codes[id].account_type}))
                .collect();
            page("account_list", accounts)
        }
        "active_account" => match licenses.activate(&corpid, &text("active_code"), &text("userid")) {
            Ok(()) => ok(json!({})),
            Err(errcode) => Err(error(errcode, "activation refused")),
        },
        "batch_active_account" => {
            let items = body["active_list"].as_array().cloned().unwrap_or_default();
            let results: Vec<Value> = items
                .iter()
                .map(|item| {
                    let (code, userid) =
                        (item["active_code"].as_str().unwrap_or_default(), item["userid"].as_str().unwrap_or_default());
                    let errcode = licenses.activate(&corpid, code, userid).err().unwrap_or(0);
                    json!({"active_code": code, "userid": userid, "errcode": errcode})
                })
                .collect();
            ok(json!({"active_result": results}))
        }
        "get_active_info_by_code" => {
            let id = text("active_code");
            let code =
                licenses.codes.get(&id).filter(|c| c.corpid == corpid).ok_or_else(|| error(701021, "bad code"))?;
            ok(json!({"active_info": licenses.code_info(&id, code)}))
        }
        "get_active_info_by_user" => {
            let userid = text("userid");
            let held: Vec<Value> = [1, 2]
                .into_iter()
                .filter_map(|account_type| licenses.held(&corpid, &userid, account_type))
                .map(|(id, code)| licenses.code_info(&id, &code))
                .collect();
            ok(json!({"active_status": i64::from(!held.is_empty()), "active_info_list": held}))
        }
        "list_actived_account" => {
            let accounts: Vec<Value> = licenses
                .codes
                .values()
                .filter(|c| c.corpid == corpid && c.status == 2)
                .map(|c| json!({"userid": c.userid, "type": c.account_type, "active_time": c.active_time, "expire_time": c.expire_time}))
                .collect();
            page("account_list", accounts)
        }
        "list_order" => {
            let orders: Vec<Value> = licenses
                .orders
                .iter()
                .filter(|(_, o)| o.corpid == corpid)
                .map(|(id, _)| json!({"order_id": id, "order_type": 1}))
                .collect();
            page("order_list", orders)
        }
        "batch_transfer_license" => {
            let items = body["transfer_list"].as_array().cloned().unwrap_or_default();
            let results: Vec<Value> = items
                .iter()
                .map(|item| {
                    let (from, to) = (
                        item["handover_userid"].as_str().unwrap_or_default(),
                        item["takeover_userid"].as_str().unwrap_or_default(),
                    );
                    let errcode = licenses.transfer(&corpid, from, to).err().unwrap_or(0);
                    json!({"handover_userid": from, "takeover_userid": to, "errcode": errcode})
                })
                .collect();
            ok(json!({"transfer_result": results}))
        }
        "get_auto_active_status" | "set_auto_active_status" => {
            let Some(current) = licenses.auto_active.get_mut(&corpid) else {
                return Err(error(701071, "never bought for this corp"));
            };
            if name == "set_auto_active_status" {
                let status = number(&body["auto_active_status"]);
                if !(0..=1).contains(&status) {
                    return Err(error(701070, "bad auto_active_status"));
                }
                *current = status;
            }
            let status = *current;
            ok(json!({"auto_active_status": status}))
        }
        "get_app_license_info" => {
            if licenses.test_corps.contains(&corpid) {
                // Test corps have no trial.
                return ok(
                    json!({"license_status": 1, "trail_info": {"start_time": 0, "end_time": 0}, "license_check_time": now()}),
                );
            }
            let start = *licenses.trial_start.entry(corpid).or_insert_with(now);
            ok(json!({
                "license_status": 1,
                "trail_info": {"start_time": start, "end_time": start + TRIAL_DAYS * DAY},
                "license_check_time": start,
            }))
        }
        _ => Err(error(404, "no such fake license endpoint")),
    }
}

/// Callbacks the last call produced, for [`deliver`] once the lock is released.
pub(super) fn take_pushes(state: &mut State) -> (Vec<Push>, Option<(String, String)>) {
    let licenses = &mut state.licenses;
    let sink = licenses.sink.as_ref().map(|sink| (sink.base.clone(), sink.suite_id.clone()));
    (std::mem::take(&mut licenses.outbox), sink)
}

/// Seals and posts callbacks to the service, as WeCom would (in the background).
pub(super) fn deliver(pushes: Vec<Push>, sink: Option<(String, String)>) {
    let Some((base, suite_id)) = sink else { return };
    if pushes.is_empty() {
        return;
    }
    tokio::spawn(async move {
        for push in pushes {
            post(&base, &suite_id, &push).await;
        }
    });
}

async fn post(base: &str, suite_id: &str, push: &Push) -> u16 {
    let (path, keys, receive_id) = match &push.data_corpid {
        Some(corpid) => (format!("/callback/{suite_id}/data"), suite_keys(), corpid.clone()),
        None => (format!("/callback/provider/{PROVIDER_CORPID}"), provider_keys(), PROVIDER_CORPID.to_owned()),
    };
    let sealed = Sealed::new(&keys, &receive_id, &push.plaintext);
    let url = format!("{base}{path}?{}", sealed.query());
    let response = reqwest::Client::new().post(url).body(sealed.body()).send().await.expect("callback delivered");
    response.status().as_u16()
}

impl FakeWecom {
    /// License callbacks go to the service at `base` (its seeded suite's data URL).
    pub fn push_license_callbacks_to(&self, base: &str, suite_id: &str) {
        self.lock().licenses.sink = Some(Sink { base: base.to_owned(), suite_id: suite_id.to_owned() });
    }

    /// A test corp: orders are free and paid at once; no trial.
    pub fn add_test_corp(&self, corpid: &str) {
        self.lock().licenses.test_corps.insert(corpid.to_owned());
    }

    /// Pays an order as the admin console would (pushes license_pay_success).
    pub fn pay_order(&self, order_id: &str) {
        let (pushes, sink) = {
            let mut state = self.lock();
            state.licenses.pay(order_id);
            take_pushes(&mut state)
        };
        deliver(pushes, sink);
    }

    /// The order's WeCom status.
    pub fn order_status(&self, order_id: &str) -> Option<i64> {
        self.lock().licenses.orders.get(order_id).map(|order| order.status)
    }

    /// The unbound codes of a corp, oldest first.
    pub fn free_codes(&self, corpid: &str) -> Vec<String> {
        let state = self.lock();
        let mut codes: Vec<String> = state
            .licenses
            .codes
            .iter()
            .filter(|(_, c)| c.corpid == corpid && c.status == 1)
            .map(|(id, _)| id.clone())
            .collect();
        codes.sort();
        codes
    }

    /// The order is refunded (status 5), its unused codes void; pushes license_refund.
    pub async fn refund(&self, order_id: &str) -> u16 {
        let (corpid, sink) = {
            let mut state = self.lock();
            let licenses = &mut state.licenses;
            let order = licenses.orders.get_mut(order_id).expect("known order");
            order.status = 5;
            let (corpid, codes) = (order.corpid.clone(), order.codes.clone());
            for code in codes {
                if let Some(code) = licenses.codes.get_mut(&code).filter(|c| c.status == 1) {
                    code.status = 0;
                }
            }
            (corpid, take_pushes(&mut state).1)
        };
        let plaintext = format!(
            "<xml><ServiceCorpId><![CDATA[{PROVIDER_CORPID}]]></ServiceCorpId><InfoType><![CDATA[license_refund]]></InfoType><AuthCorpId><![CDATA[{corpid}]]></AuthCorpId><OrderId><![CDATA[{order_id}]]></OrderId><OrderStatus>1</OrderStatus><TimeStamp>{}</TimeStamp></xml>",
            now()
        );
        self.push_now(sink, Push { data_corpid: None, plaintext }).await
    }

    /// A member without a license opens the app: bound with a free code and `auto_activate` pushed when
    /// auto-activation is on; otherwise `unlicensed_notify` to the data URL.
    pub async fn member_opens_app(&self, corpid: &str, userid: &str) -> u16 {
        let (push, sink) = {
            let mut state = self.lock();
            let licenses = &mut state.licenses;
            let free = licenses
                .codes
                .iter()
                .filter(|(_, c)| c.corpid == corpid && c.status == 1 && c.account_type == 1)
                .map(|(id, _)| id.clone())
                .min();
            let auto = licenses.auto_active.get(corpid) == Some(&1);
            let push = match free.filter(|_| auto) {
                Some(code) => {
                    licenses.activate(corpid, &code, userid).expect("a free code binds");
                    let expire_time = licenses.codes[&code].expire_time;
                    Push {
                        data_corpid: None,
                        plaintext: format!(
                            "<xml><ServiceCorpId><![CDATA[{PROVIDER_CORPID}]]></ServiceCorpId><InfoType><![CDATA[auto_activate]]></InfoType><AuthCorpId><![CDATA[{corpid}]]></AuthCorpId><Scene>1</Scene><TimeStamp>{}</TimeStamp><AccountList><ActiveCode><![CDATA[{code}]]></ActiveCode><Type>1</Type><ExpireTime>{expire_time}</ExpireTime><UserId><![CDATA[{userid}]]></UserId><PreviousStatus>1</PreviousStatus></AccountList></xml>",
                            now()
                        ),
                    }
                }
                None => Push {
                    data_corpid: Some(corpid.to_owned()),
                    plaintext: format!(
                        "<xml><ToUserName><![CDATA[{corpid}]]></ToUserName><FromUserName><![CDATA[{userid}]]></FromUserName><CreateTime>{}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[unlicensed_notify]]></Event><AgentID>1</AgentID></xml>",
                        now()
                    ),
                },
            };
            (push, take_pushes(&mut state).1)
        };
        self.push_now(sink, push).await
    }

    async fn push_now(&self, sink: Option<(String, String)>, push: Push) -> u16 {
        let (base, suite_id) = sink.expect("push_license_callbacks_to was called");
        post(&base, &suite_id, &push).await
    }
}
