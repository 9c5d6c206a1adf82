//! Quoting untrusted input in answers and logs: a short excerpt with every control
//! character escaped, so no input can make an answer large or start a log line.

/// Characters of input an error may quote.
pub const EXCERPT_CHARS: usize = 64;

/// At most [`EXCERPT_CHARS`] characters of `input`, control characters (newlines
/// included) escaped as `\n`, `\u{1b}` …, and `…` when it was cut.
pub fn excerpt(input: &str) -> String {
    excerpt_of(input, EXCERPT_CHARS)
}

/// As [`excerpt`], at most `max_chars` characters: for messages that quote a little
/// input inside a longer explanation (a JSON parser's, naming the expected fields).
pub fn excerpt_of(input: &str, max_chars: usize) -> String {
    let mut quoted = String::new();
    let mut chars = input.chars();
    for c in chars.by_ref().take(max_chars) {
        if c.is_control() {
            quoted.extend(c.escape_default());
        } else {
            quoted.push(c);
        }
    }
    if chars.next().is_some() {
        quoted.push('…');
    }
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_excerpt_is_short_and_on_one_line() {
        assert_eq!(excerpt("short"), "short");
        assert_eq!(excerpt("a\nb\r\u{1b}[31m"), "a\\nb\\r\\u{1b}[31m");
        let long = "x".repeat(800_000);
        let quoted = excerpt(&long);
        assert_eq!(quoted.chars().count(), EXCERPT_CHARS + 1);
        assert!(quoted.ends_with('…'));
        assert_eq!(excerpt(&"名".repeat(100)).chars().count(), EXCERPT_CHARS + 1);
    }

    proptest::proptest! {
        #[test]
        fn no_excerpt_holds_a_line_break_or_grows_unbounded(input in ".*") {
            let quoted = excerpt(&input);
            proptest::prop_assert!(!quoted.contains('\n') && !quoted.contains('\r'));
            proptest::prop_assert!(quoted.chars().count() <= EXCERPT_CHARS * 10 + 1);
        }
    }
}
