//! Server-side apply and field ownership (`metadata.managedFields`), as structured-merge-diff
//! does it for kube-apiserver:
//!
//! - an apply by manager M merges M's configuration into the live object and makes M the
//!   owner of exactly the fields it applied; fields M applied before and no longer applies
//!   are removed, unless another manager owns them too;
//! - applying a different value to a field another manager owns is a conflict (409),
//!   unless forced, which moves the field to M;
//! - every other write (create, update, patch) makes its manager the owner of the fields it
//!   changed (an `Update` entry).
//!
//! Field sets are kept in the `FieldsV1` form (`{"f:spec":{"f:replicas":{}}}`, list items
//! `k:{"name":"web"}` or `v:"value"`, `.` for an item itself). Lists merge by their keys
//! (built-ins: the merge keys of strategic merge; custom resources:
//! `x-kubernetes-list-type`/`x-kubernetes-list-map-keys`), as sets, or whole (atomic).
//! Written here because no Rust crate implements structured-merge-diff.

use serde_json::{Map, Value, json};

use crate::patch::{ListMerge, strategy};
use crate::protobuf::{Message, message_for};

/// How a list is merged and owned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ListKind {
    /// Items are objects identified by these fields.
    Keyed(Vec<String>),
    /// Items are scalars, each owned on its own.
    Set,
    /// The list is one value.
    Atomic,
}

/// Where the structure of a value comes from: a built-in message type or a CRD schema.
#[derive(Clone, Copy)]
pub struct Shape<'a>(Source<'a>);

#[derive(Clone, Copy)]
enum Source<'a> {
    Message(Option<&'static Message>),
    Schema(Option<&'a Value>),
}

impl<'a> Shape<'a> {
    /// The shape of a built-in object of `apiVersion`/`kind`, or of a custom one with
    /// `schema` (its CRD version's `openAPIV3Schema`).
    pub fn of(api_version: &str, kind: &str, schema: Option<&'a Value>) -> Self {
        match message_for(api_version, kind) {
            Some(m) => Shape(Source::Message(Some(m))),
            None => Shape(Source::Schema(schema)),
        }
    }

    fn field(self, name: &str) -> Shape<'a> {
        Shape(match self.0 {
            Source::Message(m) => Source::Message(m.and_then(|m| m.child(name))),
            Source::Schema(s) => Source::Schema(s.and_then(|s| {
                s.pointer(&format!("/properties/{name}"))
                    .or_else(|| s.get("additionalProperties").filter(|a| a.is_object()))
            })),
        })
    }

    /// The shape of the items of list `name`.
    fn items(self, name: &str) -> Shape<'a> {
        match self.0 {
            Source::Message(_) => self.field(name),
            Source::Schema(s) => {
                Shape(Source::Schema(s.and_then(|s| {
                    s.pointer(&format!("/properties/{name}/items"))
                })))
            }
        }
    }

    fn list_kind(self, name: &str) -> ListKind {
        match self.0 {
            Source::Message(m) => match strategy(m, name) {
                Some(ListMerge::ByKey(key)) => ListKind::Keyed(vec![key.to_owned()]),
                Some(ListMerge::Set) => ListKind::Set,
                None => ListKind::Atomic,
            },
            Source::Schema(s) => {
                let list = s.and_then(|s| s.pointer(&format!("/properties/{name}")));
                match list.and_then(|l| l["x-kubernetes-list-type"].as_str()) {
                    Some("map") => ListKind::Keyed(crate::object::strings(
                        list.unwrap_or(&Value::Null),
                        "/x-kubernetes-list-map-keys",
                    )),
                    Some("set") => ListKind::Set,
                    _ => ListKind::Atomic,
                }
            }
        }
    }
}

/// The key of a keyed list item: `k:{"name":"web"}`.
fn item_key(item: &Value, keys: &[String]) -> Option<String> {
    let mut fields = Map::new();
    for key in keys {
        fields.insert(key.clone(), item.get(key)?.clone());
    }
    Some(format!("k:{}", Value::Object(fields)))
}

