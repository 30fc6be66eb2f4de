//! Retry policy: exponential backoff with jitter, honouring `Retry-After`.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// How often and how patiently a failed request is tried again.
///
/// Retried: HTTP 408, 429, 500, 502, 503, 504, connection resets, timeouts. Never retried:
/// 401/403 and other 4xx, TLS verification failures, source read errors.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Total attempts per operation, the first included.
    pub max_attempts: u32,
    /// Delay before the second attempt; doubled for every further one.
    pub base_delay: Duration,
    /// Upper bound of one delay (also caps a `Retry-After`).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `attempt + 1` (`attempt` counts from 1), given the server's
    /// `Retry-After` if it sent one. Full jitter in `[d/2, d]` keeps parallel uploads from
    /// retrying in lock step.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(ra) = retry_after {
            return ra.min(self.max_delay);
        }
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let d = exp.min(self.max_delay);
        let half = d / 2;
        let jitter_ns = if half.is_zero() {
            0
        } else {
            random_u64() % (half.as_nanos() as u64 + 1)
        };
        half + Duration::from_nanos(jitter_ns)
    }
}

/// Whether an HTTP status is worth another attempt.
pub(crate) fn retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// Parses `Retry-After` in its delta-seconds form; the HTTP-date form falls back to backoff.
pub(crate) fn parse_retry_after(value: Option<&reqwest::header::HeaderValue>) -> Option<Duration> {
    let secs: u64 = value?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs))
}

/// A random number from the standard library's per-process hash keys; good enough for jitter.
fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        for (attempt, lo, hi) in [(1, 50, 100), (2, 100, 200), (3, 200, 400), (8, 500, 1000)] {
            let d = p.delay(attempt, None).as_millis() as u64;
            assert!((lo..=hi).contains(&d), "attempt {attempt}: {d} ms");
        }
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(7))),
            Duration::from_secs(1)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_millis(300))),
            Duration::from_millis(300)
        );
    }

    #[test]
    fn retry_after_forms() {
        use reqwest::header::HeaderValue;
        let v = HeaderValue::from_static("2");
        assert_eq!(parse_retry_after(Some(&v)), Some(Duration::from_secs(2)));
        let v = HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT");
        assert_eq!(parse_retry_after(Some(&v)), None);
        assert_eq!(parse_retry_after(None), None);
        assert!(retryable_status(429) && retryable_status(503) && !retryable_status(401));
    }
}
