//! A fake [`Api`] for the controllers' unit tests: a tenant's objects held in memory, so
//! that a test can say "given these objects, a reconcile of this key writes exactly this".
//!
//! It models what the real `Api` (the API server's write path) guarantees the controllers,
//! and no more: resourceVersions that go up with every write, a `409 Conflict` for a
//! replace at a stale resourceVersion or a delete whose uid precondition fails, `409
//! AlreadyExists` for a create of a name that is taken, the scopes of an update (the main
//! endpoint keeps the status, `status` changes only the status, `finalize` only a
//! namespace's `spec.finalizers`), and deletion through finalizers (an object that has some
//! is marked and held; one whose last finalizer goes while it is marked is gone). It has no
//! admission, validation or defaulting: an object is stored as written, with only the
//! metadata the server owns (uid, timestamps, resourceVersion) filled in, so that what a
//! test reads back is what the controller wrote. A test that needs admission's refusal says
//! so with [`Fake::refuse_creates`]. Every write asked of it is logged
//! ([`Fake::take_writes`]), with the reason of a refusal.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};
use vcluster_core::object::{
    self, Finalizers, UpdateScope, has_finalizers, is_deleting, meta_str, with_resource_version,
};
use vcluster_core::registry::{self, CRUD, Custom, ResourceType};
use vcluster_core::status::{ApiError, Reason};

use crate::queue::Key;
use crate::{Api, LegacyToken, Requeue, Resource, Result};

/// The tenant the tests' objects live in.
pub(crate) const TENANT: &str = "t";

/// What the fake answers for every tenant's CA certificate.
pub(crate) const CA: &str =
    "-----BEGIN CERTIFICATE-----\nZmFrZSBDQQ==\n-----END CERTIFICATE-----\n";

/// The time the fake stamps on what it creates and marks for deletion. A fixed one keeps
/// what a test reads back the same from run to run.
const NOW: &str = "2026-01-01T00:00:00Z";

/// Where an object is held: tenant, group, plural, namespace (empty for a cluster-scoped
/// object) and name. In that order a listing comes out sorted as the store's keys are.
type Place = (String, String, String, String, String);

#[derive(Default)]
struct State {
    /// The resources served; built-in ones from the registry, custom ones as a test adds
    /// them.
    served: Vec<Arc<ResourceType>>,
    objects: BTreeMap<Place, Value>,
    /// The store's revision: every write takes the next one as its resourceVersion.
    revision: u64,
    /// Counters for uids and for generated names (apart, so that the names a test
    /// expects do not depend on how many of its objects came without a uid).
    uids: u64,
    generated: u64,
    writes: Vec<String>,
    /// What a create of each resource (group, plural) is refused with.
    refused: Vec<(String, String, ApiError)>,
}

impl State {
    fn served(&self, resource: &Resource) -> Result<Arc<ResourceType>> {
        self.served
            .iter()
            .find(|rt| rt.group == resource.group && rt.plural == resource.plural)
            .cloned()
            .ok_or_else(|| {
                ApiError::new(
                    404,
                    Reason::NotFound,
                    format!("the server does not serve {}", resource.plural),
                )
            })
    }

    fn next_revision(&mut self) -> u64 {
        self.revision += 1;
        self.revision
    }

    fn next_uid(&mut self) -> String {
        self.uids += 1;
        format!("uid-{}", self.uids)
    }

