//! Failed authentications per client address. After [`LIMIT`] failures within one
//! [`WINDOW`] (from the first), the address is refused without its bearer being looked
//! at until the window ends. At most [`MAX_ADDRESSES`] windows are kept: past it, ended
//! windows are dropped, then the oldest.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const LIMIT: u32 = 10;
const WINDOW: Duration = Duration::from_secs(60);
const MAX_ADDRESSES: usize = 10_000;

#[derive(Clone, Copy)]
struct Window {
    opened: Instant,
    failures: u32,
}

impl Window {
    fn ended(&self, now: Instant) -> bool {
        now.duration_since(self.opened) >= WINDOW
    }
}

#[derive(Default)]
pub struct FailedAttempts {
    windows: Mutex<HashMap<IpAddr, Window>>,
}

impl FailedAttempts {
    /// Whole seconds (at least 1) until `client` may try again, while it is refused.
    pub fn blocked(&self, client: IpAddr, now: Instant) -> Option<u64> {
        let windows = self.windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let window = windows.get(&client).filter(|window| !window.ended(now) && window.failures >= LIMIT)?;
        let left = WINDOW.saturating_sub(now.duration_since(window.opened));
        Some(u64::try_from(left.as_millis().div_ceil(1000)).unwrap_or(1).max(1))
    }

    pub fn record(&self, client: IpAddr, now: Instant) {
        let mut windows = self.windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !windows.contains_key(&client) && windows.len() >= MAX_ADDRESSES {
            windows.retain(|_, window| !window.ended(now));
            if windows.len() >= MAX_ADDRESSES
                && let Some(oldest) = windows.iter().min_by_key(|(_, window)| window.opened).map(|(ip, _)| *ip)
            {
                windows.remove(&oldest);
            }
        }
        let window = windows.entry(client).or_insert(Window { opened: now, failures: 0 });
        if window.ended(now) {
            *window = Window { opened: now, failures: 0 };
        }
        window.failures += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(n))
    }

    #[test]
    fn ten_failures_within_a_minute_refuse_the_address_until_its_window_ends() {
        let attempts = FailedAttempts::default();
        let start = Instant::now();
        for i in 0..LIMIT {
            assert_eq!(attempts.blocked(ip(1), start), None, "after {i} failures");
            attempts.record(ip(1), start + Duration::from_secs(u64::from(i)));
        }
        assert_eq!(attempts.blocked(ip(1), start + Duration::from_secs(10)), Some(50));
        assert_eq!(attempts.blocked(ip(1), start + Duration::from_millis(59_001)), Some(1));
        assert_eq!(attempts.blocked(ip(2), start), None, "another address is not refused");
        assert_eq!(attempts.blocked(ip(1), start + WINDOW), None, "the window ended");
        attempts.record(ip(1), start + WINDOW);
        assert_eq!(attempts.blocked(ip(1), start + WINDOW), None, "a new window counts from one");
    }

    #[test]
    fn failures_spread_over_more_than_a_minute_are_not_refused() {
        let attempts = FailedAttempts::default();
        let start = Instant::now();
        for i in 0..30 {
            let at = start + Duration::from_secs(7 * i);
            assert_eq!(attempts.blocked(ip(1), at), None, "failure {i}");
            attempts.record(ip(1), at);
        }
    }

    #[test]
    fn the_addresses_kept_are_bounded_and_ended_windows_go_first() {
        let attempts = FailedAttempts::default();
        let start = Instant::now();
        let count = u32::try_from(MAX_ADDRESSES).expect("small");
        for n in 0..count {
            attempts.record(ip(n), start);
        }
        for _ in 0..LIMIT {
            attempts.record(ip(0), start);
        }
        let later = start + Duration::from_secs(1);
        attempts.record(ip(count), later);
        assert_eq!(attempts.windows.lock().expect("lock").len(), MAX_ADDRESSES);
        let after_window = start + WINDOW;
        attempts.record(ip(count + 1), after_window);
        assert_eq!(attempts.windows.lock().expect("lock").len(), 2, "ended windows were dropped");
    }
}
