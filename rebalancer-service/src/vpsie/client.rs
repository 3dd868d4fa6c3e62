//! The VPSie API client: the thin I/O adapter around the pure parts (envelope, auth, backoff,
//! breaker) of this module.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use reqwest::Url;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tracing::{debug, info, warn};

use super::auth::{BearerToken, parse_login_reply};
use super::backoff::{backoff_delay, jitter_unit, parse_retry_after, rate_limit_delay};
use super::breaker::{Admission, BreakerState, CircuitBreaker, Outcome};
use super::config::{VpsieConfig, validate_base_url};
use super::credentials::{Credentials, Secret};
use super::envelope;
use super::error::VpsieError;
use super::observer::{CallEvent, CallObserver};
use super::routes;
use super::types::{
    AddRecovery, AddReply, AddedMachine, Cluster, ClusterNode, DeleteOutcome, Machine, NodeGroup,
    NodeSnapshot,
};

/// The access-token header.
pub const VPSIE_AUTH_HEADER: &str = "vpsie-auth";

/// An async client for the VPSie API (`vpsie-api.md`). Cheap to clone; clones share the token,
/// the node-group cache and the circuit breaker.
#[derive(Clone)]
pub struct VpsieClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    config: VpsieConfig,
    auth: Auth,
    breaker: Mutex<CircuitBreaker>,
    groups: Mutex<HashMap<String, i64>>,
    /// Adds are serialised so that the "new machine" seen by one add's listing is its own.
    add_lock: tokio::sync::Mutex<()>,
    observer: Option<Arc<dyn CallObserver>>,
}

enum Auth {
    AccessToken(HeaderValue),
    Client {
        client_id: Secret,
        client_secret: Secret,
        token: tokio::sync::Mutex<Option<BearerToken>>,
        generation: Mutex<u64>,
    },
}

impl fmt::Debug for VpsieClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VpsieClient")
            .field("base_url", &self.inner.base.as_str())
            .field("cluster_id", &self.inner.config.cluster_id)
            .field("auth", &self.inner.config.credentials.mode())
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum RetryMode {
    /// GET and DELETE: 5xx, transport errors and timeouts are retried.
    Idempotent,
    /// The add: only a 429 (the request was refused unprocessed) is retried here.
    Never,
}

struct Spec {
    method: Method,
    route: &'static str,
    url: Url,
    json: Option<Value>,
    retry: RetryMode,
    what: String,
}

struct RawReply {
    status: u16,
    body: Vec<u8>,
    retry_after: Option<Duration>,
}

struct AuthHeader {
    name: HeaderName,
    value: HeaderValue,
    /// The Bearer token's generation (client-credentials mode).
    generation: Option<u64>,
}

enum Lookup {
    Found(ClusterNode),
    NoneFound,
    Several(Vec<String>),
    Failed(VpsieError),
}

impl fmt::Display for Lookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lookup::Found(n) => write!(f, "found {}", n.identifier),
            Lookup::NoneFound => f.write_str("listing the cluster found no new worker"),
            Lookup::Several(ids) => write!(
                f,
                "listing the cluster found several new workers ({}), none can be attributed",
                ids.join(", ")
            ),
            Lookup::Failed(e) => write!(f, "listing the cluster failed: {e}"),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Releases the breaker's admission; an attempt dropped before its result counts as abandoned.
struct Permit<'a> {
    breaker: &'a Mutex<CircuitBreaker>,
    probe: bool,
    done: bool,
}

impl Permit<'_> {
    fn finish(mut self, outcome: Outcome) {
        self.done = true;
        lock(self.breaker).record(self.probe, outcome, Instant::now());
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.done {
            lock(self.breaker).record(self.probe, Outcome::Abandoned, Instant::now());
        }
    }
}

fn transport_error(e: &reqwest::Error) -> VpsieError {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    VpsieError::Transport {
        message,
        maybe_sent: !e.is_connect(),
    }
}

impl VpsieClient {
    /// Builds a client. Refuses a plain-http base URL unless `allow_http`.
    pub fn new(config: VpsieConfig) -> Result<Self, VpsieError> {
        Self::build(config, None)
    }

