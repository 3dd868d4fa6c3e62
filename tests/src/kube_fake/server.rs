//! HTTP layer: routes real API paths to the store, encodes answers and streams watches.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use super::Request;
use super::resources::{self, RESOURCES, ResId, def};
use super::selector::{FieldSelector, LabelSelector};
use super::status::ApiError;
use super::store::{Change, ChangeType, Origin, PatchType, Store, Sub, pod_res};

/// State shared by the HTTP handlers, the watch tasks and the test-facing API.
pub(crate) struct Shared {
    store: Mutex<Store>,
    /// The last committed resourceVersion; watchers wait on it.
    rv_tx: watch::Sender<u64>,
    /// Set to true when the fake is dropped: open watches end.
    pub shutdown: watch::Sender<bool>,
    pub addr: SocketAddr,
    pub bookmark_interval: Duration,
}

impl Shared {
    pub fn new(store: Store, addr: SocketAddr) -> Self {
        let rv = store.rv;
        Self {
            store: Mutex::new(store),
            rv_tx: watch::channel(rv).0,
            shutdown: watch::channel(false).0,
            addr,
            bookmark_interval: Duration::from_secs(1),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs a write against the store, then wakes the watchers if anything was committed.
    pub fn write<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        let mut store = self.lock();
        let out = f(&mut store);
        let rv = store.rv;
        drop(store);
        self.rv_tx.send_if_modified(|cur| {
            let changed = *cur != rv;
            *cur = rv;
            changed
        });
        out
    }
}

fn json_response(code: u16, v: &Value) -> Response {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        code,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        v.to_string(),
    )
        .into_response()
}

fn error_response(e: &ApiError) -> Response {
    json_response(e.code, &e.to_status())
}

fn result_response(code: u16, r: Result<Value, ApiError>) -> Response {
    match r {
        Ok(v) => json_response(code, &v),
        Err(e) => error_response(&e),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decodes an `application/x-www-form-urlencoded` query string.
pub(crate) fn parse_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

struct Query(Vec<(String, String)>);

impl Query {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }

    fn dry_run(&self) -> bool {
        self.get("dryRun").is_some_and(|v| v == "All")
    }

    fn selectors(&self) -> Result<(LabelSelector, FieldSelector), ApiError> {
        let labels = LabelSelector::parse(self.get("labelSelector").unwrap_or_default())
            .map_err(ApiError::bad_request)?;
        let fields = FieldSelector::parse(self.get("fieldSelector").unwrap_or_default())
            .map_err(ApiError::bad_request)?;
        Ok((labels, fields))
    }
}

/// What a resource path addresses.
enum Target {
    Collection {
        res: ResId,
        ns: Option<String>,
    },
    Item {
        res: ResId,
        ns: String,
        name: String,
        sub: Option<String>,
    },
}

fn parse_target(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    let find = |plural: &str| resources::by_path(group, version, plural);
    let namespaced = |plural: &str| find(plural).filter(|r| def(*r).namespaced);
    let cluster = |plural: &str| find(plural).filter(|r| !def(*r).namespaced);
    let item = |res, ns: &str, name: &str, sub: Option<&str>| Target::Item {
        res,
        ns: ns.to_string(),
        name: name.to_string(),
        sub: sub.map(str::to_string),
    };
    match rest {
        [plural] => find(plural).map(|res| Target::Collection { res, ns: None }),
        ["namespaces", ns, plural] if namespaced(plural).is_some() => Some(Target::Collection {
            res: namespaced(plural)?,
            ns: Some(ns.to_string()),
        }),
        [plural, name] => cluster(plural).map(|res| item(res, "", name, None)),
        [plural, name, sub] => cluster(plural).map(|res| item(res, "", name, Some(sub))),
        ["namespaces", ns, plural, name] => namespaced(plural).map(|res| item(res, ns, name, None)),
        ["namespaces", ns, plural, name, sub] => {
            namespaced(plural).map(|res| item(res, ns, name, Some(sub)))
        }
        _ => None,
    }
}

fn discovery(path: &str, addr: SocketAddr) -> Option<Value> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let group_json = |g: &str| {
        let versions: Vec<Value> = resources::group_versions()
            .into_iter()
            .filter(|(gg, _)| *gg == g)
            .map(|(_, v)| json!({ "groupVersion": format!("{g}/{v}"), "version": v }))
            .collect();
        json!({
            "name": g,
            "versions": versions,
            "preferredVersion": versions.first().cloned().unwrap_or(Value::Null),
        })
    };
    let resource_list = |g: &str, v: &str| {
        let mut list = Vec::new();
        for r in RESOURCES.iter().filter(|r| r.group == g && r.version == v) {
            list.push(json!({
                "name": r.plural,
                "singularName": r.singular,
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
                "shortNames": r.short_names,
            }));
            if r.status_subresource {
                list.push(json!({
                    "name": format!("{}/status", r.plural),
                    "singularName": "",
                    "namespaced": r.namespaced,
                    "kind": r.kind,
                    "verbs": ["get", "patch", "update"],
                }));
            }
            if r.plural == "pods" && g.is_empty() {
                list.push(json!({
                    "name": "pods/eviction",
                    "singularName": "",
                    "namespaced": true,
                    "group": "policy",
                    "version": "v1",
                    "kind": "Eviction",
                    "verbs": ["create"],
                }));
            }
        }
        let gv = if g.is_empty() {
            v.to_string()
        } else {
            format!("{g}/{v}")
        };
        json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list })
    };
    let known = |g: &str, v: &str| resources::group_versions().contains(&(g, v));
    match segs.as_slice() {
        ["version"] => Some(json!({
            "major": "1",
            "minor": "33",
            "gitVersion": "v1.33.0-kube-fake",
            "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean",
            "buildDate": "2025-04-23T00:00:00Z",
            "goVersion": "go1.24.2",
            "compiler": "gc",
            "platform": "linux/amd64",
        })),
        ["api"] => Some(json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": addr.to_string() }],
        })),
        ["apis"] => {
            let mut groups: Vec<&str> = Vec::new();
            for (g, _) in resources::group_versions() {
                if !g.is_empty() && !groups.contains(&g) {
                    groups.push(g);
                }
            }
            let groups: Vec<Value> = groups.into_iter().map(group_json).collect();
            Some(json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups }))
        }
        ["apis", g] if resources::group_versions().iter().any(|(gg, _)| gg == g) => {
            let mut v = group_json(g);
            v["kind"] = json!("APIGroup");
            v["apiVersion"] = json!("v1");
            Some(v)
        }
        ["api", v] if known("", v) => Some(resource_list("", v)),
        ["apis", g, v] if known(g, v) => Some(resource_list(g, v)),
        _ => None,
    }
}

