//! A stateful fake of WeCom's API on a random loopback port. It checks the secrets,
//! tickets, auth codes, permanent codes and tokens it issued (with WeCom's errcodes),
//! expires tokens on a clock the test moves, counts calls per endpoint, and injects
//! errcodes, HTTP 500s and delays on demand.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use wecom_provider::crypto::CallbackKeys;

use crate::helpers::Sealed;

#[path = "fake_wecom_front.rs"]
mod front;
#[path = "fake_wecom_licenses.rs"]
mod licenses;

#[derive(Debug, Clone)]
pub enum Injection {
    Errcode(i64),
    Http500,
    Delay(Duration),
    /// Waits, does the work (an auth code is spent), then answers HTTP 500: the
    /// answer is lost although WeCom acted.
    DelayThen500(Duration),
}

#[derive(Debug, Clone, PartialEq)]
enum TokenOwner {
    Provider(String),
    Suite(String),
    Corp { corpid: String, suite_id: String },
}

struct Issued {
    owner: TokenOwner,
    expires_at: i64,
}

#[derive(Clone)]
struct Authorization {
    suite_id: String,
    corpid: String,
    corp_name: String,
    agent_id: i64,
}

#[derive(Default)]
struct State {
    now: i64,
    token_lifetime: i64,
    providers: HashMap<String, String>,
    suite_secrets: HashMap<String, String>,
    suite_providers: HashMap<String, String>,
    /// Plaintext corpids with an authorization relation to every provider.
    plain_corps: HashSet<String>,
    /// (corpid, unionid) pairs that are customers of the corp.
    customers: HashSet<(String, String)>,
    /// pending_ids issued per (corpid, unionid).
    pending_ids: HashMap<(String, String), String>,
    /// How often each (endpoint, id) was converted.
    conversions: HashMap<(String, String), usize>,
    tickets: HashMap<String, HashSet<String>>,
    tokens: HashMap<String, Issued>,
    auth_codes: HashMap<String, (Authorization, bool)>,
    permanent_codes: HashMap<String, Authorization>,
    newest_permanent: HashMap<(String, String), String>,
    revoked_corps: HashSet<String>,
    corp_names: HashMap<String, String>,
    pre_auth_codes: HashSet<String>,
    session_auth_types: Vec<i64>,
    calls: HashMap<String, usize>,
    injections: HashMap<String, VecDeque<Injection>>,
    /// How often each auth code was presented to get_permanent_code, valid or not.
    code_presentations: HashMap<String, usize>,
    /// Requests being answered right now, and the most at once, per endpoint.
    in_flight: HashMap<String, usize>,
    most_in_flight: HashMap<String, usize>,
    /// Corps whose suite-token calls (get_auth_info) answer -1, system busy.
    busy_corps: HashSet<String>,
    serial: u64,
    issued_secrets: Vec<String>,
    licenses: licenses::Licenses,
    front: front::FrontState,
}

impl State {
    fn next(&mut self, prefix: &str) -> String {
        self.serial += 1;
        let value = format!("{prefix}-{:04}-{:08x}", self.serial, rand::random::<u32>());
        self.issued_secrets.push(value.clone());
        value
    }

    fn issue_token(&mut self, owner: TokenOwner, prefix: &str) -> Value {
        let token = self.next(prefix);
        let expires_at = self.now + self.token_lifetime;
        self.tokens.insert(token.clone(), Issued { owner, expires_at });
        json!({ "token": token, "expires_in": self.token_lifetime })
    }

    /// The provider and corp of a corp token.
    fn corp_of(&self, token: Option<&str>) -> Result<(String, String), Value> {
        match self.check_token(token, "corp")? {
            TokenOwner::Corp { corpid, suite_id } => {
                Ok((self.suite_providers.get(&suite_id).cloned().unwrap_or_default(), corpid))
            }
            _ => Err(error(40014, "invalid access_token")),
        }
    }

