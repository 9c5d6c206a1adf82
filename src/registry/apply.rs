//! `wecom-provider apply FILE.toml`: the providers and suites a file declares,
//! created or brought up to date. Every value is read and checked before anything
//! is written; a second run with the same file changes nothing.
//!
//! ```toml
//! [[providers]]
//! provider_corpid = "wwprovider"
//! secret = "env:WECOM_PROVIDER_SECRET"          # or file:/run/secrets/…, or the value
//!
//! [[suites]]
//! suite_id = "wwsuite"
//! provider_corpid = "wwprovider"
//! kind = "third_party"                           # customized_template, login
//! secret = "file:/run/secrets/suite_secret"
//! callback_token = "env:SUITE_TOKEN"
//! encoding_aes_key = "env:SUITE_AES_KEY"
//! ```

use std::path::Path;

use secrecy::SecretString;
use serde::Deserialize;

use super::{ProviderInput, ProviderPatch, Registry, RegistryError, SuiteInput, SuitePatch};
use crate::model::{PermanentCodeApi, ProviderCorpId, SuiteId, SuiteKind};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Declaration {
    #[serde(default)]
    providers: Vec<DeclaredProvider>,
    #[serde(default)]
    suites: Vec<DeclaredSuite>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeclaredProvider {
    provider_corpid: ProviderCorpId,
    name: Option<String>,
    secret: String,
    callback_token: Option<String>,
    encoding_aes_key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeclaredSuite {
    suite_id: SuiteId,
    provider_corpid: ProviderCorpId,
    kind: SuiteKind,
    name: Option<String>,
    #[serde(default = "enabled_by_default")]
    enabled: bool,
    secret: String,
    callback_token: String,
    encoding_aes_key: String,
    /// Absent: v2 for a new suite, unchanged for a stored one.
    permanent_code_api: Option<PermanentCodeApi>,
    /// Absent: unchanged (empty for a new suite).
    description: Option<String>,
    logo_url: Option<String>,
}

fn enabled_by_default() -> bool {
    true
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{0}: {1}")]
    File(String, String),
    #[error("{0}")]
    Syntax(String),
    #[error("{what} {id}: {field}: {problem}")]
    Value { what: &'static str, id: String, field: &'static str, problem: String },
    #[error("{0}")]
    Registry(#[from] RegistryError),
}

/// What one record came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Updated(Vec<&'static str>),
    Unchanged,
}

#[derive(Debug, Clone)]
pub struct Change {
    pub what: &'static str,
    pub id: String,
    pub outcome: Outcome,
}

/// The declaration with every secret read: what the registry takes.
struct Resolved {
    providers: Vec<ProviderInput>,
    /// Each with the API it declares, if it does: a stored suite keeps its own otherwise.
    suites: Vec<(SuiteInput, Option<PermanentCodeApi>)>,
}

/// Reads and checks `path`, then creates or updates what it declares.
pub async fn apply_file(registry: &Registry, path: &Path, actor: &str) -> Result<Vec<Change>, ApplyError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| ApplyError::File(path.display().to_string(), e.to_string()))?;
    let declaration: Declaration = toml::from_str(&text).map_err(|e| ApplyError::Syntax(e.to_string()))?;
    let resolved = resolve(declaration)?;
    check(registry, &resolved)?;
    let mut changes = Vec::new();
    for input in resolved.providers {
        let id = input.provider_corpid.clone();
        let outcome = if registry.provider(&id).is_some() {
            let patch = ProviderPatch {
                name: input.name,
                secret: Some(input.secret),
                callback_token: input.callback_token,
                encoding_aes_key: input.encoding_aes_key,
            };
            updated(registry.update_provider(actor, &id, patch).await?)
        } else {
            registry.create_provider(actor, input).await?;
            Outcome::Created
        };
        changes.push(Change { what: "provider", id: id.into_string(), outcome });
    }
    for (input, declared_api) in resolved.suites {
        let id = input.suite_id.clone();
        let outcome = match registry.suite(&id) {
            Some(stored) if stored.provider_corpid != input.provider_corpid => {
                return Err(ApplyError::Value {
                    what: "suite",
                    id: id.into_string(),
                    field: "provider_corpid",
                    problem: format!("the suite belongs to {}; a suite cannot move", stored.provider_corpid),
                });
            }
            Some(_) => {
                let patch = SuitePatch {
                    kind: Some(input.kind),
                    permanent_code_api: declared_api,
                    name: input.name,
                    enabled: Some(input.enabled),
                    secret: Some(input.secret),
                    callback_token: Some(input.callback_token),
                    encoding_aes_key: Some(input.encoding_aes_key),
                    description: input.description,
                    logo_url: input.logo_url,
                };
                updated(registry.update_suite(actor, &id, patch).await?)
            }
            None => {
                registry.create_suite(actor, input).await?;
                Outcome::Created
            }
        };
        changes.push(Change { what: "suite", id: id.into_string(), outcome });
    }
    Ok(changes)
}

fn updated(fields: Vec<&'static str>) -> Outcome {
    if fields.is_empty() { Outcome::Unchanged } else { Outcome::Updated(fields) }
}

