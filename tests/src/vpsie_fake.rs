//! A stateful fake of the VPSie API, following `../shared/docs/vpsie-api.md` to the letter, for the
//! rebalancer's client tests and the end-to-end tests.
//!
//! It serves plain HTTP on `127.0.0.1:<random port>` under the real API's path prefix
//! (`/apps/v2`), so a client configured with [`VpsieFake::base_url`] (and `allow_http`) talks to it
//! exactly as it would to the real service:
//!
//! - both auth modes: the access-token header `Vpsie-Auth`, and client credentials exchanged at
//!   `POST /auth/from/api` for a Bearer token that expires after [`FakeConfig::token_ttl`]; wrong
//!   credentials, unknown or expired tokens get a 401;
//! - one cluster with its nodes (masters plus the workers of its node groups);
//! - machines move `provisioning → running` after [`FakeConfig::provisioning_delay`], and
//!   `deleting → gone` after [`FakeConfig::deleting_delay`]; [`VpsieFake::on_running`] registers a
//!   hook called when a machine turns running (the test harness registers a Node there);
//! - fault injection per route ([`VpsieFake::inject`]): fail with a status, 429 with
//!   `Retry-After`, delay the reply, drop the connection (the TCP socket is really closed without a
//!   reply), an error envelope (e.g. a quota message), a raw body, asynchronous creation without
//!   `data`, a machine stuck in provisioning;
//! - a log of every call ([`VpsieFake::calls`]), with the status sent (`None` when the connection
//!   was dropped).
//!
//! The fake is independent of the rebalancer-service crate (which uses it as a dev-dependency).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// The path prefix of the real API (`https://api.vpsie.com/apps/v2`); the fake serves under it.
pub const API_PREFIX: &str = "/apps/v2";

/// The largest request body the fake reads.
const MAX_REQUEST_BODY: usize = 1 << 20;

/// How the fake is set up. `Default` gives one cluster `cluster-1` with one master and one node
/// group `workers` (id 101), both auth modes enabled, 200 ms provisioning and deletion.
#[derive(Clone, Debug)]
pub struct FakeConfig {
    /// The cluster identifier used in paths (`/k8s/cluster/byId/{cluster}`).
    pub cluster_id: String,
    pub cluster_name: String,
    /// Accepted `Vpsie-Auth` access token; `None` disables the access-token mode.
    pub token: Option<String>,
    /// Accepted client credentials; `None` disables the client-credentials mode.
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    /// Lifetime of a Bearer token issued by `POST /auth/from/api`.
    pub token_ttl: Duration,
    /// Leave `accessToken.expires` out of the login reply.
    pub omit_expires: bool,
    pub node_groups: Vec<FakeNodeGroup>,
    /// Master nodes listed in the cluster (never deletable through the worker endpoint).
    pub masters: usize,
    pub datacenter_id: i64,
    /// Time from creation to `running`.
    pub provisioning_delay: Duration,
    /// Time from a delete call to `gone`.
    pub deleting_delay: Duration,
    /// How often the background task advances machine states (they are also advanced on every call).
    pub tick: Duration,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            cluster_id: "cluster-1".to_string(),
            cluster_name: "k8s".to_string(),
            token: Some("fake-access-token".to_string()),
            client_id: Some("fake-client-id".to_string()),
            client_secret: Some("fake-client-secret".to_string()),
            token_ttl: Duration::from_secs(3600),
            omit_expires: false,
            node_groups: vec![FakeNodeGroup::new(101, "workers")],
            masters: 1,
            datacenter_id: 7,
            provisioning_delay: Duration::from_millis(200),
            deleting_delay: Duration::from_millis(200),
            tick: Duration::from_millis(10),
        }
    }
}

/// A node group of the fake cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeNodeGroup {
    pub id: i64,
    pub group_name: String,
    pub identifier: String,
    pub boxsize_id: i64,
    pub cpu: u32,
    pub ram: u32,
    pub ssd: u32,
}

impl FakeNodeGroup {
    pub fn new(id: i64, group_name: &str) -> Self {
        FakeNodeGroup {
            id,
            group_name: group_name.to_string(),
            identifier: format!("ng-{id}"),
            boxsize_id: 20,
            cpu: 2,
            ram: 4096,
            ssd: 80,
        }
    }
}

/// A machine's lifecycle state in the fake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MachineState {
    Provisioning,
    Running,
    Deleting,
    /// Deleted: no longer listed, `GET /vm/{id}` answers 404. Kept in [`VpsieFake::machines`] so
    /// tests can see what existed.
    Gone,
}

impl MachineState {
    pub fn as_str(self) -> &'static str {
        match self {
            MachineState::Provisioning => "provisioning",
            MachineState::Running => "running",
            MachineState::Deleting => "deleting",
            MachineState::Gone => "gone",
        }
    }
}

