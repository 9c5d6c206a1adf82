//! A decrypted plaintext, which WeCom (or a holder of the keys) controls: XML →
//! elements → typed message and the redacted JSON of its fields never panic, and a
//! rejection's reason stays short and on one line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wecom_provider::wecom::callback::{message_from, parse};

const MAX_REASON_CHARS: usize = 400;

fuzz_target!(|data: &[u8]| {
    let Ok(xml) = std::str::from_utf8(data) else {
        return;
    };
    match parse(xml) {
        Ok(elements) => {
            if let Err(error) = message_from(&elements) {
                check_reason(&error.to_string());
            }
            elements.to_redacted_json();
        }
        Err(error) => check_reason(&error.to_string()),
    }
});

fn check_reason(reason: &str) {
    assert!(reason.chars().count() <= MAX_REASON_CHARS, "reason of {} chars", reason.chars().count());
    assert!(!reason.contains('\n'), "a reason cannot start a log line");
}
