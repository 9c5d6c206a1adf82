//! Identifiers, kinds and statuses shared by the store, the services and the
//! handlers. Identifiers are newtypes that diesel and serde see through (stored and
//! written as the text or number inside), so one kind of id cannot be passed where
//! another is expected; kinds and statuses are enums that diesel stores and serde
//! writes as their snake_case names. A leaf module.

use std::fmt;
use std::str::FromStr;

use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql};
use diesel::serialize::{self, ToSql};
use diesel::sql_types::Text;
use diesel_derive_newtype::DieselNewType;
use serde::{Deserialize, Serialize};

/// A text identifier: transparent to diesel and serde, built from raw text only
/// where it is parsed (handlers, callback parsing, the command line).
macro_rules! text_id {
    ($($(#[$meta:meta])* $name:ident;)+) => {$(
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, DieselNewType, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(text: String) -> Self {
                $name(text)
            }
        }

        impl From<&str> for $name {
            fn from(text: &str) -> Self {
                $name(text.to_owned())
            }
        }

        // The text inside, as serde writes it.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                <String as utoipa::PartialSchema>::schema()
            }
        }

        impl utoipa::ToSchema for $name {}
    )+};
}

text_id! {
    /// A suite's id (`SuiteId`, `ww…`): a third-party app, a template or the login app.
    SuiteId;
    /// An authorizing corp's corpid, as the suite sees it.
    CorpId;
    /// The service provider's own corpid, which owns suites.
    ProviderCorpId;
    /// A member's userid within a corp (open or plain, as WeCom gave it).
    UserId;
    /// An external contact's external_userid.
    ExternalUserId;
    /// The id of an identity link still waiting for its customer.
    PendingId;
}

/// An event's id in the log. Ids grow with each append; a reader pages only up to
/// `store::events::committed_through`, below which every id has committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, DieselNewType, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(i64);

impl EventId {
    /// Before every event (ids start at 1): where a reader starts.
    pub const BEFORE_ALL: EventId = EventId(0);

    pub fn new(id: i64) -> Self {
        EventId(id)
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl utoipa::PartialSchema for EventId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <i64 as utoipa::PartialSchema>::schema()
    }
}

impl utoipa::ToSchema for EventId {}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An enum stored as text: its names, parsing, `Display`, serde and diesel.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, diesel::expression::AsExpression, diesel::deserialize::FromSqlRow)]
        #[diesel(sql_type = Text)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;

            fn from_str(text: &str) -> Result<Self, UnknownName> {
                match text {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownName {
                        what: stringify!($name),
                        expected: [$($text),+].join(", "),
                    }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        // A string, one of the names.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$($text),+]))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }

        impl<DB: Backend> ToSql<Text, DB> for $name
        where
            str: ToSql<Text, DB>,
        {
            fn to_sql<'b>(&'b self, out: &mut serialize::Output<'b, '_, DB>) -> serialize::Result {
                self.as_str().to_sql(out)
            }
        }

        impl<DB: Backend> FromSql<Text, DB> for $name
        where
            String: FromSql<Text, DB>,
        {
            fn from_sql(bytes: DB::RawValue<'_>) -> deserialize::Result<Self> {
                Ok(String::from_sql(bytes)?.parse()?)
            }
        }
    };
}

/// A name that is not one of an enum's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be one of: {expected}")]
pub struct UnknownName {
    pub what: &'static str,
    pub expected: String,
}

text_enum! {
    /// What a suite is, stored with it (never guessed from its id).
    SuiteKind {
        /// A third-party app (第三方应用): corp tokens through get_corp_token.
        ThirdParty => "third_party",
        /// A customized-app template (代开发模版): the permanent code is the app's secret.
        CustomizedTemplate => "customized_template",
        /// The login app (登录授权应用) that web login uses.
        Login => "login",
    }
}

text_enum! {
    /// Which get_permanent_code a suite exchanges auth codes with: v2 (fast; the
    /// agent, privileges and edition then come from get_auth_info) or v1.
    #[derive(Default)]
    PermanentCodeApi {
        #[default]
        V2 => "v2",
        V1 => "v1",
    }
}

text_enum! {
    /// Where an event is in the log: waiting for its effect, applied, or given up.
    EventStatus {
        Pending => "pending",
        Done => "done",
        Failed => "failed",
    }
}

text_enum! {
    /// Whether a corp's authorization of a suite stands.
    CorpStatus {
        Active => "active",
        Cancelled => "cancelled",
    }
}

text_enum! {
    /// An auth code's single use: being exchanged, exchanged, or sent without an answer.
    CodeStatus {
        Exchanging => "exchanging",
        Done => "done",
        Lost => "lost",
    }
}

text_enum! {
    /// An identity's link in a corp: waiting for its customer, linked, or left.
    LinkStatus {
        Pending => "pending",
        Linked => "linked",
        Removed => "removed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_unknown_names_list_the_known_ones() {
        for kind in SuiteKind::ALL {
            assert_eq!(kind.as_str().parse::<SuiteKind>(), Ok(*kind));
            assert_eq!(serde_json::to_string(kind).expect("serialises"), format!("\"{kind}\""));
        }
        let error = "dk".parse::<SuiteKind>().expect_err("unknown");
        assert_eq!(error.to_string(), "must be one of: third_party, customized_template, login");
    }

    #[test]
    fn statuses_keep_the_names_the_columns_and_the_json_hold() {
        fn names<T: Copy + fmt::Display>(all: &[T]) -> Vec<String> {
            all.iter().map(|status| status.to_string()).collect()
        }
        assert_eq!(names(EventStatus::ALL), ["pending", "done", "failed"]);
        assert_eq!(names(CorpStatus::ALL), ["active", "cancelled"]);
        assert_eq!(names(CodeStatus::ALL), ["exchanging", "done", "lost"]);
        assert_eq!(names(LinkStatus::ALL), ["pending", "linked", "removed"]);
        assert_eq!(serde_json::to_string(&EventStatus::Done).expect("serialises"), "\"done\"");
    }

    #[test]
    fn identifiers_serialize_as_what_they_hold() {
        let suite = SuiteId::from("ww4asffe99e54c0f4c");
        assert_eq!(serde_json::to_string(&suite).expect("serialises"), "\"ww4asffe99e54c0f4c\"");
        assert_eq!(serde_json::from_str::<SuiteId>("\"ww4asffe99e54c0f4c\"").expect("parses"), suite);
        assert_eq!(serde_json::to_string(&EventId::new(42)).expect("serialises"), "42");
        assert_eq!(serde_json::from_str::<EventId>("42").expect("parses"), EventId::new(42));
        assert_eq!(suite.to_string(), "ww4asffe99e54c0f4c");
    }
}
