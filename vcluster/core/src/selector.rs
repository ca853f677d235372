//! Label and field selectors: parsing the query-string syntax and matching objects.
//!
//! Label selectors: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`, joined by
//! commas (all must hold). Field selectors: `path=value`, `path==value`, `path!=value`.
//! Written by hand: the grammar is small and Kubernetes-specific, and no maintained crate
//! parses it.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::names::{label_value_errors, qualified_name_errors};

/// A selector that could not be parsed; the message is kube-apiserver's kind of wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

#[derive(Debug, Clone, PartialEq, Eq)]
enum LabelReq {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector. The empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<LabelReq>);

fn valid_label_key(key: &str) -> bool {
    qualified_name_errors(key).is_empty()
}

fn valid_label_value(value: &str) -> bool {
    label_value_errors(value).is_empty()
}

/// Splits on commas that are not inside parentheses.
fn split_top_level(input: &str) -> Result<Vec<&str>, ParseError> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in input.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err(ParseError(format!("unexpected ')' in selector {input:?}")));
                }
            }
            ',' if depth == 0 => {
                parts.push(&input[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(ParseError(format!("unclosed '(' in selector {input:?}")));
    }
    parts.push(&input[start..]);
    Ok(parts)
}

fn values_in_parens(rest: &str, whole: &str) -> Result<Vec<String>, ParseError> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| ParseError(format!("expected a parenthesised value list in {whole:?}")))?;
    let values: Vec<String> = inner.split(',').map(|v| v.trim().to_owned()).collect();
    for v in &values {
        if !valid_label_value(v) {
            return Err(ParseError(format!("invalid label value: {v:?}")));
        }
    }
    Ok(values)
}

impl LabelSelector {
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        let mut reqs = Vec::new();
        if input.trim().is_empty() {
            return Ok(Self(reqs));
        }
        for part in split_top_level(input)? {
            let part = part.trim();
            let key_checked = |k: &str| -> Result<String, ParseError> {
                let k = k.trim();
                if valid_label_key(k) {
                    Ok(k.to_owned())
                } else {
                    Err(ParseError(format!(
                        "invalid label key {k:?} in selector {input:?}"
                    )))
                }
            };
            let value_checked = |v: &str| -> Result<String, ParseError> {
                let v = v.trim();
                if valid_label_value(v) {
                    Ok(v.to_owned())
                } else {
                    Err(ParseError(format!(
                        "invalid label value {v:?} in selector {input:?}"
                    )))
                }
            };
            let req = if let Some(key) = part.strip_prefix('!') {
                LabelReq::NotExists(key_checked(key)?)
            } else if let Some((k, v)) = part.split_once("!=") {
                LabelReq::NotEquals(key_checked(k)?, value_checked(v)?)
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                LabelReq::Equals(key_checked(k)?, value_checked(v)?)
            } else if let Some((k, rest)) = split_keyword(part, "notin") {
                LabelReq::NotIn(key_checked(k)?, values_in_parens(rest, input)?)
            } else if let Some((k, rest)) = split_keyword(part, "in") {
                LabelReq::In(key_checked(k)?, values_in_parens(rest, input)?)
            } else {
                LabelReq::Exists(key_checked(part)?)
            };
            reqs.push(req);
        }
        Ok(Self(reqs))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|req| match req {
            LabelReq::Equals(k, v) => labels.get(k) == Some(v),
            LabelReq::NotEquals(k, v) => labels.get(k) != Some(v),
            LabelReq::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            LabelReq::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
            LabelReq::Exists(k) => labels.contains_key(k),
            LabelReq::NotExists(k) => !labels.contains_key(k),
        })
    }

    /// Matches an object's `metadata.labels`.
    pub fn matches_object(&self, object: &Value) -> bool {
        if self.0.is_empty() {
            return true;
        }
        self.matches(&labels_at(object, "/metadata/labels"))
    }

    /// A `metav1.LabelSelector` object (`matchLabels`, `matchExpressions`), as the same
    /// requirements the query-string syntax expresses.
    pub fn from_object(selector: &Value) -> Result<Self, ParseError> {
        Self::parse(&to_query(selector)?)
    }
}

