//! `protogen`: writes `vcluster/core/src/protobuf/schema.rs`, the table the protobuf
//! request-body decoder is driven by.
//!
//! Field numbers and wire types come from the prost types of `k8s-pb` (one struct per
//! Kubernetes message); JSON field names come from `k8s-openapi`, whose deserializers map
//! each JSON name to its Rust field. Both crates' sources are read as text (they are never
//! compiled here); the two are joined on the message's OpenAPI name
//! (`io.k8s.api.core.v1.PodStatus`) and on the field name without case or underscores.
//!
//! Which fields Go always writes (`always`: no `omitempty` in the json tag, not a pointer,
//! so `encoding/json` writes them at their zero value) comes from the OpenAPI schemas'
//! `required` lists in k8s-openapi (openapi-gen derives them from the same tags), corrected
//! where the tags say otherwise (`ALSO_ALWAYS`, `NOT_ALWAYS`).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use quote::ToTokens;

fn main() -> anyhow::Result<()> {
    match std::env::args().nth(1).as_deref() {
        Some("protogen") => protogen(),
        _ => bail!("usage: cargo run --manifest-path xtask/Cargo.toml -- protogen"),
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask is in the workspace").to_path_buf()
}

/// The source directories of the crates `xtask/sources` names.
fn sources() -> anyhow::Result<HashMap<String, PathBuf>> {
    let manifest = root().join("xtask/sources/Cargo.toml");
    let out = Command::new("cargo")
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(&manifest)
        .output()
        .context("cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let mut dirs = HashMap::new();
    for pkg in meta["packages"].as_array().context("packages")? {
        let name = pkg["name"].as_str().context("name")?.to_owned();
        let manifest = PathBuf::from(pkg["manifest_path"].as_str().context("manifest")?);
        dirs.insert(name, manifest.parent().context("dir")?.join("src"));
    }
    Ok(dirs)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            rust_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    Ok(())
}

fn normalize(name: &str) -> String {
    name.chars().filter(|c| *c != '_').flat_map(char::to_lowercase).collect()
}

/// What k8s-openapi says of one message: its fields' JSON names (by normalized Rust field
/// name) and the JSON names its OpenAPI schema lists as `required`.
#[derive(Default)]
struct Schema {
    fields: HashMap<String, String>,
    required: Vec<String>,
}

/// Fields Go writes at their zero value (no `omitempty`, not a pointer) that OpenAPI does
/// not require (`+optional`), found by comparing the json tags of the Go types
/// (`k8s.io/api`, `k8s.io/apimachinery`, `k8s.io/apiextensions-apiserver` and
/// `k8s.io/kube-aggregator` at v0.34.9) with the `required` lists.
const ALSO_ALWAYS: &[(&str, &str)] = &[
    ("io.k8s.api.apps.v1.StatefulSetOrdinals", "start"),
    ("io.k8s.api.apps.v1.StatefulSetSpec", "serviceName"),
    ("io.k8s.api.apps.v1.StatefulSetStatus", "availableReplicas"),
    ("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus", "currentMetrics"),
    ("io.k8s.api.core.v1.ContainerImage", "names"),
    ("io.k8s.api.core.v1.Event", "reportingComponent"),
    ("io.k8s.api.core.v1.Event", "reportingInstance"),
    ("io.k8s.api.core.v1.NodeRuntimeHandler", "name"),
    ("io.k8s.api.core.v1.ProjectedVolumeSource", "sources"),
    ("io.k8s.api.discovery.v1.EndpointSlice", "ports"),
    ("io.k8s.api.events.v1.Event", "eventTime"),
    ("io.k8s.api.flowcontrol.v1.FlowSchemaSpec", "matchingPrecedence"),
    ("io.k8s.api.flowcontrol.v1.QueuingConfiguration", "handSize"),
    ("io.k8s.api.flowcontrol.v1.QueuingConfiguration", "queueLengthLimit"),
    ("io.k8s.api.flowcontrol.v1.QueuingConfiguration", "queues"),
    ("io.k8s.api.flowcontrol.v1.ResourcePolicyRule", "namespaces"),
    ("io.k8s.api.networking.v1.NetworkPolicySpec", "podSelector"),
    ("io.k8s.api.rbac.v1.ClusterRole", "rules"),
    ("io.k8s.api.rbac.v1.Role", "rules"),
    ("io.k8s.api.resource.v1.AllocatedDeviceStatus", "conditions"),
    ("io.k8s.api.resource.v1.DeviceClaim", "requests"),
    ("io.k8s.api.resource.v1.ResourceClaimSpec", "devices"),
    ("io.k8s.api.resource.v1.ResourceSliceSpec", "devices"),
    ("io.k8s.api.resource.v1beta1.AllocatedDeviceStatus", "conditions"),
    ("io.k8s.api.resource.v1beta1.DeviceClaim", "requests"),
    ("io.k8s.api.resource.v1beta1.DeviceRequest", "deviceClassName"),
    ("io.k8s.api.resource.v1beta1.ResourceClaimSpec", "devices"),
    ("io.k8s.api.resource.v1beta1.ResourceSliceSpec", "devices"),
    ("io.k8s.api.resource.v1beta2.AllocatedDeviceStatus", "conditions"),
    ("io.k8s.api.resource.v1beta2.DeviceClaim", "requests"),
    ("io.k8s.api.resource.v1beta2.ResourceClaimSpec", "devices"),
    ("io.k8s.api.resource.v1beta2.ResourceSliceSpec", "devices"),
    ("io.k8s.api.storage.v1.CSINodeDriver", "topologyKeys"),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionStatus", "acceptedNames"),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionStatus", "conditions"),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionStatus", "storedVersions"),
];

/// Fields OpenAPI requires that Go does not write at their zero value: pointers (written as
/// `null` when nil) and fields tagged `omitempty` all the same (found as `ALSO_ALWAYS` was).
/// Every resource's `metadata` is left out too (in `always`): k8s-openapi alone lists it
/// as required.
const NOT_ALWAYS: &[(&str, &str)] = &[
    ("io.k8s.api.admissionregistration.v1.MutatingWebhook", "sideEffects"),
    ("io.k8s.api.admissionregistration.v1.ValidatingWebhook", "sideEffects"),
    ("io.k8s.api.apiserverinternal.v1alpha1.StorageVersionCondition", "message"),
    ("io.k8s.api.apps.v1.DaemonSetSpec", "selector"),
    ("io.k8s.api.apps.v1.DeploymentSpec", "selector"),
    ("io.k8s.api.apps.v1.ReplicaSetSpec", "selector"),
    ("io.k8s.api.apps.v1.StatefulSetSpec", "selector"),
    ("io.k8s.api.coordination.v1alpha2.LeaseCandidateSpec", "strategy"),
    ("io.k8s.api.coordination.v1beta1.LeaseCandidateSpec", "strategy"),
    ("io.k8s.api.core.v1.ContainerRestartRule", "action"),
    ("io.k8s.api.core.v1.ContainerRestartRuleOnExitCodes", "operator"),
    ("io.k8s.api.core.v1.LocalObjectReference", "name"),
    ("io.k8s.api.core.v1.PodCertificateProjection", "keyType"),
    ("io.k8s.api.core.v1.PodCertificateProjection", "signerName"),
    ("io.k8s.api.core.v1.ScaleIOPersistentVolumeSource", "secretRef"),
    ("io.k8s.api.core.v1.ScaleIOVolumeSource", "secretRef"),
    ("io.k8s.api.networking.v1.HTTPIngressPath", "pathType"),
    ("io.k8s.api.networking.v1.IPAddressSpec", "parentRef"),
    ("io.k8s.api.networking.v1.ParentReference", "name"),
    ("io.k8s.api.networking.v1.ParentReference", "resource"),
    ("io.k8s.api.networking.v1beta1.IPAddressSpec", "parentRef"),
    ("io.k8s.api.networking.v1beta1.ParentReference", "name"),
    ("io.k8s.api.networking.v1beta1.ParentReference", "resource"),
    ("io.k8s.api.resource.v1.CapacityRequestPolicyRange", "min"),
    ("io.k8s.api.resource.v1.CounterSet", "counters"),
    ("io.k8s.api.resource.v1.DeviceCounterConsumption", "counters"),
    ("io.k8s.api.resource.v1alpha3.DeviceTaintRuleSpec", "taint"),
    ("io.k8s.api.resource.v1beta1.CapacityRequestPolicyRange", "min"),
    ("io.k8s.api.resource.v1beta1.CounterSet", "counters"),
    ("io.k8s.api.resource.v1beta1.DeviceCounterConsumption", "counters"),
    ("io.k8s.api.resource.v1beta2.CapacityRequestPolicyRange", "min"),
    ("io.k8s.api.resource.v1beta2.CounterSet", "counters"),
    ("io.k8s.api.resource.v1beta2.DeviceCounterConsumption", "counters"),
];

/// Whether Go writes the field `json` of the message `full` at its zero value.
fn always(full: &str, schema: Option<&Schema>, json: &str) -> bool {
    let listed = |list: &[(&str, &str)]| list.iter().any(|(m, f)| *m == full && *f == json);
    let required = schema.is_some_and(|s| s.required.iter().any(|r| r == json));
    listed(ALSO_ALWAYS) || (required && json != "metadata" && !listed(NOT_ALWAYS))
}

/// OpenAPI name (lowercase) → what k8s-openapi says of it.
fn json_names(dir: &Path) -> anyhow::Result<HashMap<String, Schema>> {
    let mut files = Vec::new();
    rust_files(dir, &mut files)?;
    let mut out = HashMap::new();
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        let Some(at) = text.find("fn schema_name()") else { continue };
        let name = text[at..]
            .split('"')
            .nth(1)
            .context("schema name literal")?
            .to_owned();
        let mut schema = Schema::default();
        for line in text.lines() {
            // `"podIP" => Field::Key_pod_ip,`
            let line = line.trim();
            if let Some((json, rest)) = line.strip_prefix('"').and_then(|l| l.split_once("\" => Field::Key_")) {
                let rust = rest.trim_end_matches(',');
                schema.fields.insert(normalize(rust), json.to_owned());
            }
        }
        // `"required": [ "selector", "template", ],` at the end of `json_schema`.
        if let Some(at) = text.find("\"required\": [") {
            let list = &text[at + "\"required\": [".len()..];
            let list = &list[..list.find(']').context("the end of a required list")?];
            schema.required = list.split('"').skip(1).step_by(2).map(str::to_owned).collect();
        }
        // Keyed in lowercase: prost renames `JSONSchemaProps` to `JsonSchemaProps`.
        out.insert(name.to_lowercase(), schema);
    }
    Ok(out)
}