/// Every secret read from where it is declared to be.
fn resolve(declaration: Declaration) -> Result<Resolved, ApplyError> {
    let mut providers = Vec::new();
    for p in declaration.providers {
        let value = |field, source: &str| {
            secret_value(source).map_err(|problem| ApplyError::Value {
                what: "provider",
                id: p.provider_corpid.to_string(),
                field,
                problem,
            })
        };
        providers.push(ProviderInput {
            secret: value("secret", &p.secret)?,
            callback_token: p.callback_token.as_deref().map(|s| value("callback_token", s)).transpose()?,
            encoding_aes_key: p.encoding_aes_key.as_deref().map(|s| value("encoding_aes_key", s)).transpose()?,
            provider_corpid: p.provider_corpid.clone(),
            name: p.name.clone(),
        });
    }
    let mut suites = Vec::new();
    for s in declaration.suites {
        let value = |field, source: &str| {
            secret_value(source).map_err(|problem| ApplyError::Value {
                what: "suite",
                id: s.suite_id.to_string(),
                field,
                problem,
            })
        };
        let input = SuiteInput {
            secret: value("secret", &s.secret)?,
            callback_token: value("callback_token", &s.callback_token)?,
            encoding_aes_key: value("encoding_aes_key", &s.encoding_aes_key)?,
            suite_id: s.suite_id.clone(),
            provider_corpid: s.provider_corpid.clone(),
            kind: s.kind,
            name: s.name.clone(),
            enabled: s.enabled,
            permanent_code_api: s.permanent_code_api.unwrap_or_default(),
            description: s.description.clone(),
            logo_url: s.logo_url.clone(),
        };
        suites.push((input, s.permanent_code_api));
    }
    Ok(Resolved { providers, suites })
}

/// The checks a write would make, made for every record first, so a bad record
/// late in the file changes nothing before it.
fn check(registry: &Registry, resolved: &Resolved) -> Result<(), ApplyError> {
    use secrecy::ExposeSecret;
    let mut seen = std::collections::HashSet::new();
    for p in &resolved.providers {
        let id = &p.provider_corpid;
        let fail = |field, problem: String| ApplyError::Value { what: "provider", id: id.to_string(), field, problem };
        if !seen.insert(("provider", id.to_string())) {
            return Err(fail("provider_corpid", "is declared twice".into()));
        }
        super::check_identifier("provider_corpid", id.as_str()).map_err(|e| fail("provider_corpid", e.to_string()))?;
        match (&p.callback_token, &p.encoding_aes_key) {
            (Some(token), Some(aes_key)) => {
                crate::crypto::CallbackKeys::new(token.expose_secret(), aes_key.expose_secret())
                    .map_err(|e| fail("callback_token/encoding_aes_key", super::key_problem(&e)))?;
            }
            (None, None) => {}
            _ => return Err(fail("callback_token", "and encoding_aes_key go together".into())),
        }
    }
    for (suite, _) in &resolved.suites {
        let fail = |field, problem: String| ApplyError::Value {
            what: "suite",
            id: suite.suite_id.to_string(),
            field,
            problem,
        };
        if !seen.insert(("suite", suite.suite_id.to_string())) {
            return Err(fail("suite_id", "is declared twice".into()));
        }
        super::check_identifier("suite_id", suite.suite_id.as_str()).map_err(|e| fail("suite_id", e.to_string()))?;
        crate::crypto::CallbackKeys::new(suite.callback_token.expose_secret(), suite.encoding_aes_key.expose_secret())
            .map_err(|e| fail("callback_token/encoding_aes_key", super::key_problem(&e)))?;
        let declared = resolved.providers.iter().any(|p| p.provider_corpid == suite.provider_corpid);
        if !declared && registry.provider(&suite.provider_corpid).is_none() {
            return Err(fail(
                "provider_corpid",
                format!("no provider {} exists or is declared", suite.provider_corpid),
            ));
        }
    }
    Ok(())
}

/// A secret given as `env:NAME`, `file:PATH` (trailing newline dropped), or the value itself.
pub fn secret_value(source: &str) -> Result<SecretString, String> {
    let value = if let Some(name) = source.strip_prefix("env:") {
        std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))?
    } else if let Some(path) = source.strip_prefix("file:") {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
        text.trim_end_matches(['\n', '\r']).to_owned()
    } else {
        source.to_owned()
    };
    if value.is_empty() {
        return Err("is empty".into());
    }
    Ok(value.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_field_is_named() {
        let error = toml::from_str::<Declaration>("[[suites]]\nsuite_id = \"a\"\nsuite_secret = \"x\"\n")
            .expect_err("unknown field");
        assert!(error.to_string().contains("unknown field `suite_secret`"), "{error}");
    }

    #[test]
    fn secrets_come_from_files_and_values() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("secret");
        std::fs::write(&path, "from-file\n").expect("written");
        use secrecy::ExposeSecret;
        let from_file = secret_value(&format!("file:{}", path.display())).expect("reads");
        assert_eq!(from_file.expose_secret(), "from-file");
        assert_eq!(secret_value("literal").expect("literal").expose_secret(), "literal");
        assert!(secret_value("env:WECOM_PROVIDER_TEST_SURELY_UNSET").expect_err("unset").contains("not set"));
    }
}
