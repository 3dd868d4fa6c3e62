//! The fake's state: objects, the global resourceVersion counter, the change history watchers
//! read, the request log and the fault-injection hooks. Every API verb's semantics live here as
//! plain synchronous functions; `server` only routes and encodes.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use super::Request;
use super::patch::{json_patch, merge_patch};
use super::resources::{self, ResId, def};
use super::selector::{FieldSelector, LabelSelector};
use super::status::{self, ApiError};

/// (resource, namespace (`""` for cluster-scoped), name).
pub(crate) type Key = (ResId, String, String);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChangeType {
    Added,
    Modified,
    Deleted,
}

/// One committed write, as watchers see it.
#[derive(Clone, Debug)]
pub(crate) struct Change {
    pub rv: u64,
    pub res: ResId,
    pub ns: String,
    pub kind: ChangeType,
    /// The object after the change (for a deletion: its last state, with the deletion's rv).
    pub object: Value,
    /// The object before a modification, so selector watches can turn it into ADDED/DELETED.
    pub old: Option<Value>,
}

/// Which part of an object a write addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sub {
    Main,
    Status,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PatchType {
    Merge,
    Strategic,
    Json,
    Apply,
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> Option<Self> {
        match ct {
            "application/merge-patch+json" => Some(Self::Merge),
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            "application/json-patch+json" => Some(Self::Json),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Some(Self::Apply),
            _ => None,
        }
    }
}

/// Where an object comes from: the HTTP API (full server semantics) or a test's seeding call
/// (taken as given, including status, uid and creationTimestamp when present).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    Api,
    Seed,
}

pub(crate) struct InjectedFailure {
    pub method: Option<String>,
    pub path: String,
    pub remaining: u32,
    pub code: u16,
}

#[derive(Default)]
pub(crate) struct Store {
    /// The last resourceVersion handed out (global, monotonically increasing).
    pub rv: u64,
    objects: BTreeMap<Key, Value>,
    /// Every committed change, in rv order.
    pub history: Vec<Change>,
    pub requests: Vec<Request>,
    /// (namespace, pod) → (evictions still to fail, HTTP code to fail with).
    pub eviction_failures: HashMap<(String, String), (u32, u16)>,
    pub injected: Vec<InjectedFailure>,
    random_counter: u64,
}

pub(crate) fn pod_res() -> ResId {
    resources::by_path("", "v1", "pods").expect("pods in table")
}
pub(crate) fn namespace_res() -> ResId {
    resources::by_path("", "v1", "namespaces").expect("namespaces in table")
}
pub(crate) fn pdb_res() -> ResId {
    resources::by_path("policy", "v1", "poddisruptionbudgets").expect("pdbs in table")
}

/// RFC 3339 UTC timestamp with second precision, as `metav1.Time` is serialized.
pub(crate) fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

fn meta(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata").and_then(Value::as_object)
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    meta(obj)
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// `obj.metadata`, created if missing. `obj` must be an object.
fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    let root = obj.as_object_mut().expect("object checked by the caller");
    let m = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !m.is_object() {
        *m = Value::Object(Map::new());
    }
    m.as_object_mut().expect("made an object above")
}

fn set_or_remove(map: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    match value {
        Some(v) => {
            map.insert(key.to_string(), v);
        }
        None => {
            map.remove(key);
        }
    }
}

/// Everything but metadata and status: what `metadata.generation` tracks.
fn spec_part(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    v
}

fn has_finalizers(obj: &Value) -> bool {
    meta(obj)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty())
}

/// The status a freshly created object gets from the API server's create strategy.
fn initial_status(kind: &str) -> Option<Option<Value>> {
    match kind {
        "Pod" => Some(Some(json!({ "phase": "Pending" }))),
        "Namespace" => Some(Some(json!({ "phase": "Active" }))),
        "PodDisruptionBudget" => Some(Some(json!({
            "disruptionsAllowed": 0,
            "currentHealthy": 0,
            "desiredHealthy": 0,
            "expectedPods": 0,
        }))),
        "DaemonSet" | "ReplicaSet" | "Deployment" | "StatefulSet" => Some(None),
        // Nodes may set their whole status on create (the kubelet registers that way).
        _ => None,
    }
}

