//! The OpenAPI document: served without a key, complete in both directions, and a
//! validator that does reject what the document does not describe.

use reqwest::Method;
use serde_json::{Value, json};

use crate::contract::{CONTRACT, Contract};
use crate::helpers::*;

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

/// Every `(method, path template)` the document lists.
fn documented_operations() -> Vec<(String, String)> {
    let paths = CONTRACT.document["paths"].as_object().expect("paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter(|method| item.get(**method).is_some())
                .map(|method| (method.to_string(), path.clone()))
        })
        .collect()
}

#[tokio::test]
async fn the_document_is_served_without_a_key_and_is_openapi_3_1() {
    let db = TestDb::new();
    let app = TestApp::spawn(&db).await;
    let response = app.client.get(app.url("/api/v1/openapi.json")).send().await.expect("request");
    assert_eq!(response.status().as_u16(), 200);
    let served: Value = response.json().await.expect("the document is JSON");
    assert!(served["openapi"].as_str().is_some_and(|version| version.starts_with("3.1")), "{}", served["openapi"]);
    assert_eq!(served["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(served, CONTRACT.document, "the served document is the library's");
    let scheme = &served["components"]["securitySchemes"]["api_key"];
    assert_eq!((scheme["type"].as_str(), scheme["scheme"].as_str()), (Some("http"), Some("bearer")));
    // Other routes of the scope still want a key.
    let (status, _) = app.call_as(Method::GET, "wrong", "/api/v1/events", None).await;
    assert_eq!(status, 401);
}

/// The routes `src/web/*.rs` registers under `/api/v1`, read from their `routes()`
/// functions: `.route("…", web::get()…)` and `.route(&format!("{BASE}…"), …)`.
fn routes_in_the_code() -> Vec<(String, String)> {
    let web = concat!(env!("CARGO_MANIFEST_DIR"), "/src/web");
    let scope = std::fs::read_to_string(format!("{web}/mod.rs")).expect("web/mod.rs");
    let modules: Vec<&str> = scope
        .split(".configure(")
        .skip(1)
        .filter_map(|rest| rest.split_once("::routes)").map(|(module, _)| module))
        .filter(|module| !["callback", "install", "console"].contains(module))
        .collect();
    assert!(modules.len() >= 7, "the /api/v1 modules are found: {modules:?}");
    let mut routes = Vec::new();
    for module in modules {
        let source = std::fs::read_to_string(format!("{web}/{module}.rs")).expect("module source");
        let base = source.split("const BASE: &str = \"").nth(1).and_then(|rest| rest.split('"').next());
        for call in source.split(".route(").skip(1) {
            let path = match call.strip_prefix("&format!(\"{BASE}") {
                Some(rest) => {
                    format!("{}{}", base.expect("BASE is defined"), rest.split('"').next().unwrap_or_default())
                }
                None if call.starts_with("BASE,") => base.expect("BASE is defined").to_owned(),
                None => {
                    call.strip_prefix('"').and_then(|rest| rest.split('"').next()).expect("a literal path").to_owned()
                }
            };
            let method = call.split("web::").nth(1).and_then(|rest| rest.split("()").next()).expect("web::METHOD()");
            routes.push((method.to_owned(), format!("/api/v1{path}")));
        }
    }
    routes.push(("get".to_owned(), "/api/v1/openapi.json".to_owned()));
    routes.sort();
    routes
}

#[test]
fn every_route_of_the_api_scope_is_documented_and_nothing_else() {
    let mut documented = documented_operations();
    documented.sort();
    assert_eq!(routes_in_the_code(), documented);
}

#[tokio::test]
async fn every_documented_operation_answers_as_documented_not_as_an_unknown_route() {
    let db = TestDb::new();
    let app = TestApp::spawn(&db).await;
    for (method, template) in documented_operations() {
        // Unknown ids: every answer is an error the operation documents (call_as checks).
        let path: String = template
            .split('/')
            .map(|segment| if segment.starts_with('{') { "probe" } else { segment })
            .collect::<Vec<_>>()
            .join("/");
        let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).expect("method");
        let body = [Method::POST, Method::PUT, Method::PATCH].contains(&method).then(|| json!({}));
        let (status, answer) = app.call_as(method.clone(), ADMIN_TOKEN, &path, body.as_ref()).await;
        assert_ne!(answer["error"]["message"], "route not found", "{method} {path} is documented but not routed");
        assert_ne!(status, 500, "{method} {path}: {answer}");
    }
}

#[test]
fn the_validator_rejects_what_the_document_does_not_describe() {
    let contract = Contract::new(CONTRACT.document.clone());
    let error = json!({"error": {"code": "not_found", "message": "suite not found"}});
    assert_eq!(contract.check("GET", "/api/v1/suites/wwx?x=1", 404, &error), Ok(()));
    let wrong_shape = [
        json!({"error": {"code": "not_found"}}),
        json!({"error": {"code": 404, "message": "suite not found"}}),
        json!({"code": "not_found", "message": "suite not found"}),
    ];
    for body in wrong_shape {
        let violation = contract.check("GET", "/api/v1/suites/wwx", 404, &body).expect_err("a wrong error body");
        assert!(violation.contains("does not match"), "{violation}");
    }
    let token = json!({"access_token": "t", "expires_at": "2026-01-01T00:00:00Z"});
    assert_eq!(contract.check("GET", "/api/v1/suites/wwx/token", 200, &token), Ok(()));
    let untyped = json!({"access_token": "t", "expires_at": 17});
    assert!(contract.check("GET", "/api/v1/suites/wwx/token", 200, &untyped).is_err());
    assert!(contract.check("GET", "/api/v1/suites/wwx/token", 418, &token).is_err(), "an undocumented status");
    assert!(contract.check("PUT", "/api/v1/suites/wwx/token", 200, &token).is_err(), "an undocumented method");
    assert!(contract.check("GET", "/api/v1/suites/wwx/tokens", 200, &token).is_err(), "an undocumented path");
    assert!(contract.check("DELETE", "/api/v1/webhooks/w1", 204, &token).is_err(), "a body where none is documented");
}
