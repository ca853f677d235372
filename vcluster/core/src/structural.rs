//! Structural schemas (a CRD version's `openAPIV3Schema`) applied to custom objects, in
//! upstream's order: unknown fields pruned, defaults filled in, then the object validated,
//! with causes worded as kube-apiserver words them (`spec.size in body must be of type
//! integer: "string"`).
//!
//! Written here because no crate implements Kubernetes' dialect: the `x-kubernetes-*`
//! extensions (preserve-unknown-fields, int-or-string, embedded-resource) decide pruning,
//! and OpenAPI 3.0's boolean `exclusiveMinimum` differs from JSON Schema's.

use serde_json::{Map, Value, json};

use crate::status::Cause;

fn flag(schema: &Value, name: &str) -> bool {
    schema[name].as_bool() == Some(true)
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// What is wrong with a schema itself, as far as serving objects with it needs: types that
/// do not exist, and object schemas without a type.
pub fn check(schema: &Value, path: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    check_node(schema, path, &mut causes);
    if schema["type"] != "object" {
        causes.push(Cause::invalid(
            format!("{path}.type"),
            schema["type"].as_str().unwrap_or_default(),
            "must be object at the root",
        ));
    }
    causes
}

fn check_node(schema: &Value, path: &str, causes: &mut Vec<Cause>) {
    const TYPES: &[&str] = &["object", "array", "string", "integer", "number", "boolean"];
    match schema["type"].as_str() {
        Some(t) if TYPES.contains(&t) => {}
        Some(other) => causes.push(Cause::not_supported(format!("{path}.type"), other, TYPES)),
        None if flag(schema, "x-kubernetes-int-or-string")
            || flag(schema, "x-kubernetes-preserve-unknown-fields") => {}
        None => causes.push(Cause::required(
            format!("{path}.type"),
            "must not be empty for specified object fields",
        )),
    }
    if let Some(props) = schema["properties"].as_object() {
        for (k, sub) in props {
            check_node(sub, &format!("{path}.properties[{k}]"), causes);
        }
    }
    if schema["items"].is_object() {
        check_node(&schema["items"], &format!("{path}.items"), causes);
    }
    if schema["additionalProperties"].is_object() {
        check_node(
            &schema["additionalProperties"],
            &format!("{path}.additionalProperties"),
            causes,
        );
    }
}

/// Removes the fields the schema does not know, where it does not say to keep them. The
/// root's `apiVersion`, `kind` and `metadata` always stay, as do an embedded resource's.
pub fn prune(schema: &Value, value: &mut Value) {
    prune_node(schema, value, true);
}

fn prune_node(schema: &Value, value: &mut Value, keep_type_meta: bool) {
    let keep_meta = keep_type_meta || flag(schema, "x-kubernetes-embedded-resource");
    match value {
        Value::Object(map) => {
            let preserve = flag(schema, "x-kubernetes-preserve-unknown-fields");
            if let Some(props) = schema["properties"].as_object() {
                if !preserve {
                    map.retain(|k, _| {
                        props.contains_key(k)
                            || (keep_meta
                                && matches!(k.as_str(), "apiVersion" | "kind" | "metadata"))
                    });
                }
                for (k, v) in map.iter_mut() {
                    if let Some(sub) = props.get(k) {
                        prune_node(sub, v, false);
                    }
                }
            } else if schema["additionalProperties"].is_object() {
                for v in map.values_mut() {
                    prune_node(&schema["additionalProperties"], v, false);
                }
            } else if !preserve && schema["additionalProperties"] != true {
                map.retain(|k, _| {
                    keep_meta && matches!(k.as_str(), "apiVersion" | "kind" | "metadata")
                });
            }
        }
        Value::Array(items) if schema["items"].is_object() => {
            for item in items {
                prune_node(&schema["items"], item, false);
            }
        }
        _ => {}
    }
}

/// Fills in the schema's `default`s for absent fields of the objects that are present.
pub fn default(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(props) = schema["properties"].as_object() {
                for (k, sub) in props {
                    if !map.contains_key(k)
                        && let Some(d) = sub.get("default")
                    {
                        map.insert(k.clone(), d.clone());
                    }
                    if let Some(v) = map.get_mut(k) {
                        default(sub, v);
                    }
                }
            } else if schema["additionalProperties"].is_object() {
                for v in map.values_mut() {
                    default(&schema["additionalProperties"], v);
                }
            }
        }
        Value::Array(items) if schema["items"].is_object() => {
            for item in items {
                default(&schema["items"], item);
            }
        }
        _ => {}
    }
}