/// The fields set in `value`, as a `FieldsV1` map.
fn fields_of(value: &Value, shape: Shape<'_>) -> Map<String, Value> {
    let mut out = Map::new();
    let Value::Object(map) = value else {
        return out;
    };
    for (k, v) in map {
        let children = match v {
            Value::Object(_) => fields_of(v, shape.field(k)),
            Value::Array(items) => match shape.list_kind(k) {
                ListKind::Keyed(keys) => {
                    let mut list = Map::new();
                    for item in items {
                        if let Some(key) = item_key(item, &keys) {
                            let mut item_fields = fields_of(item, shape.items(k));
                            item_fields.insert(".".into(), json!({}));
                            list.insert(key, Value::Object(item_fields));
                        }
                    }
                    list
                }
                ListKind::Set => items
                    .iter()
                    .map(|i| (format!("v:{i}"), json!({})))
                    .collect(),
                ListKind::Atomic => Map::new(),
            },
            _ => Map::new(),
        };
        out.insert(format!("f:{k}"), Value::Object(children));
    }
    out
}

/// The fields a manager can own in an object: all but its identity and server-set fields.
pub fn owned_fields(object: &Value, shape: Shape<'_>) -> Map<String, Value> {
    let mut fields = fields_of(object, shape);
    fields.remove("f:apiVersion");
    fields.remove("f:kind");
    fields.remove("f:status");
    if let Some(Value::Object(meta)) = fields.get_mut("f:metadata") {
        meta.retain(|k, _| {
            matches!(
                k.as_str(),
                "f:labels" | "f:annotations" | "f:finalizers" | "f:ownerReferences"
            )
        });
        if meta.is_empty() {
            fields.remove("f:metadata");
        }
    }
    fields
}

/// Every leaf path of a field set (an empty map, or an item's `.`).
fn leaves(set: &Map<String, Value>, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    for (k, v) in set {
        prefix.push(k.clone());
        match v.as_object() {
            Some(children) if !children.is_empty() => leaves(children, prefix, out),
            _ => out.push(prefix.clone()),
        }
        prefix.pop();
    }
}

fn contains(set: &Map<String, Value>, path: &[String]) -> bool {
    match path.split_first() {
        None => true,
        Some((head, rest)) => set
            .get(head)
            .and_then(Value::as_object)
            .is_some_and(|child| contains(child, rest)),
    }
}

fn remove_path(set: &mut Map<String, Value>, path: &[String]) {
    let Some((head, rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        set.remove(head);
        return;
    }
    if let Some(Value::Object(child)) = set.get_mut(head) {
        remove_path(child, rest);
        if child.is_empty() {
            set.remove(head);
        }
    }
}

/// The value at a field path, if the object has it.
fn value_at<'v>(value: &'v Value, path: &[String]) -> Option<&'v Value> {
    let Some((head, rest)) = path.split_first() else {
        return Some(value);
    };
    let next = if let Some(name) = head.strip_prefix("f:") {
        value.get(name)?
    } else if let Some(key) = head.strip_prefix("k:") {
        let key: Map<String, Value> = serde_json::from_str(key).ok()?;
        value
            .as_array()?
            .iter()
            .find(|item| key.iter().all(|(k, v)| item.get(k) == Some(v)))?
    } else if let Some(item) = head.strip_prefix("v:") {
        let item: Value = serde_json::from_str(item).ok()?;
        value.as_array()?.iter().find(|i| **i == item)?
    } else if head == "." {
        value
    } else {
        return None;
    };
    value_at(next, rest)
}

/// Removes the field at `path` from an object.
fn remove_value(value: &mut Value, path: &[String]) {
    let Some((head, rest)) = path.split_first() else {
        return;
    };
    let last = rest.is_empty() || rest == ["."];
    if let Some(name) = head.strip_prefix("f:") {
        let Some(map) = value.as_object_mut() else {
            return;
        };
        if last {
            map.remove(name);
        } else if let Some(child) = map.get_mut(name) {
            remove_value(child, rest);
        }
    } else if let Some(key) = head.strip_prefix("k:") {
        let (Ok(key), Some(items)) = (
            serde_json::from_str::<Map<String, Value>>(key),
            value.as_array_mut(),
        ) else {
            return;
        };
        let matches = |item: &Value| key.iter().all(|(k, v)| item.get(k) == Some(v));
        if last {
            items.retain(|i| !matches(i));
        } else if let Some(item) = items.iter_mut().find(|i| matches(i)) {
            remove_value(item, rest);
        }
    } else if let Some(item) = head.strip_prefix("v:")
        && let (Ok(item), Some(items)) = (serde_json::from_str::<Value>(item), value.as_array_mut())
    {
        items.retain(|i| *i != item);
    }
}