    fn count_conversion(&mut self, endpoint: &str, id: &str) {
        *self.conversions.entry((endpoint.to_owned(), id.to_owned())).or_default() += 1;
    }

    /// Checks a token of the given kind: unknown → invalid, past its time → expired.
    fn check_token(&self, token: Option<&str>, kind: &str) -> Result<TokenOwner, Value> {
        let (invalid, expired) = match kind {
            "suite" => (40082, 42009),
            "provider" => (40082, 42001),
            _ => (40014, 42001),
        };
        let issued = token.and_then(|t| self.tokens.get(t)).ok_or_else(|| error(invalid, "invalid access_token"))?;
        let matches_kind = matches!(
            (&issued.owner, kind),
            (TokenOwner::Suite(_), "suite") | (TokenOwner::Provider(_), "provider") | (TokenOwner::Corp { .. }, "corp")
        );
        if !matches_kind {
            return Err(error(invalid, "invalid access_token"));
        }
        if issued.expires_at <= self.now {
            return Err(error(expired, "access_token expired"));
        }
        Ok(issued.owner.clone())
    }
}

/// Where the fake delivers callbacks: the service's command URL of a suite.
pub struct CallbackTarget {
    pub url: String,
    pub suite_id: String,
    pub keys: CallbackKeys,
}

