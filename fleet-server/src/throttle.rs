//! Throttling of failed operator sign-ins and bearer tokens, per client address and overall:
//! `PER_ADDRESS` failures from one address within `WINDOW` lock that address out for
//! `WINDOW`; `OVERALL` failures from all addresses within `WINDOW` lock out every sign-in for
//! `WINDOW`, so that many addresses cannot share the guessing. A locked-out attempt is refused
//! before its token is looked at (a 429 that depended on the token would answer the guess).
//!
//! Device credentials are not throttled here: a gateway speaks for its whole line from one
//! address, so one misconfigured board would lock out the line; they are 192-bit random, and
//! each failure is counted in `fleet_device_auth_failures_total`.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed attempts one address may make within `WINDOW`.
pub const PER_ADDRESS: usize = 10;
/// Failed attempts all addresses together may make within `WINDOW`.
pub const OVERALL: usize = 100;
/// The window failures are counted over, and the lockout's length.
pub const WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
struct Failures {
    /// Times of the failures within the window, oldest first.
    at: VecDeque<Instant>,
    /// Refused until then.
    locked_until: Option<Instant>,
}

impl Failures {
    fn forget_before(&mut self, now: Instant) {
        while self
            .at
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            self.at.pop_front();
        }
        if self.locked_until.is_some_and(|u| u <= now) {
            self.locked_until = None;
        }
    }

    fn retry_after(&self, now: Instant) -> Option<u64> {
        let left = self.locked_until?.saturating_duration_since(now);
        // Whole seconds, rounded up: a client that waits that long is let in.
        Some(left.as_millis().div_ceil(1000).max(1) as u64)
    }

    fn fail(&mut self, now: Instant, limit: usize) {
        self.at.push_back(now);
        if self.at.len() >= limit {
            self.locked_until = Some(now + WINDOW);
        }
    }
}

#[derive(Debug, Default)]
struct State {
    by_address: HashMap<IpAddr, Failures>,
    overall: Failures,
}

/// The failures seen, shared by every worker.
#[derive(Debug, Default)]
pub struct Throttle {
    state: Mutex<State>,
}

impl Throttle {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut s)
    }

    /// `Some(seconds)` when `addr` (or everyone) is locked out now.
    pub fn check(&self, addr: Option<IpAddr>) -> Option<u64> {
        let now = Instant::now();
        self.with(|s| {
            s.overall.forget_before(now);
            let mine = addr.and_then(|a| {
                let f = s.by_address.get_mut(&a)?;
                f.forget_before(now);
                f.retry_after(now)
            });
            mine.max(s.overall.retry_after(now))
        })
    }

    /// Notes a failed attempt from `addr`.
    pub fn fail(&self, addr: Option<IpAddr>) {
        let now = Instant::now();
        self.with(|s| {
            // Addresses without a failure in the window are forgotten, so the table stays as
            // large as the failures of one window.
            s.by_address.retain(|_, f| {
                f.forget_before(now);
                !f.at.is_empty() || f.locked_until.is_some()
            });
            s.overall.forget_before(now);
            s.overall.fail(now, OVERALL);
            if let Some(a) = addr {
                s.by_address.entry(a).or_default().fail(now, PER_ADDRESS);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_locked_out_at_its_limit_and_others_are_not() {
        let t = Throttle::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..PER_ADDRESS - 1 {
            t.fail(Some(a));
            assert_eq!(t.check(Some(a)), None);
        }
        t.fail(Some(a));
        assert_eq!(t.check(Some(a)), Some(WINDOW.as_secs()));
        assert_eq!(t.check(Some(b)), None);
    }

    #[test]
    fn many_addresses_together_lock_out_everyone() {
        let t = Throttle::default();
        for i in 0..OVERALL {
            let a = IpAddr::from([10, 0, (i / 250) as u8, (i % 250) as u8]);
            t.fail(Some(a));
        }
        let fresh: IpAddr = "192.168.1.1".parse().unwrap();
        assert_eq!(t.check(Some(fresh)), Some(WINDOW.as_secs()));
    }
}
