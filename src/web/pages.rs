//! Server-rendered pages (install flow, admin console). Templates are built in from
//! `templates/`; a file of the same name in `TEMPLATES_DIR` replaces one, read and
//! compiled once at start so a broken override stops the start instead of a page.
//! Every page speaks Chinese and English: `t("key")` looks the key up in
//! `messages.json` (overridable like a template) for the page's language.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::http::header::{AcceptLanguage, Header};
use actix_web::{HttpRequest, HttpResponse};
use minijinja::value::Kwargs;
use minijinja::{Environment, Value};
use serde::Serialize;

/// Every template and the message catalog, by the name an override uses.
const BUILT_IN: &[(&str, &str)] = &[
    ("base.html", include_str!("../../templates/base.html")),
    ("install.html", include_str!("../../templates/install.html")),
    ("installed.html", include_str!("../../templates/installed.html")),
    ("install_error.html", include_str!("../../templates/install_error.html")),
    ("admin/base.html", include_str!("../../templates/admin/base.html")),
    ("admin/login.html", include_str!("../../templates/admin/login.html")),
    ("admin/error.html", include_str!("../../templates/admin/error.html")),
    ("admin/overview.html", include_str!("../../templates/admin/overview.html")),
    ("admin/corps.html", include_str!("../../templates/admin/corps.html")),
    ("admin/corp.html", include_str!("../../templates/admin/corp.html")),
    ("admin/_events_table.html", include_str!("../../templates/admin/_events_table.html")),
    ("admin/events.html", include_str!("../../templates/admin/events.html")),
    ("admin/event.html", include_str!("../../templates/admin/event.html")),
    ("admin/webhooks.html", include_str!("../../templates/admin/webhooks.html")),
    ("admin/ids.html", include_str!("../../templates/admin/ids.html")),
    ("admin/audit.html", include_str!("../../templates/admin/audit.html")),
];
const MESSAGES: &str = "messages.json";
const BUILT_IN_MESSAGES: &str = include_str!("../../templates/messages.json");
/// The cookie that keeps a chosen language; `?lang=` sets it.
const LANG_COOKIE: &str = "lang";

/// A page's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    Zh,
    En,
}

impl Lang {
    fn parse(value: &str) -> Option<Self> {
        match value.to_ascii_lowercase().as_str() {
            "zh" | "zh-cn" => Some(Self::Zh),
            "en" => Some(Self::En),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Zh => "zh",
            Self::En => "en",
        }
    }