/// A ciphertext ID: a keyed hash of the provider and the plaintext, mixed case, so
/// two providers see different values and case matters.
fn cipher(prefix: &str, parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    format!("{prefix}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..18]))
}

fn error(errcode: i64, errmsg: &str) -> Value {
    json!({"errcode": errcode, "errmsg": errmsg})
}

#[derive(Clone)]
pub struct FakeWecom {
    pub base: String,
    state: Arc<Mutex<State>>,
    handle: actix_web::dev::ServerHandle,
}

impl FakeWecom {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(State { now: 1_700_000_000, token_lifetime: 7200, ..State::default() }));
        let shared = web::Data::new(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(shared.clone())
                .app_data(web::PayloadConfig::new(1 << 20))
                .default_service(web::to(handle))
        })
        .workers(1)
        .disable_signals()
        .bind("127.0.0.1:0")
        .expect("fake binds");
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        FakeWecom { base: format!("http://{addr}"), state, handle }
    }

    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("fake state lock")
    }

    pub fn add_provider(&self, corpid: &str, secret: &str) {
        self.lock().providers.insert(corpid.into(), secret.into());
    }

    pub fn add_suite(&self, provider_corpid: &str, suite_id: &str, secret: &str) {
        let mut state = self.lock();
        state.suite_secrets.insert(suite_id.into(), secret.into());
        state.suite_providers.insert(suite_id.into(), provider_corpid.into());
    }

    /// A plaintext corpid that corpid_to_opencorpid knows (others answer 48001).
    pub fn add_plain_corp(&self, corpid: &str) {
        self.lock().plain_corps.insert(corpid.into());
    }

    /// The WeChat user becomes a customer of the corp without a callback (before
    /// the test starts): unionid_to_external_userid answers an external_userid.
    pub fn add_customer(&self, corpid: &str, unionid: &str) {
        self.lock().customers.insert((corpid.into(), unionid.into()));
    }

    /// The WeChat user adds a member of the corp as a friend: WeCom pushes
    /// add_external_contact to the suite's command URL. Returns the external_userid.
    pub async fn add_friend(&self, target: &CallbackTarget, corpid: &str, unionid: &str, member: &str) -> String {
        let external_userid = {
            let mut state = self.lock();
            state.customers.insert((corpid.into(), unionid.into()));
            let provider = state.suite_providers.get(&target.suite_id).cloned().unwrap_or_default();
            cipher("wm", &[&provider, corpid, unionid])
        };
        let xml = format!(
            "<xml><SuiteId><![CDATA[{suite}]]></SuiteId><AuthCorpId><![CDATA[{corpid}]]></AuthCorpId><InfoType><![CDATA[change_external_contact]]></InfoType><TimeStamp>{ts}</TimeStamp><ChangeType><![CDATA[add_external_contact]]></ChangeType><UserID><![CDATA[{member}]]></UserID><ExternalUserID><![CDATA[{external_userid}]]></ExternalUserID><State><![CDATA[]]></State><WelcomeCode><![CDATA[WELCOMECODE]]></WelcomeCode></xml>",
            suite = target.suite_id,
            ts = 1_700_000_000 + rand::random::<u32>() % 1_000_000,
        );
        let sealed = Sealed::new(&target.keys, &target.suite_id, &xml);
        let response = reqwest::Client::new()
            .post(format!("{}?{}", target.url, sealed.query()))
            .body(sealed.body())
            .send()
            .await
            .expect("the service answers WeCom");
        assert_eq!(response.status().as_u16(), 200, "the friend-add callback is acknowledged");
        external_userid
    }

    /// How often an id was converted by an endpoint.
    pub fn times_converted(&self, endpoint: &str, id: &str) -> usize {
        self.lock().conversions.get(&(endpoint.to_owned(), id.to_owned())).copied().unwrap_or(0)
    }

    /// A ticket WeCom would push now; get_suite_token accepts it.
    pub fn new_ticket(&self, suite_id: &str) -> String {
        let mut state = self.lock();
        let ticket = state.next("ticket");
        state.tickets.entry(suite_id.into()).or_default().insert(ticket.clone());
        ticket
    }

    /// An auth code for `corpid` installing `suite_id` (single use).
    pub fn new_auth_code(&self, suite_id: &str, corpid: &str, corp_name: &str) -> String {
        let mut state = self.lock();
        let code = state.next("authcode");
        let auth = Authorization {
            suite_id: suite_id.into(),
            corpid: corpid.into(),
            corp_name: corp_name.into(),
            // WeCom keeps a corp's agentid for an app across installs.
            agent_id: 1_000_001
                + i64::from(u16::from_be_bytes(
                    Sha256::digest(format!("{suite_id}/{corpid}"))[..2].try_into().expect("two bytes"),
                )),
        };
        state.corp_names.insert(corpid.into(), corp_name.into());
        state.auth_codes.insert(code.clone(), (auth, false));
        code
    }

    pub fn rename_corp(&self, corpid: &str, name: &str) {
        self.lock().corp_names.insert(corpid.into(), name.into());
    }

    /// The corp cancels at WeCom: its permanent codes answer 40084 from now on.
    pub fn revoke(&self, corpid: &str) {
        self.lock().revoked_corps.insert(corpid.into());
    }

    /// The most requests to `endpoint` the fake was answering at the same time.
    pub fn most_in_flight(&self, endpoint: &str) -> usize {
        self.lock().most_in_flight.get(endpoint).copied().unwrap_or(0)
    }

    /// How often each auth code reached get_permanent_code.
    pub fn code_presentations(&self) -> HashMap<String, usize> {
        self.lock().code_presentations.clone()
    }

    /// The corp's get_auth_info answers -1 (system busy) until `busy` is false.
    pub fn set_busy(&self, corpid: &str, busy: bool) {
        let mut state = self.lock();
        if busy {
            state.busy_corps.insert(corpid.into());
        } else {
            state.busy_corps.remove(corpid);
        }
    }

    pub fn calls(&self, endpoint: &str) -> usize {
        self.lock().calls.get(endpoint).copied().unwrap_or(0)
    }

    pub fn inject(&self, endpoint: &str, injection: Injection) {
        self.lock().injections.entry(endpoint.into()).or_default().push_back(injection);
    }

    /// Moves WeCom's clock: tokens issued before expire on WeCom's side.
    pub fn advance(&self, seconds: i64) {
        self.lock().now += seconds;
    }

    pub fn set_token_lifetime(&self, seconds: i64) {
        self.lock().token_lifetime = seconds;
    }

    pub fn session_auth_types(&self) -> Vec<i64> {
        self.lock().session_auth_types.clone()
    }

    /// Every secret value the fake handed out (tokens, tickets, codes).
    pub fn issued_secrets(&self) -> Vec<String> {
        self.lock().issued_secrets.clone()
    }

    pub fn is_valid_token(&self, token: &str) -> bool {
        let state = self.lock();
        state.tokens.get(token).is_some_and(|t| t.expires_at > state.now)
    }
}

