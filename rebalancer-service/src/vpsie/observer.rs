//! A hook through which the metrics layer sees every HTTP attempt the client makes.

use std::time::Duration;

/// One HTTP attempt (or one attempt refused by the open circuit breaker, with `status: None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallEvent {
    /// `GET`, `POST` or `DELETE`.
    pub method: &'static str,
    /// The route template, e.g. `/k8s/cluster/byId/{cluster}` (see [`crate::vpsie::routes`]):
    /// bounded cardinality, safe as a metric label.
    pub route: &'static str,
    /// The HTTP status, `None` when no reply came (transport error, timeout, open breaker).
    pub status: Option<u16>,
    /// `"ok"`, or the error's [`crate::vpsie::VpsieError::kind`].
    pub outcome: &'static str,
    pub elapsed: Duration,
    /// 1 for the first attempt of a call, 2 for its first retry, and so on.
    pub attempt: u32,
}

/// Receives a [`CallEvent`] after each attempt. Called inline: keep it cheap and non-blocking.
pub trait CallObserver: Send + Sync {
    fn on_call(&self, event: &CallEvent);
}

impl<F> CallObserver for F
where
    F: Fn(&CallEvent) + Send + Sync,
{
    fn on_call(&self, event: &CallEvent) {
        self(event)
    }
}