/// `applied` merged into `live`: objects field by field, keyed lists item by item, sets as
/// unions, anything else replaced.
fn merge(live: &mut Value, applied: &Value, shape: Shape<'_>) {
    let (Value::Object(live_map), Value::Object(applied_map)) = (&mut *live, applied) else {
        *live = applied.clone();
        return;
    };
    for (k, v) in applied_map {
        match (live_map.get_mut(k), v) {
            (Some(current @ Value::Object(_)), Value::Object(_)) => {
                merge(current, v, shape.field(k));
            }
            (Some(Value::Array(current)), Value::Array(items)) => match shape.list_kind(k) {
                ListKind::Keyed(keys) => {
                    for item in items {
                        let key = item_key(item, &keys);
                        match current
                            .iter_mut()
                            .find(|c| key.is_some() && item_key(c, &keys) == key)
                        {
                            Some(existing) => merge(existing, item, shape.items(k)),
                            None => current.push(item.clone()),
                        }
                    }
                }
                ListKind::Set => {
                    for item in items {
                        if !current.contains(item) {
                            current.push(item.clone());
                        }
                    }
                }
                ListKind::Atomic => *current = items.clone(),
            },
            _ => {
                live_map.insert(k.clone(), v.clone());
            }
        }
    }
}

/// One manager's entry.
fn entry(
    manager: &str,
    operation: &str,
    api_version: &str,
    now: &str,
    set: Map<String, Value>,
) -> Value {
    json!({
        "manager": manager,
        "operation": operation,
        "apiVersion": api_version,
        "time": now,
        "fieldsType": "FieldsV1",
        "fieldsV1": set,
    })
}

fn set_of(entry: &Value) -> Map<String, Value> {
    entry["fieldsV1"].as_object().cloned().unwrap_or_default()
}

/// A field that another manager owns with another value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub manager: String,
    pub api_version: String,
    /// `.spec.replicas`, `.spec.containers[name="web"].image`.
    pub field: String,
}

fn render(path: &[String]) -> String {
    let mut out = String::new();
    for part in path {
        if let Some(name) = part.strip_prefix("f:") {
            out.push('.');
            out.push_str(name);
        } else if let Some(key) = part.strip_prefix("k:") {
            let key: Map<String, Value> = serde_json::from_str(key).unwrap_or_default();
            let inner: Vec<String> = key.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!("[{}]", inner.join(",")));
        } else if let Some(item) = part.strip_prefix("v:") {
            out.push_str(&format!("[{item}]"));
        }
    }
    out
}

/// Applies `applied` (the configuration of `manager`) to `live` (the object as stored, or
/// `None` for a create). The result carries the new `managedFields`; `Err` lists the
/// conflicts when not forced.
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    shape: Shape<'_>,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<Value, Vec<Conflict>> {
    let api_version = applied["apiVersion"].as_str().unwrap_or_default();
    let new_set = owned_fields(applied, shape);
    let mut new_leaves = Vec::new();
    leaves(&new_set, &mut Vec::new(), &mut new_leaves);
    let Some(live) = live else {
        let mut created = applied.clone();
        created["metadata"]["managedFields"] =
            json!([entry(manager, "Apply", api_version, now, new_set)]);
        return Ok(created);
    };
    let mut entries: Vec<Value> = live
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mine = |e: &Value| e["manager"] == manager && e["operation"] == "Apply";
    // Conflicts: another manager owns a field this apply sets to another value.
    let mut conflicts = Vec::new();
    for e in entries.iter().filter(|e| !mine(e)) {
        let theirs = set_of(e);
        // An item's own marker (`.`) says it exists; its fields carry the values.
        for path in new_leaves
            .iter()
            .filter(|p| p.last().is_none_or(|l| l != "."))
        {
            if contains(&theirs, path) && value_at(live, path) != value_at(applied, path) {
                conflicts.push((
                    e["manager"].as_str().unwrap_or_default().to_owned(),
                    e["apiVersion"].as_str().unwrap_or_default().to_owned(),
                    path.clone(),
                ));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts
            .into_iter()
            .map(|(manager, api_version, path)| Conflict {
                manager,
                api_version,
                field: render(&path),
            })
            .collect());
    }
    // Forced: the fields move to this manager.
    for (manager_name, _, path) in &conflicts {
        for e in entries
            .iter_mut()
            .filter(|e| e["manager"] == manager_name.as_str() && !mine(e))
        {
            if let Some(set) = e["fieldsV1"].as_object_mut() {
                remove_path(set, path);
            }
        }
    }
    // Fields this manager applied before and no longer applies go, unless others own them.
    let previous = entries
        .iter()
        .find(|e| mine(e))
        .map(set_of)
        .unwrap_or_default();
    let mut previous_leaves = Vec::new();
    leaves(&previous, &mut Vec::new(), &mut previous_leaves);
    let others: Vec<Map<String, Value>> = entries.iter().filter(|e| !mine(e)).map(set_of).collect();
    let mut result = live.clone();
    merge(&mut result, applied, shape);
    for path in previous_leaves {
        let kept = contains(&new_set, &path) || others.iter().any(|o| contains(o, &path));
        if !kept {
            remove_value(&mut result, &path);
        }
    }
    entries.retain(|e| !mine(e) && e["fieldsV1"].as_object().is_some_and(|s| !s.is_empty()));
    entries.push(entry(manager, "Apply", api_version, now, new_set));
    result["metadata"]["managedFields"] = json!(entries);
    Ok(result)
}