/// A snapshot of one machine of the fake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeMachine {
    pub id: i64,
    pub identifier: String,
    pub hostname: String,
    /// The node group a worker was added to; `None` for masters.
    pub group_id: Option<i64>,
    /// `"master"` or `"slave"` (the API's word for a worker).
    pub node_type: String,
    pub state: MachineState,
    pub created_on: String,
    /// Kept in provisioning forever (see [`Fault::StuckProvisioning`]).
    pub stuck: bool,
    /// Whether the cluster listing and `GET /vm/{id}` show it yet (see [`Fault::AsyncCreate`]).
    pub visible: bool,
}

impl FakeMachine {
    pub fn is_worker(&self) -> bool {
        self.node_type == "slave"
    }
}

/// The routes of the contract, for fault injection and the call log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Route {
    /// `POST /auth/from/api`
    Login,
    /// `GET /k8s/cluster/byId/{cluster}`
    GetCluster,
    /// `GET /k8s/node/groups/byClusterId/{cluster}`
    ListNodeGroups,
    /// `POST /k8s/cluster/byId/{cluster}/add/slave/group/{groupId}`
    Add,
    /// `GET /vm/{identifier}`
    MachineStatus,
    /// `DELETE /k8s/cluster/byId/{cluster}/delete/slave`
    Delete,
    /// Matches every route (for [`VpsieFake::inject`] only).
    Any,
}

impl Route {
    fn matches(self, route: Route) -> bool {
        self == Route::Any || self == route
    }
}

/// A fault to inject on the next calls of a route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and an error envelope; the request is not applied.
    Status(u16),
    /// Apply the request (e.g. create the machine), then answer with this status and an error
    /// envelope: the ambiguous server error.
    StatusAfterApply(u16),
    /// Answer 429, with `Retry-After: <seconds>` when given; the request is not applied.
    RateLimit { retry_after: Option<u64> },
    /// Apply the request at once, then hold the reply this long (a client timeout shorter than this
    /// sees an ambiguous failure while the change has happened).
    Delay(Duration),
    /// Apply the request, then close the TCP connection without a reply.
    DropConnection,
    /// Close the TCP connection without a reply and without applying the request.
    DropBeforeApply,
    /// Answer with this status and `{"error": true, "message": ...}`; not applied. A 200 here is
    /// the API's in-band failure.
    ErrorEnvelope { status: u16, message: String },
    /// Answer with this raw body; not applied.
    RawBody {
        status: u16,
        content_type: String,
        body: Vec<u8>,
    },
    /// (`Add` only) create the machine asynchronously: the reply has no `data`, and the machine is
    /// listed only after `visible_after`.
    AsyncCreate { visible_after: Duration },
    /// (`Add` only) the created machine stays in provisioning.
    StuckProvisioning,
}

impl Fault {
    /// The in-band quota failure the API answers when an account is at its plan's limit.
    pub fn quota() -> Self {
        Fault::ErrorEnvelope {
            status: 200,
            message: "Resource quota exceeded: your plan does not allow more servers".to_string(),
        }
    }

    fn is_modifier(&self) -> bool {
        matches!(self, Fault::AsyncCreate { .. } | Fault::StuckProvisioning)
    }
}

/// Which credential a call carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthUsed {
    None,
    /// `Vpsie-Auth: <token>`
    AccessToken,
    /// `Authorization: Bearer <token>`
    Bearer,
}

/// One entry of the call log.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: Method,
    /// The path as requested, including [`API_PREFIX`].
    pub path: String,
    /// `None` for a path outside the contract.
    pub route: Option<Route>,
    /// The status sent; `None` when the connection was dropped without a reply.
    pub status: Option<u16>,
    pub auth: AuthUsed,
    pub user_agent: Option<String>,
    pub accept: Option<String>,
    pub content_type: Option<String>,
    /// The request body as text (redacted for the login route, which carries the secret).
    pub body: String,
    pub at: Instant,
}

/// Called with the machine when it turns running.
pub type RunningHook = Arc<dyn Fn(&FakeMachine) + Send + Sync>;

struct FaultRule {
    route: Route,
    fault: Fault,
    remaining: u32,
}

struct MachineRec {
    machine: FakeMachine,
    running_at: Instant,
    gone_at: Option<Instant>,
    visible_at: Instant,
}

struct IssuedToken {
    expires_at: Instant,
}

struct FakeState {
    config: FakeConfig,
    machines: BTreeMap<i64, MachineRec>,
    next_id: i64,
    faults: Vec<FaultRule>,
    calls: Vec<Call>,
    tokens: HashMap<String, IssuedToken>,
    next_token: u64,
    hooks: Vec<RunningHook>,
}

