//! The fake's front door: permanent codes v1 and v2, get_auth_info v1 and v2, OAuth
//! (getuserinfo3rd in either key casing, getuserdetail3rd), the admin's login
//! (get_login_info) and both JS-SDK tickets with WeCom's hourly limits. Like the
//! rest of the fake, every call is checked for the token type WeCom wants.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::{Authorization, FakeWecom, State, TokenOwner, error, valid_permanent_code};

/// An OAuth code lives this long (seconds of the fake's clock).
const OAUTH_CODE_LIFETIME: i64 = 300;
/// WeCom's limits on ticket fetches per hour: per corp (jsapi) and per app (agent_config).
pub const JSAPI_PER_CORP_HOUR: usize = 400;
pub const AGENT_CONFIG_PER_APP_HOUR: usize = 100;

struct OAuthCode {
    suite_id: String,
    corpid: String,
    userid: String,
    privateinfo: bool,
    issued_at: i64,
    used: bool,
}

struct LoginCode {
    provider: String,
    corpid: String,
    userid: String,
    used: bool,
}

#[derive(Default)]
pub(super) struct FrontState {
    oauth_codes: HashMap<String, OAuthCode>,
    /// user_ticket → (suite, corpid, userid).
    user_tickets: HashMap<String, (String, String, String)>,
    login_codes: HashMap<String, LoginCode>,
    /// getuserinfo3rd answers CorpId/UserId as the legacy path does.
    camel_case: bool,
    /// Ticket lifetime in seconds (7200 unless a test shortens it).
    ticket_lifetime: Option<i64>,
    /// Ticket fetches: (counter, when), for the hourly limits.
    fetches: Vec<(String, i64)>,
    /// The newest ticket per (kind, suite, corp).
    tickets: HashMap<(String, String, String), String>,
    /// How often a ticket fetch was refused for being over the hourly limit.
    limit_hits: usize,
    /// What agent/get_admin_list answers, when a test changed it.
    pub(super) admins: Option<Value>,
    /// Corps that disabled their 代开发 app: agent/get answers `close: 1`.
    closed_apps: std::collections::HashSet<String>,
}

impl FakeWecom {
    /// A member of `corpid` opens the suite's H5 page; WeCom redirects with this code.
    pub fn new_oauth_code(&self, suite_id: &str, corpid: &str, userid: &str, privateinfo: bool) -> String {
        let mut state = self.lock();
        let code = state.next("oauth-code");
        let issued_at = state.now;
        let entry = OAuthCode {
            suite_id: suite_id.into(),
            corpid: corpid.into(),
            userid: userid.into(),
            privateinfo,
            issued_at,
            used: false,
        };
        state.front.oauth_codes.insert(code.clone(), entry);
        code
    }

    /// An admin of `corpid` logs in to the provider's site.
    pub fn new_admin_login_code(&self, provider: &str, corpid: &str, userid: &str) -> String {
        let mut state = self.lock();
        let code = state.next("login-code");
        let entry = LoginCode { provider: provider.into(), corpid: corpid.into(), userid: userid.into(), used: false };
        state.front.login_codes.insert(code.clone(), entry);
        code
    }

    /// The app's admins change at WeCom.
    /// The corp disables (or re-enables) its 代开发 app in its admin console.
    pub fn close_app(&self, corpid: &str, closed: bool) {
        let apps = &mut self.lock().front.closed_apps;
        if closed {
            apps.insert(corpid.into());
        } else {
            apps.remove(corpid);
        }
    }

    pub fn set_admins(&self, admins: Value) {
        self.lock().front.admins = Some(admins);
    }

    /// getuserinfo3rd answers in the legacy CamelCase keys from now on.
    pub fn use_camel_case_oauth(&self) {
        self.lock().front.camel_case = true;
    }

    pub fn set_ticket_lifetime(&self, seconds: i64) {
        self.lock().front.ticket_lifetime = Some(seconds);
    }

    /// The newest ticket of a kind ("jsapi" or "agent_config") issued for a corp of a suite.
    pub fn newest_ticket(&self, kind: &str, suite_id: &str, corpid: &str) -> Option<String> {
        self.lock().front.tickets.get(&(kind.to_owned(), suite_id.to_owned(), corpid.to_owned())).cloned()
    }

    /// How often a ticket fetch was over WeCom's hourly limit.
    pub fn ticket_limit_hits(&self) -> usize {
        self.lock().front.limit_hits
    }

