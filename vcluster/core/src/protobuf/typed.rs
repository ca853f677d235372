//! A built-in object's JSON checked against its Go type, as kube-apiserver's decoder
//! (`sigs.k8s.io/json` into the typed struct) checks it: the first value of the wrong type
//! is an error in Go's words, and fields the type does not have are dropped and reported
//! (what `fieldValidation` warns about or refuses). What the decoded struct would encode
//! back is filled in too: every field Go writes even at its zero value (`Field::always`)
//! that the object lacks (or holds as `null`) gets that zero value (`0`, `false`, `""`, a
//! struct as an object of its own such fields), so that typed clients find what their
//! models require (a DaemonSet's `status.numberReady`).
//!
//! One walk over the object and `schema.rs` does all of it; it allocates only for what it
//! reports or fills in, so it is cheap enough for every write.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::{Map, Value, json};

use super::{Field, META, Message, Ty, index, message_for};

/// What decoding found wrong with an object that Go's decoder still accepts.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decoded {
    /// The fields the type does not have, now removed, as JSON paths (`spec.replica`,
    /// `spec.containers[0].imagePullPolcy`).
    pub unknown: Vec<String>,
}

/// Go's regular expression for a quantity, quoted in its parse error.
const QUANTITY_FORMAT: &str = "quantities must match the regular expression \
     '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

/// Decodes `object`, an object of the built-in `api_version`/`kind`, as Go's decoder does:
/// `Err` with the decoder's message (`json: cannot unmarshal number into Go struct field
/// ConfigMap.data of type string`) at the first value of the wrong type, else the unknown
/// fields it dropped, with the fields Go always writes filled in at their zero value.
/// `None` when the kind is not a built-in message.
pub fn decode_typed(
    object: &mut Value,
    api_version: &str,
    kind: &str,
) -> Option<Result<Decoded, String>> {
    let message = message_for(api_version, kind)?;
    let mut walk = Walk::default();
    let result = match object {
        Value::Object(fields) => walk.object(message, fields, true),
        other => Err(type_error(other, message, message.go_name(), &walk.field)),
    };
    Some(result.map(|()| Decoded {
        unknown: walk.unknown,
    }))
}

/// Why kube-apiserver's scheme cannot decode a body of `kind` in `api_version` into the
/// endpoint's `expected_kind`: a kind it knows cannot be converted into another, and a
/// kind it does not know is not registered.
pub fn foreign_kind(
    api_version: &str,
    kind: &str,
    expected_api_version: &str,
    expected_kind: &str,
) -> String {
    if message_for(api_version, kind).is_none() {
        return format!(
            "no kind {kind:?} is registered for version {api_version:?} in scheme \
             \"k8s.io/kubernetes/pkg/api/legacyscheme/scheme.go:30\""
        );
    }
    let version = api_version.rsplit('/').next().unwrap_or_default();
    // The endpoint's internal type lives in the package named after its group's first
    // label (`rbac.authorization.k8s.io` is `rbac`), the core group's and events' in `core`.
    let internal = match expected_api_version.rsplit_once('/') {
        None | Some(("events.k8s.io", _)) => "core",
        Some((group, _)) => group.split('.').next().unwrap_or(group),
    };
    format!("converting ({version}.{kind}) to ({internal}.{expected_kind}): unknown conversion")
}

/// The state of one walk: Go's field path of where it is (JSON names, no indices: what
/// Go's errors name), the path with indices (what unknown fields are reported as), and the
/// unknown fields found.
#[derive(Default)]
struct Walk {
    field: Vec<&'static str>,
    path: String,
    unknown: Vec<String>,
}

impl Walk {
    fn object(
        &mut self,
        message: &'static Message,
        fields: &mut Map<String, Value>,
        top: bool,
    ) -> Result<(), String> {
        let mut unknown = Vec::new();
        for (key, value) in fields.iter_mut() {
            if top && (key == "apiVersion" || key == "kind") {
                continue;
            }
            let Some((json, ty)) = message.field_named(key) else {
                self.unknown.push(if self.path.is_empty() {
                    key.clone()
                } else {
                    format!("{}.{key}", self.path)
                });
                unknown.push(key.clone());
                continue;
            };
            let mark = self.path.len();
            if !self.path.is_empty() {
                self.path.push('.');
            }
            self.path.push_str(json);
            self.field.push(json);
            let result = self.value(message, ty, value);
            self.field.pop();
            self.path.truncate(mark);
            result?;
        }
        for key in unknown {
            fields.remove(&key);
        }
        fill(message, fields);
        Ok(())
    }