struct Shared {
    state: Mutex<FakeState>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, FakeState> {
        // A panicking test thread must not wedge every later call.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Advances machine states; calls the running hooks outside the lock.
    fn tick(&self) {
        let (turned, hooks) = {
            let mut st = self.lock();
            let now = Instant::now();
            let mut turned = Vec::new();
            for rec in st.machines.values_mut() {
                match rec.machine.state {
                    MachineState::Provisioning if !rec.machine.stuck && now >= rec.running_at => {
                        rec.machine.state = MachineState::Running;
                        turned.push(rec.machine.clone());
                    }
                    MachineState::Deleting if rec.gone_at.is_some_and(|t| now >= t) => {
                        rec.machine.state = MachineState::Gone;
                    }
                    _ => {}
                }
                if !rec.machine.visible && now >= rec.visible_at {
                    rec.machine.visible = true;
                }
            }
            let hooks = if turned.is_empty() {
                Vec::new()
            } else {
                st.hooks.clone()
            };
            (turned, hooks)
        };
        for m in &turned {
            for hook in &hooks {
                hook(m);
            }
        }
    }
}

/// A running fake VPSie API. Dropping it stops the server.
pub struct VpsieFake {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: JoinHandle<()>,
    ticker: JoinHandle<()>,
}

impl Drop for VpsieFake {
    fn drop(&mut self) {
        self.server.abort();
        self.ticker.abort();
    }
}

impl std::fmt::Debug for VpsieFake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VpsieFake")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl VpsieFake {
    /// Binds `127.0.0.1:0` and serves until dropped. Must be called inside a Tokio runtime.
    pub async fn start(config: FakeConfig) -> std::io::Result<VpsieFake> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let now = Instant::now();
        let mut machines = BTreeMap::new();
        let mut next_id = 1000;
        for i in 1..=config.masters {
            let machine = FakeMachine {
                id: next_id,
                identifier: format!("vm-master-{i}"),
                hostname: format!("{}-master-{i}", config.cluster_name),
                group_id: None,
                node_type: "master".to_string(),
                state: MachineState::Running,
                created_on: format_rfc3339(SystemTime::now()),
                stuck: false,
                visible: true,
            };
            machines.insert(
                next_id,
                MachineRec {
                    machine,
                    running_at: now,
                    gone_at: None,
                    visible_at: now,
                },
            );
            next_id += 1;
        }
        let tick = config.tick.max(Duration::from_millis(1));
        let shared = Arc::new(Shared {
            state: Mutex::new(FakeState {
                config,
                machines,
                next_id,
                faults: Vec::new(),
                calls: Vec::new(),
                tokens: HashMap::new(),
                next_token: 1,
                hooks: Vec::new(),
            }),
        });
        let router = Router::new().fallback(handle).with_state(shared.clone());
        let server = tokio::spawn(accept_loop(listener, router));
        let ticker = tokio::spawn(ticker(Arc::downgrade(&shared), tick));
        Ok(VpsieFake {
            shared,
            addr,
            server,
            ticker,
        })
    }

    /// `http://127.0.0.1:<port>/apps/v2`, the base URL to give the client (with `allow_http`).
    pub fn base_url(&self) -> String {
        format!("http://{}{}", self.addr, API_PREFIX)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn cluster_id(&self) -> String {
        self.shared.lock().config.cluster_id.clone()
    }

    /// Fails the next `times` calls of `route` with `fault` (`u32::MAX`: every call). Rules apply in
    /// the order they were injected; [`Fault::AsyncCreate`] and [`Fault::StuckProvisioning`] combine
    /// with one other fault.
    pub fn inject(&self, route: Route, fault: Fault, times: u32) {
        self.shared.lock().faults.push(FaultRule {
            route,
            fault,
            remaining: times,
        });
    }

    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// Every call so far, in arrival order.
    pub fn calls(&self) -> Vec<Call> {
        self.shared.lock().calls.clone()
    }

    /// The calls of one route.
    pub fn calls_to(&self, route: Route) -> Vec<Call> {
        self.shared
            .lock()
            .calls
            .iter()
            .filter(|c| c.route.is_some_and(|r| route.matches(r)))
            .cloned()
            .collect()
    }

    pub fn clear_calls(&self) {
        self.shared.lock().calls.clear();
    }

    /// Every machine, masters and gone ones included, by creation order.
    pub fn machines(&self) -> Vec<FakeMachine> {
        self.shared.tick();
        self.shared
            .lock()
            .machines
            .values()
            .map(|r| r.machine.clone())
            .collect()
    }

    /// Workers that are not gone.
    pub fn live_workers(&self) -> Vec<FakeMachine> {
        self.machines()
            .into_iter()
            .filter(|m| m.is_worker() && m.state != MachineState::Gone)
            .collect()
    }

    pub fn machine(&self, identifier: &str) -> Option<FakeMachine> {
        self.machines()
            .into_iter()
            .find(|m| m.identifier == identifier)
    }

    /// Adds a running, visible worker to a node group (as if created earlier).
    ///
    /// # Panics
    /// When the group does not exist.
    pub fn seed_worker(&self, group_name: &str) -> FakeMachine {
        let mut st = self.shared.lock();
        let group_id = st
            .config
            .node_groups
            .iter()
            .find(|g| g.group_name == group_name)
            .map(|g| g.id)
            .unwrap_or_else(|| panic!("no node group {group_name}"));
        let rec = st.create_worker(group_id, Instant::now(), Duration::ZERO, false);
        let id = rec.id;
        let m = st.machines.get_mut(&id).expect("just created");
        m.machine.state = MachineState::Running;
        m.machine.clone()
    }

    /// Adds a node group at run time (a client's group cache will miss it).
    pub fn add_node_group(&self, group: FakeNodeGroup) {
        self.shared.lock().config.node_groups.push(group);
    }

    /// Keeps (or releases) a machine in provisioning.
    pub fn set_stuck(&self, identifier: &str, stuck: bool) {
        let mut st = self.shared.lock();
        for rec in st.machines.values_mut() {
            if rec.machine.identifier == identifier {
                rec.machine.stuck = stuck;
            }
        }
    }

    /// Invalidates every Bearer token issued so far (the next call with one gets a 401).
    pub fn revoke_tokens(&self) {
        self.shared.lock().tokens.clear();
    }

    /// The number of successful logins so far.
    pub fn logins(&self) -> usize {
        self.calls_to(Route::Login)
            .iter()
            .filter(|c| c.status == Some(200))
            .count()
    }

    /// Registers a hook called (from the fake's tasks, outside its lock) with each machine that
    /// turns running.
    pub fn on_running(&self, hook: impl Fn(&FakeMachine) + Send + Sync + 'static) {
        self.shared.lock().hooks.push(Arc::new(hook));
    }

    /// Waits until the machine is in `state` or `timeout` passes; returns whether it got there.
    pub async fn wait_for_state(
        &self,
        identifier: &str,
        state: MachineState,
        timeout: Duration,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.machine(identifier).is_some_and(|m| m.state == state) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl FakeState {
    fn create_worker(
        &mut self,
        group_id: i64,
        now: Instant,
        visible_after: Duration,
        stuck: bool,
    ) -> FakeMachine {
        let id = self.next_id;
        self.next_id += 1;
        let group_name = self
            .config
            .node_groups
            .iter()
            .find(|g| g.id == group_id)
            .map(|g| g.group_name.clone())
            .unwrap_or_default();
        let machine = FakeMachine {
            id,
            identifier: format!("vm-{id}-{:08x}", mix(id as u64)),
            hostname: format!("{}-{}-{id}", self.config.cluster_name, group_name),
            group_id: Some(group_id),
            node_type: "slave".to_string(),
            state: MachineState::Provisioning,
            created_on: format_rfc3339(SystemTime::now()),
            stuck,
            visible: visible_after.is_zero(),
        };
        self.machines.insert(
            id,
            MachineRec {
                machine: machine.clone(),
                running_at: now + self.config.provisioning_delay,
                gone_at: None,
                visible_at: now + visible_after,
            },
        );
        machine
    }

    fn take_faults(&mut self, route: Route) -> (Vec<Fault>, Option<Fault>) {
        let mut modifiers = Vec::new();
        let mut failure = None;
        for rule in &mut self.faults {
            if rule.remaining == 0 || !rule.route.matches(route) {
                continue;
            }
            if rule.fault.is_modifier() {
                modifiers.push(rule.fault.clone());
            } else if failure.is_none() {
                failure = Some(rule.fault.clone());
            } else {
                continue;
            }
            if rule.remaining != u32::MAX {
                rule.remaining -= 1;
            }
        }
        self.faults.retain(|r| r.remaining > 0);
        (modifiers, failure)
    }

    fn visible_machine(&self, identifier: &str) -> Option<&MachineRec> {
        self.machines.values().find(|r| {
            r.machine.identifier == identifier
                && r.machine.visible
                && r.machine.state != MachineState::Gone
        })
    }
}

fn mix(mut x: u64) -> u64 {
    // splitmix64: stable, random-looking identifiers.
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (x ^ (x >> 31)) & 0xffff_ffff
}

async fn ticker(shared: Weak<Shared>, every: Duration) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        match shared.upgrade() {
            Some(s) => s.tick(),
            None => return,
        }
    }
}