    /// How often an OAuth or login code reached WeCom, valid or not.
    pub fn code_uses(&self, code: &str) -> usize {
        let state = self.lock();
        let oauth = state.front.oauth_codes.get(code).map(|c| usize::from(c.used));
        let login = state.front.login_codes.get(code).map(|c| usize::from(c.used));
        oauth.or(login).unwrap_or(0)
    }
}

fn customized(suite_id: &str) -> bool {
    suite_id.starts_with("dk")
}

/// What get_auth_info v1 answers, and get_permanent_code v1 besides its code.
fn details(state: &State, auth: &Authorization) -> Value {
    let name = state.corp_names.get(&auth.corpid).cloned().unwrap_or_else(|| auth.corp_name.clone());
    json!({
        "auth_corp_info": {
            "corpid": auth.corpid, "corp_name": name, "corp_type": "verified", "subject_type": 1,
            "corp_wxqrcode": "https://fake.example/qr.png",
        },
        "auth_info": {"agent": [{
            "agentid": auth.agent_id, "name": "Our App", "auth_mode": 0,
            "is_customized_app": customized(&auth.suite_id),
            "privilege": {"level": 1, "allow_party": [1]},
        }]},
        "edition_info": {"agent": [{
            "agentid": auth.agent_id, "edition_id": "ED1", "edition_name": "Pro", "app_status": 3, "user_limit": 200,
        }]},
    })
}