async fn handle(state: web::Data<Arc<Mutex<State>>>, request: HttpRequest, body: web::Bytes) -> HttpResponse {
    let endpoint = request.path().trim_start_matches("/cgi-bin/").to_owned();
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(request.query_string().as_bytes()).into_owned().collect();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let injection = {
        let mut state = state.lock().expect("fake state lock");
        *state.calls.entry(endpoint.clone()).or_default() += 1;
        if endpoint.ends_with("get_permanent_code") {
            let code = body["auth_code"].as_str().unwrap_or_default().to_owned();
            *state.code_presentations.entry(code).or_default() += 1;
        }
        let now = {
            let count = state.in_flight.entry(endpoint.clone()).or_default();
            *count += 1;
            *count
        };
        let most = state.most_in_flight.entry(endpoint.clone()).or_default();
        *most = (*most).max(now);
        state.injections.get_mut(&endpoint).and_then(VecDeque::pop_front)
    };
    let answer = answer(&state, &endpoint, &query, &body, injection).await;
    if let Some(count) = state.lock().expect("fake state lock").in_flight.get_mut(&endpoint) {
        *count -= 1;
    }
    answer
}

async fn answer(
    state: &web::Data<Arc<Mutex<State>>>,
    endpoint: &str,
    query: &HashMap<String, String>,
    body: &Value,
    injection: Option<Injection>,
) -> HttpResponse {
    let mut lose_answer = false;
    match injection {
        Some(Injection::Errcode(code)) => return HttpResponse::Ok().json(error(code, "injected")),
        Some(Injection::Http500) => return HttpResponse::InternalServerError().body("injected"),
        Some(Injection::Delay(delay)) => tokio::time::sleep(delay).await,
        Some(Injection::DelayThen500(delay)) => {
            tokio::time::sleep(delay).await;
            lose_answer = true;
        }
        None => {}
    }
    let mut state = state.lock().expect("fake state lock");
    let busy = body["auth_corpid"].as_str().is_some_and(|corp| state.busy_corps.contains(corp));
    if busy && endpoint.ends_with("get_auth_info") {
        return HttpResponse::Ok().json(error(-1, "system busy"));
    }
    let answer = route(&mut state, endpoint, query, body).unwrap_or_else(|e| e);
    let (pushes, sink) = licenses::take_pushes(&mut state);
    licenses::deliver(pushes, sink);
    if lose_answer {
        return HttpResponse::InternalServerError().body("injected after the work was done");
    }
    HttpResponse::Ok().json(answer)
}