/// Marks a response whose connection must be closed without sending it.
#[derive(Clone, Copy)]
struct DropMarker;

#[derive(Debug)]
struct ConnectionDropped;

impl std::fmt::Display for ConnectionDropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for ConnectionDropped {}

/// Serves the router over hyper's HTTP/1 connection; a response marked [`DropMarker`] becomes a
/// service error, on which hyper closes the socket without writing anything.
#[derive(Clone)]
struct DroppingService {
    router: Router,
}

impl hyper::service::Service<http::Request<Incoming>> for DroppingService {
    type Response = Response;
    type Error = ConnectionDropped;
    type Future = Pin<Box<dyn Future<Output = Result<Response, ConnectionDropped>> + Send>>;

    fn call(&self, req: http::Request<Incoming>) -> Self::Future {
        let mut router = self.router.clone();
        Box::pin(async move {
            let resp: Response = match tower::Service::call(&mut router, req).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            if resp.extensions().get::<DropMarker>().is_some() {
                Err(ConnectionDropped)
            } else {
                Ok(resp)
            }
        })
    }
}

async fn accept_loop(listener: TcpListener, router: Router) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let svc = DroppingService { router: router.clone() };
                conns.spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

fn header_str(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// A parsed request path.
enum Target {
    Login,
    GetCluster { cluster: String },
    ListNodeGroups { cluster: String },
    Add { cluster: String, group: String },
    MachineStatus { identifier: String },
    Delete { cluster: String },
}

impl Target {
    fn route(&self) -> Route {
        match self {
            Target::Login => Route::Login,
            Target::GetCluster { .. } => Route::GetCluster,
            Target::ListNodeGroups { .. } => Route::ListNodeGroups,
            Target::Add { .. } => Route::Add,
            Target::MachineStatus { .. } => Route::MachineStatus,
            Target::Delete { .. } => Route::Delete,
        }
    }
}

fn parse_target(method: &Method, path: &str) -> Option<Target> {
    let rest = path.strip_prefix(API_PREFIX)?;
    let segs: Vec<String> = rest
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let t = match (method.as_str(), s.as_slice()) {
        ("POST", ["auth", "from", "api"]) => Target::Login,
        ("GET", ["k8s", "cluster", "byId", c]) => Target::GetCluster {
            cluster: c.to_string(),
        },
        ("GET", ["k8s", "node", "groups", "byClusterId", c]) => Target::ListNodeGroups {
            cluster: c.to_string(),
        },
        ("POST", ["k8s", "cluster", "byId", c, "add", "slave", "group", g]) => Target::Add {
            cluster: c.to_string(),
            group: g.to_string(),
        },
        ("GET", ["vm", id]) => Target::MachineStatus {
            identifier: id.to_string(),
        },
        ("DELETE", ["k8s", "cluster", "byId", c, "delete", "slave"]) => Target::Delete {
            cluster: c.to_string(),
        },
        _ => return None,
    };
    Some(t)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_form(body: &[u8]) -> HashMap<String, String> {
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (
                percent_decode(&k.replace('+', " ")),
                percent_decode(&v.replace('+', " ")),
            )
        })
        .collect()
}