struct Field {
    tag: u32,
    json: String,
    ty: String,
    always: bool,
}

/// The OpenAPI-style name of a k8s-pb module path: `api/core/v1` → `io.k8s.api.core.v1`.
fn package_of(module: &[String]) -> String {
    let parts: Vec<String> = module
        .iter()
        .map(|m| match m.as_str() {
            // The OpenAPI names of these repositories keep their dashes.
            "apiextensions_apiserver" => "apiextensions-apiserver".to_owned(),
            "kube_aggregator" => "kube-aggregator".to_owned(),
            _ => m.clone(),
        })
        .collect();
    format!("io.k8s.{}", parts.join("."))
}

/// Resolves a prost field's Rust type to the OpenAPI name of the message it names.
fn resolve(ty: &str, module: &[String]) -> anyhow::Result<String> {
    // Peel wrappers: Option<..>, Vec<..>, Box<..>, BTreeMap<String, ..>.
    let mut inner = ty.replace(' ', "");
    loop {
        let Some(open) = inner.find('<') else { break };
        let head = &inner[..open];
        if !(head.ends_with("Option") || head.ends_with("Vec") || head.ends_with("Box") || head.ends_with("BTreeMap")) {
            break;
        }
        let mut body = inner[open + 1..inner.len() - 1].to_owned();
        if head.ends_with("BTreeMap") {
            body = body.split_once(',').context("map value type")?.1.to_owned();
        }
        inner = body;
    }
    let inner = inner.trim_end_matches(',');
    let segments: Vec<&str> = inner.split("::").collect();
    let mut base: Vec<String> = module.to_vec();
    let mut rest = &segments[..];
    while let Some(("super", tail)) = rest.split_first().map(|(h, t)| (*h, t)) {
        base.pop();
        rest = tail;
    }
    let (name, path) = rest.split_last().context("a type name")?;
    base.extend(path.iter().map(|s| (*s).to_owned()));
    Ok(format!("{}.{name}", package_of(&base)))
}