    fn create(
        &mut self,
        tenant: &str,
        resource: &Resource,
        namespace: Option<&str>,
        mut object: Value,
    ) -> Result<Value> {
        let rt = self.served(resource)?;
        if let Some((_, _, error)) = self
            .refused
            .iter()
            .find(|(group, plural, _)| (group, plural) == (&rt.group, &rt.plural))
        {
            return Err(error.clone());
        }
        let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
            return Err(ApiError::bad_request("metadata must be an object"));
        };
        // The request's namespace is the object's, as the API settles it.
        let namespace = namespace.filter(|_| rt.namespaced);
        match (namespace, meta.get("namespace").and_then(Value::as_str)) {
            (Some(wanted), Some(given)) if given != wanted => {
                return Err(ApiError::bad_request(format!(
                    "the namespace of the object ({given}) does not match the namespace on the request ({wanted})"
                )));
            }
            (Some(wanted), _) => {
                meta.insert("namespace".into(), json!(wanted));
            }
            (None, _) => {
                meta.remove("namespace");
            }
        }
        let name = match (meta_str(&object, "name"), meta_str(&object, "generateName")) {
            (Some(name), _) if !name.is_empty() => name.to_owned(),
            (_, Some(base)) if !base.is_empty() => {
                self.generated += 1;
                format!("{base}{:05}", self.generated)
            }
            _ => {
                let cause = vcluster_core::status::Cause::required(
                    "metadata.name",
                    "name or generateName is required",
                );
                return Err(ApiError::invalid(&rt, "", vec![cause]));
            }
        };
        let at = place(tenant, &rt, namespace, &name);
        if self.objects.contains_key(&at) {
            return Err(ApiError::already_exists(&rt, &name));
        }
        let meta = &mut object["metadata"];
        meta["name"] = json!(name);
        meta["uid"] = json!(self.next_uid());
        meta["creationTimestamp"] = json!(NOW);
        if let Some(meta) = meta.as_object_mut() {
            for server_owned in ["deletionTimestamp", "deletionGracePeriodSeconds"] {
                meta.remove(server_owned);
            }
        }
        let object = with_resource_version(object, self.next_revision());
        self.objects.insert(at.clone(), object.clone());
        Ok(object)
    }

    fn replace(
        &mut self,
        tenant: &str,
        resource: &Resource,
        object: &Value,
        scope: UpdateScope,
    ) -> Result<Value> {
        let rt = self.served(resource)?;
        let name = meta_str(object, "name").unwrap_or_default();
        let at = place(tenant, &rt, meta_str(object, "namespace"), name);
        let current = self
            .objects
            .get(&at)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rt, name))?;
        // A resourceVersion is a condition (none: an unconditional update).
        if let Some(rv) = meta_str(object, "resourceVersion").filter(|rv| !rv.is_empty())
            && Some(rv) != meta_str(&current, "resourceVersion")
        {
            return Err(ApiError::conflict(&rt, name));
        }
        if let Some(uid) = meta_str(object, "uid")
            && Some(uid) != meta_str(&current, "uid")
        {
            return Err(uid_conflict(&rt, name, uid));
        }
        let mut next = match scope {
            UpdateScope::Main => {
                let mut next = object.clone();
                if rt.has_status() {
                    take_field(&mut next, &current, &["status"]);
                }
                next
            }
            UpdateScope::Status => {
                let mut next = current.clone();
                take_field(&mut next, object, &["status"]);
                next
            }
            UpdateScope::Finalize => {
                let mut next = current.clone();
                take_field(&mut next, object, &["spec", "finalizers"]);
                next
            }
        };
        for kept in SERVER_OWNED {
            take_field(&mut next, &current, &["metadata", kept]);
        }
        if is_namespace(&rt) && scope != UpdateScope::Finalize {
            // Only the finalize subresource changes a namespace's finalizers.
            take_field(&mut next, &current, &["spec", "finalizers"]);
        }
        let next = with_resource_version(next, self.next_revision());
        // The last finalizer gone from an object being deleted: it goes now.
        if is_deleting(&next) && !has_finalizers(&rt, &next) {
            self.objects.remove(&at);
        } else {
            self.objects.insert(at.clone(), next.clone());
        }
        Ok(next)
    }

    fn delete(
        &mut self,
        tenant: &str,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
        options: &Value,
    ) -> Result<Option<Value>> {
        let rt = self.served(resource)?;
        let at = place(tenant, &rt, namespace, name);
        let mut current = self
            .objects
            .get(&at)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rt, name))?;
        if let Some(wanted) = options
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            && Some(wanted) != meta_str(&current, "uid")
        {
            return Err(uid_conflict(&rt, name, wanted));
        }
        if let Some(wanted) = options
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            && Some(wanted) != meta_str(&current, "resourceVersion")
        {
            return Err(ApiError::conflict(&rt, name));
        }
        // The garbage collector carries out these propagation policies through finalizers.
        let propagation = match options["propagationPolicy"].as_str() {
            Some("Foreground") => Some(crate::gc::FOREGROUND),
            Some("Orphan") => Some(crate::gc::ORPHAN),
            _ => None,
        };
        if !is_deleting(&current)
            && let Some(finalizer) = propagation
        {
            object::add_finalizer(&mut current, finalizer);
        }
        if !has_finalizers(&rt, &current) {
            self.objects.remove(&at);
            self.next_revision();
            return Ok(None);
        }
        if is_deleting(&current) {
            return Ok(Some(current));
        }
        let mut marked = deleting(current);
        if is_namespace(&rt) {
            marked["status"]["phase"] = json!("Terminating");
        }
        let marked = with_resource_version(marked, self.next_revision());
        self.objects.insert(at, marked.clone());
        Ok(Some(marked))
    }

    /// Notes a write asked of the fake, as `verb resource namespace/name`, and the reason
    /// it was refused if it was.
    fn log(
        &mut self,
        verb: &str,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
        refused: Option<&ApiError>,
    ) {
        let namespaced = self
            .served(resource)
            .map_or(resource.namespaced, |rt| rt.namespaced);
        let mut entry = match resource.group.as_str() {
            "" => format!("{verb} {} ", resource.plural),
            group => format!("{verb} {}.{group} ", resource.plural),
        };
        if let Some(namespace) = namespace.filter(|_| namespaced) {
            entry.push_str(&format!("{namespace}/"));
        }
        entry.push_str(name);
        if let Some(e) = refused {
            entry.push_str(&format!(": {}", e.reason.as_str()));
        }
        self.writes.push(entry);
    }
}