    /// A value of type `ty`, a field of (or an element in a field of) `owner`.
    fn value(&mut self, owner: &'static Message, ty: &Ty, value: &mut Value) -> Result<(), String> {
        let wrong =
            |value: &Value, walk: &Self| Err(type_error(value, owner, ty.go_name(), &walk.field));
        match (ty, &mut *value) {
            // Go's decoder leaves the zero value for a null, whatever the type.
            (_, Value::Null) => Ok(()),
            (Ty::String, Value::String(_))
            | (Ty::Bool, Value::Bool(_))
            | (Ty::Double, Value::Number(_)) => Ok(()),
            (Ty::Int32 | Ty::Int64, Value::Number(n)) => {
                let fits = match ty {
                    Ty::Int32 => n.as_i64().is_some_and(|i| i32::try_from(i).is_ok()),
                    _ => n.is_i64(),
                };
                if fits {
                    Ok(())
                } else {
                    Err(number_error(n, owner, ty.go_name(), &self.field))
                }
            }
            (Ty::Bytes, Value::String(s)) => base64_error(s).map_or(Ok(()), Err),
            (Ty::Message(name), _) => {
                let message = index()
                    .get(name)
                    .copied()
                    .expect("schema.rs names only its own messages");
                self.message(owner, message, value)
            }
            (Ty::MapString | Ty::MapBytes | Ty::MapMessage(_), Value::Object(entries)) => {
                let element = match ty {
                    Ty::MapString => Ty::String,
                    Ty::MapBytes => Ty::Bytes,
                    Ty::MapMessage(name) => Ty::Message(name),
                    _ => unreachable!("a map type"),
                };
                for (key, entry) in entries.iter_mut() {
                    let mark = self.path.len();
                    self.path.push('.');
                    self.path.push_str(key);
                    let result = self.value(owner, &element, entry);
                    self.path.truncate(mark);
                    result?;
                }
                Ok(())
            }
            (Ty::Repeated(inner), Value::Array(items)) => {
                for (i, item) in items.iter_mut().enumerate() {
                    let mark = self.path.len();
                    self.path.push_str(&format!("[{i}]"));
                    let result = self.value(owner, inner, item);
                    self.path.truncate(mark);
                    result?;
                }
                Ok(())
            }
            _ => wrong(value, self),
        }
    }

    /// A nested message: an object of its fields, or one of the few with a JSON form of
    /// their own (times, quantities, int-or-string, ...), checked as their `UnmarshalJSON`.
    fn message(
        &mut self,
        owner: &'static Message,
        message: &'static Message,
        value: &mut Value,
    ) -> Result<(), String> {
        let as_string = |value: &Value, walk: &Self| match value {
            Value::String(s) => Ok(s.clone()),
            other => Err(type_error(other, owner, "string", &walk.field)),
        };
        match Form::of(message) {
            Form::Time => time_error(&as_string(value, self)?, RFC3339).map_or(Ok(()), Err),
            Form::MicroTime => {
                time_error(&as_string(value, self)?, RFC3339_MICRO).map_or(Ok(()), Err)
            }
            Form::Duration => duration_error(&as_string(value, self)?).map_or(Ok(()), Err),
            Form::IntOrString => match value {
                Value::String(_) => Ok(()),
                Value::Number(n) if n.as_i64().is_some_and(|i| i32::try_from(i).is_ok()) => Ok(()),
                Value::Number(n) => Err(number_error(n, owner, "int32", &self.field)),
                other => Err(type_error(other, owner, "int32", &self.field)),
            },
            Form::Quantity => {
                let text = match value {
                    Value::String(s) => s.trim().to_owned(),
                    Value::Number(n) => n.to_string(),
                    _ => String::new(),
                };
                match crate::quantity::milli(&text) {
                    Some(_) => Ok(()),
                    None => Err(QUANTITY_FORMAT.to_owned()),
                }
            }
            Form::Raw => Ok(()),
            Form::Object => match value {
                Value::Object(fields) => self.object(message, fields, false),
                other => Err(type_error(other, owner, message.go_name(), &self.field)),
            },
        }
    }
}

/// What Go writes for the `field` of the built-in `api_version`/`kind` at its zero value, a
/// struct as an object of the fields Go always writes (a new DaemonSet's `status` is
/// `{"currentNumberScheduled": 0, ...}`). `None` for a kind or field the schema does not
/// have, or whose zero value Go writes as `null`.
pub fn zero_field(api_version: &str, kind: &str, field: &str) -> Option<Value> {
    zero(message_for(api_version, kind)?.field(field)?)
}

