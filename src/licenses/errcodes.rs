//! WeCom's license errcodes (701xxx, and the balance-payment ones) with a short
//! meaning for the API's 409 answers (PROTOCOL-2.md §2.5). One table: every
//! license error the API surfaces is explained from here.

/// errcode → what it means for the caller.
const MEANINGS: [(i64, &str); 50] = [
    (701001, "not a base account"),
    (701002, "invalid account"),
    (701003, "the active code is already bound to a member"),
    (701004, "the member lacks an account of that type, so it cannot be renewed"),
    (701005, "invalid order"),
    (701008, "the member has no valid interworking (互通) license"),
    (701011, "the userid is already bound to a code of that type"),
    (701012, "the active code is past its 365-day binding window"),
    (701015, "the corp has not authorized a third-party or customized app of this provider: no order possible"),
    (701016, "the account is not active or has expired"),
    (701017, "the member's license was transferred within the last 30 days"),
    (701018, "the receiving member already holds a license of that type with more than 20 days left"),
    (701019, "invalid userid, or a member of another corp"),
    (701021, "invalid active code, or a code of another corp"),
    (701022, "the codes are still being generated; retry later"),
    (701024, "every item of the batch failed"),
    (701026, "the list is too long"),
    (701027, "test corp limit reached"),
    (701028, "test corp limit reached"),
    (701029, "test corp limit reached"),
    (701030, "the stacked validity would exceed 5 years"),
    (701031, "another order of the corp is being migrated"),
    (701032, "the corp has an unpaid order"),
    (701033, "another order of the corp is still generating its codes"),
    (701034, "the legacy corp must be migrated to licenses first"),
    (701035, "test and formal orders conflict"),
    (701036, "test and formal orders conflict"),
    (701037, "a refund of the order is pending"),
    (701051, "downstream sharing failed"),
    (701052, "downstream sharing failed"),
    (701053, "downstream sharing failed"),
    (701054, "downstream sharing failed"),
    (701055, "downstream sharing failed"),
    (701056, "downstream sharing failed"),
    (701057, "downstream sharing failed"),
    (701058, "downstream sharing failed"),
    (701070, "invalid auto-activation status"),
    (701071, "the provider never bought licenses for this corp"),
    (701081, "the code changed meanwhile; read it again"),
    (
        701082,
        "the member's current code has more than 20 days left: re-activation is allowed only within its last 20 days",
    ),
    (701083, "the order is unpaid"),
    (701084, "the order is not unpaid"),
    (701086, "the order is not of this corp"),
    (701087, "the corp has no app with interworking permission"),
    (701088, "the member is outside the app's visible range"),
    (701090, "the renewal's duration is zero"),
    (701099, "the member has no valid license"),
    (90432, "no recharge account for balance payment"),
    (90433, "insufficient balance"),
    (701147, "over the per-payment limit"),
];

/// The meaning of a license errcode; `None` for codes that are not license errors.
pub fn meaning(errcode: i64) -> Option<&'static str> {
    if let Some((_, meaning)) = MEANINGS.iter().find(|(code, _)| *code == errcode) {
        return Some(meaning);
    }
    (701_000..702_000).contains(&errcode).then_some("license error (see WeCom's errmsg)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_callers_hit_most_are_explained() {
        assert!(meaning(701082).unwrap().contains("20 days"));
        assert!(meaning(701030).unwrap().contains("5 years"));
        assert!(meaning(701999).is_some());
        assert_eq!(meaning(40014), None);
        assert_eq!(meaning(60011), None);
    }
}