/// The string labels of the map at `pointer` (`/metadata/labels`).
pub fn labels_at(object: &Value, pointer: &str) -> BTreeMap<String, String> {
    object
        .pointer(pointer)
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// A `metav1.LabelSelector` object in the query-string syntax (`a=b,c in (d,e)`), as the
/// scale subresource reports it.
pub fn to_query(selector: &Value) -> Result<String, ParseError> {
    let mut parts: Vec<String> = labels_at(selector, "/matchLabels")
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = e["key"].as_str().unwrap_or_default();
        let values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        parts.push(match e["operator"].as_str() {
            Some("In") => format!("{key} in ({})", values.join(",")),
            Some("NotIn") => format!("{key} notin ({})", values.join(",")),
            Some("Exists") => key.to_owned(),
            Some("DoesNotExist") => format!("!{key}"),
            other => return Err(ParseError(format!("unknown selector operator {other:?}"))),
        });
    }
    Ok(parts.join(","))
}

/// `key in (...)`: the key, then the keyword as a whole word, then the rest.
fn split_keyword<'a>(part: &'a str, keyword: &str) -> Option<(&'a str, &'a str)> {
    let (key, rest) = part.split_once(char::is_whitespace)?;
    let rest = rest.trim_start().strip_prefix(keyword)?;
    rest.trim_start().starts_with('(').then_some((key, rest))
}

/// A parsed field selector: every `(path, value, equal?)` must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(Vec<(String, String, bool)>);

impl FieldSelector {
    /// Parses a selector over the fields in `supported` (dotted paths such as
    /// `metadata.name`); any other field is an error, as upstream.
    pub fn parse(input: &str, supported: &[&str]) -> Result<Self, ParseError> {
        let mut reqs = Vec::new();
        if input.trim().is_empty() {
            return Ok(Self(reqs));
        }
        for part in input.split(',') {
            let (field, value, equal) = if let Some((f, v)) = part.split_once("!=") {
                (f, v, false)
            } else if let Some((f, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                (f, v, true)
            } else {
                return Err(ParseError(format!(
                    "invalid selector: {part:?}; can't understand it"
                )));
            };
            let field = field.trim();
            if !supported.contains(&field) {
                return Err(ParseError(format!("field label not supported: {field}")));
            }
            reqs.push((field.to_owned(), value.trim().to_owned(), equal));
        }
        Ok(Self(reqs))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Matches an object; a missing field reads as the empty string, as upstream.
    pub fn matches_object(&self, object: &Value) -> bool {
        self.0.iter().all(|(field, value, equal)| {
            let mut at = object;
            for segment in field.split('.') {
                at = at.get(segment).unwrap_or(&Value::Null);
            }
            let actual = match at {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            (actual == *value) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selector_grammar() {
        let l = labels(&[("app", "web"), ("tier", "front"), ("owner", "helm")]);
        let cases = [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app=db", false),
            ("app in (web, db)", true),
            ("app notin (web)", false),
            ("tier notin (back)", true),
            ("missing notin (x)", true),
            ("app", true),
            ("!app", false),
            ("!missing", true),
            ("owner=helm,app in (web),!missing", true),
            ("owner=helm,app=db", false),
            ("app.kubernetes.io/name", false),
        ];
        for (selector, expected) in cases {
            let parsed =
                LabelSelector::parse(selector).unwrap_or_else(|e| panic!("{selector}: {e}"));
            assert_eq!(parsed.matches(&l), expected, "{selector}");
        }
    }

    #[test]
    fn malformed_label_selectors_are_errors() {
        for bad in [
            "app in (a",
            "app=(x",
            "=x",
            "a b",
            "app in a",
            "-bad=x",
            "app=-x",
            "a,,b",
        ] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn field_selectors_match_paths_and_reject_unknown_fields() {
        let pod = json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        let supported = [
            "metadata.name",
            "metadata.namespace",
            "spec.nodeName",
            "status.phase",
        ];
        let s = FieldSelector::parse("metadata.name=p,status.phase!=Pending", &supported)
            .expect("parse");
        assert!(s.matches_object(&pod));
        let s = FieldSelector::parse("spec.nodeName=", &supported).expect("parse");
        assert!(!s.matches_object(&pod));
        assert!(FieldSelector::parse("spec.unknown=x", &supported).is_err());
        assert!(FieldSelector::parse("nonsense", &supported).is_err());
    }
}