fn route(state: &mut State, endpoint: &str, query: &HashMap<String, String>, body: &Value) -> Result<Value, Value> {
    let text = |field: &str| body[field].as_str().unwrap_or_default().to_owned();
    let token = |name: &str| query.get(name).map(String::as_str);
    match endpoint {
        "service/get_provider_token" => {
            let corpid = text("corpid");
            if state.providers.get(&corpid) != Some(&text("provider_secret")) {
                return Err(error(40001, "invalid provider_secret"));
            }
            let grant = state.issue_token(TokenOwner::Provider(corpid), "provider-token");
            Ok(json!({"provider_access_token": grant["token"], "expires_in": grant["expires_in"]}))
        }
        "service/get_suite_token" => {
            let suite_id = text("suite_id");
            if state.suite_secrets.get(&suite_id) != Some(&text("suite_secret")) {
                return Err(error(40001, "invalid suite_secret"));
            }
            if !state.tickets.get(&suite_id).is_some_and(|t| t.contains(&text("suite_ticket"))) {
                return Err(error(40085, "invalid suite_ticket"));
            }
            let grant = state.issue_token(TokenOwner::Suite(suite_id), "suite-token");
            Ok(json!({"suite_access_token": grant["token"], "expires_in": grant["expires_in"]}))
        }
        "service/get_pre_auth_code" => {
            state.check_token(token("suite_access_token"), "suite")?;
            let code = state.next("preauth");
            state.pre_auth_codes.insert(code.clone());
            Ok(json!({"errcode": 0, "errmsg": "ok", "pre_auth_code": code, "expires_in": 1200}))
        }
        "service/set_session_info" => {
            state.check_token(token("suite_access_token"), "suite")?;
            if !state.pre_auth_codes.contains(&text("pre_auth_code")) {
                return Err(error(42007, "pre_auth_code expired"));
            }
            let auth_type = body["session_info"]["auth_type"].as_i64().unwrap_or(-1);
            state.session_auth_types.push(auth_type);
            Ok(error(0, "ok"))
        }
        "service/get_corp_token" => {
            let TokenOwner::Suite(suite_id) = state.check_token(token("suite_access_token"), "suite")? else {
                unreachable!()
            };
            if suite_id.starts_with("dk") {
                return Err(error(48002, "api forbidden for customized apps"));
            }
            let auth = valid_permanent_code(state, &text("permanent_code"), &text("auth_corpid"))?;
            let grant =
                state.issue_token(TokenOwner::Corp { corpid: auth.corpid, suite_id: auth.suite_id }, "corp-token");
            Ok(json!({"access_token": grant["token"], "expires_in": grant["expires_in"]}))
        }
        "gettoken" => {
            let corpid = query.get("corpid").cloned().unwrap_or_default();
            let secret = query.get("corpsecret").cloned().unwrap_or_default();
            let auth = valid_permanent_code(state, &secret, &corpid).map_err(|_| error(40001, "invalid corpsecret"))?;
            if !auth.suite_id.starts_with("dk") {
                return Err(error(40001, "invalid corpsecret"));
            }
            let grant = state.issue_token(TokenOwner::Corp { corpid, suite_id: auth.suite_id }, "corp-token");
            Ok(json!({"errcode": 0, "errmsg": "ok", "access_token": grant["token"], "expires_in": grant["expires_in"]}))
        }
        "agent/get_admin_list" => {
            state.check_token(token("access_token"), "corp")?;
            let admins = state
                .front
                .admins
                .clone()
                .unwrap_or_else(|| json!([{"userid": "AdminUser", "open_userid": "woAdminOpen", "auth_type": 1}]));
            Ok(json!({"errcode": 0, "errmsg": "ok", "admin": admins}))
        }
        "service/corpid_to_opencorpid" => {
            let TokenOwner::Provider(provider) = state.check_token(token("provider_access_token"), "provider")? else {
                unreachable!()
            };
            let corpid = text("corpid");
            if !state.plain_corps.contains(&corpid) {
                return Err(error(48001, "api unauthorized"));
            }
            state.count_conversion(endpoint, &corpid);
            Ok(json!({"errcode": 0, "errmsg": "ok", "open_corpid": cipher("wp", &[&provider, &corpid])}))
        }
        "batch/userid_to_openuserid" => {
            let (provider, corpid) = state.corp_of(token("access_token"))?;
            let userids = list(body, "userid_list");
            if userids.len() > 1000 {
                return Err(error(40058, "userid_list exceeds 1000"));
            }
            let (mut converted, mut invalid) = (Vec::new(), Vec::new());
            for userid in userids {
                if userid.starts_with("bad") {
                    invalid.push(json!(userid));
                } else {
                    state.count_conversion(endpoint, &userid);
                    converted
                        .push(json!({"userid": userid, "open_userid": cipher("wo", &[&provider, &corpid, &userid])}));
                }
            }
            Ok(json!({"errcode": 0, "errmsg": "ok", "open_userid_list": converted, "invalid_userid_list": invalid}))
        }
        "externalcontact/get_new_external_userid" | "externalcontact/groupchat/get_new_external_userid" => {
            let (provider, corpid) = state.corp_of(token("access_token"))?;
            if endpoint.contains("groupchat") && text("chat_id").is_empty() {
                return Err(error(40050, "invalid chatid"));
            }
            let ids = list(body, "external_userid_list");
            if ids.len() > 1000 {
                return Err(error(40058, "external_userid_list exceeds 1000"));
            }
            let mut items = Vec::new();
            for id in ids.into_iter().filter(|id| !id.starts_with("bad")) {
                state.count_conversion(endpoint, &id);
                items.push(
                    json!({"external_userid": id, "new_external_userid": cipher("wm", &[&provider, &corpid, &id])}),
                );
            }
            Ok(json!({"errcode": 0, "errmsg": "ok", "items": items}))
        }
        "idconvert/unionid_to_external_userid" => {
            let (provider, corpid) = state.corp_of(token("access_token"))?;
            let (unionid, openid) = (text("unionid"), text("openid"));
            if unionid.is_empty() || openid.is_empty() || !matches!(body["subject_type"].as_i64(), Some(0 | 1)) {
                return Err(error(40058, "invalid parameter"));
            }
            let key = (corpid.clone(), unionid.clone());
            if state.customers.contains(&key) {
                return Ok(
                    json!({"errcode": 0, "errmsg": "ok", "external_userid": cipher("wm", &[&provider, &corpid, &unionid])}),
                );
            }
            let pending_id = match state.pending_ids.get(&key) {
                Some(pending_id) => pending_id.clone(),
                None => {
                    let pending_id = state.next("pending");
                    state.pending_ids.insert(key, pending_id.clone());
                    pending_id
                }
            };
            Ok(json!({"errcode": 0, "errmsg": "ok", "pending_id": pending_id}))
        }
        "idconvert/batch/external_userid_to_pending_id" => {
            let (provider, corpid) = state.corp_of(token("access_token"))?;
            let ids = list(body, "external_userid");
            if ids.len() > 100 {
                return Err(error(40058, "external_userid exceeds 100"));
            }
            let result: Vec<Value> = state
                .pending_ids
                .iter()
                .filter(|((corp, unionid), _)| {
                    *corp == corpid && ids.contains(&cipher("wm", &[&provider, corp, unionid]))
                })
                .map(|((corp, unionid), pending_id)| {
                    json!({"external_userid": cipher("wm", &[&provider, corp, unionid]), "pending_id": pending_id})
                })
                .collect();
            Ok(json!({"errcode": 0, "errmsg": "ok", "result": result}))
        }
        other => licenses::route(state, other, query, body).unwrap_or_else(|| front::route(state, other, query, body)),
    }
}

fn list(body: &Value, field: &str) -> Vec<String> {
    body[field]
        .as_array()
        .map(|ids| ids.iter().filter_map(|id| id.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

fn valid_permanent_code(state: &State, code: &str, corpid: &str) -> Result<Authorization, Value> {
    match state.permanent_codes.get(code) {
        // Only the newest permanent code of a corp and suite is valid: a reset replaces it.
        Some(auth)
            if auth.corpid == corpid
                && !state.revoked_corps.contains(corpid)
                && state.newest_permanent.get(&(auth.suite_id.clone(), auth.corpid.clone())).map(String::as_str)
                    == Some(code) =>
        {
            Ok(auth.clone())
        }
        _ => Err(error(40084, "invalid permanent_code")),
    }
}