/// The fields of each message that Go always writes, those of its inline members included
/// (by message name; only messages with some): looked at for every object a write holds,
/// so gathered once.
fn always_written(message: &Message) -> &'static [&'static Field] {
    static ALWAYS: OnceLock<HashMap<&'static str, Vec<&'static Field>>> = OnceLock::new();
    fn gather(message: &'static Message, out: &mut Vec<&'static Field>) {
        for field in message.fields {
            match field.ty {
                Ty::Message(name) if field.json.is_empty() => {
                    if let Some(inline) = index().get(name) {
                        gather(inline, out);
                    }
                }
                _ if field.always => out.push(field),
                _ => {}
            }
        }
    }
    let always = ALWAYS.get_or_init(|| {
        index()
            .values()
            .filter_map(|message| {
                let mut fields = Vec::new();
                gather(message, &mut fields);
                (!fields.is_empty()).then_some((message.name, fields))
            })
            .collect()
    });
    always.get(message.name).map_or(&[], Vec::as_slice)
}

/// Gives `fields`, an object of `message`, the zero value of every field Go always writes
/// that it lacks or holds as `null` (which Go's decoder leaves at the zero value).
fn fill(message: &Message, fields: &mut Map<String, Value>) {
    for field in always_written(message) {
        if fields.get(field.json).is_some_and(|v| !v.is_null()) {
            continue;
        }
        if let Some(zero) = zero(&field.ty) {
            fields.insert(field.json.to_owned(), zero);
        }
    }
}

/// How Go writes a value of `ty` at its zero value; `None` where that is `null` (nil
/// slices, maps and byte slices; zero times; raw and embedded JSON), which typed clients
/// read as they read an absent field.
fn zero(ty: &Ty) -> Option<Value> {
    match ty {
        Ty::String => Some(json!("")),
        Ty::Int32 | Ty::Int64 | Ty::Double => Some(json!(0)),
        Ty::Bool => Some(json!(false)),
        Ty::Bytes | Ty::MapString | Ty::MapBytes | Ty::MapMessage(_) | Ty::Repeated(_) => None,
        Ty::Message(name) => {
            let message = index()
                .get(name)
                .copied()
                .expect("schema.rs names only its own messages");
            match Form::of(message) {
                Form::Duration => Some(json!("0s")),
                Form::IntOrString => Some(json!(0)),
                Form::Quantity => Some(json!("0")),
                Form::Time | Form::MicroTime | Form::Raw => None,
                Form::Object => {
                    let mut fields = Map::new();
                    fill(message, &mut fields);
                    Some(Value::Object(fields))
                }
            }
        }
    }
}

/// How a message is written in JSON: as an object of its fields, or (times, quantities,
/// int-or-string, ...) in a form of its own, that of its Go type's `MarshalJSON`.
#[derive(Clone, Copy)]
enum Form {
    Time,
    MicroTime,
    Duration,
    IntOrString,
    Quantity,
    /// Any JSON: raw and embedded objects (`RawExtension`, `FieldsV1`), a CRD schema's
    /// `default`, `enum` and `example`, a schema or a list of them, a schema or a bool, a
    /// schema or a list of names.
    Raw,
    Object,
}

impl Form {
    fn of(message: &Message) -> Self {
        match message.name.strip_prefix(META).unwrap_or(message.name) {
            "Time" => Self::Time,
            "MicroTime" => Self::MicroTime,
            "Duration" => Self::Duration,
            "io.k8s.apimachinery.pkg.util.intstr.IntOrString" => Self::IntOrString,
            "io.k8s.apimachinery.pkg.api.resource.Quantity" => Self::Quantity,
            "io.k8s.apimachinery.pkg.runtime.RawExtension" | "FieldsV1" => Self::Raw,
            name if name.ends_with(".Json")
                || name.ends_with(".JsonSchemaPropsOrArray")
                || name.ends_with(".JsonSchemaPropsOrBool")
                || name.ends_with(".JsonSchemaPropsOrStringArray") =>
            {
                Self::Raw
            }
            _ => Self::Object,
        }
    }
}

impl Message {
    /// The Go struct's name: `io.k8s.api.apps.v1.DeploymentSpec` is `DeploymentSpec`
    /// (and prost's `JsonSchemaProps` Go's `JSONSchemaProps`).
    fn struct_name(&self) -> String {
        let name = self.name.rsplit('.').next().unwrap_or(self.name);
        match name.strip_prefix("Json") {
            Some(rest) => format!("JSON{rest}"),
            None => name.to_owned(),
        }
    }

