//! Leader election through the `coordination.k8s.io/v1` Lease `vpsie-autoscaler-controller` in
//! `POD_NAMESPACE` (`controller.md`, "High availability"), as client-go's leaderelection does it:
//!
//! - every write carries the resourceVersion that was read (`replace` is a PUT with
//!   `metadata.resourceVersion`), so of two replicas acting on the same read only one wins; the
//!   other gets a 409 Conflict and stays (or becomes) a follower;
//! - a follower takes the lease over only once the lease record has not changed, as this replica
//!   observed it with its own clock, for `leaseDurationSeconds`: clock skew between replicas does
//!   not matter. A lease without holder (released) is taken at once;
//! - the leader renews every `renew_interval`; when it has not renewed successfully for
//!   `renew_deadline` (shorter than the lease duration) it stops leading before anyone may take
//!   over;
//! - on shutdown the leader stops leading first, then releases the lease (no holder, duration 1s)
//!   so that another replica takes over at its next try.
//!
//! [`decide`] is the sans-IO rule; [`Elector`] does the reads and writes. Leadership is published
//! on a `tokio::sync::watch` channel.

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use tokio::sync::watch;

/// The Lease name, also the Events' reporting controller.
pub const LEASE_NAME: &str = "vpsie-autoscaler-controller";

/// How the election runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderConfig {
    pub lease_name: String,
    pub namespace: String,
    /// `holderIdentity`: the pod name, or hostname and pid.
    pub identity: String,
    /// `leaseDurationSeconds` (whole seconds, at least 1).
    pub lease_duration: Duration,
    /// How often the leader renews.
    pub renew_interval: Duration,
    /// The leader steps down when it has not renewed for this long.
    pub renew_deadline: Duration,
    /// How often a follower looks at the lease.
    pub retry_interval: Duration,
}

impl LeaderConfig {
    /// Lease duration 15s, renewal every 5s, deadline 10s, followers retry every 2s.
    pub fn new(namespace: &str, identity: &str) -> Self {
        LeaderConfig {
            lease_name: LEASE_NAME.to_owned(),
            namespace: namespace.to_owned(),
            identity: identity.to_owned(),
            lease_duration: Duration::from_secs(15),
            renew_interval: Duration::from_secs(5),
            renew_deadline: Duration::from_secs(10),
            retry_interval: Duration::from_secs(2),
        }
    }

    /// A faster election for tests: the given lease duration, renewals every third of it,
    /// deadline two thirds, followers retry every sixth.
    pub fn with_lease_duration(mut self, lease_duration: Duration) -> Self {
        self.lease_duration = lease_duration.max(Duration::from_secs(1));
        self.renew_interval = self.lease_duration / 3;
        self.renew_deadline = self.lease_duration * 2 / 3;
        self.retry_interval = self.lease_duration / 6;
        self
    }

    fn lease_duration_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }
}

/// `POD_NAME` when set (the downward API), else the hostname (a pod's is its name) and the pid.
pub fn default_identity() -> String {
    if let Ok(name) = std::env::var("POD_NAME")
        && !name.trim().is_empty()
    {
        return name.trim().to_owned();
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "controller".to_owned());
    format!("{host}-{}", std::process::id())
}

/// What this replica last saw of the lease record, and when it saw it change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// The resourceVersion of the record (any change to the record changes it).
    pub resource_version: String,
    pub observed_at: Instant,
}

/// What to do about the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// No lease: create it, holding it.
    Create,
    /// We hold it: renew it.
    Renew,
    /// Free or expired: take it over.
    Acquire,
    /// Someone else holds it and it has not expired.
    Follow { holder: String },
}

/// The rule. `lease` is the record read now (`None`: not found); `observation` is updated when
/// the record changed since the last look.
pub fn decide(
    lease: Option<&Lease>,
    identity: &str,
    observation: &mut Option<Observation>,
    now: Instant,
    default_duration: Duration,
) -> Action {
    let Some(lease) = lease else {
        *observation = None;
        return Action::Create;
    };
    let resource_version = lease.metadata.resource_version.clone().unwrap_or_default();
    let changed = observation
        .as_ref()
        .is_none_or(|seen| seen.resource_version != resource_version);
    if changed {
        *observation = Some(Observation {
            resource_version,
            observed_at: now,
        });
    }
    let spec = lease.spec.as_ref();
    let holder = spec
        .and_then(|s| s.holder_identity.as_deref())
        .unwrap_or("");
    if holder == identity {
        return Action::Renew;
    }
    if holder.is_empty() {
        return Action::Acquire;
    }
    let duration = spec
        .and_then(|s| s.lease_duration_seconds)
        .filter(|s| *s > 0)
        .map_or(default_duration, |s| {
            Duration::from_secs(s.unsigned_abs().into())
        });
    let observed_at = observation.as_ref().map_or(now, |seen| seen.observed_at);
    if now.duration_since(observed_at) >= duration {
        Action::Acquire
    } else {
        Action::Follow {
            holder: holder.to_owned(),
        }
    }
}

