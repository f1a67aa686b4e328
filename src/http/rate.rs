//! A per-client rate limit for a route: a token bucket per client address. A bucket fills
//! at `per_minute` and holds at most `burst`; a request takes one token or is answered 429
//! with the time until the next one. The table of clients is bounded: when it grows past
//! `MAX_CLIENTS`, buckets that have filled up again (clients gone quiet) are dropped first.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Clients remembered at once.
const MAX_CLIENTS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateLimit {
    pub per_minute: u32,
    pub burst: u32,
}

pub(crate) struct Limiter {
    limit: RateLimit,
    /// Tokens added per second.
    rate: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Limiter {
    pub(crate) fn new(limit: RateLimit) -> Limiter {
        Limiter {
            limit,
            rate: f64::from(limit.per_minute.max(1)) / 60.0,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// `burst` at once, then `burst` an hour.
    pub(crate) fn per_hour(burst: u32) -> Limiter {
        Limiter {
            limit: RateLimit {
                per_minute: 0,
                burst,
            },
            rate: f64::from(burst.max(1)) / 3600.0,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn per_second(&self) -> f64 {
        self.rate
    }

    /// Takes a token for `client` at `now`, or says how long until one is there.
    pub(crate) fn check(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let burst = f64::from(self.limit.burst.max(1));
        let rate = self.per_second();
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_CLIENTS && !buckets.contains_key(&client) {
            buckets.retain(|_, b| b.level(now, rate, burst) < burst);
            if buckets.len() >= MAX_CLIENTS {
                // Every client is busy: forget the table rather than grow without bound.
                buckets.clear();
            }
        }
        let bucket = buckets.entry(client).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        bucket.tokens = bucket.level(now, rate, burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
        }
    }
}

impl Bucket {
    fn level(&self, now: Instant, rate: f64, burst: f64) -> f64 {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        (self.tokens + elapsed * rate).min(burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_one_request_per_interval() {
        let limiter = Limiter::new(RateLimit {
            per_minute: 60,
            burst: 3,
        });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = crate::clock::instant();
        for _ in 0..3 {
            assert!(limiter.check(a, t0).is_ok());
        }
        let wait = limiter.check(a, t0).unwrap_err();
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1));
        // Another client has its own bucket.
        assert!(limiter.check(b, t0).is_ok());
        // One token a second comes back.
        assert!(limiter.check(a, t0 + Duration::from_millis(1010)).is_ok());
        assert!(limiter.check(a, t0 + Duration::from_millis(1020)).is_err());
    }

    #[test]
    fn the_table_of_clients_stays_bounded() {
        let limiter = Limiter::new(RateLimit {
            per_minute: 60,
            burst: 2,
        });
        let t0 = crate::clock::instant();
        for i in 0..(u32::try_from(MAX_CLIENTS).unwrap() + 50) {
            let ip = IpAddr::from(i.to_be_bytes());
            let _ = limiter.check(ip, t0);
        }
        assert!(limiter.buckets.lock().unwrap().len() <= MAX_CLIENTS);
    }
}