impl Store {
    fn random_u64(&mut self) -> u64 {
        self.random_counter += 1;
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(self.random_counter);
        h.finish()
    }

    fn new_uid(&mut self) -> String {
        let (a, b) = (self.random_u64(), self.random_u64());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | ((b >> 48) & 0x3fff),
            b & 0xffff_ffff_ffff
        )
    }

    fn name_suffix(&mut self) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let mut r = self.random_u64();
        (0..5)
            .map(|_| {
                let c = ALPHABET[(r % ALPHABET.len() as u64) as usize] as char;
                r /= ALPHABET.len() as u64;
                c
            })
            .collect()
    }

    fn key(res: ResId, ns: &str, name: &str) -> Key {
        let ns = if def(res).namespaced { ns } else { "" };
        (res, ns.to_string(), name.to_string())
    }

    /// Stores (or removes) an object under a new resourceVersion and records the change.
    fn commit(&mut self, key: Key, mut obj: Value, kind: ChangeType, old: Option<Value>) -> Value {
        self.rv += 1;
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(self.rv.to_string()));
        match kind {
            ChangeType::Deleted => {
                self.objects.remove(&key);
            }
            _ => {
                self.objects.insert(key.clone(), obj.clone());
            }
        }
        self.history.push(Change {
            rv: self.rv,
            res: key.0,
            ns: key.1,
            kind,
            object: obj.clone(),
            old,
        });
        obj
    }

    pub fn get(&self, res: ResId, ns: &str, name: &str) -> Result<Value, ApiError> {
        self.objects
            .get(&Self::key(res, ns, name))
            .cloned()
            .ok_or_else(|| ApiError::not_found(def(res), name))
    }

    pub fn peek(&self, res: ResId, ns: &str, name: &str) -> Option<&Value> {
        self.objects.get(&Self::key(res, ns, name))
    }

    /// Objects of `res` (in `ns`, or all namespaces), in key order (namespace, name).
    pub fn list(
        &self,
        res: ResId,
        ns: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
    ) -> Vec<Value> {
        self.objects
            .range((res, String::new(), String::new())..)
            .take_while(|((r, _, _), _)| *r == res)
            .filter(|((_, o_ns, _), _)| ns.is_none_or(|ns| !def(res).namespaced || ns == o_ns))
            .filter(|(_, o)| labels.matches(o) && fields.matches(o))
            .map(|(_, o)| o.clone())
            .collect()
    }

    /// POST to a collection.
    pub fn create(
        &mut self,
        res: ResId,
        path_ns: Option<&str>,
        body: Value,
        origin: Origin,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let d = def(res);
        let mut obj = body;
        if !obj.is_object() {
            return Err(ApiError::bad_request(format!(
                "the body of the request must be a {} object",
                d.kind
            )));
        }
        self.check_type(res, &obj)?;
        obj["kind"] = json!(d.kind);
        obj["apiVersion"] = json!(d.api_version());
        let generated = match (
            meta_str(&obj, "name").map(str::to_string),
            meta_str(&obj, "generateName").map(str::to_string),
        ) {
            (Some(name), _) => name,
            (None, Some(prefix)) => format!("{prefix}{}", self.name_suffix()),
            (None, None) => {
                return Err(ApiError::invalid(
                    d,
                    "",
                    "metadata.name: Required value: name or generateName is required",
                ));
            }
        };
        let name = generated;
        let ns = if d.namespaced {
            let body_ns = meta_str(&obj, "namespace").map(str::to_string);
            match (path_ns, body_ns) {
                (Some(p), Some(b)) if p != b => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                (Some(p), _) => p.to_string(),
                (None, Some(b)) => b,
                (None, None) => "default".to_string(),
            }
        } else {
            String::new()
        };
        if d.namespaced && self.peek(namespace_res(), "", &ns).is_none() {
            match origin {
                Origin::Api => return Err(ApiError::namespace_not_found(&ns)),
                Origin::Seed => {
                    self.create(
                        namespace_res(),
                        None,
                        json!({ "metadata": { "name": ns } }),
                        Origin::Seed,
                        false,
                    )?;
                }
            }
        }
        let key = Self::key(res, &ns, &name);
        if self.objects.contains_key(&key) {
            return Err(ApiError::already_exists(d, &name));
        }
        let uid = self.new_uid();
        let m = meta_mut(&mut obj);
        m.insert("name".into(), json!(name));
        if d.namespaced {
            m.insert("namespace".into(), json!(ns));
        } else {
            m.remove("namespace");
        }
        m.remove("resourceVersion");
        match origin {
            Origin::Api => {
                m.insert("uid".into(), json!(uid));
                m.insert("creationTimestamp".into(), json!(now_rfc3339()));
                m.remove("deletionTimestamp");
                m.remove("deletionGracePeriodSeconds");
                if d.generation {
                    m.insert("generation".into(), json!(1));
                } else {
                    m.remove("generation");
                }
            }
            Origin::Seed => {
                if m.get("uid")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    m.insert("uid".into(), json!(uid));
                }
                if !m.contains_key("creationTimestamp") {
                    m.insert("creationTimestamp".into(), json!(now_rfc3339()));
                }
                if d.generation && !m.contains_key("generation") {
                    m.insert("generation".into(), json!(1));
                }
            }
        }
        if d.kind == "Namespace" {
            let labels = m.entry("labels").or_insert_with(|| json!({}));
            if let Some(l) = labels.as_object_mut() {
                l.insert("kubernetes.io/metadata.name".into(), json!(name));
            }
        }
        if origin == Origin::Api
            && let Some(status) = initial_status(d.kind)
        {
            set_or_remove(obj.as_object_mut().expect("object"), "status", status);
        }
        if dry_run {
            return Ok(obj);
        }
        Ok(self.commit(key, obj, ChangeType::Added, None))
    }

    fn check_type(&self, res: ResId, obj: &Value) -> Result<(), ApiError> {
        let d = def(res);
        let kind = obj.get("kind").and_then(Value::as_str);
        let api_version = obj.get("apiVersion").and_then(Value::as_str);
        if kind.is_some_and(|k| k != d.kind) || api_version.is_some_and(|v| v != d.api_version()) {
            return Err(ApiError::bad_request(format!(
                "the API version/kind in the data ({}/{}) does not match the expected ({}/{})",
                api_version.unwrap_or_default(),
                kind.unwrap_or_default(),
                d.api_version(),
                d.kind
            )));
        }
        Ok(())
    }

    /// resourceVersion and uid in a write body act as preconditions.
    fn check_preconditions(
        res: ResId,
        name: &str,
        old: &Value,
        new: &Value,
    ) -> Result<(), ApiError> {
        let d = def(res);
        if let Some(rv) = meta_str(new, "resourceVersion")
            && Some(rv) != meta_str(old, "resourceVersion")
        {
            return Err(ApiError::conflict(d, name));
        }
        if let Some(uid) = meta_str(new, "uid")
            && Some(uid) != meta_str(old, "uid")
        {
            return Err(ApiError::precondition_failed(
                d,
                name,
                &format!(
                    "UID in precondition: {uid}, UID in object meta: {}",
                    meta_str(old, "uid").unwrap_or_default()
                ),
            ));
        }
        Ok(())
    }

    /// Builds the stored form of an update: server-owned fields from `old`, status rules of the
    /// resource's status subresource, generation bump.
    fn prepare_update(res: ResId, old: &Value, body: Value, sub: Sub) -> Value {
        let d = def(res);
        let mut new = match sub {
            Sub::Main => body,
            Sub::Status => {
                let mut n = old.clone();
                let status = body.get("status").cloned();
                set_or_remove(
                    n.as_object_mut().expect("stored objects are objects"),
                    "status",
                    status,
                );
                n
            }
        };
        new["kind"] = json!(d.kind);
        new["apiVersion"] = json!(d.api_version());
        let old_meta = meta(old).cloned().unwrap_or_default();
        let m = meta_mut(&mut new);
        for field in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "resourceVersion",
        ] {
            set_or_remove(m, field, old_meta.get(field).cloned());
        }
        if d.kind == "Namespace" {
            let labels = m.entry("labels").or_insert_with(|| json!({}));
            if let (Some(l), Some(name)) = (labels.as_object_mut(), old_meta.get("name")) {
                l.insert("kubernetes.io/metadata.name".into(), name.clone());
            }
        }
        if sub == Sub::Main && d.status_subresource {
            let status = old.get("status").cloned();
            set_or_remove(new.as_object_mut().expect("object"), "status", status);
        }
        if d.generation && spec_part(&new) != spec_part(old) {
            let g = old_meta
                .get("generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            meta_mut(&mut new).insert("generation".into(), json!(g + 1));
        }
        new
    }

    /// Commits an update; a no-op write is not committed (no new resourceVersion, no event), and
    /// an object being deleted whose last finalizer goes away is removed.
    fn finish_update(&mut self, key: Key, old: Value, new: Value, dry_run: bool) -> Value {
        if new == old {
            return old;
        }
        let deleting = meta(&new).is_some_and(|m| m.contains_key("deletionTimestamp"));
        if dry_run {
            return new;
        }
        if deleting && !has_finalizers(&new) {
            return self.commit(key, new, ChangeType::Deleted, None);
        }
        self.commit(key, new, ChangeType::Modified, Some(old))
    }

    /// PUT of an object or of its status.
    pub fn replace(
        &mut self,
        res: ResId,
        ns: &str,
        name: &str,
        body: Value,
        sub: Sub,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let old = self.get(res, ns, name)?;
        if !body.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request must be an object",
            ));
        }
        self.check_type(res, &body)?;
        if let Some(n) = meta_str(&body, "name")
            && n != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        if def(res).namespaced
            && let Some(n) = meta_str(&body, "namespace")
            && n != ns
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        Self::check_preconditions(res, name, &old, &body)?;
        let new = Self::prepare_update(res, &old, body, sub);
        Ok(self.finish_update(Self::key(res, ns, name), old, new, dry_run))
    }

    /// PATCH of an object or of its status. Returns the HTTP code (201 when server-side apply
    /// created the object) and the result.
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &mut self,
        res: ResId,
        ns: &str,
        name: &str,
        ptype: PatchType,
        patch: &Value,
        sub: Sub,
        dry_run: bool,
    ) -> Result<(u16, Value), ApiError> {
        let old = match self.get(res, ns, name) {
            Ok(o) => o,
            Err(e) if ptype == PatchType::Apply && sub == Sub::Main => {
                let mut body = patch.clone();
                if !body.is_object() {
                    return Err(e);
                }
                meta_mut(&mut body).insert("name".into(), json!(name));
                let path_ns = def(res).namespaced.then_some(ns);
                return self
                    .create(res, path_ns, body, Origin::Api, dry_run)
                    .map(|v| (201, v));
            }
            Err(e) => return Err(e),
        };
        let mut patched = old.clone();
        match ptype {
            PatchType::Merge | PatchType::Strategic | PatchType::Apply => {
                if !patch.is_object() {
                    return Err(ApiError::bad_request("a merge patch must be a JSON object"));
                }
                merge_patch(&mut patched, patch);
            }
            PatchType::Json => json_patch(&mut patched, patch).map_err(ApiError::unprocessable)?,
        }
        if !patched.is_object() {
            return Err(ApiError::unprocessable(
                "the patched object is not an object",
            ));
        }
        Self::check_preconditions(res, name, &old, &patched)?;
        let new = Self::prepare_update(res, &old, patched, sub);
        Ok((
            200,
            self.finish_update(Self::key(res, ns, name), old, new, dry_run),
        ))
    }

    /// DELETE of one object. Objects with finalizers get a deletionTimestamp and stay until the
    /// last finalizer is removed; anything else (pods included) is removed at once.
    pub fn delete(
        &mut self,
        res: ResId,
        ns: &str,
        name: &str,
        options: Option<&Value>,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let old = self.get(res, ns, name)?;
        Self::check_delete_preconditions(res, name, &old, options)?;
        let key = Self::key(res, ns, name);
        if has_finalizers(&old) {
            if meta(&old).is_some_and(|m| m.contains_key("deletionTimestamp")) {
                return Ok(old);
            }
            let mut new = old.clone();
            let m = meta_mut(&mut new);
            m.insert("deletionTimestamp".into(), json!(now_rfc3339()));
            m.insert("deletionGracePeriodSeconds".into(), json!(0));
            if dry_run {
                return Ok(new);
            }
            return Ok(self.commit(key, new, ChangeType::Modified, Some(old)));
        }
        if dry_run {
            return Ok(old);
        }
        Ok(self.commit(key, old, ChangeType::Deleted, None))
    }

    fn check_delete_preconditions(
        res: ResId,
        name: &str,
        old: &Value,
        options: Option<&Value>,
    ) -> Result<(), ApiError> {
        let Some(pre) = options.and_then(|o| o.get("preconditions")) else {
            return Ok(());
        };
        for (field, label) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
            if let Some(want) = pre.get(field).and_then(Value::as_str) {
                let have = meta_str(old, field).unwrap_or_default();
                if want != have {
                    return Err(ApiError::precondition_failed(
                        def(res),
                        name,
                        &format!("{label} in precondition: {want}, {label} in object meta: {have}"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// DELETE of a collection: deletes every match, returns them.
    pub fn delete_collection(
        &mut self,
        res: ResId,
        ns: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
        dry_run: bool,
    ) -> Result<Vec<Value>, ApiError> {
        let victims = self.list(res, ns, labels, fields);
        let mut out = Vec::new();
        for v in victims {
            let o_ns = meta_str(&v, "namespace").unwrap_or_default().to_string();
            let name = meta_str(&v, "name").unwrap_or_default().to_string();
            out.push(self.delete(res, &o_ns, &name, None, dry_run)?);
        }
        Ok(out)
    }

    /// POST `pods/{name}/eviction` (policy/v1 Eviction), as the API server's eviction REST.
    pub fn evict(
        &mut self,
        ns: &str,
        name: &str,
        body: &Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let pods = pod_res();
        let pod = self.get(pods, ns, name)?;
        if let Some(n) = meta_str(body, "name")
            && n != name
        {
            return Err(ApiError::bad_request(
                "name in URL does not match name in Eviction object",
            ));
        }
        let delete_options = body.get("deleteOptions").filter(|o| !o.is_null());
        Self::check_delete_preconditions(pods, name, &pod, delete_options)?;
        if let Some((remaining, code)) = self
            .eviction_failures
            .get_mut(&(ns.to_string(), name.to_string()))
            && *remaining > 0
        {
            *remaining -= 1;
            return Err(if *code == 429 {
                ApiError::new(
                    429,
                    "TooManyRequests",
                    "Cannot evict pod as it would violate the pod's disruption budget.",
                )
            } else {
                ApiError::injected(
                    *code,
                    format!("injected eviction failure for pod {ns}/{name}"),
                )
            });
        }
        let phase = pod
            .get("status")
            .and_then(|s| s.get("phase"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let terminating = meta(&pod).is_some_and(|m| m.contains_key("deletionTimestamp"));
        // Terminal, pending and terminating pods are evicted without consulting budgets.
        if !matches!(phase, "Succeeded" | "Failed" | "Pending") && !terminating {
            let pdbs: Vec<Value> = self
                .list(
                    pdb_res(),
                    Some(ns),
                    &LabelSelector::default(),
                    &FieldSelector::default(),
                )
                .into_iter()
                .filter(|pdb| {
                    let sel = pdb.get("spec").and_then(|s| s.get("selector"));
                    LabelSelector::from_object(sel).is_ok_and(|s| s.matches(&pod))
                })
                .collect();
            if pdbs.len() > 1 {
                return Err(ApiError::internal(
                    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                ));
            }
            if let Some(pdb) = pdbs.into_iter().next() {
                let st = pdb.get("status").cloned().unwrap_or_else(|| json!({}));
                let int = |f: &str| st.get(f).and_then(Value::as_i64).unwrap_or(0);
                let pdb_name = meta_str(&pdb, "name").unwrap_or_default().to_string();
                if int("disruptionsAllowed") < 1 {
                    return Err(ApiError::disruption_budget(
                        &pdb_name,
                        int("desiredHealthy"),
                        int("currentHealthy"),
                    ));
                }
                let mut new = pdb.clone();
                let status = new
                    .as_object_mut()
                    .expect("object")
                    .entry("status")
                    .or_insert_with(|| json!({}));
                status["disruptionsAllowed"] = json!(int("disruptionsAllowed") - 1);
                if !status.get("disruptedPods").is_some_and(Value::is_object) {
                    status["disruptedPods"] = json!({});
                }
                status["disruptedPods"][name] = json!(now_rfc3339());
                if !dry_run {
                    let key = Self::key(pdb_res(), ns, &pdb_name);
                    self.commit(key, new, ChangeType::Modified, Some(pdb));
                }
            }
        }
        self.delete(pods, ns, name, delete_options, dry_run)?;
        Ok(status::success(201))
    }

    /// Test seeding: create, or replace wholesale (status included), keeping uid,
    /// creationTimestamp and generation of an existing object unless the new one sets them.
    pub fn seed(&mut self, obj: Value) -> Result<Value, ApiError> {
        let api_version = obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
        let res = resources::by_api_version_kind(api_version, kind).ok_or_else(|| {
            ApiError::bad_request(format!("KubeFake does not serve {api_version} {kind}"))
        })?;
        let d = def(res);
        let name = meta_str(&obj, "name").unwrap_or_default().to_string();
        let ns = if d.namespaced {
            meta_str(&obj, "namespace").unwrap_or("default").to_string()
        } else {
            String::new()
        };
        let Some(old) = self.peek(res, &ns, &name).cloned() else {
            let path_ns = d.namespaced.then_some(ns.as_str());
            return self.create(res, path_ns, obj, Origin::Seed, false);
        };
        let mut new = obj;
        let old_meta = meta(&old).cloned().unwrap_or_default();
        let m = meta_mut(&mut new);
        m.insert("namespace".into(), json!(ns));
        if !d.namespaced {
            m.remove("namespace");
        }
        let explicit_generation = m.contains_key("generation");
        for field in ["uid", "creationTimestamp", "generation"] {
            if !m.contains_key(field) {
                set_or_remove(m, field, old_meta.get(field).cloned());
            }
        }
        set_or_remove(
            m,
            "resourceVersion",
            old_meta.get("resourceVersion").cloned(),
        );
        new["kind"] = json!(d.kind);
        new["apiVersion"] = json!(d.api_version());
        if d.generation && !explicit_generation && spec_part(&new) != spec_part(&old) {
            let g = old_meta
                .get("generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            meta_mut(&mut new).insert("generation".into(), json!(g + 1));
        }
        Ok(self.finish_update(Self::key(res, &ns, &name), old, new, false))
    }

    /// Test hook: change a stored object in place (any field, status included).
    pub fn modify(
        &mut self,
        res: ResId,
        ns: &str,
        name: &str,
        f: impl FnOnce(&mut Value),
    ) -> Option<Value> {
        let old = self.peek(res, ns, name)?.clone();
        let mut new = old.clone();
        f(&mut new);
        let m = meta_mut(&mut new);
        let old_meta = meta(&old).cloned().unwrap_or_default();
        for field in ["name", "namespace", "resourceVersion"] {
            set_or_remove(m, field, old_meta.get(field).cloned());
        }
        Some(self.finish_update(Self::key(res, ns, name), old, new, false))
    }

    /// Test hook: remove an object at once, finalizers or not.
    pub fn force_delete(&mut self, res: ResId, ns: &str, name: &str) -> Option<Value> {
        let old = self.peek(res, ns, name)?.clone();
        Some(self.commit(Self::key(res, ns, name), old, ChangeType::Deleted, None))
    }

    /// Takes one injected failure matching this request, if any.
    pub fn take_injected(&mut self, method: &str, path: &str) -> Option<ApiError> {
        let f = self.injected.iter_mut().find(|f| {
            f.remaining > 0
                && f.path == path
                && f.method
                    .as_deref()
                    .is_none_or(|m| m.eq_ignore_ascii_case(method))
        })?;
        f.remaining -= 1;
        Some(ApiError::injected(
            f.code,
            format!("injected failure for {method} {path}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc_seconds() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T', "{t}");
        assert!(t.as_str() > "2025-01-01T00:00:00Z", "{t}");
    }

    #[test]
    fn uids_look_like_uuids_and_differ() {
        let mut s = Store::default();
        let (a, b) = (s.new_uid(), s.new_uid());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
    }
}