/// Every way `value` breaks `schema`, with field paths from the object's root.
pub fn validate(schema: &Value, value: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    validate_node(schema, value, "", &mut causes);
    causes
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_matches(expected: &str, value: &Value) -> bool {
    let actual = type_name(value);
    actual == expected
        || (expected == "number" && actual == "integer")
        || (expected == "integer" && value.as_f64().is_some_and(|f| f.fract() == 0.0))
}

fn validate_node(schema: &Value, value: &Value, path: &str, causes: &mut Vec<Cause>) {
    let here = if path.is_empty() { "body" } else { path };
    if value.is_null() {
        if !flag(schema, "nullable") && schema["type"].is_string() {
            causes.push(Cause::type_invalid(
                here,
                &json!("null"),
                &format!(
                    "{here} in body must be of type {}: \"null\"",
                    schema["type"].as_str().unwrap_or_default()
                ),
            ));
        }
        return;
    }
    if flag(schema, "x-kubernetes-int-or-string") {
        if !matches!(type_name(value), "integer" | "string") {
            causes.push(Cause::type_invalid(
                here,
                value,
                &format!(
                    "{here} in body must be of type integer or string: {:?}",
                    type_name(value)
                ),
            ));
        }
    } else if let Some(expected) = schema["type"].as_str()
        && !type_matches(expected, value)
    {
        causes.push(Cause::type_invalid(
            here,
            value,
            &format!(
                "{here} in body must be of type {expected}: {:?}",
                type_name(value)
            ),
        ));
        return;
    }
    if let Some(options) = schema["enum"].as_array()
        && !options.contains(value)
    {
        let supported: Vec<String> = options
            .iter()
            .map(|o| o.as_str().map_or_else(|| o.to_string(), str::to_owned))
            .collect();
        let supported: Vec<&str> = supported.iter().map(String::as_str).collect();
        let shown = value
            .as_str()
            .map_or_else(|| value.to_string(), str::to_owned);
        causes.push(Cause::not_supported(here, &shown, &supported));
    }
    match value {
        Value::String(s) => string_rules(schema, s, value, here, causes),
        Value::Number(n) => {
            number_rules(schema, n.as_f64().unwrap_or_default(), value, here, causes)
        }
        Value::Array(items) => {
            let len = items.len() as u64;
            if let Some(min) = schema["minItems"].as_u64()
                && len < min
            {
                causes.push(Cause::invalid_value(
                    here,
                    &json!(len),
                    &format!("{here} in body should have at least {min} items"),
                ));
            }
            if let Some(max) = schema["maxItems"].as_u64()
                && len > max
            {
                causes.push(Cause::invalid_value(
                    here,
                    &json!(len),
                    &format!("must have at most {max} items"),
                ));
            }
            if schema["items"].is_object() {
                for (i, item) in items.iter().enumerate() {
                    validate_node(&schema["items"], item, &format!("{path}[{i}]"), causes);
                }
            }
        }
        Value::Object(map) => object_rules(schema, map, path, causes),
        _ => {}
    }
}

fn string_rules(schema: &Value, s: &str, value: &Value, here: &str, causes: &mut Vec<Cause>) {
    let len = s.chars().count() as u64;
    if let Some(min) = schema["minLength"].as_u64()
        && len < min
    {
        causes.push(Cause::invalid_value(
            here,
            value,
            &format!("{here} in body should be at least {min} chars long"),
        ));
    }
    if let Some(max) = schema["maxLength"].as_u64()
        && len > max
    {
        causes.push(Cause::invalid_value(
            here,
            value,
            &format!("{here} in body should be at most {max} chars long"),
        ));
    }
    if let Some(pattern) = schema["pattern"].as_str() {
        // An unparsable pattern matches nothing, as kube-openapi treats it.
        let matched = regex::Regex::new(pattern).is_ok_and(|re| re.is_match(s));
        if !matched {
            causes.push(Cause::invalid_value(
                here,
                value,
                &format!("{here} in body should match '{pattern}'"),
            ));
        }
    }
}

fn number_rules(schema: &Value, n: f64, value: &Value, here: &str, causes: &mut Vec<Cause>) {
    if let Some(min) = schema["minimum"].as_f64() {
        let exclusive = flag(schema, "exclusiveMinimum");
        if n < min || (exclusive && n == min) {
            let relation = if exclusive {
                "greater than"
            } else {
                "greater than or equal to"
            };
            causes.push(Cause::invalid_value(
                here,
                value,
                &format!("{here} in body should be {relation} {}", schema["minimum"]),
            ));
        }
    }
    if let Some(max) = schema["maximum"].as_f64() {
        let exclusive = flag(schema, "exclusiveMaximum");
        if n > max || (exclusive && n == max) {
            let relation = if exclusive {
                "less than"
            } else {
                "less than or equal to"
            };
            causes.push(Cause::invalid_value(
                here,
                value,
                &format!("{here} in body should be {relation} {}", schema["maximum"]),
            ));
        }
    }
}

fn object_rules(schema: &Value, map: &Map<String, Value>, path: &str, causes: &mut Vec<Cause>) {
    if let Some(required) = schema["required"].as_array() {
        for field in required.iter().filter_map(Value::as_str) {
            if !map.contains_key(field) {
                causes.push(Cause::required(child(path, field), ""));
            }
        }
    }
    let props = schema["properties"].as_object();
    for (k, v) in map {
        let sub = props.and_then(|p| p.get(k)).or_else(|| {
            schema["additionalProperties"]
                .as_object()
                .map(|_| &schema["additionalProperties"])
        });
        // The root's metadata is ObjectMeta, checked by the object rules, not the schema.
        if let Some(sub) = sub
            && !(path.is_empty() && k == "metadata")
        {
            validate_node(sub, v, &child(path, k), causes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["size"],
                    "properties": {
                        "size": {"type": "integer", "minimum": 1, "maximum": 10},
                        "color": {"type": "string", "enum": ["red", "blue"], "default": "red"},
                        "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 5},
                        "port": {"x-kubernetes-int-or-string": true},
                        "tags": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    },
                },
                "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
            },
        })
    }

    #[test]
    fn unknown_fields_are_pruned_unless_preserved() {
        let mut obj = json!({
            "apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
            "spec": {"size": 1, "extra": true, "free": {"anything": {"goes": 1}}, "labels": {"a": "b"}},
            "junk": 1,
        });
        prune(&schema(), &mut obj);
        assert_eq!(
            obj,
            json!({
                "apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
                "spec": {"size": 1, "free": {"anything": {"goes": 1}}, "labels": {"a": "b"}},
            })
        );
    }

    #[test]
    fn defaults_fill_absent_fields_of_present_objects() {
        let mut obj = json!({"spec": {"size": 2}});
        default(&schema(), &mut obj);
        assert_eq!(obj["spec"]["color"], "red");
        assert!(
            obj.get("status").is_none(),
            "absent objects are not created"
        );
    }

    #[test]
    fn violations_are_named_as_upstream_names_them() {
        let obj = json!({"spec": {"size": "big", "color": "green", "name": "Abc", "port": 1.5, "tags": ["a", "b", "c"], "labels": {"x": 1}}});
        let causes = validate(&schema(), &obj);
        let rendered: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        let expect = [
            r#"spec.size: Invalid value: "big": spec.size in body must be of type integer: "string""#,
            r#"spec.color: Unsupported value: "green": supported values: "red", "blue""#,
            r#"spec.name: Invalid value: "Abc": spec.name in body should match '^[a-z]+$'"#,
            r#"spec.port: Invalid value: 1.5: spec.port in body must be of type integer or string: "number""#,
            r#"spec.tags: Invalid value: 3: must have at most 2 items"#,
            r#"spec.labels.x: Invalid value: 1: spec.labels.x in body must be of type string: "integer""#,
        ];
        for e in expect {
            assert!(
                rendered.iter().any(|r| r == e),
                "missing {e}\nin {rendered:#?}"
            );
        }
        let missing = validate(&schema(), &json!({"spec": {}}));
        assert_eq!(
            missing
                .iter()
                .map(|c| format!("{}: {}", c.field, c.message))
                .collect::<Vec<_>>(),
            vec!["spec.size: Required value".to_owned()]
        );
        let small = validate(&schema(), &json!({"spec": {"size": 0}}));
        assert_eq!(
            small[0].message,
            "Invalid value: 0: spec.size in body should be greater than or equal to 1"
        );
        assert!(validate(&schema(), &json!({"spec": {"size": 3, "port": "http"}})).is_empty());
    }

    #[test]
    fn schemas_need_known_types_and_an_object_root() {
        assert!(check(&schema(), "s").is_empty());
        let bad = json!({"type": "object", "properties": {"a": {"type": "thing"}, "b": {}}});
        let fields: Vec<String> = check(&bad, "s").into_iter().map(|c| c.field).collect();
        assert_eq!(fields, vec!["s.properties[a].type", "s.properties[b].type"]);
    }
}