fn place(tenant: &str, rt: &ResourceType, namespace: Option<&str>, name: &str) -> Place {
    let namespace = namespace.filter(|_| rt.namespaced).unwrap_or_default();
    (
        tenant.to_owned(),
        rt.group.clone(),
        rt.plural.clone(),
        namespace.to_owned(),
        name.to_owned(),
    )
}

fn resource_of_type(rt: &ResourceType) -> Resource {
    Resource {
        group: rt.group.clone(),
        plural: rt.plural.clone(),
        namespaced: rt.namespaced,
    }
}

fn is_namespace(rt: &ResourceType) -> bool {
    rt.group.is_empty() && rt.plural == "namespaces"
}

/// The fields of `metadata` only the server sets: kept from what is stored on an update.
const SERVER_OWNED: [&str; 5] = [
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
];

/// `to` with the field at `path` taken from `from` (removed where `from` has none).
fn take_field(to: &mut Value, from: &Value, path: &[&str]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    match path.iter().try_fold(from, |v, part| v.get(part)) {
        Some(value) => {
            let parent = parents.iter().fold(to, |at, part| &mut at[*part]);
            parent[*last] = value.clone();
        }
        None => {
            let parent = parents.iter().try_fold(to, |at, part| at.get_mut(part));
            if let Some(map) = parent.and_then(Value::as_object_mut) {
                map.remove(*last);
            }
        }
    }
}

/// The `409` of a write whose uid (a precondition) is not the object's: it is another
/// object of the same name.
fn uid_conflict(rt: &ResourceType, name: &str, wanted: &str) -> ApiError {
    let what = format!("{} {name:?}", rt.qualified());
    let message = format!("Precondition failed on {what}: its uid is not {wanted}");
    ApiError::new(409, Reason::Conflict, message)
}

/// An in-memory tenant behind the [`Api`] the controllers use.
pub(crate) struct Fake {
    state: Mutex<State>,
    recorder: crate::Recorder,
    /// The events the controllers recorded, in order.
    recorded: Mutex<tokio::sync::mpsc::Receiver<crate::Pending>>,
}

impl Fake {
    /// A fake serving the built-in resources (those that hold objects: reviews are only
    /// asked, never stored), holding `given` in [`TENANT`].
    pub(crate) fn with(given: impl IntoIterator<Item = (Resource, Value)>) -> Arc<Self> {
        let served = registry::BUILTINS
            .iter()
            .filter(|rt| rt.verbs.contains(&"list"))
            .cloned()
            .collect();
        let (recorder, recorded) = crate::Recorder::channel();
        let fake = Self {
            state: Mutex::new(State {
                served,
                ..State::default()
            }),
            recorder,
            recorded: Mutex::new(recorded),
        };
        for (resource, object) in given {
            fake.given(&resource, object);
        }
        Arc::new(fake)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("the fake's lock")
    }

    /// Serves a custom resource (a CRD's), of `kind` in `version` of its group.
    pub(crate) fn serve(&self, resource: &Resource, version: &str, kind: &str) {
        let rt = ResourceType {
            group: resource.group.clone(),
            version: version.to_owned(),
            kind: kind.to_owned(),
            plural: resource.plural.clone(),
            singular: kind.to_lowercase(),
            namespaced: resource.namespaced,
            short_names: Vec::new(),
            categories: Vec::new(),
            verbs: CRUD,
            subresources: Vec::new(),
            custom: Some(Arc::new(Custom::default())),
        };
        self.state().served.push(Arc::new(rt));
    }

