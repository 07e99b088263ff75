//! The one clock of the daemon: every "now" (token and lease expiry, audit
//! times, KV version times, key terms) comes from here, so unit tests can move
//! time forward instead of sleeping. `clippy.toml` forbids
//! `SystemTime::now` elsewhere.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[cfg(test)]
thread_local! {
    /// How far tests have moved this thread's clock ahead.
    static AHEAD: std::cell::Cell<Duration> = const { std::cell::Cell::new(Duration::ZERO) };
}

/// The current time.
#[allow(clippy::disallowed_methods)]
pub fn now() -> SystemTime {
    let now = SystemTime::now();
    #[cfg(test)]
    let now = now + AHEAD.with(std::cell::Cell::get);
    now
}

/// Moves this thread's clock `by` ahead (a test on a current-thread runtime
/// moves the clock of everything it runs).
#[cfg(test)]
pub fn advance(by: Duration) {
    AHEAD.with(|ahead| ahead.set(ahead.get() + by));
}

fn since_epoch() -> Duration {
    now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// Whole seconds since the Unix epoch.
pub fn now_seconds() -> u64 {
    since_epoch().as_secs()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    u64::try_from(since_epoch().as_millis()).unwrap_or(u64::MAX)
}

/// Nanoseconds since the Unix epoch.
pub fn now_nanos() -> u64 {
    u64::try_from(since_epoch().as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_moves_every_reading_of_this_threads_clock() {
        let before = now_seconds();
        advance(Duration::from_secs(3600));
        let after = now_seconds();
        assert!((3600..3700).contains(&(after - before)), "{before} {after}");
        assert!(now_ms() / 1000 >= after);
        let other = std::thread::spawn(now_seconds).join().unwrap();
        assert!(other < after, "other threads keep the real time");
    }
}