    /// `?lang=` (remembered in a cookie), else the cookie, else the first of
    /// Chinese or English in `Accept-Language`, else Chinese: the admins this
    /// service's pages are for mostly read Chinese. The cookie to set, when chosen now.
    pub fn negotiate(request: &HttpRequest) -> (Self, Option<Cookie<'static>>) {
        let chosen = url::form_urlencoded::parse(request.query_string().as_bytes())
            .find(|(name, _)| name == "lang")
            .and_then(|(_, value)| Self::parse(&value));
        if let Some(lang) = chosen {
            let cookie = Cookie::build(LANG_COOKIE, lang.as_str())
                .path("/")
                .same_site(SameSite::Lax)
                .http_only(true)
                .max_age(actix_web::cookie::time::Duration::days(365))
                .finish();
            return (lang, Some(cookie));
        }
        if let Some(lang) = request.cookie(LANG_COOKIE).and_then(|cookie| Self::parse(cookie.value())) {
            return (lang, None);
        }
        let accepted = AcceptLanguage::parse(request).map(|header| header.ranked()).unwrap_or_default();
        let lang = accepted
            .iter()
            .filter_map(|preference| match preference {
                actix_web::http::header::Preference::Specific(tag) => Self::parse(tag.primary_language()),
                actix_web::http::header::Preference::Any => None,
            })
            .next()
            .unwrap_or(Self::Zh);
        (lang, None)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PagesError {
    #[error("TEMPLATES_DIR: cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("template {name} does not compile: {source}")]
    Template { name: &'static str, source: minijinja::Error },
    #[error("{MESSAGES} is not a map of key to {{\"zh\", \"en\"}}: {0}")]
    Messages(serde_json::Error),
}

/// The compiled templates; cheap to share.
#[derive(Clone)]
pub struct Pages {
    env: Arc<Environment<'static>>,
    #[cfg(test)]
    catalog: Arc<Catalog>,
}

type Catalog = HashMap<String, HashMap<String, String>>;

impl Pages {
    /// Compiles the built-in templates, each replaced by `dir/<name>` when that file exists.
    pub fn load(dir: Option<&Path>) -> Result<Self, PagesError> {
        let source = |name: &str, built_in: &'static str| -> Result<String, PagesError> {
            let Some(path) = dir.map(|dir| dir.join(name)).filter(|path| path.is_file()) else {
                return Ok(built_in.to_owned());
            };
            tracing::info!(path = %path.display(), "template overridden");
            std::fs::read_to_string(&path).map_err(|source| PagesError::Read { path, source })
        };
        let mut env = Environment::new();
        for &(name, built_in) in BUILT_IN {
            env.add_template_owned(name, source(name, built_in)?)
                .map_err(|source| PagesError::Template { name, source })?;
        }
        let catalog: Arc<Catalog> =
            Arc::new(serde_json::from_str(&source(MESSAGES, BUILT_IN_MESSAGES)?).map_err(PagesError::Messages)?);
        let messages = Arc::clone(&catalog);
        // `t("key", name=value)`: the text in the page's language, `{name}` replaced.
        // Plain text: printing it escapes the message and the values alike.
        env.add_function(
            "t",
            move |state: &minijinja::State, key: &str, values: Kwargs| -> Result<String, minijinja::Error> {
                let lang = state.lookup("lang").and_then(|lang| lang.as_str().map(str::to_owned));
                let entry = messages.get(key);
                let mut text = entry
                    .and_then(|texts| texts.get(lang.as_deref().unwrap_or("zh")))
                    .or_else(|| entry.and_then(|texts| texts.get("en")))
                    .cloned()
                    .unwrap_or_else(|| key.to_owned());
                for name in values.args() {
                    let value: Value = values.get(name)?;
                    text = text.replace(&format!("{{{name}}}"), &value.to_string());
                }
                Ok(text)
            },
        );
        let pages = Self {
            env: Arc::new(env),
            #[cfg(test)]
            catalog,
        };
        for &(name, _) in BUILT_IN {
            // Renders nothing yet; resolves `extends` so a missing parent fails now.
            pages.env.get_template(name).map_err(|source| PagesError::Template { name, source })?;
        }
        Ok(pages)
    }

    #[cfg(test)]
    pub fn has_message(&self, key: &str, lang: &str) -> bool {
        self.catalog.get(key).and_then(|texts| texts.get(lang)).is_some_and(|text| !text.is_empty())
    }

    /// The page `name` rendered in `lang`, with `lang` and any cookie to set.
    pub fn render(&self, status: StatusCode, name: &str, lang: Lang, ctx: Value) -> HttpResponse {
        let ctx = minijinja::context! { lang => lang.as_str(), ..ctx };
        match self.env.get_template(name).and_then(|template| template.render(ctx)) {
            Ok(html) => HttpResponse::build(status).content_type("text/html; charset=utf-8").body(html),
            Err(error) => {
                tracing::error!(%error, template = name, "rendering failed");
                HttpResponse::InternalServerError().content_type("text/plain").body("page unavailable")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn lang_of(request: TestRequest) -> Lang {
        Lang::negotiate(&request.to_http_request()).0
    }

    #[test]
    fn the_language_comes_from_the_query_then_the_cookie_then_accept_language() {
        let english_browser = || TestRequest::default().insert_header(("Accept-Language", "en-US,en;q=0.9,zh;q=0.5"));
        assert_eq!(lang_of(english_browser()), Lang::En);
        assert_eq!(lang_of(english_browser().uri("/x?lang=zh")), Lang::Zh);
        assert_eq!(lang_of(english_browser().cookie(Cookie::new(LANG_COOKIE, "zh"))), Lang::Zh);
        assert_eq!(lang_of(TestRequest::default().insert_header(("Accept-Language", "fr, zh-CN;q=0.8"))), Lang::Zh);
        assert_eq!(lang_of(TestRequest::default().insert_header(("Accept-Language", "fr"))), Lang::Zh);
        assert_eq!(lang_of(TestRequest::default()), Lang::Zh);
    }

    #[test]
    fn choosing_a_language_sets_a_cookie_and_a_bad_choice_is_ignored() {
        let (lang, cookie) = Lang::negotiate(&TestRequest::default().uri("/x?lang=en").to_http_request());
        assert_eq!(lang, Lang::En);
        assert_eq!(cookie.map(|c| c.value().to_owned()).as_deref(), Some("en"));
        let (lang, cookie) = Lang::negotiate(&TestRequest::default().uri("/x?lang=xx").to_http_request());
        assert_eq!((lang, cookie.is_none()), (Lang::Zh, true));
    }

    /// Every `t("…")` in a built-in template has both languages in the catalog.
    #[test]
    fn every_message_a_template_uses_exists_in_both_languages() {
        let pages = Pages::load(None).expect("built-in pages load");
        let mut used = 0;
        for &(name, source) in BUILT_IN {
            let keys = source.split("t(\"").skip(1).filter_map(|rest| rest.split_once('"').map(|(key, _)| key));
            for key in keys {
                used += 1;
                for lang in ["zh", "en"] {
                    assert!(pages.has_message(key, lang), "{name}: {key} has no {lang} text in {MESSAGES}");
                }
            }
        }
        assert!(used > 0, "the templates use the catalog");
    }

    #[test]
    fn an_override_replaces_a_template_and_a_broken_one_stops_the_start() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("install_error.html"), "custom {{ t(\"install.error.again\") }}")
            .expect("write");
        let pages = Pages::load(Some(dir.path())).expect("loads");
        let response = pages.render(StatusCode::OK, "install_error.html", Lang::En, Value::UNDEFINED);
        let body =
            actix_web::rt::System::new().block_on(actix_web::body::to_bytes(response.into_body())).expect("body");
        assert!(String::from_utf8_lossy(&body).starts_with("custom "), "{body:?}");

        std::fs::write(dir.path().join("install.html"), "{% if %}").expect("write");
        assert!(matches!(Pages::load(Some(dir.path())), Err(PagesError::Template { name: "install.html", .. })));
    }
}