    /// The Go type as `reflect` prints it: `v1.DeploymentSpec`, `resource.Quantity`.
    fn go_name(&self) -> String {
        let name = self.struct_name();
        match self.name.rsplit('.').nth(1) {
            Some(package) => format!("{package}.{name}"),
            None => name.to_owned(),
        }
    }
}

impl Ty {
    /// The Go type of a field as `reflect` prints it (the element type for a pointer). Named
    /// types print as their underlying type (`string` for `v1.Protocol`): the schema does
    /// not record Go's type names.
    fn go_name(&self) -> String {
        match self {
            Ty::String => "string".into(),
            Ty::Int32 => "int32".into(),
            Ty::Int64 => "int64".into(),
            Ty::Bool => "bool".into(),
            Ty::Double => "float64".into(),
            Ty::Bytes => "[]uint8".into(),
            Ty::Message(name) => index()
                .get(name)
                .map_or_else(|| (*name).to_owned(), |m| m.go_name()),
            Ty::MapString => "map[string]string".into(),
            Ty::MapBytes => "map[string][]uint8".into(),
            Ty::MapMessage(name) => format!("map[string]{}", Ty::Message(name).go_name()),
            Ty::Repeated(inner) => format!("[]{}", inner.go_name()),
        }
    }
}

/// How Go's decoder names a JSON value's kind in a type error.
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Go's `UnmarshalTypeError` with its context: the innermost struct and the field path.
fn type_error(value: &Value, owner: &Message, go_type: impl AsRef<str>, field: &[&str]) -> String {
    unmarshal_error(json_kind(value), owner, go_type.as_ref(), field)
}

/// A number that does not fit its integer type: Go names the number itself.
fn number_error(
    n: &serde_json::Number,
    owner: &Message,
    go_type: impl AsRef<str>,
    field: &[&str],
) -> String {
    unmarshal_error(&format!("number {n}"), owner, go_type.as_ref(), field)
}

fn unmarshal_error(what: &str, owner: &Message, go_type: &str, field: &[&str]) -> String {
    if field.is_empty() {
        format!("json: cannot unmarshal {what} into Go value of type {go_type}")
    } else {
        format!(
            "json: cannot unmarshal {what} into Go struct field {}.{} of type {go_type}",
            owner.struct_name(),
            field.join(".")
        )
    }
}

/// Go's standard base64 decoding (with padding, line breaks skipped) and its error:
/// `illegal base64 data at input byte N`.
fn base64_error(s: &str) -> Option<String> {
    let chars: Vec<(usize, u8)> = s
        .bytes()
        .enumerate()
        .filter(|(_, b)| *b != b'\n' && *b != b'\r')
        .collect();
    let error = |at: usize| Some(format!("illegal base64 data at input byte {at}"));
    let alphabet = |b: u8| b.is_ascii_alphanumeric() || b == b'+' || b == b'/';
    let mut i = 0;
    while i < chars.len() {
        for j in 0..4 {
            let Some(&(at, b)) = chars.get(i) else {
                // The input ends inside a quantum: Go points at the quantum's start.
                return error(s.len() - j);
            };
            i += 1;
            if alphabet(b) {
                continue;
            }
            if b != b'=' || j < 2 {
                return error(at);
            }
            if j == 2 {
                match chars.get(i) {
                    None => return error(s.len()),
                    Some((_, b'=')) => i += 1,
                    Some(_) => return error(at),
                }
            }
            // Padding ends the data: anything after it is garbage.
            return chars.get(i).and_then(|&(at, _)| error(at));
        }
    }
    None
}

/// Go's `time.RFC3339` layout and the elements `time.Parse` reads it as.
const RFC3339: &str = "2006-01-02T15:04:05Z07:00";
/// `metav1.RFC3339Micro`, `MicroTime`'s layout.
const RFC3339_MICRO: &str = "2006-01-02T15:04:05.000000Z07:00";

