//! The circuit breaker's state machine. Pure: time is passed in.
//!
//! Closed → (N consecutive failures) → Open → (after `open_for`) → half-open, one probe admitted →
//! closed on its success, open again on its failure. Only transport errors, timeouts and 5xx count
//! as failures; any other answer proves the server alive and resets the count.

use std::time::{Duration, Instant};

/// Breaker settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// How long it stays open before one probe is let through.
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            open_for: Duration::from_secs(30),
        }
    }
}

/// The breaker's state, observable for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed {
        consecutive_failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe may go (`probe_in_flight == false`) or is on its way.
    HalfOpen {
        probe_in_flight: bool,
    },
}

/// Whether a call may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go; `probe` says the call is the half-open probe whose result decides the state.
    Allowed { probe: bool },
    /// Do not send; the breaker is open (or a probe is already out).
    Rejected { retry_in: Duration },
}

/// What came of an admitted call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The server answered (any status but 5xx).
    Success,
    /// Transport error, timeout or 5xx.
    Failure,
    /// The call was abandoned before an answer (e.g. its future dropped): no evidence either way.
    Abandoned,
}

#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: BreakerState,
}

impl CircuitBreaker {
    pub fn new(config: BreakerConfig) -> Self {
        CircuitBreaker {
            config,
            state: BreakerState::Closed {
                consecutive_failures: 0,
            },
        }
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    pub fn admit(&mut self, now: Instant) -> Admission {
        match self.state {
            BreakerState::Closed { .. } => Admission::Allowed { probe: false },
            BreakerState::Open { until } if now >= until => {
                self.state = BreakerState::HalfOpen {
                    probe_in_flight: true,
                };
                Admission::Allowed { probe: true }
            }
            BreakerState::Open { until } => Admission::Rejected {
                retry_in: until - now,
            },
            BreakerState::HalfOpen {
                probe_in_flight: false,
            } => {
                self.state = BreakerState::HalfOpen {
                    probe_in_flight: true,
                };
                Admission::Allowed { probe: true }
            }
            BreakerState::HalfOpen {
                probe_in_flight: true,
            } => Admission::Rejected {
                retry_in: Duration::ZERO,
            },
        }
    }

    pub fn record(&mut self, probe: bool, outcome: Outcome, now: Instant) {
        let threshold = self.config.failure_threshold.max(1);
        self.state = match (self.state, probe, outcome) {
            (BreakerState::HalfOpen { .. }, true, Outcome::Success) => BreakerState::Closed {
                consecutive_failures: 0,
            },
            (BreakerState::HalfOpen { .. }, true, Outcome::Failure) => BreakerState::Open {
                until: now + self.config.open_for,
            },
            (BreakerState::HalfOpen { .. }, true, Outcome::Abandoned) => BreakerState::HalfOpen {
                probe_in_flight: false,
            },
            (BreakerState::Closed { .. }, false, Outcome::Success) => BreakerState::Closed {
                consecutive_failures: 0,
            },
            (
                BreakerState::Closed {
                    consecutive_failures,
                },
                false,
                Outcome::Failure,
            ) => {
                let n = consecutive_failures.saturating_add(1);
                if n >= threshold {
                    BreakerState::Open {
                        until: now + self.config.open_for,
                    }
                } else {
                    BreakerState::Closed {
                        consecutive_failures: n,
                    }
                }
            }
            // Late results of calls admitted before the breaker opened, and abandoned calls, do not
            // move the state.
            (state, _, _) => state,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            failure_threshold: 5,
            open_for: Duration::from_secs(30),
        }
    }

    #[test]
    fn opens_after_threshold_and_probe_closes() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(cfg());
        for _ in 0..4 {
            assert_eq!(b.admit(t0), Admission::Allowed { probe: false });
            b.record(false, Outcome::Failure, t0);
        }
        assert!(matches!(
            b.state(),
            BreakerState::Closed {
                consecutive_failures: 4
            }
        ));
        b.admit(t0);
        b.record(false, Outcome::Failure, t0);
        assert_eq!(
            b.state(),
            BreakerState::Open {
                until: t0 + Duration::from_secs(30)
            }
        );
        assert_eq!(
            b.admit(t0 + Duration::from_secs(10)),
            Admission::Rejected {
                retry_in: Duration::from_secs(20)
            }
        );
        let t1 = t0 + Duration::from_secs(30);
        assert_eq!(b.admit(t1), Admission::Allowed { probe: true });
        assert!(
            matches!(b.admit(t1), Admission::Rejected { .. }),
            "only one probe"
        );
        b.record(true, Outcome::Success, t1);
        assert_eq!(
            b.state(),
            BreakerState::Closed {
                consecutive_failures: 0
            }
        );
    }