fn prost_kind(attr: &str) -> Option<(&'static str, u32, bool)> {
    let tag: u32 = attr.split("tag = \"").nth(1)?.split('"').next()?.parse().ok()?;
    let repeated = attr.contains("repeated");
    let kind = if attr.starts_with("btree_map = \"string, string\"") {
        "MapString"
    } else if attr.starts_with("btree_map = \"string, message\"") {
        "MapMessage"
    } else if attr.starts_with("btree_map = \"string, bytes\"") {
        "MapBytes"
    } else if attr.starts_with("message") {
        "Message"
    } else if attr.starts_with("string") {
        "String"
    } else if attr.starts_with("int32") {
        "Int32"
    } else if attr.starts_with("int64") {
        "Int64"
    } else if attr.starts_with("bool") {
        "Bool"
    } else if attr.starts_with("bytes") {
        "Bytes"
    } else if attr.starts_with("double") {
        "Double"
    } else {
        return None;
    };
    Some((kind, tag, repeated))
}

fn protogen() -> anyhow::Result<()> {
    let dirs = sources()?;
    let pb = dirs.get("k8s-pb").context("k8s-pb source")?;
    let openapi = dirs.get("k8s-openapi").context("k8s-openapi source")?.join("v1_34");
    let names = json_names(&openapi)?;
    let mut files = Vec::new();
    rust_files(pb, &mut files)?;
    let mut messages: BTreeMap<String, Vec<Field>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(pb)?;
        let mut module: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
        module.pop(); // mod.rs or lib.rs
        if module.is_empty() {
            continue;
        }
        let text = std::fs::read_to_string(&file)?;
        let parsed = syn::parse_file(&text).with_context(|| format!("parse {}", file.display()))?;
        for item in parsed.items {
            let syn::Item::Struct(s) = item else { continue };
            let is_message = s.attrs.iter().any(|a| a.to_token_stream().to_string().contains("prost :: Message"));
            if !is_message {
                continue;
            }
            let full = format!("{}.{}", package_of(&module), s.ident);
            let json = names.get(&full.to_lowercase());
            let mut fields = Vec::new();
            for f in &s.fields {
                let ident = f.ident.as_ref().context("named field")?.to_string();
                let ident = ident.trim_start_matches("r#").to_owned();
                let Some(attr) = f.attrs.iter().find(|a| a.path().is_ident("prost")) else { continue };
                let attr = attr.meta.require_list()?.tokens.to_string();
                let Some((kind, tag, repeated)) = prost_kind(&attr) else {
                    bail!("{full}.{ident}: unsupported prost field {attr}");
                };
                // k8s-openapi names `$ref` `ref_path`, where prost has `ref`. A message field
                // k8s-openapi lacks is embedded inline in JSON (Go's `json:",inline"`, such as
                // `Volume.volumeSource`): its JSON name is empty.
                let found = json.map(|j| {
                    j.fields
                        .get(&normalize(&ident))
                        .or_else(|| j.fields.get(&normalize(&format!("{ident}_path"))))
                        .cloned()
                });
                let json_name = match found {
                    Some(Some(name)) => name,
                    Some(None) if kind == "Message" => String::new(),
                    _ => lower_camel(&ident),
                };
                let rust_ty = f.ty.to_token_stream().to_string();
                let ty = match kind {
                    "Message" => format!("Ty::Message({:?})", resolve(&rust_ty, &module)?),
                    "MapMessage" => format!("Ty::MapMessage({:?})", resolve(&rust_ty, &module)?),
                    other => format!("Ty::{other}"),
                };
                let ty = if repeated { format!("Ty::Repeated(&{ty})") } else { ty };
                let always = always(&full, json, &json_name);
                fields.push(Field { tag, json: json_name, ty, always });
            }
            messages.insert(full, fields);
        }
    }
    let mut out = String::from(
        "// Generated by `cargo run --manifest-path xtask/Cargo.toml -- protogen` from the\n\
         // k8s-pb 0.9 message types and the k8s-openapi 0.29 (Kubernetes 1.34) field names.\n\
         // Do not edit.\n\n\
         use super::{Field, Message, Ty};\n\n\
         pub(super) static MESSAGES: &[Message] = &[\n",
    );
    for (name, fields) in &messages {
        writeln!(out, "    Message {{\n        name: {name:?},\n        fields: &[")?;
        for f in fields {
            writeln!(
                out,
                "            Field {{ tag: {}, json: {:?}, ty: {}, always: {} }},",
                f.tag, f.json, f.ty, f.always
            )?;
        }
        writeln!(out, "        ],\n    }},")?;
    }
    out.push_str("];\n");
    let target = root().join("vcluster/core/src/protobuf/schema.rs");
    std::fs::create_dir_all(target.parent().context("dir")?)?;
    std::fs::write(&target, out)?;
    eprintln!("wrote {} ({} messages)", target.display(), messages.len());
    Ok(())
}

/// For the few messages k8s-openapi has no type for: prost's snake_case back to camelCase.
fn lower_camel(snake: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}