fn envelope_ok(message: &str, data: Option<Value>) -> Response {
    let mut body = json!({"error": false, "code": 200, "message": message});
    if let Some(d) = data {
        body["data"] = d;
    }
    (StatusCode::OK, axum::Json(body)).into_response()
}

fn envelope_err(status: u16, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        axum::Json(json!({"error": true, "code": status.as_u16(), "message": message})),
    )
        .into_response()
}

fn dropped() -> Response {
    let mut resp = Response::new(Body::empty());
    resp.extensions_mut().insert(DropMarker);
    resp
}

async fn handle(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, MAX_REQUEST_BODY)
        .await
        .unwrap_or_else(|_| Bytes::new());
    let headers = &parts.headers;
    let auth = if headers.contains_key("vpsie-auth") {
        AuthUsed::AccessToken
    } else if headers.contains_key(header::AUTHORIZATION) {
        AuthUsed::Bearer
    } else {
        AuthUsed::None
    };
    let target = parse_target(&parts.method, parts.uri.path());
    let route = target.as_ref().map(Target::route);
    let mut call = Call {
        method: parts.method.clone(),
        path: parts.uri.path().to_string(),
        route,
        status: None,
        auth,
        user_agent: header_str(headers, header::USER_AGENT),
        accept: header_str(headers, header::ACCEPT),
        content_type: header_str(headers, header::CONTENT_TYPE),
        body: if route == Some(Route::Login) {
            "<redacted>".to_string()
        } else {
            String::from_utf8_lossy(&body).into_owned()
        },
        at: Instant::now(),
    };
    shared.tick();

    let Some(target) = target else {
        let resp = envelope_err(404, "Not Found");
        call.status = Some(404);
        shared.lock().calls.push(call);
        return resp;
    };

    let (modifiers, failure) = shared.lock().take_faults(target.route());

    // Faults answered before the request is applied.
    let early = match &failure {
        Some(Fault::Status(s)) => Some(envelope_err(*s, "Injected failure")),
        Some(Fault::RateLimit { retry_after }) => {
            let mut r = envelope_err(429, "Too Many Requests");
            if let Some(secs) = retry_after {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*secs));
            }
            Some(r)
        }
        Some(Fault::ErrorEnvelope { status, message }) => Some(envelope_err(*status, message)),
        Some(Fault::RawBody {
            status,
            content_type,
            body,
        }) => {
            let mut r = Response::new(Body::from(body.clone()));
            *r.status_mut() = StatusCode::from_u16(*status).unwrap_or(StatusCode::OK);
            if let Ok(v) = HeaderValue::from_str(content_type) {
                r.headers_mut().insert(header::CONTENT_TYPE, v);
            }
            Some(r)
        }
        Some(Fault::DropBeforeApply) => Some(dropped()),
        _ => None,
    };
    if let Some(resp) = early {
        call.status = if resp.extensions().get::<DropMarker>().is_some() {
            None
        } else {
            Some(resp.status().as_u16())
        };
        shared.lock().calls.push(call);
        return resp;
    }

    let mut resp = apply(&shared, &target, headers, &body, &modifiers);

    match failure {
        Some(Fault::StatusAfterApply(s)) => {
            resp = envelope_err(s, "Injected failure after the change was applied");
        }
        Some(Fault::DropConnection) => {
            shared.lock().calls.push(call);
            return dropped();
        }
        Some(Fault::Delay(d)) => {
            call.status = Some(resp.status().as_u16());
            shared.lock().calls.push(call);
            tokio::time::sleep(d).await;
            return resp;
        }
        _ => {}
    }
    call.status = Some(resp.status().as_u16());
    shared.lock().calls.push(call);
    resp
}

