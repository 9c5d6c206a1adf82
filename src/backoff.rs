//! Retry delays shared by every retrying loop (effects, identity matching, webhooks).

/// Delay before attempt `attempts + 1`: 1 s, 2 s, 4 s … capped at 5 minutes.
pub fn backoff_ms(attempts: i32) -> i64 {
    let exponent = u32::try_from(attempts.clamp(0, 16)).unwrap_or(16);
    (1_000_i64 << exponent).min(300_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_and_is_capped() {
        assert_eq!(backoff_ms(0), 1_000);
        assert_eq!(backoff_ms(1), 2_000);
        assert_eq!(backoff_ms(4), 16_000);
        assert_eq!(backoff_ms(9), 300_000);
        assert_eq!(backoff_ms(40), 300_000);
    }
}
