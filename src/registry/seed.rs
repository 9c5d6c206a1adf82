//! The quick start's environment seed: creates the provider and suite the
//! environment names when they are absent, and fills provider callback keys the
//! record lacks. It never overwrites a stored value: once a record exists, the
//! database (changed through the API, the command line or `apply`) wins, and a
//! differing environment value is only reported.

use secrecy::ExposeSecret;

use super::{ProviderInput, ProviderPatch, Registry, RegistryError, SuiteInput};
use crate::config::Config;
use crate::model::PermanentCodeApi;
use crate::store::audit::ACTOR_ENVIRONMENT;

pub async fn seed_from_environment(registry: &Registry, config: &Config) -> Result<(), RegistryError> {
    if let Some(seed) = &config.provider {
        match registry.provider(&seed.corpid) {
            None => {
                let input = ProviderInput {
                    provider_corpid: seed.corpid.clone(),
                    name: None,
                    secret: seed.secret.clone(),
                    callback_token: seed.callback.as_ref().map(|c| c.token.clone()),
                    encoding_aes_key: seed.callback.as_ref().map(|c| c.encoding_aes_key.clone()),
                };
                match registry.create_provider(ACTOR_ENVIRONMENT, input).await {
                    // Another instance seeded it first.
                    Ok(_) | Err(RegistryError::AlreadyExists(..)) => {}
                    Err(error) => return Err(error),
                }
            }
            Some(stored) => {
                if stored.secret.expose_secret() != seed.secret.expose_secret() {
                    differs("WECOM_PROVIDER_SECRET", "provider", seed.corpid.as_str());
                }
                if let Some(callback) = &seed.callback {
                    match &stored.callback {
                        None => {
                            let patch = ProviderPatch {
                                callback_token: Some(callback.token.clone()),
                                encoding_aes_key: Some(callback.encoding_aes_key.clone()),
                                ..ProviderPatch::default()
                            };
                            registry.update_provider(ACTOR_ENVIRONMENT, &seed.corpid, patch).await?;
                        }
                        Some(keys) if !keys.matches(&callback.token, &callback.encoding_aes_key) => {
                            differs(
                                "WECOM_PROVIDER_TOKEN/WECOM_PROVIDER_ENCODING_AES_KEY",
                                "provider",
                                seed.corpid.as_str(),
                            );
                        }
                        Some(_) => {}
                    }
                }
            }
        }
    }
    if let (Some(seed), Some(provider)) = (&config.suite, &config.provider) {
        match registry.suite(&seed.suite_id) {
            None => {
                let input = SuiteInput {
                    suite_id: seed.suite_id.clone(),
                    provider_corpid: provider.corpid.clone(),
                    kind: seed.kind,
                    name: None,
                    enabled: true,
                    secret: seed.secret.clone(),
                    callback_token: seed.callback.token.clone(),
                    encoding_aes_key: seed.callback.encoding_aes_key.clone(),
                    permanent_code_api: PermanentCodeApi::default(),
                    description: None,
                    logo_url: None,
                };
                match registry.create_suite(ACTOR_ENVIRONMENT, input).await {
                    Ok(_) | Err(RegistryError::AlreadyExists(..)) => {}
                    Err(error) => return Err(error),
                }
            }
            Some(stored) => {
                if stored.secret.expose_secret() != seed.secret.expose_secret() {
                    differs("WECOM_SUITE_SECRET", "suite", seed.suite_id.as_str());
                }
                if !stored.callback.matches(&seed.callback.token, &seed.callback.encoding_aes_key) {
                    differs("WECOM_SUITE_TOKEN/WECOM_SUITE_ENCODING_AES_KEY", "suite", seed.suite_id.as_str());
                }
                if stored.kind != seed.kind {
                    differs("WECOM_SUITE_KIND", "suite", seed.suite_id.as_str());
                }
            }
        }
    }
    Ok(())
}

fn differs(variables: &str, what: &str, id: &str) {
    tracing::warn!(
        "{variables} differs from the stored {what} {id}; the stored value is used (change it with `wecom-provider {what}s update` or the admin API)"
    );
}