/// The single handler: logs the request, applies injected failures, routes.
pub(crate) async fn handle(
    State(shared): State<Arc<Shared>>,
    req: axum::extract::Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let method = parts.method.clone();
    let path = parts.uri.path().to_string();
    let raw_query = parts.uri.query().unwrap_or_default().to_string();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.split(';').next().unwrap_or_default().trim().to_string());
    let bytes = match axum::body::to_bytes(body, 64 << 20).await {
        Ok(b) => b,
        Err(e) => return error_response(&ApiError::bad_request(format!("reading body: {e}"))),
    };
    let body_json: Option<Value> = if bytes.is_empty() {
        None
    } else {
        serde_json::from_slice(&bytes).ok()
    };
    let injected = shared.write(|s| {
        s.requests.push(Request {
            method: method.to_string(),
            path: path.clone(),
            query: raw_query.clone(),
            content_type: content_type.clone(),
            body: body_json.clone(),
        });
        s.take_injected(method.as_str(), &path)
    });
    if let Some(e) = injected {
        return error_response(&e);
    }
    if !bytes.is_empty() && body_json.is_none() {
        return error_response(&ApiError::bad_request(
            "the fake API server only understands JSON request bodies",
        ));
    }
    let query = Query(parse_query(&raw_query));

    if method == Method::GET {
        if let Some(v) = discovery(&path, shared.addr) {
            return json_response(200, &v);
        }
        if matches!(path.as_str(), "/healthz" | "/livez" | "/readyz") {
            return (StatusCode::OK, "ok").into_response();
        }
    }
    let Some(target) = parse_target(&path) else {
        return error_response(&ApiError::path_not_found(&path));
    };
    let body = body_json.unwrap_or(Value::Null);
    let dry_run = query.dry_run();
    match target {
        Target::Collection { res, ns } => {
            let d = def(res);
            match method {
                Method::GET if query.flag("watch") => watch_response(shared, res, ns, &query),
                Method::GET => {
                    let (labels, fields) = match query.selectors() {
                        Ok(s) => s,
                        Err(e) => return error_response(&e),
                    };
                    let store = shared.lock();
                    let items = store.list(res, ns.as_deref(), &labels, &fields);
                    json_response(
                        200,
                        &json!({
                            "kind": d.list_kind(),
                            "apiVersion": d.api_version(),
                            "metadata": { "resourceVersion": store.rv.to_string() },
                            "items": items,
                        }),
                    )
                }
                Method::POST if d.namespaced && ns.is_none() => {
                    error_response(&ApiError::method_not_allowed("POST"))
                }
                Method::POST => result_response(
                    201,
                    shared.write(|s| s.create(res, ns.as_deref(), body, Origin::Api, dry_run)),
                ),
                Method::DELETE => {
                    let (labels, fields) = match query.selectors() {
                        Ok(s) => s,
                        Err(e) => return error_response(&e),
                    };
                    let r = shared.write(|s| {
                        s.delete_collection(res, ns.as_deref(), &labels, &fields, dry_run)
                    });
                    let rv = shared.lock().rv;
                    result_response(
                        200,
                        r.map(|items| {
                            json!({
                                "kind": d.list_kind(),
                                "apiVersion": d.api_version(),
                                "metadata": { "resourceVersion": rv.to_string() },
                                "items": items,
                            })
                        }),
                    )
                }
                m => error_response(&ApiError::method_not_allowed(m.as_str())),
            }
        }
        Target::Item { res, ns, name, sub } => {
            let d = def(res);
            let sub = match sub.as_deref() {
                None => Sub::Main,
                Some("status") if d.status_subresource => Sub::Status,
                Some("eviction") if res == pod_res() => {
                    return match method {
                        Method::POST => result_response(
                            201,
                            shared.write(|s| s.evict(&ns, &name, &body, dry_run)),
                        ),
                        m => error_response(&ApiError::method_not_allowed(m.as_str())),
                    };
                }
                Some(_) => return error_response(&ApiError::path_not_found(&path)),
            };
            match method {
                Method::GET => result_response(200, shared.lock().get(res, &ns, &name)),
                Method::PUT => result_response(
                    200,
                    shared.write(|s| s.replace(res, &ns, &name, body, sub, dry_run)),
                ),
                Method::PATCH => {
                    let ct = content_type.unwrap_or_default();
                    let Some(ptype) = PatchType::from_content_type(&ct) else {
                        return error_response(&ApiError::unsupported_media_type(&ct));
                    };
                    match shared.write(|s| s.patch(res, &ns, &name, ptype, &body, sub, dry_run)) {
                        Ok((code, v)) => json_response(code, &v),
                        Err(e) => error_response(&e),
                    }
                }
                Method::DELETE if sub == Sub::Main => {
                    let opts = Some(&body).filter(|b| !b.is_null());
                    result_response(
                        200,
                        shared.write(|s| s.delete(res, &ns, &name, opts, dry_run)),
                    )
                }
                m => error_response(&ApiError::method_not_allowed(m.as_str())),
            }
        }
    }
}