fn authorized(st: &mut FakeState, headers: &HeaderMap) -> bool {
    if let Some(tok) = headers.get("vpsie-auth").and_then(|v| v.to_str().ok()) {
        return st.config.token.as_deref().is_some_and(|t| t == tok);
    }
    if let Some(bearer) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        let now = Instant::now();
        return st
            .tokens
            .get(bearer)
            .is_some_and(|issued| now < issued.expires_at);
    }
    false
}

fn apply(
    shared: &Shared,
    target: &Target,
    headers: &HeaderMap,
    body: &[u8],
    modifiers: &[Fault],
) -> Response {
    let accept = header_str(headers, header::ACCEPT).unwrap_or_default();
    if !(accept.contains("application/json") || accept.contains("*/*")) {
        return envelope_err(406, "Accept must allow application/json");
    }
    let mut st = shared.lock();
    if let Target::Login = target {
        return login(&mut st, headers, body);
    }
    if !authorized(&mut st, headers) {
        return envelope_err(401, "Unauthorized");
    }
    let cluster_ok = |c: &str, st: &FakeState| c == st.config.cluster_id;
    match target {
        Target::Login => unreachable!("handled above"),
        Target::GetCluster { cluster } => {
            if !cluster_ok(cluster, &st) {
                return envelope_err(404, "Cluster not found");
            }
            let nodes: Vec<Value> = st
                .machines
                .values()
                .filter(|r| r.machine.visible && r.machine.state != MachineState::Gone)
                .map(|r| {
                    let m = &r.machine;
                    json!({
                        "id": m.id,
                        "identifier": m.identifier,
                        "hostname": m.hostname,
                        "default_ip": format!("10.0.{}.{}", (m.id / 250) % 250, m.id % 250),
                        "private_ip": format!("192.168.{}.{}", (m.id / 250) % 250, m.id % 250),
                        "node_type": m.node_type,
                        "datacenter_id": st.config.datacenter_id,
                        "created_on": m.created_on,
                    })
                })
                .collect();
            envelope_ok(
                "Cluster",
                Some(json!({
                    "cluster_name": st.config.cluster_name,
                    "identifier": st.config.cluster_id,
                    "nodes": nodes,
                })),
            )
        }
        Target::ListNodeGroups { cluster } => {
            if !cluster_ok(cluster, &st) {
                return envelope_err(404, "Cluster not found");
            }
            let groups: Vec<Value> = st
                .config
                .node_groups
                .iter()
                .map(|g| {
                    let count = st
                        .machines
                        .values()
                        .filter(|r| {
                            r.machine.group_id == Some(g.id)
                                && r.machine.state != MachineState::Gone
                        })
                        .count();
                    json!({
                        "id": g.id,
                        "group_name": g.group_name,
                        "identifier": g.identifier,
                        "boxsize_id": g.boxsize_id,
                        "datacenter_id": st.config.datacenter_id,
                        "cpu": g.cpu,
                        "ram": g.ram,
                        "ssd": g.ssd,
                        "nodes_count": count,
                        "cluster_id": st.config.cluster_id,
                    })
                })
                .collect();
            envelope_ok("Node groups", Some(Value::Array(groups)))
        }
        Target::Add { cluster, group } => {
            if !cluster_ok(cluster, &st) {
                return envelope_err(404, "Cluster not found");
            }
            let Some(group_id) = group
                .parse::<i64>()
                .ok()
                .filter(|id| st.config.node_groups.iter().any(|g| g.id == *id))
            else {
                return envelope_err(404, "Node group not found");
            };
            let visible_after = modifiers
                .iter()
                .find_map(|f| match f {
                    Fault::AsyncCreate { visible_after } => Some(*visible_after),
                    _ => None,
                })
                .unwrap_or(Duration::ZERO);
            let is_async = modifiers
                .iter()
                .any(|f| matches!(f, Fault::AsyncCreate { .. }));
            let stuck = modifiers.contains(&Fault::StuckProvisioning);
            let m = st.create_worker(group_id, Instant::now(), visible_after, stuck);
            if is_async {
                envelope_ok("Node is being added to the cluster", None)
            } else {
                envelope_ok(
                    "Node added",
                    Some(json!({
                        "id": m.id,
                        "identifier": m.identifier,
                        "hostname": m.hostname,
                        "status": m.state.as_str(),
                    })),
                )
            }
        }
        Target::MachineStatus { identifier } => match st.visible_machine(identifier) {
            None => envelope_err(404, "Server not found"),
            Some(r) => {
                let m = &r.machine;
                let boxsize = m
                    .group_id
                    .and_then(|g| st.config.node_groups.iter().find(|ng| ng.id == g))
                    .map_or(20, |g| g.boxsize_id);
                envelope_ok(
                    "Server",
                    Some(json!({
                        "id": m.id,
                        "identifier": m.identifier,
                        "hostname": m.hostname,
                        "status": m.state.as_str(),
                        "boxsize_id": boxsize,
                        "created_on": m.created_on,
                    })),
                )
            }
        },
        Target::Delete { cluster } => {
            if !cluster_ok(cluster, &st) {
                return envelope_err(404, "Cluster not found");
            }
            let ct = header_str(headers, header::CONTENT_TYPE).unwrap_or_default();
            if !ct.starts_with("application/json") {
                return envelope_err(415, "Content-Type must be application/json");
            }
            let Some(identifier) = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v.get("identifier")?.as_str().map(str::to_string))
            else {
                return envelope_err(400, "identifier is required");
            };
            let deleting_delay = st.config.deleting_delay;
            let Some(rec) = st.machines.values_mut().find(|r| {
                r.machine.identifier == identifier
                    && r.machine.visible
                    && r.machine.state != MachineState::Gone
            }) else {
                return envelope_err(404, "Node not found");
            };
            if !rec.machine.is_worker() {
                return envelope_err(400, "Master nodes cannot be deleted");
            }
            if rec.machine.state != MachineState::Deleting {
                rec.machine.state = MachineState::Deleting;
                rec.gone_at = Some(Instant::now() + deleting_delay);
            }
            envelope_ok("Node deletion started", None)
        }
    }
}