/// `time.Parse(layout, text)`'s error for these two layouts, in Go's words; `None` when
/// it parses.
fn time_error(text: &str, layout: &str) -> Option<String> {
    let fail = |rest: &str, element: &str| {
        Some(format!(
            "parsing time {} as {}: cannot parse {} as {}",
            go_quote(text),
            go_quote(layout),
            go_quote(rest),
            go_quote(element)
        ))
    };
    let range = |what: &str| {
        Some(format!(
            "parsing time {}: {what} out of range",
            go_quote(text)
        ))
    };
    let micro = layout == RFC3339_MICRO;
    let digits =
        |s: &str, n: usize| s.len() >= n && s.as_bytes()[..n].iter().all(u8::is_ascii_digit);
    let mut rest = text;
    // (element, digits, separator after it)
    let elements: [(&str, usize, &str); 6] = [
        ("2006", 4, "-"),
        ("01", 2, "-"),
        ("02", 2, "T"),
        ("15", 2, ":"),
        ("04", 2, ":"),
        ("05", 2, ""),
    ];
    let mut values = [0u32; 6];
    for (i, (element, n, separator)) in elements.iter().enumerate() {
        if !digits(rest, *n) {
            return fail(rest, element);
        }
        values[i] = rest[..*n].parse().expect("digits");
        rest = &rest[*n..];
        if !separator.is_empty() {
            let Some(after) = rest.strip_prefix(separator) else {
                let layout_rest =
                    &layout[layout.find(element).expect("in the layout") + element.len()..];
                return fail(
                    rest,
                    layout_rest
                        .split(char::is_numeric)
                        .next()
                        .unwrap_or(separator),
                );
            };
            rest = after;
        }
    }
    if micro {
        match rest.strip_prefix('.') {
            Some(after) if digits(after, 6) => rest = &after[6..],
            _ => return fail(rest, ".000000"),
        }
    } else if let Some(after) = rest.strip_prefix(['.', ',']) {
        // Go reads a fraction after the seconds even where the layout has none.
        let n = after.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return fail(rest, "Z07:00");
        }
        rest = &after[n..];
    }
    if let Some(after) = rest.strip_prefix('Z') {
        rest = after;
    } else if rest.starts_with(['+', '-'])
        && rest.len() >= 6
        && digits(&rest[1..], 2)
        && rest.as_bytes()[3] == b':'
        && digits(&rest[4..], 2)
    {
        rest = &rest[6..];
    } else {
        return fail(rest, "Z07:00");
    }
    if !rest.is_empty() {
        return Some(format!(
            "parsing time {}: extra text: {}",
            go_quote(text),
            go_quote(rest)
        ));
    }
    let [year, month, day, hour, minute, second] = values;
    if !(1..=12).contains(&month) {
        return range("month");
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if day < 1 || day > days {
        return range("day");
    }
    if hour > 23 {
        return range("hour");
    }
    if minute > 59 {
        return range("minute");
    }
    if second > 59 {
        return range("second");
    }
    None
}

/// `time.ParseDuration`'s error for `text`, if it has one: a sign, then numbers with
/// units (`1h2m3.5s`), or `0`.
fn duration_error(text: &str) -> Option<String> {
    let invalid = || Some(format!("time: invalid duration {}", go_quote(text)));
    let mut rest = text.strip_prefix(['-', '+']).unwrap_or(text);
    if rest == "0" {
        return None;
    }
    if rest.is_empty() {
        return invalid();
    }
    while !rest.is_empty() {
        let whole = rest.bytes().take_while(u8::is_ascii_digit).count();
        rest = &rest[whole..];
        let mut fraction = 0;
        if let Some(after) = rest.strip_prefix('.') {
            fraction = after.bytes().take_while(u8::is_ascii_digit).count();
            rest = &after[fraction..];
        }
        if whole == 0 && fraction == 0 {
            return invalid();
        }
        let end = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..end];
        if unit.is_empty() {
            return Some(format!("time: missing unit in duration {}", go_quote(text)));
        }
        if !matches!(
            unit,
            "ns" | "us" | "\u{b5}s" | "\u{3bc}s" | "ms" | "s" | "m" | "h"
        ) {
            return Some(format!(
                "time: unknown unit {} in duration {}",
                go_quote(unit),
                go_quote(text)
            ));
        }
        rest = &rest[end..];
    }
    None
}

