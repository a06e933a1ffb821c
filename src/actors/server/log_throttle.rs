//! A log throttle: lets one line through per interval and counts the ones it held back.
//!
//! Owns nothing but its clock reading and count. A condition that can repeat thousands of
//! times a second (accept failing for lack of file descriptors, a flood of hostile sockets)
//! must not flood the log or cost more than the condition itself; the line that does get
//! through says how many were suppressed. It never logs by itself and takes no lock: the
//! caller holds it behind `&mut` (an actor's field, or inside the caller's own lock).

use std::time::{Duration, Instant};

/// Allows one event per `every`, counting the others.
#[derive(Debug)]
pub struct LogThrottle {
    /// Shortest gap between two logged lines.
    every: Duration,
    /// When the last line was let through; `None` before the first.
    last: Option<Instant>,
    /// Events held back since then.
    suppressed: u64,
}

impl LogThrottle {
    /// A throttle letting one line through per `every`.
    pub const fn new(every: Duration) -> Self {
        LogThrottle {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// Whether an event happening at `now` should be logged. `Some(n)`: log it, and say
    /// that `n` were suppressed before it; `None`: stay quiet (it is counted).
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.every => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_of_the_others() {
        let mut t = LogThrottle::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(t.allow(t0), Some(0));
        for i in 1..10 {
            assert_eq!(t.allow(t0 + Duration::from_millis(100 * i)), None);
        }
        assert_eq!(t.allow(t0 + Duration::from_millis(1000)), Some(9));
        assert_eq!(t.allow(t0 + Duration::from_millis(1500)), None);
        assert_eq!(t.allow(t0 + Duration::from_millis(5000)), Some(1));
    }
}
