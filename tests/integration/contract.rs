//! The OpenAPI document as a contract: every `/api/v1` answer the helpers receive is
//! checked against it, so the document cannot drift from what the code answers. The
//! operation is found by method and path template, the response by status, and the
//! body validated against its schema by an independent JSON Schema 2020-12 validator.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use serde_json::{Value, json};

/// The document, built once per test process from the library (the served one is
/// compared with it in `openapi.rs`).
pub static CONTRACT: LazyLock<Contract> = LazyLock::new(|| {
    let document = serde_json::to_value(wecom_provider::web::openapi::document()).expect("the document is JSON");
    Contract::new(document)
});

pub struct Contract {
    pub document: Value,
    /// One compiled validator per operation and status, made when first needed.
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

impl Contract {
    pub fn new(document: Value) -> Self {
        Contract { document, validators: Mutex::default() }
    }

    /// `Err` names what of an answer the document does not describe.
    pub fn check(&self, method: &str, path_and_query: &str, status: u16, body: &Value) -> Result<(), String> {
        let path = path_and_query.split(['?', '#']).next().unwrap_or_default();
        if !path.starts_with("/api/v1/") {
            return Ok(());
        }
        let method = method.to_ascii_lowercase();
        let Some(template) = self.template_of(&method, path) else {
            // What the scope answers for what is not a route: no operation to describe.
            return match (status, body["error"]["message"].as_str()) {
                (404, Some("route not found")) => Ok(()),
                _ => Err("no documented operation has this method and path".into()),
            };
        };
        let responses = &self.document["paths"][&template][&method]["responses"];
        let status_text = status.to_string();
        let response = responses
            .get(&status_text)
            .or_else(|| responses.get("default"))
            .ok_or_else(|| format!("status {status} is not documented for {template}"))?;
        let Some(schema) = response.pointer("/content/application~1json/schema") else {
            return match body {
                Value::Null => Ok(()),
                _ => Err(format!("{template} documents no body for {status}, and one came")),
            };
        };
        let validator = self.validator(&format!("{method} {template} {status}"), schema)?;
        let problems: Vec<String> =
            validator.iter_errors(body).map(|error| format!("at '{}': {error}", error.instance_path())).collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!("the body does not match the schema of {template} {status}: {}", problems.join("; ")))
        }
    }

    /// The documented template `path` matches for `method`; literal segments beat
    /// parameters when more than one matches.
    fn template_of(&self, method: &str, path: &str) -> Option<String> {
        let segments: Vec<&str> = path.split('/').collect();
        let paths = self.document["paths"].as_object()?;
        paths
            .iter()
            .filter(|(_, item)| item.get(method).is_some())
            .filter_map(|(template, _)| {
                let parts: Vec<&str> = template.split('/').collect();
                let matches = parts.len() == segments.len()
                    && parts.iter().zip(&segments).all(|(part, segment)| {
                        (part.starts_with('{') && part.ends_with('}') && !segment.is_empty()) || part == segment
                    });
                let literals = parts.iter().filter(|part| !part.starts_with('{')).count();
                matches.then_some((literals, template))
            })
            .max_by_key(|(literals, _)| *literals)
            .map(|(_, template)| template.clone())
    }

    fn validator(&self, key: &str, schema: &Value) -> Result<Arc<jsonschema::Validator>, String> {
        let mut validators = self.validators.lock().expect("validators lock");
        if let Some(validator) = validators.get(key) {
            return Ok(validator.clone());
        }
        // The schema's `$ref`s point into `#/components/schemas`: give it them at its root.
        let mut root = json!({ "components": self.document["components"] });
        if let (Some(root), Some(schema)) = (root.as_object_mut(), schema.as_object()) {
            root.extend(schema.clone());
        }
        let validator = Arc::new(
            jsonschema::draft202012::new(&root).map_err(|error| format!("the schema of {key} is invalid: {error}"))?,
        );
        validators.insert(key.to_owned(), validator.clone());
        Ok(validator)
    }
}

/// Panics, failing the test, when the document does not describe an answer.
pub fn assert_documented(method: &reqwest::Method, path: &str, status: u16, body: &Value) {
    if let Err(violation) = CONTRACT.check(method.as_str(), path, status, body) {
        panic!(
            "{method} {path} answered {status}, which the OpenAPI document does not describe: {violation}\nbody: {body}"
        );
    }
}