/// A string as Go's `strconv.Quote` prints it, for the printable text times hold.
fn go_quote(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Go's error for `object` of `api_version`/`kind`.
    fn error(api_version: &str, kind: &str, mut object: Value) -> String {
        decode_typed(&mut object, api_version, kind)
            .expect("a built-in kind")
            .expect_err("a type error")
    }

    #[test]
    fn values_of_the_wrong_type_are_go_decoding_errors_with_the_field_path() {
        let cases = [
            (
                "v1",
                "ConfigMap",
                json!({"data": {"a": 1}, "metadata": {"labels": "x"}}),
                "json: cannot unmarshal number into Go struct field ConfigMap.data of type string",
            ),
            (
                "v1",
                "ConfigMap",
                json!({"metadata": {"labels": "x"}}),
                "json: cannot unmarshal string into Go struct field ObjectMeta.metadata.labels of type map[string]string",
            ),
            (
                "v1",
                "ConfigMap",
                json!({"data": "notamap"}),
                "json: cannot unmarshal string into Go struct field ConfigMap.data of type map[string]string",
            ),
            (
                "apps/v1",
                "Deployment",
                json!({"spec": {"replicas": "three"}}),
                "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32",
            ),
            (
                "apps/v1",
                "Deployment",
                json!({"spec": {"replicas": 3_000_000_000_i64}}),
                "json: cannot unmarshal number 3000000000 into Go struct field DeploymentSpec.spec.replicas of type int32",
            ),
            (
                "apps/v1",
                "Deployment",
                json!({"spec": {"replicas": 1.5}}),
                "json: cannot unmarshal number 1.5 into Go struct field DeploymentSpec.spec.replicas of type int32",
            ),
            (
                "apps/v1",
                "Deployment",
                json!({"spec": "x"}),
                "json: cannot unmarshal string into Go struct field Deployment.spec of type v1.DeploymentSpec",
            ),
            (
                "v1",
                "Pod",
                json!({"spec": {"containers": {"name": "a"}}}),
                "json: cannot unmarshal object into Go struct field PodSpec.spec.containers of type []v1.Container",
            ),
            (
                "v1",
                "Pod",
                json!({"spec": {"containers": [{"name": "a", "image": 5}]}}),
                "json: cannot unmarshal number into Go struct field Container.spec.containers.image of type string",
            ),
            (
                "v1",
                "Pod",
                json!({"spec": {"hostNetwork": "yes"}}),
                "json: cannot unmarshal string into Go struct field PodSpec.spec.hostNetwork of type bool",
            ),
            (
                "v1",
                "Pod",
                json!({"spec": {"activeDeadlineSeconds": "1"}}),
                "json: cannot unmarshal string into Go struct field PodSpec.spec.activeDeadlineSeconds of type int64",
            ),
            (
                "v1",
                "Service",
                json!({"spec": {"ports": [{"port": 80, "targetPort": true}]}}),
                "json: cannot unmarshal bool into Go struct field ServicePort.spec.ports.targetPort of type int32",
            ),
            (
                "v1",
                "Secret",
                json!({"data": {"a": "not base64"}}),
                "illegal base64 data at input byte 3",
            ),
            (
                "v1",
                "Secret",
                json!({"data": {"a": 1}}),
                "json: cannot unmarshal number into Go struct field Secret.data of type []uint8",
            ),
            (
                "v1",
                "ConfigMap",
                json!({"metadata": {"creationTimestamp": 5}}),
                "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.creationTimestamp of type string",
            ),
            (
                "v1",
                "ConfigMap",
                json!({"metadata": {"creationTimestamp": "yesterday"}}),
                "parsing time \"yesterday\" as \"2006-01-02T15:04:05Z07:00\": cannot parse \"yesterday\" as \"2006\"",
            ),
            (
                "v1",
                "ConfigMap",
                json!({"metadata": {"creationTimestamp": "2026-13-01T00:00:00Z"}}),
                "parsing time \"2026-13-01T00:00:00Z\": month out of range",
            ),
            (
                "v1",
                "Pod",
                json!({"spec": {"containers": [{"name": "a", "resources": {"limits": {"cpu": "lots"}}}]}}),
                QUANTITY_FORMAT,
            ),
            (
                "v1",
                "ConfigMap",
                json!({"metadata": {"ownerReferences": [{"controller": "yes"}]}}),
                "json: cannot unmarshal string into Go struct field OwnerReference.metadata.ownerReferences.controller of type bool",
            ),
        ];
        for (api_version, kind, object, expected) in cases {
            assert_eq!(
                error(api_version, kind, object.clone()),
                expected,
                "{object}"
            );
        }
    }

    #[test]
    fn well_typed_values_of_every_shape_decode() {
        let mut pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "labels": {"a": "b"}, "creationTimestamp": "2026-01-01T00:00:00Z",
                "deletionTimestamp": null, "managedFields": [{"manager": "m", "fieldsV1": {"f:metadata": {}},
                "time": "2026-01-01T00:00:00+02:00"}]},
            "spec": {"containers": [{"name": "a", "image": "x", "ports": [{"containerPort": 80}],
                "resources": {"limits": {"cpu": "100m", "memory": 128}},
                "livenessProbe": {"httpGet": {"port": "http"}, "periodSeconds": 10}}],
                "volumes": [{"name": "v", "configMap": {"name": "c", "defaultMode": 420}}],
                "activeDeadlineSeconds": 30, "terminationGracePeriodSeconds": null},
            "status": {"phase": "Running", "startTime": "2026-01-01T00:00:00.5Z"},
        });
        let decoded = decode_typed(&mut pod, "v1", "Pod").expect("built in");
        assert_eq!(decoded, Ok(Decoded::default()));
        let mut secret = json!({"data": {"a": "aGVsbG8=", "b": "aGk=", "c": "", "d": "aGVs\nbG8="}, "type": "Opaque"});
        assert_eq!(
            decode_typed(&mut secret, "v1", "Secret"),
            Some(Ok(Decoded::default()))
        );
        let mut event = json!({"eventTime": "2026-01-01T00:00:00.000000Z", "series": {"count": 2,
            "lastObservedTime": "2026-01-01T00:00:00.123456Z"}});
        assert_eq!(
            decode_typed(&mut event, "events.k8s.io/v1", "Event"),
            Some(Ok(Decoded::default()))
        );
        let mut lease = json!({"spec": {"leaseDurationSeconds": 15, "renewTime": "2026-01-01T00:00:00.000000Z"}});
        assert_eq!(
            decode_typed(&mut lease, "coordination.k8s.io/v1", "Lease"),
            Some(Ok(Decoded::default()))
        );
    }

    /// `object` of `api_version`/`kind` as the walk leaves it.
    fn decoded(api_version: &str, kind: &str, mut object: Value) -> Value {
        decode_typed(&mut object, api_version, kind)
            .expect("a built-in kind")
            .expect("well typed");
        object
    }

    #[test]
    fn fields_go_always_writes_are_filled_in_at_their_zero_value() {
        // Status updates that send only some numbers: the rest are Go's zeros, a null too.
        let statuses = [
            (
                "apps/v1",
                "DaemonSet",
                json!({"numberAvailable": 2, "numberReady": null, "currentNumberScheduled": 3}),
                json!({"numberAvailable": 2, "numberReady": 0, "currentNumberScheduled": 3,
                    "desiredNumberScheduled": 0, "numberMisscheduled": 0}),
            ),
            (
                "policy/v1",
                "PodDisruptionBudget",
                json!({"observedGeneration": 1}),
                json!({"observedGeneration": 1, "disruptionsAllowed": 0, "currentHealthy": 0,
                    "desiredHealthy": 0, "expectedPods": 0}),
            ),
            (
                "autoscaling/v1",
                "HorizontalPodAutoscaler",
                json!({}),
                json!({"currentReplicas": 0, "desiredReplicas": 0}),
            ),
        ];
        for (api_version, kind, sent, stored) in statuses {
            let object = decoded(api_version, kind, json!({"status": sent}));
            assert_eq!(object["status"], stored, "{kind}");
        }
        let hpa = decoded(
            "autoscaling/v1",
            "HorizontalPodAutoscaler",
            json!({"spec": {"maxReplicas": 3, "scaleTargetRef": {"kind": "Deployment", "name": "web"}}}),
        );
        assert_eq!(
            hpa["spec"]["scaleTargetRef"],
            json!({"kind": "Deployment", "name": "web"}),
            "an optional field stays out"
        );
        // Nested structs, in lists too; fields Go tags `+optional` without `omitempty`.
        let pod = decoded(
            "v1",
            "Pod",
            json!({"spec": {"containers": [{"name": "a", "ports": [{"name": "http"}]}]},
                "status": {"containerStatuses": [{"name": "a", "ready": true}]}}),
        );
        assert_eq!(
            pod["spec"]["containers"][0]["ports"][0],
            json!({"name": "http", "containerPort": 0})
        );
        assert_eq!(
            pod["status"]["containerStatuses"][0],
            json!({"name": "a", "ready": true, "restartCount": 0, "image": "", "imageID": ""})
        );
        let stateful = decoded("apps/v1", "StatefulSet", json!({"spec": {}, "status": {}}));
        assert_eq!(stateful["spec"]["serviceName"], json!(""));
        assert_eq!(
            stateful["status"],
            json!({"replicas": 0, "availableReplicas": 0})
        );
        // A struct Go always writes is written whole, with its own such fields.
        let binding = decoded("rbac.authorization.k8s.io/v1", "RoleBinding", json!({}));
        assert_eq!(
            binding["roleRef"],
            json!({"apiGroup": "", "kind": "", "name": ""})
        );
        let crd = decoded(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            json!({"status": {}}),
        );
        assert_eq!(
            crd["status"],
            json!({"acceptedNames": {"plural": "", "kind": ""}})
        );
    }

    #[test]
    fn what_go_writes_as_null_stays_out() {
        // Pointers (a Deployment's selector), slices and maps (an EndpointSlice's
        // endpoints), times (a condition's lastTransitionTime) and raw JSON are `null` in
        // Go's output: left out, as typed clients read both alike.
        let deployment = decoded("apps/v1", "Deployment", json!({"spec": {"template": {}}}));
        assert_eq!(deployment["spec"], json!({"template": {}}));
        let slice = decoded(
            "discovery.k8s.io/v1",
            "EndpointSlice",
            json!({"addressType": "IPv4"}),
        );
        assert_eq!(slice, json!({"addressType": "IPv4"}));
        let namespace = decoded(
            "v1",
            "Namespace",
            json!({"status": {"conditions": [{"type": "T", "status": "True"}]}}),
        );
        assert_eq!(
            namespace["status"]["conditions"][0],
            json!({"type": "T", "status": "True"})
        );
        let crd = decoded(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            json!({"status": {"conditions": [{"type": "Established", "status": "True"}],
                "acceptedNames": {"plural": "widgets", "kind": "Widget"}}}),
        );
        assert_eq!(
            crd["status"]["conditions"][0],
            json!({"type": "Established", "status": "True"})
        );
    }

    #[test]
    fn a_new_status_is_what_go_writes_for_the_empty_struct() {
        assert_eq!(
            zero_field("apps/v1", "DaemonSet", "status"),
            Some(
                json!({"currentNumberScheduled": 0, "desiredNumberScheduled": 0,
                "numberMisscheduled": 0, "numberReady": 0})
            )
        );
        assert_eq!(
            zero_field("apps/v1", "ReplicaSet", "status"),
            Some(json!({"replicas": 0}))
        );
        assert_eq!(
            zero_field("apps/v1", "Deployment", "status"),
            Some(json!({}))
        );
        assert_eq!(
            zero_field("v1", "ConfigMap", "status"),
            None,
            "no status at all"
        );
        assert_eq!(zero_field("example.com/v1", "Widget", "status"), None);
    }

    #[test]
    fn another_kind_is_not_converted_and_an_unknown_kind_is_not_registered() {
        assert_eq!(
            foreign_kind("v1", "Secret", "v1", "ConfigMap"),
            "converting (v1.Secret) to (core.ConfigMap): unknown conversion"
        );
        assert_eq!(
            foreign_kind("apps/v1", "StatefulSet", "apps/v1", "Deployment"),
            "converting (v1.StatefulSet) to (apps.Deployment): unknown conversion"
        );
        assert_eq!(
            foreign_kind("v1", "Widget", "v1", "ConfigMap"),
            "no kind \"Widget\" is registered for version \"v1\" in scheme \
             \"k8s.io/kubernetes/pkg/api/legacyscheme/scheme.go:30\""
        );
    }

    #[test]
    fn base64_errors_point_where_go_points() {
        assert_eq!(base64_error("aGVsbG8="), None);
        assert_eq!(base64_error("aGVsbA=="), None);
        assert_eq!(base64_error(""), None);
        for (bad, at) in [
            ("not base64", 3),
            ("abc", 0),
            ("abcde", 4),
            ("ab=c", 2),
            ("YQ==YQ==", 4),
            ("a===", 1),
        ] {
            assert_eq!(
                base64_error(bad),
                Some(format!("illegal base64 data at input byte {at}")),
                "{bad}"
            );
        }
    }

    #[test]
    fn durations_parse_as_go_parses_them() {
        for good in ["0", "1h2m3.5s", "250ms", "-1.5s", "1us", ".5s"] {
            assert_eq!(duration_error(good), None, "{good}");
        }
        assert_eq!(
            duration_error("soon"),
            Some("time: invalid duration \"soon\"".into())
        );
        assert_eq!(
            duration_error("5"),
            Some("time: missing unit in duration \"5\"".into())
        );
        assert_eq!(
            duration_error("5d"),
            Some("time: unknown unit \"d\" in duration \"5d\"".into())
        );
    }
}