/// What one watch selects.
struct WatchFilter {
    res: ResId,
    ns: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl WatchFilter {
    fn matches(&self, obj: &Value) -> bool {
        self.labels.matches(obj) && self.fields.matches(obj)
    }

    /// The event a change produces for this watch: an update that moves an object into (out of)
    /// the selection is ADDED (DELETED), as the API server's watch cache does.
    fn event(&self, c: &Change) -> Option<(&'static str, Value)> {
        if c.res != self.res
            || (def(self.res).namespaced && self.ns.as_ref().is_some_and(|ns| *ns != c.ns))
        {
            return None;
        }
        let now = self.matches(&c.object);
        let kind = match c.kind {
            ChangeType::Added => now.then_some("ADDED"),
            ChangeType::Deleted => now.then_some("DELETED"),
            ChangeType::Modified => {
                let before = c.old.as_ref().is_some_and(|o| self.matches(o));
                match (before, now) {
                    (true, true) => Some("MODIFIED"),
                    (false, true) => Some("ADDED"),
                    (true, false) => Some("DELETED"),
                    (false, false) => None,
                }
            }
        }?;
        Some((kind, c.object.clone()))
    }
}

fn event_line(kind: &str, object: &Value) -> String {
    let mut line = json!({ "type": kind, "object": object }).to_string();
    line.push('\n');
    line
}

fn bookmark_line(res: ResId, rv: u64, initial_events_end: bool) -> String {
    let d = def(res);
    let mut meta = json!({ "resourceVersion": rv.to_string() });
    if initial_events_end {
        meta["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
    }
    event_line(
        "BOOKMARK",
        &json!({ "kind": d.kind, "apiVersion": d.api_version(), "metadata": meta }),
    )
}

fn watch_response(shared: Arc<Shared>, res: ResId, ns: Option<String>, query: &Query) -> Response {
    let (labels, fields) = match query.selectors() {
        Ok(s) => s,
        Err(e) => return error_response(&e),
    };
    let filter = WatchFilter {
        res,
        ns,
        labels,
        fields,
    };
    let bookmarks = query.flag("allowWatchBookmarks");
    let send_initial = query.flag("sendInitialEvents");
    let timeout = match query.get("timeoutSeconds").map(str::parse::<u64>) {
        None => None,
        Some(Ok(t)) => Some(Duration::from_secs(t)),
        Some(Err(_)) => return error_response(&ApiError::bad_request("invalid timeoutSeconds")),
    };
    let requested_rv = match query.get("resourceVersion") {
        None | Some("") | Some("0") => None,
        Some(v) => match v.parse::<u64>() {
            Ok(rv) => Some(rv),
            Err(_) => {
                return error_response(&ApiError::bad_request(format!(
                    "invalid resourceVersion {v:?}"
                )));
            }
        },
    };
    let mut initial = Vec::new();
    let start = {
        let store = shared.lock();
        // No resourceVersion ("0" or unset): the current state as synthetic ADDED events first.
        if requested_rv.is_none() || send_initial {
            let ns = filter.ns.as_deref();
            for obj in store.list(res, ns, &filter.labels, &filter.fields) {
                initial.push(event_line("ADDED", &obj));
            }
        }
        let start = match requested_rv {
            Some(rv) if !send_initial => rv,
            _ => store.rv,
        };
        if send_initial && bookmarks {
            initial.push(bookmark_line(res, store.rv, true));
        }
        start
    };
    let (tx, rx) = mpsc::channel::<Result<String, Infallible>>(256);
    tokio::spawn(run_watch(
        shared, filter, start, initial, tx, timeout, bookmarks,
    ));
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        Body::from_stream(ReceiverStream::new(rx)),
    )
        .into_response()
}

async fn run_watch(
    shared: Arc<Shared>,
    filter: WatchFilter,
    start: u64,
    initial: Vec<String>,
    tx: mpsc::Sender<Result<String, Infallible>>,
    timeout: Option<Duration>,
    bookmarks: bool,
) {
    let mut rv_rx = shared.rv_tx.subscribe();
    let mut shutdown = shared.shutdown.subscribe();
    if *shutdown.borrow_and_update() {
        return;
    }
    for line in initial {
        if tx.send(Ok(line)).await.is_err() {
            return;
        }
    }
    let deadline = async {
        match timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let mut ticker = tokio::time::interval(shared.bookmark_interval);
    ticker.tick().await;
    let mut last = start;
    loop {
        let (lines, now) = {
            let store = shared.lock();
            let from = store.history.partition_point(|c| c.rv <= last);
            let lines: Vec<String> = store.history[from..]
                .iter()
                .filter_map(|c| filter.event(c))
                .map(|(kind, obj)| event_line(kind, &obj))
                .collect();
            (lines, store.rv.max(last))
        };
        last = now;
        for line in lines {
            if tx.send(Ok(line)).await.is_err() {
                return;
            }
        }
        tokio::select! {
            changed = rv_rx.changed() => if changed.is_err() { return },
            _ = &mut deadline => return,
            _ = shutdown.changed() => return,
            _ = tx.closed() => return,
            _ = ticker.tick(), if bookmarks => {
                if tx.send(Ok(bookmark_line(filter.res, last, false))).await.is_err() {
                    return;
                }
            }
        }
    }
}