    /// Stores `object` as it is (a uid added if it has none), as though it had been there
    /// before the test; not a write of the controller's, so not in [`Fake::take_writes`].
    pub(crate) fn given(&self, resource: &Resource, mut object: Value) -> Value {
        let mut state = self.state();
        let rt = state.served(resource).expect("a served resource");
        if meta_str(&object, "uid").is_none() {
            object["metadata"]["uid"] = json!(state.next_uid());
        }
        let name = meta_str(&object, "name").expect("a named object");
        let at = place(TENANT, &rt, meta_str(&object, "namespace"), name);
        let object = with_resource_version(object, state.next_revision());
        state.objects.insert(at, object.clone());
        object
    }

    /// The object now, for a test's assertions.
    pub(crate) fn object(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let state = self.state();
        let rt = state.served(resource).expect("a served resource");
        state
            .objects
            .get(&place(TENANT, &rt, namespace, name))
            .cloned()
    }

    /// Takes `finalizer` from an object, as its owner (someone other than the controller
    /// under test) does when done with it; a marked object goes with its last finalizer.
    /// Not a write of the controller's, so not in [`Fake::take_writes`].
    pub(crate) async fn release(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
        finalizer: &str,
    ) {
        let mut object = self.object(resource, namespace, name).expect("held");
        object::remove_finalizer(&mut object, Finalizers::Metadata, finalizer);
        self.replace(TENANT, resource, &object, UpdateScope::Main)
            .await
            .expect("released");
        self.state().writes.pop();
    }

    /// Makes every create of `resource` fail with `error`, as admission refuses one (a
    /// quota, pod security).
    pub(crate) fn refuse_creates(&self, resource: &Resource, error: ApiError) {
        let refusal = (resource.group.clone(), resource.plural.clone(), error);
        self.state().refused.push(refusal);
    }

    /// The writes asked since the last call, oldest first, each `verb resource name`:
    /// `create pods dev/web-00001`, `update/status replicasets.apps dev/web`,
    /// `delete namespaces dev`. One the fake refused ends in its reason
    /// (`create serviceaccounts dev/default: AlreadyExists`; a refused create is named as
    /// asked, `web-` for a generated name), so that a test sees a controller's needless
    /// writes as well as its effective ones. A delete of an object already marked is as
    /// any other: the API takes it, though nothing changes.
    pub(crate) fn take_writes(&self) -> Vec<String> {
        std::mem::take(&mut self.state().writes)
    }

    /// Runs one reconcile of `namespace`/`name` in [`TENANT`], which must succeed: what it
    /// asked for (when to look again) and the writes it made.
    pub(crate) async fn reconcile<F>(
        self: &Arc<Self>,
        reconcile: fn(Arc<dyn Api>, Key) -> F,
        namespace: &str,
        name: &str,
    ) -> (Requeue, Vec<String>)
    where
        F: Future<Output = Result<Requeue>>,
    {
        let key = Key {
            tenant: Arc::from(TENANT),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        let api: Arc<dyn Api> = self.clone();
        let requeue = reconcile(api, key).await.expect("the reconcile succeeds");
        (requeue, self.take_writes())
    }
}

/// One row of a table test: given these objects, a reconcile asks exactly these writes.
pub(crate) struct Case {
    pub(crate) name: &'static str,
    pub(crate) given: Vec<(Resource, Value)>,
    pub(crate) writes: Vec<&'static str>,
}

/// Runs each case's reconcile of `namespace`/`name` on a fake holding its objects, and
/// checks its writes; the fakes are returned, in order, for what a test checks further.
pub(crate) async fn table<F>(
    reconcile: fn(Arc<dyn Api>, Key) -> F,
    namespace: &str,
    name: &str,
    cases: Vec<Case>,
) -> Vec<Arc<Fake>>
where
    F: Future<Output = Result<Requeue>>,
{
    let mut fakes = Vec::new();
    for case in cases {
        let api = Fake::with(case.given);
        let (_, writes) = api.reconcile(reconcile, namespace, name).await;
        assert_eq!(writes, case.writes, "{}", case.name);
        fakes.push(api);
    }
    fakes
}

/// A namespace as the API creates one: active, with the namespace controller's finalizer.
pub(crate) fn namespace(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    })
}

