//! The name rules Kubernetes checks everywhere: RFC 1123 labels and subdomains. Tenant
//! names, object names, container names, CRD plurals and versions all use them.

/// An RFC 1123 label: 1 to 63 of `[a-z0-9-]`, alphanumeric at both ends.
pub fn is_dns_label(s: &str) -> bool {
    s.len() <= 63 && label_shaped(s)
}

/// `[a-z0-9-]`, at least one, alphanumeric at both ends: a label of any length.
fn label_shaped(s: &str) -> bool {
    let bytes = s.as_bytes();
    let alnum = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    alnum(bytes.first())
        && alnum(bytes.last())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

/// An RFC 1123 subdomain: at most 253 characters, labels joined by dots. As upstream's
/// `IsDNS1123Subdomain`, a label of a subdomain is not held to 63 characters: a ConfigMap
/// may be named with 253 characters and no dot.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(label_shaped)
}

/// Upstream's message for a value that is not an RFC 1123 subdomain.
pub const DNS_SUBDOMAIN_MESSAGE: &str = "a lowercase RFC 1123 subdomain must consist of lower case \
     alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character \
     (e.g. 'example.com', regex used for validation is \
     '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

const QUALIFIED_NAME_MESSAGE: &str = "must consist of alphanumeric characters, '-', '_' or '.', \
     and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or \
     '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

const LABEL_VALUE_MESSAGE: &str = "a valid label must be an empty string or consist of \
     alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric \
     character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is \
     '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

const CONFIG_KEY_MESSAGE: &str = "a valid config key must consist of alphanumeric characters, \
     '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for \
     validation is '[-._a-zA-Z0-9]+')";

fn too_long(most: usize) -> String {
    format!("must be no more than {most} characters")
}

/// `[A-Za-z0-9]`, then `[-A-Za-z0-9_.]`, ending alphanumeric: a label value or the name
/// part of a qualified name.
fn is_qualified_part(s: &str) -> bool {
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    alnum(s.chars().next())
        && alnum(s.chars().next_back())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// Why `value` is not an RFC 1123 subdomain, in upstream's words (`IsDNS1123Subdomain`).
pub fn dns_subdomain_errors(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > 253 {
        errors.push(too_long(253));
    }
    if !value.split('.').all(label_shaped) {
        errors.push(DNS_SUBDOMAIN_MESSAGE.to_owned());
    }
    errors
}

/// Why `value` is not a qualified name (`example.com/MyName`: a label key), in upstream's
/// words (`IsQualifiedName`).
pub fn qualified_name_errors(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errors.push("prefix part must be non-empty".to_owned());
            } else {
                errors.extend(
                    dns_subdomain_errors(prefix)
                        .into_iter()
                        .map(|e| format!("prefix part {e}")),
                );
            }
            *name
        }
        _ => {
            return vec![format!(
                "a qualified name {QUALIFIED_NAME_MESSAGE} with an optional DNS subdomain prefix \
                 and '/' (e.g. 'example.com/MyName')"
            )];
        }
    };
    if name.is_empty() {
        errors.push("name part must be non-empty".to_owned());
    } else if name.len() > 63 {
        errors.push(format!("name part {}", too_long(63)));
    }
    if !is_qualified_part(name) {
        errors.push(format!("name part {QUALIFIED_NAME_MESSAGE}"));
    }
    errors
}

/// Why `value` is not a label value, in upstream's words (`IsValidLabelValue`).
pub fn label_value_errors(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > 63 {
        errors.push(too_long(63));
    }
    if !value.is_empty() && !is_qualified_part(value) {
        errors.push(LABEL_VALUE_MESSAGE.to_owned());
    }
    errors
}

/// Why `value` is not a key of a ConfigMap's or Secret's data, in upstream's words
/// (`IsConfigMapKey`).
pub fn config_key_errors(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > 253 {
        errors.push(too_long(253));
    }
    if value.is_empty()
        || !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
    {
        errors.push(CONFIG_KEY_MESSAGE.to_owned());
    }
    match value {
        "." => errors.push("must not be '.'".to_owned()),
        ".." => errors.push("must not be '..'".to_owned()),
        v if v.starts_with("..") => errors.push("must not start with '..'".to_owned()),
        _ => {}
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_subdomains() {
        for good in ["a", "a-b", "0", "web-1", &"a".repeat(63)] {
            assert!(is_dns_label(good), "{good}");
        }
        for bad in ["", "-a", "a-", "A", "a.b", "a_b", &"a".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad}");
        }
        assert!(is_dns_subdomain("example.com"));
        assert!(!is_dns_subdomain("example..com"));
        assert!(!is_dns_subdomain(&format!("{}.b", "a".repeat(252))));
        assert!(
            is_dns_subdomain(&"a".repeat(253)),
            "no label limit in a subdomain"
        );
        assert!(!is_dns_subdomain(&"a".repeat(254)));
    }

    #[test]
    fn qualified_names_and_label_values_in_upstreams_words() {
        for good in ["app", "example.com/App_1", "a.b-c", &"a".repeat(63)] {
            assert_eq!(qualified_name_errors(good), Vec::<String>::new(), "{good}");
        }
        assert_eq!(
            qualified_name_errors("/a"),
            vec!["prefix part must be non-empty"]
        );
        assert_eq!(
            qualified_name_errors("Example.com/a"),
            vec![format!("prefix part {DNS_SUBDOMAIN_MESSAGE}")]
        );
        let long = qualified_name_errors(&"a".repeat(64));
        assert_eq!(long, vec!["name part must be no more than 63 characters"]);
        assert_eq!(qualified_name_errors("a/b/c").len(), 1);
        assert!(qualified_name_errors("bad key")[0].starts_with("name part must consist of"));
        assert_eq!(label_value_errors(""), Vec::<String>::new());
        assert_eq!(label_value_errors("-x").len(), 1);
        assert_eq!(
            label_value_errors(&"a".repeat(64)),
            vec!["must be no more than 63 characters"]
        );
        assert_eq!(config_key_errors("..a"), vec!["must not start with '..'"]);
        assert_eq!(config_key_errors("a b").len(), 1);
    }
}
