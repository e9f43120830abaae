//! Optimistic transactions, run again while other writers win: each attempt re-reads what it
//! guards, decides, and commits; a failed guard means another replica or request changed a
//! record meanwhile, so the next attempt starts over from the new state.
//!
//! ```ignore
//! CasRetry::new("the order's quota")
//!     .run(|| self.try_acquire(order, station, req))
//!     .await
//! ```

use std::future::Future;
use std::time::Duration;

use rand_core::{OsRng, RngCore};

use crate::error::{CoordinatorError, Result};

/// What one attempt came to.
#[derive(Debug)]
pub enum Attempt<T> {
    /// Committed (or nothing needed to be written): the answer.
    Done(T),
    /// A guard did not hold: start over.
    Conflict,
}

impl<T> Attempt<T> {
    /// `Done(value)` if the commit went through, else `Conflict`.
    pub fn committed(committed: bool, value: T) -> Self {
        if committed {
            Self::Done(value)
        } else {
            Self::Conflict
        }
    }
}

/// Runs attempts with a growing, jittered pause between them, up to a bound; past it the call
/// fails with [`CoordinatorError::Contended`] (UNAVAILABLE: the caller may retry later).
#[derive(Clone, Copy, Debug)]
pub struct CasRetry {
    what: &'static str,
    attempts: u32,
}

impl CasRetry {
    /// Enough for hundreds of stations racing for one order's quota.
    pub const DEFAULT_ATTEMPTS: u32 = 200;

    /// `what` names the contended record in the error ("the order's quota").
    pub const fn new(what: &'static str) -> Self {
        Self {
            what,
            attempts: Self::DEFAULT_ATTEMPTS,
        }
    }

    /// Gives up after `attempts` conflicts instead of [`Self::DEFAULT_ATTEMPTS`].
    pub const fn attempts(self, attempts: u32) -> Self {
        Self { attempts, ..self }
    }

    /// The pause after conflict number `attempt` (from 0): 200 µs plus a random part that
    /// doubles each attempt up to 32 ms.
    pub fn pause(attempt: u32) -> Duration {
        pause(attempt)
    }

    /// The error after the last attempt lost.
    pub fn contended(self) -> CoordinatorError {
        CoordinatorError::Contended {
            what: self.what,
            attempts: self.attempts,
        }
    }

    /// Runs `attempt` until it is done, pausing with a random backoff after each conflict;
    /// [`CoordinatorError::Contended`] after the last one. An error from `attempt` ends it at once.
    pub async fn run<T, F, Fut>(self, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Attempt<T>>>,
    {
        for n in 0..self.attempts {
            match attempt().await? {
                Attempt::Done(value) => return Ok(value),
                Attempt::Conflict => tokio::time::sleep(pause(n)).await,
            }
        }
        Err(CoordinatorError::Contended {
            what: self.what,
            attempts: self.attempts,
        })
    }
}

/// 200 µs plus a random part that doubles each attempt up to 32 ms, so racing writers spread
/// out instead of colliding again in step.
fn pause(attempt: u32) -> Duration {
    let cap_us = 1000u64 << attempt.min(5);
    Duration::from_micros(200 + u64::from(OsRng.next_u32()) % cap_us)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn retries_conflicts_then_gives_up_with_a_typed_error() {
        let mut calls = 0;
        let value = CasRetry::new("x")
            .run(|| {
                calls += 1;
                let n = calls;
                async move { Ok(Attempt::committed(n == 3, n)) }
            })
            .await
            .unwrap();
        assert_eq!((value, calls), (3, 3));

        let mut calls = 0;
        let error = CasRetry::new("the lease")
            .attempts(4)
            .run(|| {
                calls += 1;
                async { Ok(Attempt::<()>::Conflict) }
            })
            .await
            .unwrap_err();
        assert_eq!(calls, 4);
        assert!(matches!(
            error,
            CoordinatorError::Contended {
                what: "the lease",
                attempts: 4
            }
        ));
        assert_eq!(tonic::Status::from(error).code(), tonic::Code::Unavailable);
    }

    #[tokio::test]
    async fn an_error_ends_the_retries_at_once() {
        let mut calls = 0;
        let error = CasRetry::new("x")
            .run(|| {
                calls += 1;
                async { Err::<Attempt<()>, _>(CoordinatorError::NotFound("gone".into())) }
            })
            .await
            .unwrap_err();
        assert_eq!(calls, 1);
        assert!(matches!(error, CoordinatorError::NotFound(_)));
    }
}