fn login(st: &mut FakeState, headers: &HeaderMap, body: &[u8]) -> Response {
    let ct = header_str(headers, header::CONTENT_TYPE).unwrap_or_default();
    if !ct.starts_with("application/x-www-form-urlencoded") {
        return envelope_err(
            415,
            "Content-Type must be application/x-www-form-urlencoded",
        );
    }
    let form = parse_form(body);
    let ok = match (&st.config.client_id, &st.config.client_secret) {
        (Some(id), Some(secret)) => {
            form.get("clientId") == Some(id) && form.get("clientSecret") == Some(secret)
        }
        _ => false,
    };
    if !ok {
        return envelope_err(401, "Invalid client credentials");
    }
    let n = st.next_token;
    st.next_token += 1;
    let token = format!("fake-bearer-{n}-{:08x}", mix(n));
    let ttl = st.config.token_ttl;
    st.tokens.insert(
        token.clone(),
        IssuedToken {
            expires_at: Instant::now() + ttl,
        },
    );
    let mut access = json!({"token": token});
    if !st.config.omit_expires {
        access["expires"] = Value::String(format_rfc3339(SystemTime::now() + ttl));
    }
    (
        StatusCode::OK,
        axum::Json(json!({
            "error": false,
            "accessToken": access,
            "refreshToken": format!("fake-refresh-{n}"),
        })),
    )
        .into_response()
}

