//! A decrypted plaintext, which WeCom (or a holder of the keys) controls: XML →
//! fields → typed message and the redaction of its secrets never panic, and a
//! rejection's reason stays short and on one line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wecom_provider::wecom::callback::{message_from_fields, parse_fields, redact};

const MAX_REASON_CHARS: usize = 400;

fuzz_target!(|data: &[u8]| {
    let Ok(xml) = std::str::from_utf8(data) else {
        return;
    };
    match parse_fields(xml) {
        Ok(mut fields) => {
            if let Err(error) = message_from_fields(&fields) {
                check_reason(&error.to_string());
            }
            redact(&mut fields);
        }
        Err(error) => check_reason(&error.to_string()),
    }
});

fn check_reason(reason: &str) {
    assert!(reason.chars().count() <= MAX_REASON_CHARS, "reason of {} chars", reason.chars().count());
    assert!(!reason.contains('\n'), "a reason cannot start a log line");
}