/// The outcome of one try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// We hold the lease (created, renewed or acquired).
    Leading,
    /// Someone else does, or won the race.
    Following(String),
}

/// Reads and writes the Lease.
pub struct Elector {
    api: Api<Lease>,
    config: LeaderConfig,
    observation: Option<Observation>,
}

fn now_micro() -> MicroTime {
    MicroTime(Timestamp::now())
}

fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

impl Elector {
    pub fn new(client: kube::Client, config: LeaderConfig) -> Self {
        Elector {
            api: Api::namespaced(client, &config.namespace),
            config,
            observation: None,
        }
    }

    pub fn config(&self) -> &LeaderConfig {
        &self.config
    }

    /// One look at the lease and, if due, one write.
    pub async fn try_once(&mut self) -> Result<Attempt, kube::Error> {
        let lease = self.api.get_opt(&self.config.lease_name).await?;
        let action = decide(
            lease.as_ref(),
            &self.config.identity,
            &mut self.observation,
            Instant::now(),
            self.config.lease_duration,
        );
        let written = match action {
            Action::Follow { holder } => return Ok(Attempt::Following(holder)),
            Action::Create => {
                let now = now_micro();
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.config.lease_name.clone()),
                        namespace: Some(self.config.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.config.identity.clone()),
                        lease_duration_seconds: Some(self.config.lease_duration_seconds()),
                        acquire_time: Some(now.clone()),
                        renew_time: Some(now),
                        lease_transitions: Some(0),
                        ..LeaseSpec::default()
                    }),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            Action::Renew | Action::Acquire => {
                let mut lease = lease.expect("a lease to renew or acquire was read");
                let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
                let now = now_micro();
                if action == Action::Acquire {
                    spec.holder_identity = Some(self.config.identity.clone());
                    spec.acquire_time = Some(now.clone());
                    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                }
                spec.lease_duration_seconds = Some(self.config.lease_duration_seconds());
                spec.renew_time = Some(now);
                // The resourceVersion read is the precondition.
                self.api
                    .replace(&self.config.lease_name, &PostParams::default(), &lease)
                    .await
            }
        };
        match written {
            Ok(lease) => {
                self.observation = Some(Observation {
                    resource_version: lease.metadata.resource_version.unwrap_or_default(),
                    observed_at: Instant::now(),
                });
                Ok(Attempt::Leading)
            }
            // Someone else wrote first (409 Conflict or AlreadyExists).
            Err(error) if is_conflict(&error) => Ok(Attempt::Following(String::new())),
            Err(error) => Err(error),
        }
    }

    /// Gives the lease up if we hold it: no holder, duration 1s (best effort).
    pub async fn release(&mut self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.config.lease_name).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(now_micro());
        self.api
            .replace(&self.config.lease_name, &PostParams::default(), &lease)
            .await?;
        Ok(())
    }

    /// Campaigns until `shutdown` completes, publishing leadership on `leading`; then stops
    /// leading and releases the lease if held.
    pub async fn run(mut self, leading: watch::Sender<bool>, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut last_renewal: Option<Instant> = None;
        loop {
            let is_leading = *leading.borrow();
            // A leader's try may not outlast its renew deadline: it must stop leading before
            // anyone else may take over.
            let budget = match last_renewal {
                Some(at) if is_leading => self
                    .config
                    .renew_deadline
                    .saturating_sub(at.elapsed())
                    .max(Duration::from_millis(1)),
                _ => self.config.lease_duration,
            };
            let attempt = match tokio::time::timeout(budget, self.try_once()).await {
                Ok(attempt) => attempt.map_err(|error| error.to_string()),
                Err(_) => Err(format!("no answer within {budget:?}")),
            };
            let failed = attempt.is_err();
            match attempt {
                Ok(Attempt::Leading) => {
                    last_renewal = Some(Instant::now());
                    if !is_leading {
                        tracing::info!(identity = %self.config.identity, lease = %self.config.lease_name, namespace = %self.config.namespace, "became the leader");
                        leading.send_replace(true);
                    }
                }
                Ok(Attempt::Following(holder)) => {
                    if is_leading {
                        tracing::warn!(identity = %self.config.identity, %holder, "lost the lease; no longer leading");
                        leading.send_replace(false);
                    } else {
                        tracing::debug!(%holder, "following");
                    }
                    last_renewal = None;
                }
                Err(error) => {
                    tracing::warn!(%error, lease = %self.config.lease_name, "leader election: reading or writing the lease failed");
                    let expired =
                        last_renewal.is_none_or(|at| at.elapsed() >= self.config.renew_deadline);
                    if is_leading && expired {
                        tracing::warn!(identity = %self.config.identity, "could not renew the lease in time; no longer leading");
                        leading.send_replace(false);
                        last_renewal = None;
                    }
                }
            }
            let wait = if *leading.borrow() && !failed {
                self.config.renew_interval
            } else {
                self.config.retry_interval
            };
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(wait) => {}
            }
        }
        let was_leading = leading.send_replace(false);
        if was_leading {
            match self.release().await {
                Ok(()) => tracing::info!(identity = %self.config.identity, "released the lease"),
                Err(error) => tracing::warn!(%error, "releasing the lease failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, rv: &str, duration: i32) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some(LEASE_NAME.into()),
                resource_version: Some(rv.into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: holder.map(Into::into),
                lease_duration_seconds: Some(duration),
                ..LeaseSpec::default()
            }),
        }
    }

    const D: Duration = Duration::from_secs(15);

    #[test]
    fn no_lease_is_created() {
        let mut seen = None;
        assert_eq!(
            decide(None, "a", &mut seen, Instant::now(), D),
            Action::Create
        );
    }

    #[test]
    fn our_lease_is_renewed_and_a_free_one_taken() {
        let mut seen = None;
        let now = Instant::now();
        assert_eq!(
            decide(Some(&lease(Some("a"), "1", 15)), "a", &mut seen, now, D),
            Action::Renew
        );
        assert_eq!(
            decide(Some(&lease(None, "2", 1)), "a", &mut seen, now, D),
            Action::Acquire
        );
        assert_eq!(
            decide(Some(&lease(Some(""), "3", 1)), "a", &mut seen, now, D),
            Action::Acquire
        );
    }

    #[test]
    fn another_holder_is_followed_until_the_record_is_unchanged_for_the_duration() {
        let mut seen = None;
        let start = Instant::now();
        let held = lease(Some("b"), "7", 15);
        let follow = Action::Follow { holder: "b".into() };
        // First sight: the clock starts now, whatever renewTime says.
        assert_eq!(decide(Some(&held), "a", &mut seen, start, D), follow);
        assert_eq!(
            decide(
                Some(&held),
                "a",
                &mut seen,
                start + Duration::from_secs(14),
                D
            ),
            follow
        );
        // Renewed (new resourceVersion): the clock restarts.
        let renewed = lease(Some("b"), "8", 15);
        assert_eq!(
            decide(
                Some(&renewed),
                "a",
                &mut seen,
                start + Duration::from_secs(14),
                D
            ),
            follow
        );
        assert_eq!(
            decide(
                Some(&renewed),
                "a",
                &mut seen,
                start + Duration::from_secs(28),
                D
            ),
            follow
        );
        assert_eq!(
            decide(
                Some(&renewed),
                "a",
                &mut seen,
                start + Duration::from_secs(29),
                D
            ),
            Action::Acquire
        );
    }

    #[test]
    fn the_lease_s_own_duration_counts() {
        let mut seen = None;
        let start = Instant::now();
        let held = lease(Some("b"), "7", 2);
        decide(Some(&held), "a", &mut seen, start, D);
        assert_eq!(
            decide(
                Some(&held),
                "a",
                &mut seen,
                start + Duration::from_secs(2),
                D
            ),
            Action::Acquire
        );
    }

    #[test]
    fn test_timings_keep_their_order() {
        let config = LeaderConfig::new("default", "a").with_lease_duration(Duration::from_secs(3));
        assert!(config.renew_interval < config.renew_deadline);
        assert!(config.renew_deadline < config.lease_duration);
        assert!(config.retry_interval < config.renew_interval);
        let config = LeaderConfig::new("default", "a");
        assert_eq!(config.lease_duration_seconds(), 15);
        assert_eq!(config.renew_interval, Duration::from_secs(5));
    }

    #[test]
    fn identity_is_never_empty() {
        assert!(!default_identity().is_empty());
    }
}