/// `object` as a delete that finalizers hold leaves it: marked, and (a namespace)
/// terminating.
pub(crate) fn deleting(mut object: Value) -> Value {
    object["metadata"]["deletionTimestamp"] = json!(NOW);
    object["metadata"]["deletionGracePeriodSeconds"] = json!(0);
    if object["kind"] == "Namespace" {
        object["status"]["phase"] = json!("Terminating");
    }
    object
}

#[async_trait::async_trait]
impl Api for Fake {
    fn tenants(&self) -> Vec<Arc<str>> {
        let state = self.state();
        let tenants: BTreeSet<&str> = state.objects.keys().map(|p| p.0.as_str()).collect();
        tenants.into_iter().map(Arc::from).collect()
    }

    async fn list(
        &self,
        tenant: &str,
        resource: &Resource,
        namespace: Option<&str>,
    ) -> Result<Vec<Value>> {
        let state = self.state();
        let rt = state.served(resource)?;
        let namespace = namespace.filter(|_| rt.namespaced);
        Ok(state
            .objects
            .iter()
            .filter(|((t, group, plural, ns, _), _)| {
                t == tenant
                    && *group == rt.group
                    && *plural == rt.plural
                    && namespace.is_none_or(|n| n == ns)
            })
            .map(|(_, object)| object.clone())
            .collect())
    }

    async fn get(
        &self,
        tenant: &str,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>> {
        let state = self.state();
        let rt = state.served(resource)?;
        Ok(state
            .objects
            .get(&place(tenant, &rt, namespace, name))
            .cloned())
    }

    async fn create(
        &self,
        tenant: &str,
        resource: &Resource,
        namespace: Option<&str>,
        object: Value,
    ) -> Result<Value> {
        let requested = ["name", "generateName"]
            .into_iter()
            .find_map(|field| meta_str(&object, field).filter(|n| !n.is_empty()))
            .unwrap_or_default()
            .to_owned();
        let mut state = self.state();
        let created = state.create(tenant, resource, namespace, object);
        let name = created.as_ref().ok().and_then(|c| meta_str(c, "name"));
        let name = name.unwrap_or(&requested);
        state.log("create", resource, namespace, name, created.as_ref().err());
        created
    }

    async fn replace(
        &self,
        tenant: &str,
        resource: &Resource,
        object: &Value,
        scope: UpdateScope,
    ) -> Result<Value> {
        let verb = match scope {
            UpdateScope::Main => "update",
            UpdateScope::Status => "update/status",
            UpdateScope::Finalize => "update/finalize",
        };
        let (namespace, name) = (meta_str(object, "namespace"), meta_str(object, "name"));
        let mut state = self.state();
        let replaced = state.replace(tenant, resource, object, scope);
        let name = name.unwrap_or_default();
        state.log(verb, resource, namespace, name, replaced.as_ref().err());
        replaced
    }

    async fn delete(
        &self,
        tenant: &str,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
        options: Value,
    ) -> Result<Option<Value>> {
        let mut state = self.state();
        let deleted = state.delete(tenant, resource, namespace, name, &options);
        state.log("delete", resource, namespace, name, deleted.as_ref().err());
        deleted
    }

    async fn everything(&self, tenant: &str) -> Result<Vec<(Resource, Value)>> {
        let state = self.state();
        Ok(state
            .objects
            .iter()
            .filter(|(place, _)| place.0 == tenant)
            .filter_map(|((_, group, plural, _, _), object)| {
                let rt = state
                    .served
                    .iter()
                    .find(|rt| (&rt.group, &rt.plural) == (group, plural))?;
                Some((resource_of_type(rt), object.clone()))
            })
            .collect())
    }

    async fn resource_of(&self, _tenant: &str, api_version: &str, kind: &str) -> Option<Resource> {
        self.state()
            .served
            .iter()
            .find(|rt| rt.api_version() == api_version && rt.kind == kind)
            .map(|rt| resource_of_type(rt))
    }

    async fn unreadable(
        &self,
        _tenant: &str,
        _resource: &Resource,
        _namespace: &str,
    ) -> Result<Vec<String>> {
        // The fake keeps objects, not stored values: every one of them is readable.
        Ok(Vec::new())
    }

    async fn resources(&self, _tenant: &str) -> Result<Vec<Resource>> {
        let mut resources: Vec<Resource> = Vec::new();
        for rt in &self.state().served {
            let resource = resource_of_type(rt);
            if !resources.contains(&resource) {
                resources.push(resource);
            }
        }
        Ok(resources)
    }

    fn root_ca(&self, _tenant: &str) -> Result<String> {
        Ok(CA.to_owned())
    }

    /// Not a signed token: a string that names all it stands for, so that a test can see
    /// the controller asked for the right one.
    fn legacy_token(&self, tenant: &str, token: &LegacyToken) -> Result<String> {
        Ok(legacy_token(tenant, token))
    }

    fn recorder(&self) -> &crate::Recorder {
        &self.recorder
    }
}

impl Fake {
    /// The events recorded since the last call, as `Type Reason: message`.
    pub(crate) fn events(&self) -> Vec<String> {
        let mut recorded = self.recorded.lock().expect("events lock");
        let mut out = Vec::new();
        while let Ok(event) = recorded.try_recv() {
            out.push(format!(
                "{:?} {}: {}",
                event.kind, event.reason, event.message
            ));
        }
        out
    }
}

/// What [`Fake`] answers for a legacy token.
pub(crate) fn legacy_token(tenant: &str, token: &LegacyToken) -> String {
    let LegacyToken {
        namespace,
        account,
        account_uid,
        secret,
        secret_uid,
    } = token;
    format!("{tenant}:{namespace}:{account}({account_uid}):{secret}({secret_uid})")
}

/// The fake's own rules, where a controller test would not notice them broken.
mod tests {
    use super::*;

