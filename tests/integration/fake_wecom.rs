//! A stateful fake of WeCom's API on a random loopback port. It checks the secrets,
//! tickets, auth codes, permanent codes and tokens it issued (with WeCom's errcodes),
//! expires tokens on a clock the test moves, counts calls per endpoint, and injects
//! errcodes, HTTP 500s and delays on demand.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub enum Injection {
    Errcode(i64),
    Http500,
    Delay(Duration),
}

#[derive(Debug, Clone, PartialEq)]
enum TokenOwner {
    Provider(String),
    Suite(String),
    Corp { corpid: String },
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
    serial: u64,
    issued_secrets: Vec<String>,
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

    pub fn add_suite(&self, suite_id: &str, secret: &str) {
        self.lock().suite_secrets.insert(suite_id.into(), secret.into());
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
            agent_id: 1_000_000 + i64::try_from(state.serial).expect("small serial"),
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
    let injection = {
        let mut state = state.lock().expect("fake state lock");
        *state.calls.entry(endpoint.clone()).or_default() += 1;
        state.injections.get_mut(&endpoint).and_then(VecDeque::pop_front)
    };
    match injection {
        Some(Injection::Errcode(code)) => return HttpResponse::Ok().json(error(code, "injected")),
        Some(Injection::Http500) => return HttpResponse::InternalServerError().body("injected"),
        Some(Injection::Delay(delay)) => tokio::time::sleep(delay).await,
        None => {}
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut state = state.lock().expect("fake state lock");
    let answer = route(&mut state, &endpoint, &query, &body).unwrap_or_else(|e| e);
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
        "service/get_permanent_code" => {
            let TokenOwner::Suite(suite_id) = state.check_token(token("suite_access_token"), "suite")? else {
                unreachable!()
            };
            let code = text("auth_code");
            let auth = match state.auth_codes.get_mut(&code) {
                Some((auth, used)) if !*used && auth.suite_id == suite_id => {
                    *used = true;
                    auth.clone()
                }
                _ => return Err(error(40078, "invalid auth_code")),
            };
            let permanent_code = state.next("permanent-code");
            state.permanent_codes.insert(permanent_code.clone(), auth.clone());
            state.newest_permanent.insert((auth.suite_id.clone(), auth.corpid.clone()), permanent_code.clone());
            state.revoked_corps.remove(&auth.corpid);
            let customized = suite_id.starts_with("dk");
            let mut answer = json!({
                "permanent_code": permanent_code,
                "auth_corp_info": {"corpid": auth.corpid, "corp_name": auth.corp_name, "corp_type": "verified", "subject_type": 1},
                "auth_info": {"agent": [{"agentid": auth.agent_id, "name": "Our App", "auth_mode": 0, "is_customized_app": customized, "privilege": {"level": 1, "allow_party": [1]}}]},
                "auth_user_info": {"userid": "AdminUser", "open_userid": "woAdminOpen", "name": "AdminUser"},
                "edition_info": {"agent": [{"agentid": auth.agent_id, "edition_id": "ED1", "edition_name": "Pro", "app_status": 3, "user_limit": 200}]},
                "state": "",
            });
            if !customized {
                let grant = state.issue_token(TokenOwner::Corp { corpid: auth.corpid.clone() }, "corp-token");
                answer["access_token"] = grant["token"].clone();
                answer["expires_in"] = grant["expires_in"].clone();
            }
            Ok(answer)
        }
        "service/get_auth_info" => {
            state.check_token(token("suite_access_token"), "suite")?;
            let auth = valid_permanent_code(state, &text("permanent_code"), &text("auth_corpid"))?;
            let name = state.corp_names.get(&auth.corpid).cloned().unwrap_or_default();
            Ok(json!({
                "errcode": 0, "errmsg": "ok",
                "auth_corp_info": {"corpid": auth.corpid, "corp_name": name},
                "auth_info": {"agent": [{"agentid": auth.agent_id, "name": "Our App", "privilege": {"level": 2}}]},
            }))
        }
        "service/get_corp_token" => {
            let TokenOwner::Suite(suite_id) = state.check_token(token("suite_access_token"), "suite")? else {
                unreachable!()
            };
            if suite_id.starts_with("dk") {
                return Err(error(48002, "api forbidden for customized apps"));
            }
            let auth = valid_permanent_code(state, &text("permanent_code"), &text("auth_corpid"))?;
            let grant = state.issue_token(TokenOwner::Corp { corpid: auth.corpid }, "corp-token");
            Ok(json!({"access_token": grant["token"], "expires_in": grant["expires_in"]}))
        }
        "gettoken" => {
            let corpid = query.get("corpid").cloned().unwrap_or_default();
            let secret = query.get("corpsecret").cloned().unwrap_or_default();
            let auth = valid_permanent_code(state, &secret, &corpid).map_err(|_| error(40001, "invalid corpsecret"))?;
            if !auth.suite_id.starts_with("dk") {
                return Err(error(40001, "invalid corpsecret"));
            }
            let grant = state.issue_token(TokenOwner::Corp { corpid }, "corp-token");
            Ok(json!({"errcode": 0, "errmsg": "ok", "access_token": grant["token"], "expires_in": grant["expires_in"]}))
        }
        "agent/get_admin_list" => {
            state.check_token(token("access_token"), "corp")?;
            Ok(
                json!({"errcode": 0, "errmsg": "ok", "admin": [{"userid": "AdminUser", "open_userid": "woAdminOpen", "auth_type": 1}]}),
            )
        }
        _ => Err(error(404, "no such fake endpoint")),
    }
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