/// Formats a time as RFC 3339 in UTC with whole seconds (`2024-05-01T12:00:00Z`).
pub fn format_rfc3339(t: SystemTime) -> String {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Howard Hinnant's `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formatting() {
        assert_eq!(format_rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            format_rfc3339(UNIX_EPOCH + Duration::from_secs(1_709_251_199)),
            "2024-02-29T23:59:59Z"
        );
    }

    #[test]
    fn routes_parse() {
        let t = parse_target(
            &Method::POST,
            "/apps/v2/k8s/cluster/byId/c1/add/slave/group/7",
        );
        assert!(
            matches!(t, Some(Target::Add { ref cluster, ref group }) if cluster == "c1" && group == "7")
        );
        assert!(parse_target(&Method::GET, "/apps/v2/vm/a%2Fb").is_some_and(
            |t| matches!(t, Target::MachineStatus { ref identifier } if identifier == "a/b")
        ));
        assert!(parse_target(&Method::GET, "/k8s/cluster/byId/c1").is_none());
        assert!(parse_target(&Method::PUT, "/apps/v2/vm/x").is_none());
    }

    async fn raw_request(fake: &VpsieFake, request: &str) -> Vec<u8> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(fake.addr()).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut reply = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut reply))
            .await
            .expect("the server closes or answers")
            .unwrap_or_default();
        reply
    }

    #[tokio::test]
    async fn drop_connection_closes_the_socket_without_a_reply_but_applies_the_add() {
        let fake = VpsieFake::start(FakeConfig::default()).await.unwrap();
        fake.inject(Route::Add, Fault::DropConnection, 1);
        let req = "POST /apps/v2/k8s/cluster/byId/cluster-1/add/slave/group/101 HTTP/1.1\r\n\
                   Host: x\r\nAccept: application/json\r\nVpsie-Auth: fake-access-token\r\n\
                   Content-Length: 0\r\n\r\n";
        let reply = raw_request(&fake, req).await;
        assert!(
            reply.is_empty(),
            "no bytes before the close: {:?}",
            String::from_utf8_lossy(&reply)
        );
        assert_eq!(fake.live_workers().len(), 1);
        assert_eq!(fake.calls()[0].status, None);

        // Without the fault the same request is answered (and closed, as asked).
        let req = req.replace(
            "Content-Length: 0",
            "Content-Length: 0\r\nConnection: close",
        );
        let reply = String::from_utf8(raw_request(&fake, &req).await).unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(reply.contains("\"identifier\""), "{reply}");
        assert_eq!(fake.live_workers().len(), 2);
    }

    #[tokio::test]
    async fn lifecycle_hook_and_async_visibility() {
        let fake = VpsieFake::start(FakeConfig {
            provisioning_delay: Duration::from_millis(50),
            deleting_delay: Duration::from_millis(300),
            ..FakeConfig::default()
        })
        .await
        .unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        fake.on_running(move |m| sink.lock().unwrap().push(m.identifier.clone()));
        let (id, group) = {
            let mut st = fake.shared.lock();
            let m = st.create_worker(101, Instant::now(), Duration::from_millis(100), false);
            (m.identifier, m.group_id)
        };
        assert_eq!(group, Some(101));
        assert!(!fake.machine(&id).unwrap().visible);
        assert!(
            fake.wait_for_state(&id, MachineState::Running, Duration::from_secs(5))
                .await
        );
        assert!(
            fake.wait_for_state(&id, MachineState::Running, Duration::ZERO)
                .await
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(fake.machine(&id).unwrap().visible);
        assert_eq!(*seen.lock().unwrap(), vec![id.clone()]);
        let body = format!("{{\"identifier\":\"{id}\"}}");
        let req = format!(
            "DELETE /apps/v2/k8s/cluster/byId/cluster-1/delete/slave HTTP/1.1\r\nHost: x\r\n\
             Accept: application/json\r\nVpsie-Auth: fake-access-token\r\n\
             Content-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let reply = String::from_utf8(raw_request(&fake, &req).await).unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert_eq!(fake.machine(&id).unwrap().state, MachineState::Deleting);
        assert!(
            fake.wait_for_state(&id, MachineState::Gone, Duration::from_secs(5))
                .await
        );
        let reply = String::from_utf8(raw_request(&fake, &req).await).unwrap();
        assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");
        assert_eq!(fake.calls_to(Route::Delete).len(), 2);
    }

    #[test]
    fn form_decoding() {
        let f = parse_form(b"clientId=a%2Bb&clientSecret=x+y%3D");
        assert_eq!(f.get("clientId").map(String::as_str), Some("a+b"));
        assert_eq!(f.get("clientSecret").map(String::as_str), Some("x y="));
    }
}
