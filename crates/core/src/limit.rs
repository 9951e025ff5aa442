//! How many calls to one service may be in flight: an additive-increase,
//! multiplicative-decrease bound. It starts high enough for a fleet's
//! describes to go out in one round, halves when the service throttles
//! (never below [`MIN_LIMIT`]) and grows back by one per
//! [`GROW_EVERY`] successes. The SDK's retries hide throttles from the
//! caller, so the adapter reports each throttled attempt here as it sees
//! it (a retry classifier), and each successful call.

use std::sync::Mutex;

use tokio::sync::Notify;

pub const DEFAULT_LIMIT: usize = 64;
pub const MIN_LIMIT: usize = 2;
pub const GROW_EVERY: usize = 20;

/// What the limit went through, for the log and the tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitStats {
    pub limit: usize,
    pub lowest: usize,
    pub throttles: u64,
    pub halvings: u64,
    pub in_flight: usize,
}

#[derive(Debug)]
struct State {
    limit: usize,
    max: usize,
    in_flight: usize,
    successes: usize,
    /// Permits granted so far, and the count at the last halving: the
    /// calls granted before a halving were sent under the old limit, so
    /// their throttles must not halve it again.
    granted: u64,
    halved_at: Option<u64>,
    stats: LimitStats,
}

#[derive(Debug)]
pub struct AdaptiveLimit {
    state: Mutex<State>,
    released: Notify,
}

/// One call's place in flight; dropping it frees the place.
#[derive(Debug)]
pub struct Permit<'a> {
    limit: &'a AdaptiveLimit,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.limit.with(|state| state.in_flight -= 1);
        self.limit.released.notify_waiters();
    }
}

impl Default for AdaptiveLimit {
    fn default() -> Self {
        Self::new(DEFAULT_LIMIT)
    }
}

impl AdaptiveLimit {
    /// Starts at `max` (at least [`MIN_LIMIT`]), which it never exceeds.
    pub fn new(max: usize) -> Self {
        let max = max.max(MIN_LIMIT);
        Self {
            state: Mutex::new(State {
                limit: max,
                max,
                in_flight: 0,
                successes: 0,
                granted: 0,
                halved_at: None,
                stats: LimitStats {
                    limit: max,
                    lowest: max,
                    ..LimitStats::default()
                },
            }),
            released: Notify::new(),
        }
    }

    /// A poisoned lock only means another call panicked mid-update; the
    /// counters are still usable, so carry on with them.
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut state)
    }

    /// Waits for a place in flight.
    pub async fn acquire(&self) -> Permit<'_> {
        loop {
            // Registered before the check, so a release in between wakes us.
            let released = self.released.notified();
            let granted = self.with(|state| {
                if state.in_flight < state.limit {
                    state.in_flight += 1;
                    state.granted += 1;
                    true
                } else {
                    false
                }
            });
            if granted {
                return Permit { limit: self };
            }
            released.await;
        }
    }

    /// An attempt was throttled.
    pub fn throttled(&self) {
        self.with(|state| {
            state.stats.throttles += 1;
            state.successes = 0;
            let fresh = state
                .halved_at
                .is_none_or(|at| state.granted - at >= state.limit as u64);
            if fresh && state.limit > MIN_LIMIT {
                state.limit = (state.limit / 2).max(MIN_LIMIT);
                state.halved_at = Some(state.granted);
                state.stats.halvings += 1;
                state.stats.lowest = state.stats.lowest.min(state.limit);
            }
        });
    }

    /// A call succeeded.
    pub fn succeeded(&self) {
        let grew = self.with(|state| {
            state.successes += 1;
            if state.successes >= GROW_EVERY && state.limit < state.max {
                state.limit += 1;
                state.successes = 0;
                true
            } else {
                false
            }
        });
        if grew {
            self.released.notify_waiters();
        }
    }

    pub fn stats(&self) -> LimitStats {
        self.with(|state| LimitStats {
            limit: state.limit,
            in_flight: state.in_flight,
            ..state.stats
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttles_halve_once_per_window_down_to_the_floor_and_successes_grow_it_back() {
        let limit = AdaptiveLimit::new(64);
        // A burst: every call of the first window is throttled, one halving.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let permits: Vec<Permit<'_>> = {
                let mut permits = Vec::new();
                for _ in 0..64 {
                    permits.push(limit.acquire().await);
                }
                permits
            };
            for _ in 0..10 {
                limit.throttled();
            }
            assert_eq!(limit.stats().limit, 32);
            assert_eq!(limit.stats().halvings, 1);
            drop(permits);
            // Each later window of throttled calls halves again, to 2.
            for expected in [16, 8, 4, 2, 2] {
                let mut window = Vec::new();
                for _ in 0..limit.stats().limit {
                    window.push(limit.acquire().await);
                }
                limit.throttled();
                assert_eq!(limit.stats().limit, expected);
                drop(window);
            }
            assert_eq!(limit.stats().lowest, 2);
            for _ in 0..(GROW_EVERY * 3) {
                limit.succeeded();
            }
            assert_eq!(limit.stats().limit, 5);
            // Never above where it started.
            for _ in 0..(GROW_EVERY * 100) {
                limit.succeeded();
            }
            assert_eq!(limit.stats().limit, 64);
        });
    }

    #[tokio::test]
    async fn no_more_than_the_limit_are_in_flight() {
        let limit = std::sync::Arc::new(AdaptiveLimit::new(3));
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let limit = limit.clone();
                let peak = peak.clone();
                tokio::spawn(async move {
                    let _permit = limit.acquire().await;
                    peak.fetch_max(limit.stats().in_flight, std::sync::atomic::Ordering::SeqCst);
                    tokio::task::yield_now().await;
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(peak.load(std::sync::atomic::Ordering::SeqCst), 3);
        assert_eq!(limit.stats().in_flight, 0);
    }
}
