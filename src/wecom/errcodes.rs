//! WeCom errcodes, classified once (PROTOCOL.md §5, PROTOCOL-2.md §2.5, §3, §4).
//! Retries, the token center, effects, the ID service, the install page and the API
//! all match on [`ErrcodeClass`]; no other module lists errcodes by number. An
//! errcode WeCom has not documented to us is [`ErrcodeClass::Final`]: surfaced,
//! never retried.
//!
//! "This API is not permitted" (48001, 48002, 48003, 48005) is `Final`: it says
//! nothing about the corp's authorization. Only the errcodes WeCom documents for a
//! dead permanent code or authorization (40084, 48004) are
//! [`ErrcodeClass::AuthorizationRevoked`], and even those mark a corp only where the
//! permanent code itself was presented (see `Tokens::mark_if_revoked`).

/// What an errcode means for whoever called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrcodeClass {
    /// WeCom is busy: trying again later can succeed.
    Transient,
    /// Over a frequency limit: only waiting helps.
    RateLimited,
    /// The token presented is invalid or expired: drop it, fetch a new one, retry once.
    BadToken,
    /// The corp's permanent code or authorization is gone: stop until it installs again.
    AuthorizationRevoked,
    /// About one item of a request (a user, an ID, a license code), not the request.
    ItemRejected,
    /// Anything else: surfaced as it is, never retried.
    Final,
}

pub const SYSTEM_BUSY: i64 = -1;
pub const INVALID_SUITE_TICKET: i64 = 40085;
/// An OAuth or web-login code that is unknown, used or expired.
pub const INVALID_OAUTH_CODE: i64 = 40029;
/// A JS-SDK ticket that cannot be used (for example one fetched for another app).
pub const JSAPI_TICKET_UNUSABLE: i64 = 42012;

/// Single-use codes WeCom refuses because they are spent or expired: the OAuth
/// code (40029), the auth code (40078) and the pre_auth_code (42007). The person
/// must start again; retrying cannot help.
pub const SPENT_CODE_ERRCODES: [i64; 3] = [INVALID_OAUTH_CODE, 40078, 42007];

/// The first and last license (接口调用许可) errcode: per account or code.
const LICENSE_ERRCODES: std::ops::RangeInclusive<i64> = 701_000..=701_999;

pub fn classify(errcode: i64) -> ErrcodeClass {
    match errcode {
        SYSTEM_BUSY => ErrcodeClass::Transient,
        // 45009 frequency limit; 45033 too many concurrent calls of one API in a corp.
        45009 | 45033 => ErrcodeClass::RateLimited,
        // 40001 secret/credential, 40014 access_token, 42001 expired, 40082 suite or
        // provider token, 42009 suite token expired.
        40001 | 40014 | 42001 | 40082 | 42009 => ErrcodeClass::BadToken,
        // 40084 invalid permanent_code; 48004 authorization cancelled.
        40084 | 48004 => ErrcodeClass::AuthorizationRevoked,
        // 60011 outside the app's range, 60111 unknown userid, 40003 invalid userid,
        // 84014/84015 the member's user_ticket; 701xxx licenses (PROTOCOL-2 §2.5).
        60011 | 60111 | 40003 | 84014 | 84015 => ErrcodeClass::ItemRejected,
        code if LICENSE_ERRCODES.contains(&code) => ErrcodeClass::ItemRejected,
        _ => ErrcodeClass::Final,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every errcode the service names, with its class.
    #[test]
    fn every_named_errcode_has_its_class() {
        use ErrcodeClass::*;
        let table = [
            (-1, Transient),
            (45009, RateLimited),
            (45033, RateLimited),
            (40001, BadToken),
            (40014, BadToken),
            (42001, BadToken),
            (40082, BadToken),
            (42009, BadToken),
            (40084, AuthorizationRevoked),
            (48004, AuthorizationRevoked),
            (60011, ItemRejected),
            (60111, ItemRejected),
            (40003, ItemRejected),
            (84014, ItemRejected),
            (84015, ItemRejected),
            (701_001, ItemRejected),
            (701_008, ItemRejected),
            (701_022, ItemRejected),
            (701_099, ItemRejected),
            (701_147, ItemRejected),
            (40013, Final),
            (40029, Final),
            (40058, Final),
            (40078, Final),
            (40083, Final),
            (40085, Final),
            (40086, Final),
            (40093, Final),
            (41001, Final),
            (42007, Final),
            (42012, Final),
            (48001, Final),
            (48002, Final),
            (48003, Final),
            (48005, Final),
            (50001, Final),
            (60020, Final),
            (84024, Final),
            (90433, Final),
            (123_456, Final),
        ];
        for (errcode, class) in table {
            assert_eq!(classify(errcode), class, "errcode {errcode}");
        }
    }

    #[test]
    fn an_api_that_is_not_permitted_never_means_a_revoked_authorization() {
        for errcode in [48001, 48002, 48003, 48005, 60020] {
            assert_ne!(classify(errcode), ErrcodeClass::AuthorizationRevoked, "errcode {errcode}");
        }
    }

    #[test]
    fn spent_codes_are_final() {
        for errcode in SPENT_CODE_ERRCODES {
            assert_eq!(classify(errcode), ErrcodeClass::Final, "errcode {errcode}");
        }
    }
}