    #[test]
    fn failed_probe_reopens_and_success_resets_count() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(cfg());
        for _ in 0..4 {
            b.admit(t0);
            b.record(false, Outcome::Failure, t0);
        }
        b.admit(t0);
        b.record(false, Outcome::Success, t0);
        assert_eq!(
            b.state(),
            BreakerState::Closed {
                consecutive_failures: 0
            }
        );
        for _ in 0..5 {
            b.admit(t0);
            b.record(false, Outcome::Failure, t0);
        }
        let t1 = t0 + Duration::from_secs(31);
        assert_eq!(b.admit(t1), Admission::Allowed { probe: true });
        b.record(true, Outcome::Failure, t1);
        assert_eq!(
            b.state(),
            BreakerState::Open {
                until: t1 + Duration::from_secs(30)
            }
        );
    }

    #[test]
    fn abandoned_probe_lets_another_through() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(BreakerConfig {
            failure_threshold: 1,
            open_for: Duration::ZERO,
        });
        b.admit(t0);
        b.record(false, Outcome::Failure, t0);
        assert_eq!(b.admit(t0), Admission::Allowed { probe: true });
        b.record(true, Outcome::Abandoned, t0);
        assert_eq!(b.admit(t0), Admission::Allowed { probe: true });
    }

    #[derive(Debug, Clone)]
    enum Step {
        Call(Outcome),
        Wait(u64),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            Just(Step::Call(Outcome::Success)),
            Just(Step::Call(Outcome::Failure)),
            Just(Step::Call(Outcome::Abandoned)),
            (0u64..40).prop_map(Step::Wait),
        ]
    }

    proptest! {
        /// Sequential calls: the breaker opens exactly at the threshold-th consecutive failure, never
        /// admits a call while open and before `open_for`, and a successful probe closes it.
        #[test]
        fn sequential_model(steps in proptest::collection::vec(step(), 0..200), threshold in 1u32..8) {
            let t0 = Instant::now();
            let mut now = t0;
            let open_for = Duration::from_secs(30);
            let mut b = CircuitBreaker::new(BreakerConfig { failure_threshold: threshold, open_for });
            let mut run = 0u32;
            for s in steps {
                match s {
                    Step::Wait(secs) => now += Duration::from_secs(secs),
                    Step::Call(outcome) => {
                        let before = b.state();
                        match b.admit(now) {
                            Admission::Rejected { retry_in } => {
                                let open = matches!(before, BreakerState::Open { until } if now < until);
                                prop_assert!(open, "rejected while {:?}", before);
                                prop_assert!(retry_in <= open_for);
                            }
                            Admission::Allowed { probe } => {
                                b.record(probe, outcome, now);
                                match (probe, outcome) {
                                    (true, Outcome::Success) => {
                                        run = 0;
                                        prop_assert_eq!(b.state(), BreakerState::Closed { consecutive_failures: 0 });
                                    }
                                    (true, Outcome::Failure) => {
                                        prop_assert_eq!(b.state(), BreakerState::Open { until: now + open_for });
                                    }
                                    (false, Outcome::Success) => run = 0,
                                    (false, Outcome::Failure) => {
                                        run += 1;
                                        if run >= threshold {
                                            prop_assert_eq!(b.state(), BreakerState::Open { until: now + open_for });
                                            run = 0;
                                        } else {
                                            prop_assert_eq!(b.state(), BreakerState::Closed { consecutive_failures: run });
                                        }
                                    }
                                    (_, Outcome::Abandoned) => {}
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
