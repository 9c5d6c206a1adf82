//! The bytes an unauthenticated client controls first: the query string and the
//! XML envelope. Parsing never panics, and a rejection's reason stays short.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wecom_provider::events::gateway::CallbackQuery;
use wecom_provider::wecom::callback::parse_envelope;

/// What a rejection may quote of the input, with room for its own words.
const MAX_REASON_CHARS: usize = 400;

fuzz_target!(|data: &[u8]| {
    // The query is text actix has already split off the request line.
    let query = CallbackQuery::parse(&String::from_utf8_lossy(data));
    drop(query);
    if let Err(error) = parse_envelope(data) {
        let reason = error.to_string();
        assert!(reason.chars().count() <= MAX_REASON_CHARS, "reason of {} chars", reason.chars().count());
        assert!(!reason.contains('\n'), "a reason cannot start a log line");
    }
});