    /// Builds a client that reports every attempt to `observer` (the metrics layer).
    pub fn with_observer(
        config: VpsieConfig,
        observer: Arc<dyn CallObserver>,
    ) -> Result<Self, VpsieError> {
        Self::build(config, Some(observer))
    }

    fn build(
        config: VpsieConfig,
        observer: Option<Arc<dyn CallObserver>>,
    ) -> Result<Self, VpsieError> {
        let base = validate_base_url(&config.base_url, config.allow_http)?;
        if config.cluster_id.trim().is_empty() {
            return Err(VpsieError::Config("cluster id is empty".to_string()));
        }
        // reqwest is built without a bundled crypto provider; the workspace uses ring. Another
        // component may have installed one already, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(config.user_agent.clone())
            .connect_timeout(config.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .https_only(!config.allow_http)
            .build()
            .map_err(|e| VpsieError::Config(format!("cannot build the HTTP client: {e}")))?;
        let auth = match &config.credentials {
            Credentials::AccessToken(token) => {
                let mut v = HeaderValue::from_str(token.expose()).map_err(|_| {
                    VpsieError::Credentials(
                        "the access token has characters not allowed in a header".to_string(),
                    )
                })?;
                v.set_sensitive(true);
                Auth::AccessToken(v)
            }
            Credentials::ClientCredentials {
                client_id,
                client_secret,
            } => Auth::Client {
                client_id: client_id.clone(),
                client_secret: client_secret.clone(),
                token: tokio::sync::Mutex::new(None),
                generation: Mutex::new(0),
            },
        };
        let breaker = Mutex::new(CircuitBreaker::new(config.breaker.clone()));
        Ok(VpsieClient {
            inner: Arc::new(Inner {
                http,
                base,
                auth,
                breaker,
                groups: Mutex::new(HashMap::new()),
                add_lock: tokio::sync::Mutex::new(()),
                observer,
                config,
            }),
        })
    }

    pub fn cluster_id(&self) -> &str {
        &self.inner.config.cluster_id
    }

    pub fn base_url(&self) -> &Url {
        &self.inner.base
    }

    /// The circuit breaker's state now.
    pub fn breaker_state(&self) -> BreakerState {
        lock(&self.inner.breaker).state()
    }

    /// `GET /k8s/cluster/byId/{cluster}`.
    pub async fn get_cluster(&self) -> Result<Cluster, VpsieError> {
        let cluster = self.cluster_id().to_string();
        let spec = Spec {
            method: Method::GET,
            route: routes::CLUSTER,
            url: self.url(&["k8s", "cluster", "byId", &cluster]),
            json: None,
            retry: RetryMode::Idempotent,
            what: format!("cluster {cluster}"),
        };
        let data = self.call(&spec).await?;
        decode(data, &spec.what)
    }

    /// `GET /k8s/node/groups/byClusterId/{cluster}`; refreshes the group-name cache.
    pub async fn list_node_groups(&self) -> Result<Vec<NodeGroup>, VpsieError> {
        let cluster = self.cluster_id().to_string();
        let spec = Spec {
            method: Method::GET,
            route: routes::NODE_GROUPS,
            url: self.url(&["k8s", "node", "groups", "byClusterId", &cluster]),
            json: None,
            retry: RetryMode::Idempotent,
            what: format!("node groups of cluster {cluster}"),
        };
        let data = self.call(&spec).await?;
        let groups: Vec<NodeGroup> = match data {
            None => Vec::new(),
            Some(v) => decode(Some(v), &spec.what)?,
        };
        *lock(&self.inner.groups) = groups
            .iter()
            .map(|g| (g.group_name.clone(), g.id))
            .collect();
        Ok(groups)
    }

    /// The numeric id of a node group, from the cache, refreshed once on a miss.
    pub async fn group_id(&self, group_name: &str) -> Result<i64, VpsieError> {
        if let Some(id) = lock(&self.inner.groups).get(group_name) {
            return Ok(*id);
        }
        self.list_node_groups().await?;
        lock(&self.inner.groups)
            .get(group_name)
            .copied()
            .ok_or_else(|| VpsieError::NotFound {
                what: format!("node group {group_name:?} in cluster {}", self.cluster_id()),
            })
    }

    /// `GET /vm/{identifier}`.
    pub async fn machine(&self, identifier: &str) -> Result<Machine, VpsieError> {
        let spec = Spec {
            method: Method::GET,
            route: routes::MACHINE,
            url: self.url(&["vm", identifier]),
            json: None,
            retry: RetryMode::Idempotent,
            what: format!("machine {identifier}"),
        };
        let data = self.call(&spec).await?;
        decode(data, &spec.what)
    }

    /// `DELETE /k8s/cluster/byId/{cluster}/delete/slave` with `{"identifier": ...}`. A 404 means
    /// the machine is already gone and is a success.
    pub async fn delete_worker(&self, identifier: &str) -> Result<DeleteOutcome, VpsieError> {
        let cluster = self.cluster_id().to_string();
        let spec = Spec {
            method: Method::DELETE,
            route: routes::DELETE,
            url: self.url(&["k8s", "cluster", "byId", &cluster, "delete", "slave"]),
            json: Some(json!({ "identifier": identifier })),
            retry: RetryMode::Idempotent,
            what: format!("delete worker {identifier}"),
        };
        match self.call(&spec).await {
            Ok(_) => {
                info!(identifier, "VPSie worker deletion accepted");
                Ok(DeleteOutcome::Deleted)
            }
            Err(VpsieError::NotFound { .. }) => {
                info!(identifier, "VPSie worker already gone");
                Ok(DeleteOutcome::AlreadyGone)
            }
            Err(e) => Err(e),
        }
    }

    /// Adds a worker to a node group: `POST /k8s/cluster/byId/{cluster}/add/slave/group/{groupId}`.
    ///
    /// The POST is not idempotent and is never retried blindly. Before it, the cluster's nodes are
    /// listed (the snapshot); then:
    /// - a reply with `data` gives the machine ([`AddRecovery::Reply`]);
    /// - a reply without `data` (asynchronous creation): the cluster is listed until exactly one
    ///   worker not in the snapshot appears ([`AddRecovery::ListedAfterAsyncAccept`]);
    /// - an ambiguous failure (timeout, 5xx, connection broken after sending): the cluster is
    ///   listed the same way; a new worker is taken as this add's
    ///   ([`AddRecovery::ListedAfterFailure`]); only when none appears is the POST sent again (up
    ///   to [`super::config::AddPolicy::max_post_attempts`] in all);
    /// - a definite failure (quota, 4xx, unauthorized, open breaker) is returned at once.
    ///
    /// Adds through one client are serialised. When the outcome stays unclear (several new
    /// workers, listing failing, attempts exhausted) the error is
    /// [`VpsieError::AddUnconfirmed`]: the caller must not assume nothing was created.
    pub async fn add_worker(&self, group_name: &str) -> Result<AddedMachine, VpsieError> {
        let _serial = self.inner.add_lock.lock().await;
        let group_id = self.group_id(group_name).await?;
        let before = NodeSnapshot::of(&self.get_cluster().await?.nodes);
        let cluster = self.cluster_id().to_string();
        let gid = group_id.to_string();
        let spec = Spec {
            method: Method::POST,
            route: routes::ADD,
            url: self.url(&[
                "k8s", "cluster", "byId", &cluster, "add", "slave", "group", &gid,
            ]),
            json: None,
            retry: RetryMode::Never,
            what: format!("add worker to group {group_name}"),
        };
        let policy = self.inner.config.add.clone();
        let max_posts = policy.max_post_attempts.max(1);
        let mut posts = 0u32;
        loop {
            posts += 1;
            let made = |node: ClusterNode, recovery: AddRecovery| AddedMachine {
                id: node.id,
                identifier: node.identifier,
                hostname: node.hostname,
                status: None,
                group_id,
                recovery,
                post_attempts: posts,
            };
            match self.call(&spec).await {
                Ok(data) => {
                    let reply = data
                        .and_then(|d| serde_json::from_value::<AddReply>(d).ok())
                        .filter(|r| !r.identifier.is_empty());
                    if let Some(r) = reply {
                        info!(
                            group = group_name,
                            identifier = %r.identifier,
                            hostname = %r.hostname,
                            "VPSie worker created"
                        );
                        return Ok(AddedMachine {
                            id: r.id,
                            identifier: r.identifier,
                            hostname: r.hostname,
                            status: r.status,
                            group_id,
                            recovery: AddRecovery::Reply,
                            post_attempts: posts,
                        });
                    }
                    info!(
                        group = group_name,
                        "VPSie accepted the add without data; looking for the machine"
                    );
                    return match self.find_new_worker(&before).await {
                        Lookup::Found(node) => {
                            info!(group = group_name, identifier = %node.identifier, hostname = %node.hostname,
                                "VPSie worker found by listing after an asynchronous add");
                            Ok(made(node, AddRecovery::ListedAfterAsyncAccept))
                        }
                        other => Err(VpsieError::AddUnconfirmed {
                            message: format!(
                                "the add to group {group_name} was accepted without data and {other}"
                            ),
                        }),
                    };
                }
                Err(e) if e.is_ambiguous() => {
                    warn!(group = group_name, error = %e, post = posts,
                        "VPSie add failed ambiguously; listing the cluster before anything else");
                    match self.find_new_worker(&before).await {
                        Lookup::Found(node) => {
                            info!(group = group_name, identifier = %node.identifier, hostname = %node.hostname,
                                "VPSie worker created by the failed add found by listing; not adding again");
                            return Ok(made(node, AddRecovery::ListedAfterFailure { error: e }));
                        }
                        Lookup::NoneFound if posts < max_posts => {
                            warn!(
                                group = group_name,
                                "no machine was created by the failed add; adding again"
                            );
                            tokio::time::sleep(backoff_delay(
                                &self.inner.config.retry,
                                posts,
                                jitter_unit(),
                            ))
                            .await;
                        }
                        other => {
                            return Err(VpsieError::AddUnconfirmed {
                                message: format!(
                                    "the add to group {group_name} failed ({e}) and {other}"
                                ),
                            });
                        }
                    }
                }
                Err(
                    e @ VpsieError::Transport {
                        maybe_sent: false, ..
                    },
                ) if posts < max_posts => {
                    warn!(group = group_name, error = %e, "VPSie add could not connect; trying again");
                    tokio::time::sleep(backoff_delay(
                        &self.inner.config.retry,
                        posts,
                        jitter_unit(),
                    ))
                    .await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Lists the cluster up to `listing_polls` times for exactly one worker not in `before`.
    async fn find_new_worker(&self, before: &NodeSnapshot) -> Lookup {
        let policy = &self.inner.config.add;
        for poll in 0..policy.listing_polls.max(1) {
            if poll > 0 {
                tokio::time::sleep(policy.listing_interval).await;
            }
            let cluster = match self.get_cluster().await {
                Ok(c) => c,
                Err(e) => return Lookup::Failed(e),
            };
            let new = before.new_workers(&cluster.nodes);
            match new.as_slice() {
                [] => debug!(poll, "no new worker listed yet"),
                [one] => return Lookup::Found((*one).clone()),
                several => {
                    return Lookup::Several(several.iter().map(|n| n.identifier.clone()).collect());
                }
            }
        }
        Lookup::NoneFound
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.inner.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    fn observe(
        &self,
        method: &Method,
        route: &'static str,
        status: Option<u16>,
        outcome: &'static str,
        elapsed: Duration,
        attempt: u32,
    ) {
        debug!(
            method = %method,
            route,
            status,
            outcome,
            elapsed_ms = elapsed.as_millis() as u64,
            attempt,
            "VPSie call"
        );
        if let Some(obs) = &self.inner.observer {
            let method = match *method {
                Method::GET => "GET",
                Method::POST => "POST",
                Method::DELETE => "DELETE",
                Method::PUT => "PUT",
                _ => "OTHER",
            };
            obs.on_call(&CallEvent {
                method,
                route,
                status,
                outcome,
                elapsed,
                attempt,
            });
        }
    }

    /// One attempt: breaker admission, send, capped body read, all within the per-call timeout.
    async fn send_once(&self, request: reqwest::RequestBuilder) -> Result<RawReply, VpsieError> {
        let permit = match lock(&self.inner.breaker).admit(Instant::now()) {
            Admission::Allowed { probe } => Permit {
                breaker: &self.inner.breaker,
                probe,
                done: false,
            },
            Admission::Rejected { retry_in } => return Err(VpsieError::CircuitOpen { retry_in }),
        };
        let timeout = self.inner.config.timeout;
        let cap = self.inner.config.max_body_bytes;
        let exchange = async {
            let mut resp = request.send().await.map_err(|e| transport_error(&e))?;
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            if let Some(len) = resp.content_length()
                && len > cap as u64
            {
                return Err(VpsieError::Protocol(format!(
                    "reply of {len} bytes exceeds the {cap}-byte cap"
                )));
            }
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| transport_error(&e))? {
                if body.len() + chunk.len() > cap {
                    return Err(VpsieError::Protocol(format!(
                        "reply exceeds the {cap}-byte cap"
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(RawReply {
                status,
                body,
                retry_after,
            })
        };
        let result = match tokio::time::timeout(timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(VpsieError::Timeout { after: timeout }),
        };
        let outcome = match &result {
            Ok(raw) if raw.status >= 500 => Outcome::Failure,
            Ok(_) => Outcome::Success,
            Err(e) if e.counts_for_breaker() => Outcome::Failure,
            Err(_) => Outcome::Success,
        };
        permit.finish(outcome);
        result
    }

    /// The credential header for the next call, logging in first when the Bearer token is missing
    /// or has less than the refresh margin left.
    async fn auth_header(&self) -> Result<AuthHeader, VpsieError> {
        match &self.inner.auth {
            Auth::AccessToken(v) => Ok(AuthHeader {
                name: HeaderName::from_static(VPSIE_AUTH_HEADER),
                value: v.clone(),
                generation: None,
            }),
            Auth::Client { token, .. } => {
                let mut cached = token.lock().await;
                let margin = self.inner.config.token_refresh_margin;
                let current = match cached.as_ref() {
                    Some(t) if !t.needs_refresh(Instant::now(), margin) => t.clone(),
                    stale => {
                        if stale.is_some() {
                            debug!("VPSie Bearer token near expiry; renewing");
                        }
                        let fresh = self.login().await?;
                        *cached = Some(fresh.clone());
                        fresh
                    }
                };
                let mut value = HeaderValue::from_str(&format!(
                    "Bearer {}",
                    current.token.expose()
                ))
                .map_err(|_| {
                    VpsieError::Protocol(
                        "login: the token has characters not allowed in a header".to_string(),
                    )
                })?;
                value.set_sensitive(true);
                Ok(AuthHeader {
                    name: header::AUTHORIZATION,
                    value,
                    generation: Some(current.generation),
                })
            }
        }
    }

    /// Drops the cached Bearer token if it is still the one that was refused.
    async fn invalidate_token(&self, generation: u64) {
        if let Auth::Client { token, .. } = &self.inner.auth {
            let mut cached = token.lock().await;
            if cached.as_ref().is_some_and(|t| t.generation == generation) {
                *cached = None;
            }
        }
    }

    /// `POST {base}/auth/from/api` with the client credentials, form-urlencoded.
    async fn login(&self) -> Result<BearerToken, VpsieError> {
        let Auth::Client {
            client_id,
            client_secret,
            generation,
            ..
        } = &self.inner.auth
        else {
            return Err(VpsieError::Config(
                "login without client credentials".to_string(),
            ));
        };
        let url = self.url(&["auth", "from", "api"]);
        let retry = &self.inner.config.retry;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let request = self.inner.http.post(url.clone()).form(&[
                ("clientId", client_id.expose()),
                ("clientSecret", client_secret.expose()),
            ]);
            let started = Instant::now();
            let (status, result) = match self.send_once(request).await {
                Ok(raw) if raw.status == 429 => (
                    Some(429),
                    Err(VpsieError::RateLimited {
                        retry_after: raw.retry_after,
                    }),
                ),
                Ok(raw) => {
                    let next = {
                        let mut g = lock(generation);
                        *g += 1;
                        *g
                    };
                    (
                        Some(raw.status),
                        parse_login_reply(
                            raw.status,
                            &raw.body,
                            SystemTime::now(),
                            Instant::now(),
                            next,
                        ),
                    )
                }
                Err(e) => (None, Err(e)),
            };
            let outcome = result.as_ref().map_or_else(VpsieError::kind, |_| "ok");
            self.observe(
                &Method::POST,
                routes::LOGIN,
                status,
                outcome,
                started.elapsed(),
                attempt,
            );
            let err = match result {
                Ok(token) => {
                    info!(
                        valid_for_s = token
                            .expires_at
                            .saturating_duration_since(Instant::now())
                            .as_secs(),
                        "VPSie login succeeded"
                    );
                    return Ok(token);
                }
                Err(e) => e,
            };
            let delay = match &err {
                VpsieError::RateLimited { retry_after } if attempt < retry.max_attempts => {
                    rate_limit_delay(retry, *retry_after, attempt, jitter_unit())
                }
                e if e.is_transient()
                    && !matches!(e, VpsieError::CircuitOpen { .. })
                    && attempt < retry.max_attempts =>
                {
                    backoff_delay(retry, attempt, jitter_unit())
                }
                _ => {
                    warn!(error = %err, "VPSie login failed");
                    return Err(err);
                }
            };
            warn!(error = %err, attempt, delay_ms = delay.as_millis() as u64, "VPSie login failed; retrying");
            tokio::time::sleep(delay).await;
        }
    }

    /// Sends a call with authentication, retries and the 401 refresh-and-retry-once rule; returns
    /// the envelope's `data`.
    async fn call(&self, spec: &Spec) -> Result<Option<Value>, VpsieError> {
        let retry = &self.inner.config.retry;
        let mut attempt = 0u32; // requests sent, for the observer
        let mut retries = 0u32; // retries used (the 401 refresh does not use one)
        let mut refreshed = false;
        loop {
            attempt += 1;
            let auth = self.auth_header().await?;
            let mut request = self
                .inner
                .http
                .request(spec.method.clone(), spec.url.clone())
                .header(auth.name.clone(), auth.value.clone());
            if let Some(body) = &spec.json {
                request = request.json(body);
            }
            let started = Instant::now();
            let (status, result) = match self.send_once(request).await {
                Ok(raw) => (
                    Some(raw.status),
                    envelope::interpret(raw.status, &raw.body, raw.retry_after, &spec.what),
                ),
                Err(e) => (None, Err(e)),
            };
            let outcome = result.as_ref().map_or_else(VpsieError::kind, |_| "ok");
            self.observe(
                &spec.method,
                spec.route,
                status,
                outcome,
                started.elapsed(),
                attempt,
            );
            let err = match result {
                Ok(data) => return Ok(data),
                Err(e) => e,
            };
            let delay = match (&err, auth.generation) {
                (VpsieError::Unauthorized { .. }, Some(generation)) if !refreshed => {
                    refreshed = true;
                    info!(
                        route = spec.route,
                        "VPSie answered 401; renewing the token and retrying once"
                    );
                    self.invalidate_token(generation).await;
                    continue;
                }
                (VpsieError::RateLimited { retry_after }, _)
                    if retries + 1 < retry.max_attempts =>
                {
                    rate_limit_delay(retry, *retry_after, retries + 1, jitter_unit())
                }
                (e, _)
                    if spec.retry == RetryMode::Idempotent
                        && e.is_transient()
                        && !matches!(e, VpsieError::CircuitOpen { .. })
                        && retries + 1 < retry.max_attempts =>
                {
                    backoff_delay(retry, retries + 1, jitter_unit())
                }
                _ => return Err(err),
            };
            retries += 1;
            warn!(
                method = %spec.method,
                route = spec.route,
                error = %err,
                retry = retries,
                delay_ms = delay.as_millis() as u64,
                "VPSie call failed; retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }
}

fn decode<T: DeserializeOwned>(data: Option<Value>, what: &str) -> Result<T, VpsieError> {
    let data = data.ok_or_else(|| VpsieError::Protocol(format!("{what}: reply has no data")))?;
    serde_json::from_value(data)
        .map_err(|e| VpsieError::Protocol(format!("{what}: unexpected data: {e}")))
}