    fn configmaps() -> Resource {
        Resource::builtin("", "configmaps")
    }

    #[tokio::test]
    async fn a_stale_replace_is_a_conflict_and_a_fresh_one_moves_the_version() {
        let api = Fake::with([(
            configmaps(),
            json!({"metadata": {"name": "c", "namespace": "dev"}, "data": {"a": "1"}}),
        )]);
        let read = api.object(&configmaps(), Some("dev"), "c").expect("held");
        let mut next = read.clone();
        next["data"]["a"] = json!("2");
        let written = api
            .replace(TENANT, &configmaps(), &next, UpdateScope::Main)
            .await
            .expect("a fresh replace");
        assert_ne!(
            written["metadata"]["resourceVersion"],
            read["metadata"]["resourceVersion"]
        );
        let stale = api
            .replace(TENANT, &configmaps(), &next, UpdateScope::Main)
            .await
            .expect_err("a stale replace");
        assert!(stale.is(Reason::Conflict));
        assert_eq!(
            api.take_writes(),
            [
                "update configmaps dev/c",
                "update configmaps dev/c: Conflict"
            ]
        );
    }

    #[tokio::test]
    async fn creates_fill_names_and_refuse_taken_ones() {
        let api = Fake::with([]);
        let body = json!({"metadata": {"generateName": "web-"}});
        let created = api
            .create(TENANT, &configmaps(), Some("dev"), body)
            .await
            .expect("created");
        let name = meta_str(&created, "name").expect("a generated name");
        assert!(name.starts_with("web-") && name.len() > 4);
        assert_eq!(created["metadata"]["namespace"], "dev");
        assert!(meta_str(&created, "uid").is_some());
        let again = json!({"metadata": {"name": name}});
        let taken = api
            .create(TENANT, &configmaps(), Some("dev"), again)
            .await
            .expect_err("a taken name");
        assert!(taken.is(Reason::AlreadyExists));
    }

    #[tokio::test]
    async fn finalizers_hold_a_delete_until_the_last_goes() {
        let held = json!({"metadata": {"name": "c", "namespace": "dev", "uid": "u1", "finalizers": ["example.com/hold"]}});
        let api = Fake::with([(configmaps(), held)]);
        let wrong_uid = json!({"preconditions": {"uid": "u2"}});
        let refused = api
            .delete(TENANT, &configmaps(), Some("dev"), "c", wrong_uid)
            .await
            .expect_err("another uid");
        assert!(refused.is(Reason::Conflict));
        let marked = api
            .delete(TENANT, &configmaps(), Some("dev"), "c", json!({}))
            .await
            .expect("deleted")
            .expect("held by its finalizer");
        assert!(is_deleting(&marked));
        let again = api
            .delete(TENANT, &configmaps(), Some("dev"), "c", json!({}))
            .await
            .expect("deleted again")
            .expect("still held");
        assert_eq!(again, marked, "a second delete changes nothing");
        let mut released = marked;
        object::remove_finalizer(&mut released, Finalizers::Metadata, "example.com/hold");
        api.replace(TENANT, &configmaps(), &released, UpdateScope::Main)
            .await
            .expect("released");
        assert!(api.object(&configmaps(), Some("dev"), "c").is_none());
    }
}