fn spend_auth_code(state: &mut State, suite_id: &str, code: &str) -> Result<(Authorization, String), Value> {
    let auth = match state.auth_codes.get_mut(code) {
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
    Ok((auth, permanent_code))
}

fn over_limit(state: &mut State, counter: String, limit: usize) -> bool {
    let since = state.now - 3600;
    state.front.fetches.retain(|(_, at)| *at > since);
    if state.front.fetches.iter().filter(|(c, _)| *c == counter).count() >= limit {
        state.front.limit_hits += 1;
        return true;
    }
    let now = state.now;
    state.front.fetches.push((counter, now));
    false
}

pub(super) fn route(
    state: &mut State,
    endpoint: &str,
    query: &HashMap<String, String>,
    body: &Value,
) -> Result<Value, Value> {
    let text = |field: &str| body[field].as_str().unwrap_or_default().to_owned();
    let token = |name: &str| query.get(name).map(String::as_str);
    let suite_of = |state: &State| match state.check_token(token("suite_access_token"), "suite")? {
        TokenOwner::Suite(suite_id) => Ok(suite_id),
        _ => Err(error(40082, "invalid suite_access_token")),
    };
    match endpoint {
        "service/get_permanent_code" => {
            let suite_id = suite_of(state)?;
            let (auth, permanent_code) = spend_auth_code(state, &suite_id, &text("auth_code"))?;
            let mut answer = details(state, &auth);
            answer["permanent_code"] = json!(permanent_code);
            answer["auth_user_info"] =
                json!({"userid": "AdminUser", "open_userid": "woAdminOpen", "name": "AdminUser"});
            answer["state"] = json!("");
            if !customized(&suite_id) {
                let owner = TokenOwner::Corp { corpid: auth.corpid.clone(), suite_id: auth.suite_id.clone() };
                let grant = state.issue_token(owner, "corp-token");
                answer["access_token"] = grant["token"].clone();
                answer["expires_in"] = grant["expires_in"].clone();
            }
            Ok(answer)
        }
        "service/v2/get_permanent_code" => {
            let suite_id = suite_of(state)?;
            let (auth, permanent_code) = spend_auth_code(state, &suite_id, &text("auth_code"))?;
            Ok(json!({
                "permanent_code": permanent_code,
                "auth_corp_info": {"corpid": auth.corpid, "corp_name": auth.corp_name},
                "auth_user_info": {"userid": "AdminUser", "open_userid": "woAdminOpen", "name": "AdminUser"},
                "state": "",
            }))
        }
        "service/get_auth_info" | "service/v2/get_auth_info" => {
            suite_of(state)?;
            let auth = valid_permanent_code(state, &text("permanent_code"), &text("auth_corpid"))?;
            let mut answer = details(state, &auth);
            if endpoint.starts_with("service/v2/") {
                let info = &mut answer["auth_corp_info"];
                info.as_object_mut().map(|o| o.remove("corp_wxqrcode"));
                info["corp_ex_name"] = json!({"name_list": []});
            }
            answer["errcode"] = json!(0);
            answer["errmsg"] = json!("ok");
            Ok(answer)
        }
        "agent/get" => {
            let TokenOwner::Corp { corpid, .. } = state.check_token(token("access_token"), "corp")? else {
                return Err(error(40014, "invalid access_token"));
            };
            let agentid = query.get("agentid").and_then(|id| id.parse::<i64>().ok());
            let close = i64::from(state.front.closed_apps.contains(&corpid));
            Ok(json!({"errcode": 0, "errmsg": "ok", "agentid": agentid, "name": "Our App", "close": close}))
        }
        "service/auth/getuserinfo3rd" => {
            let suite_id = suite_of(state)?;
            let now = state.now;
            let code = query.get("code").cloned().unwrap_or_default();
            let (corpid, userid, privateinfo) = match state.front.oauth_codes.get_mut(&code) {
                Some(c) if !c.used && c.suite_id == suite_id && now - c.issued_at < OAUTH_CODE_LIFETIME => {
                    c.used = true;
                    (c.corpid.clone(), c.userid.clone(), c.privateinfo)
                }
                Some(c) => {
                    c.used = true;
                    return Err(error(40029, "invalid code"));
                }
                None => return Err(error(40029, "invalid code")),
            };
            let open_userid = format!("wo{userid}Open");
            let mut answer = if state.front.camel_case {
                json!({"errcode": 0, "errmsg": "ok", "CorpId": corpid, "UserId": userid, "DeviceId": "", "open_userid": open_userid})
            } else {
                json!({"errcode": 0, "errmsg": "ok", "corpid": corpid, "userid": userid, "open_userid": open_userid})
            };
            if privateinfo {
                let ticket = state.next("user-ticket");
                state.front.user_tickets.insert(ticket.clone(), (suite_id, corpid, userid));
                answer["user_ticket"] = json!(ticket);
                answer["expires_in"] = json!(1800);
            }
            Ok(answer)
        }
        "service/auth/getuserdetail3rd" => {
            let suite_id = suite_of(state)?;
            match state.front.user_tickets.get(&text("user_ticket")) {
                Some((owner, corpid, userid)) if *owner == suite_id => Ok(json!({
                    "errcode": 0, "errmsg": "ok", "corpid": corpid, "userid": userid, "name": userid,
                    "gender": "1", "avatar": "https://fake.example/avatar.png", "qr_code": "https://fake.example/qr",
                })),
                _ => Err(error(84015, "invalid user_ticket")),
            }
        }
        "service/get_login_info" => {
            // The provider token, under the query name `access_token`.
            let TokenOwner::Provider(provider) = state.check_token(token("access_token"), "provider")? else {
                return Err(error(40014, "invalid access_token"));
            };
            let code = match state.front.login_codes.get_mut(&text("auth_code")) {
                Some(code) if !code.used && code.provider == provider => {
                    code.used = true;
                    code
                }
                _ => return Err(error(40029, "invalid auth_code")),
            };
            Ok(json!({
                "errcode": 0, "errmsg": "ok", "usertype": 1,
                "user_info": {"userid": code.userid, "open_userid": format!("wo{}Open", code.userid), "name": code.userid, "avatar": ""},
                "corp_info": {"corpid": code.corpid},
                "agent": [{"agentid": 1_000_001, "auth_type": 1}],
                "auth_info": {"department": [{"id": 1, "writable": true}]},
            }))
        }
        "get_jsapi_ticket" | "ticket/get" => {
            let TokenOwner::Corp { corpid, suite_id } = state.check_token(token("access_token"), "corp")? else {
                return Err(error(40014, "invalid access_token"));
            };
            let (kind, counter, limit) = if endpoint == "get_jsapi_ticket" {
                ("jsapi", format!("corp:{corpid}"), JSAPI_PER_CORP_HOUR)
            } else if query.get("type").map(String::as_str) == Some("agent_config") {
                ("agent_config", format!("app:{suite_id}/{corpid}"), AGENT_CONFIG_PER_APP_HOUR)
            } else {
                return Err(error(40097, "invalid type"));
            };
            if over_limit(state, counter, limit) {
                return Err(error(45009, "api freq out of limit"));
            }
            let ticket = state.next(&format!("{kind}-ticket"));
            state.front.tickets.insert((kind.to_owned(), suite_id, corpid), ticket.clone());
            let expires_in = state.front.ticket_lifetime.unwrap_or(7200);
            Ok(json!({"errcode": 0, "errmsg": "ok", "ticket": ticket, "expires_in": expires_in}))
        }
        _ => Err(error(404, "no such fake endpoint")),
    }
}