/// Records a non-apply write by `manager`: it owns the fields it set or changed (an
/// `Update` entry), which no other manager owns any more; removed fields are no one's.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    shape: Shape<'_>,
    manager: &str,
    now: &str,
) {
    let api_version = new["apiVersion"].as_str().unwrap_or_default().to_owned();
    let mut entries: Vec<Value> = old
        .and_then(|o| o.pointer("/metadata/managedFields"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let now_set = owned_fields(new, shape);
    if old.is_none() {
        // A create: the creator owns every field it set.
        if !now_set.is_empty() {
            new["metadata"]["managedFields"] =
                json!([entry(manager, "Update", &api_version, now, now_set)]);
        }
        return;
    }
    let mut now_leaves = Vec::new();
    leaves(&now_set, &mut Vec::new(), &mut now_leaves);
    let changed: Vec<&Vec<String>> = now_leaves
        .iter()
        .filter(|p| old.is_none_or(|o| value_at(o, p) != value_at(new, p)))
        .collect();
    for e in entries.iter_mut() {
        let other = e["manager"] != manager;
        if let Some(set) = e["fieldsV1"].as_object_mut() {
            let mut owned = Vec::new();
            leaves(set, &mut Vec::new(), &mut owned);
            for path in owned {
                let gone = !contains(&now_set, &path);
                let taken = other && changed.contains(&&path);
                if gone || taken {
                    remove_path(set, &path);
                }
            }
        }
    }
    let mine = |e: &Value| e["manager"] == manager && e["operation"] == "Update";
    let mut set = entries
        .iter()
        .find(|e| mine(e))
        .map(set_of)
        .unwrap_or_default();
    for path in changed {
        insert_path(&mut set, path);
    }
    entries.retain(|e| !mine(e) && e["fieldsV1"].as_object().is_some_and(|s| !s.is_empty()));
    if !set.is_empty() {
        entries.push(entry(manager, "Update", &api_version, now, set));
    }
    if entries.is_empty() {
        if let Some(meta) = new["metadata"].as_object_mut() {
            meta.remove("managedFields");
        }
    } else {
        new["metadata"]["managedFields"] = json!(entries);
    }
}

fn insert_path(set: &mut Map<String, Value>, path: &[String]) {
    let Some((head, rest)) = path.split_first() else {
        return;
    };
    let child = set.entry(head.clone()).or_insert_with(|| json!({}));
    if let Value::Object(child) = child {
        insert_path(child, rest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(replicas: i64, image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "web", "image": image}]}}},
        })
    }

    fn shape() -> Shape<'static> {
        Shape::of("apps/v1", "Deployment", None)
    }

    #[test]
    fn an_apply_owns_what_it_sets_and_conflicts_with_other_owners() {
        let created = apply(
            None,
            &deployment(1, "nginx:1"),
            shape(),
            "alice",
            false,
            "t",
        )
        .expect("create");
        let fields = &created["metadata"]["managedFields"][0]["fieldsV1"];
        assert_eq!(fields["f:spec"]["f:replicas"], json!({}));
        assert_eq!(
            fields["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"]["f:image"],
            json!({})
        );
        // Bob applies the same value: shared, no conflict.
        let shared = apply(
            Some(&created),
            &deployment(1, "nginx:1"),
            shape(),
            "bob",
            false,
            "t",
        )
        .expect("same values");
        // Bob applies another image: a conflict with alice, unless forced.
        let conflicts = apply(
            Some(&shared),
            &deployment(1, "nginx:2"),
            shape(),
            "bob",
            false,
            "t",
        )
        .expect_err("conflict");
        assert_eq!(
            conflicts,
            vec![Conflict {
                manager: "alice".into(),
                api_version: "apps/v1".into(),
                field: ".spec.template.spec.containers[name=\"web\"].image".into(),
            }]
        );
        let forced = apply(
            Some(&shared),
            &deployment(1, "nginx:2"),
            shape(),
            "bob",
            true,
            "t",
        )
        .expect("forced");
        assert_eq!(
            forced["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx:2"
        );
        let alice = forced["metadata"]["managedFields"]
            .as_array()
            .and_then(|es| es.iter().find(|e| e["manager"] == "alice"))
            .expect("alice keeps the rest");
        assert!(alice["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"].get("f:image").is_none());
    }

    #[test]
    fn fields_a_manager_stops_applying_are_removed_unless_others_own_them() {
        let mut with_sidecar = deployment(1, "nginx:1");
        with_sidecar["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .expect("list")
            .push(json!({"name": "sidecar", "image": "envoy"}));
        with_sidecar["metadata"]["labels"]["tier"] = json!("front");
        let live = apply(None, &with_sidecar, shape(), "alice", false, "t").expect("create");
        let again = apply(
            Some(&live),
            &deployment(1, "nginx:1"),
            shape(),
            "alice",
            false,
            "t",
        )
        .expect("apply");
        let containers = again["spec"]["template"]["spec"]["containers"]
            .as_array()
            .expect("list");
        assert_eq!(
            containers.len(),
            1,
            "the sidecar is no longer applied: {containers:?}"
        );
        assert!(again["metadata"]["labels"].get("tier").is_none());

        // A field another manager set (an update) survives alice's apply without it.
        let mut scaled = again.clone();
        scaled["spec"]["replicas"] = json!(5);
        record_update(Some(&again), &mut scaled, shape(), "kubectl-scale", "t");
        let conflict = apply(
            Some(&scaled),
            &deployment(1, "nginx:1"),
            shape(),
            "alice",
            false,
            "t",
        )
        .expect_err("replicas");
        assert_eq!(conflict[0].manager, "kubectl-scale");
        let mut without_replicas = deployment(1, "nginx:1");
        without_replicas["spec"]
            .as_object_mut()
            .expect("spec")
            .remove("replicas");
        let kept = apply(
            Some(&scaled),
            &without_replicas,
            shape(),
            "alice",
            false,
            "t",
        )
        .expect("apply");
        assert_eq!(kept["spec"]["replicas"], 5);
    }

    #[test]
    fn custom_lists_follow_their_schema() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["port"],
                      "items": {"type": "object", "properties": {"port": {"type": "integer"}, "name": {"type": "string"}}}},
            "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "args": {"type": "array", "items": {"type": "string"}},
        }}}});
        let shape = Shape::of("example.com/v1", "Widget", Some(&schema));
        let a = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
            "spec": {"ports": [{"port": 80, "name": "http"}], "tags": ["a"], "args": ["x"]}});
        let live = apply(None, &a, shape, "alice", false, "t").expect("create");
        let b = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
            "spec": {"ports": [{"port": 443, "name": "https"}], "tags": ["b"]}});
        let merged = apply(Some(&live), &b, shape, "bob", false, "t").expect("no overlap");
        assert_eq!(merged["spec"]["ports"].as_array().map(Vec::len), Some(2));
        assert_eq!(merged["spec"]["tags"], json!(["a", "b"]));
        assert_eq!(merged["spec"]["args"], json!(["x"]));
    }
}
