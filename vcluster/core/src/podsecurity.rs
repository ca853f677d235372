//! The Pod Security Standards (`pod-security.kubernetes.io/enforce` on a namespace:
//! `privileged`, `baseline`, `restricted`), checked as upstream's PodSecurity admission
//! checks a pod, with its wording: `violates PodSecurity "restricted:latest": ...`.

use serde_json::Value;

pub const ENFORCE: &str = "pod-security.kubernetes.io/enforce";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    /// The level a namespace's labels enforce (`privileged` when none or unknown).
    pub fn of_namespace(namespace: &Value) -> Self {
        match namespace
            .pointer("/metadata/labels")
            .and_then(|l| l.get(ENFORCE))
            .and_then(Value::as_str)
        {
            Some("restricted") => Self::Restricted,
            Some("baseline") => Self::Baseline,
            _ => Self::Privileged,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Privileged => "privileged",
            Self::Baseline => "baseline",
            Self::Restricted => "restricted",
        }
    }
}

/// Capabilities baseline allows a container to add.
const BASELINE_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// Volume types restricted allows.
const RESTRICTED_VOLUMES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// `container "a"` or `containers "a", "b"`.
fn containers_phrase(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    match names.len() {
        1 => format!("container {}", quoted[0]),
        _ => format!("containers {}", quoted.join(", ")),
    }
}

/// Why `pod` may not run at `level`; empty if it may. The message of a 403 is
/// `violates PodSecurity "<level>:latest": ` and these, joined with ", ".
pub fn violations(level: Level, pod: &Value) -> Vec<String> {
    if level == Level::Privileged {
        return Vec::new();
    }
    let spec = &pod["spec"];
    let containers: Vec<&Value> = ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|list| spec[list].as_array().into_iter().flatten())
        .collect();
    fn name(c: &Value) -> &str {
        c["name"].as_str().unwrap_or_default()
    }
    let which = |test: &dyn Fn(&Value) -> bool| -> Vec<&str> {
        containers
            .iter()
            .filter(|c| test(c))
            .map(|c| name(c))
            .collect()
    };
    let mut out = Vec::new();

    let hosts: Vec<String> = ["hostNetwork", "hostPID", "hostIPC"]
        .iter()
        .filter(|f| spec[**f] == true)
        .map(|f| format!("{f}=true"))
        .collect();
    if !hosts.is_empty() {
        out.push(format!("host namespaces ({})", hosts.join(", ")));
    }
    let privileged =
        which(&|c| c.pointer("/securityContext/privileged") == Some(&Value::Bool(true)));
    if !privileged.is_empty() {
        out.push(format!(
            "privileged ({} must not set securityContext.privileged=true)",
            containers_phrase(&privileged)
        ));
    }
    let added = |c: &Value| -> Vec<String> {
        c.pointer("/securityContext/capabilities/add")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    };
    let extra: Vec<&Value> = containers
        .iter()
        .copied()
        .filter(|c| {
            added(c)
                .iter()
                .any(|cap| !BASELINE_CAPABILITIES.contains(&cap.as_str()))
        })
        .collect();
    if !extra.is_empty() {
        let caps: Vec<String> = extra
            .iter()
            .flat_map(|c| added(c))
            .filter(|cap| !BASELINE_CAPABILITIES.contains(&cap.as_str()))
            .map(|cap| format!("{cap:?}"))
            .collect();
        let names: Vec<&str> = extra.iter().map(|c| name(c)).collect();
        out.push(format!(
            "non-default capabilities ({} must not include {} in securityContext.capabilities.add)",
            containers_phrase(&names),
            caps.join(", ")
        ));
    }
    let volumes: Vec<&Value> = spec["volumes"].as_array().into_iter().flatten().collect();
    let host_paths: Vec<String> = volumes
        .iter()
        .filter(|v| v.get("hostPath").is_some())
        .map(|v| format!("{:?}", v["name"].as_str().unwrap_or_default()))
        .collect();
    if !host_paths.is_empty() {
        let noun = if host_paths.len() == 1 {
            "volume"
        } else {
            "volumes"
        };
        out.push(format!(
            "hostPath volumes ({noun} {})",
            host_paths.join(", ")
        ));
    }
    let host_ports: Vec<String> = containers
        .iter()
        .flat_map(|c| {
            c["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |p| (name(c), p))
        })
        .filter_map(|(c, p)| {
            p["hostPort"]
                .as_i64()
                .filter(|h| *h != 0)
                .map(|h| format!("container {c:?} uses hostPort {h}"))
        })
        .collect();
    if !host_ports.is_empty() {
        out.push(format!("hostPort ({})", host_ports.join(", ")));
    }
    let unconfined = |v: Option<&Value>| v.and_then(|p| p["type"].as_str()) == Some("Unconfined");
    let unconfined_containers =
        which(&|c| unconfined(c.pointer("/securityContext/seccompProfile")));
    if unconfined(spec.pointer("/securityContext/seccompProfile"))
        || !unconfined_containers.is_empty()
    {
        out.push("seccompProfile (pod or containers must not set securityContext.seccompProfile.type to \"Unconfined\")".into());
    }
    if level < Level::Restricted {
        return out;
    }

    let restricted: Vec<String> = volumes
        .iter()
        .filter_map(|v| {
            let kind = v.as_object()?.keys().find(|k| *k != "name")?;
            (!RESTRICTED_VOLUMES.contains(&kind.as_str()) && kind != "hostPath").then(|| {
                format!(
                    "volume {:?} uses restricted volume type {kind:?}",
                    v["name"].as_str().unwrap_or_default()
                )
            })
        })
        .collect();
    if !restricted.is_empty() {
        out.push(format!(
            "restricted volume types ({})",
            restricted.join(", ")
        ));
    }
    let escalating = which(&|c| {
        c.pointer("/securityContext/allowPrivilegeEscalation") != Some(&Value::Bool(false))
    });
    if !escalating.is_empty() {
        out.push(format!(
            "allowPrivilegeEscalation != false ({} must set securityContext.allowPrivilegeEscalation=false)",
            containers_phrase(&escalating)
        ));
    }
    let drops_all = |c: &Value| {
        c.pointer("/securityContext/capabilities/drop")
            .and_then(Value::as_array)
            .is_some_and(|d| d.iter().any(|x| x == "ALL"))
    };
    let undropped = which(&|c| !drops_all(c));
    if !undropped.is_empty() {
        out.push(format!(
            "unrestricted capabilities ({} must set securityContext.capabilities.drop=[\"ALL\"])",
            containers_phrase(&undropped)
        ));
    }
    let adds_more = which(&|c| added(c).iter().any(|cap| cap != "NET_BIND_SERVICE"));
    if !adds_more.is_empty() {
        out.push(format!(
            "unrestricted capabilities ({} must not include capabilities other than \"NET_BIND_SERVICE\" in securityContext.capabilities.add)",
            containers_phrase(&adds_more)
        ));
    }
    let pod_non_root = spec.pointer("/securityContext/runAsNonRoot");
    let root_allowed = which(&|c| match c.pointer("/securityContext/runAsNonRoot") {
        Some(v) => v != true,
        None => pod_non_root != Some(&Value::Bool(true)),
    });
    if pod_non_root == Some(&Value::Bool(false)) || !root_allowed.is_empty() {
        out.push(format!(
            "runAsNonRoot != true (pod or {} must set securityContext.runAsNonRoot=true)",
            containers_phrase(&root_allowed)
        ));
    }
    let root_user = which(&|c| c.pointer("/securityContext/runAsUser") == Some(&Value::from(0)));
    if spec.pointer("/securityContext/runAsUser") == Some(&Value::from(0)) || !root_user.is_empty()
    {
        out.push("runAsUser=0 (pod and containers must not set runAsUser=0)".into());
    }
    let allowed_profile = |v: Option<&Value>| {
        matches!(
            v.and_then(|p| p["type"].as_str()),
            Some("RuntimeDefault" | "Localhost")
        )
    };
    let pod_profile = allowed_profile(spec.pointer("/securityContext/seccompProfile"));
    let no_profile = which(&|c| {
        let own = c.pointer("/securityContext/seccompProfile");
        if own.is_some() {
            !allowed_profile(own)
        } else {
            !pod_profile
        }
    });
    if !no_profile.is_empty() {
        out.push(format!(
            "seccompProfile (pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")",
            containers_phrase(&no_profile)
        ));
    }
    out
}

/// The reason of the 403 for `violations` at `level`.
pub fn message(level: Level, violations: &[String]) -> String {
    format!(
        "violates PodSecurity \"{}:latest\": {}",
        level.name(),
        violations.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(container: Value) -> Value {
        json!({"spec": {"containers": [container]}})
    }

    #[test]
    fn levels_come_from_the_namespace() {
        let ns = |level: &str| json!({"metadata": {"labels": {ENFORCE: level}}});
        assert_eq!(Level::of_namespace(&ns("restricted")), Level::Restricted);
        assert_eq!(Level::of_namespace(&ns("baseline")), Level::Baseline);
        assert_eq!(Level::of_namespace(&json!({})), Level::Privileged);
    }

    #[test]
    fn privileged_pods_are_refused_above_privileged() {
        let privileged = pod(json!({"name": "c", "securityContext": {"privileged": true}}));
        assert!(violations(Level::Privileged, &privileged).is_empty());
        let baseline = violations(Level::Baseline, &privileged);
        assert_eq!(
            baseline,
            ["privileged (container \"c\" must not set securityContext.privileged=true)"]
        );
        let mut host = privileged.clone();
        host["spec"]["hostNetwork"] = json!(true);
        assert!(
            violations(Level::Baseline, &host)[0].starts_with("host namespaces (hostNetwork=true)")
        );
    }

    #[test]
    fn restricted_wants_the_hardened_settings() {
        let plain = pod(json!({"name": "c", "image": "nginx"}));
        assert!(violations(Level::Baseline, &plain).is_empty());
        let found = violations(Level::Restricted, &plain);
        assert_eq!(found.len(), 4, "{found:?}");
        assert!(message(Level::Restricted, &found).starts_with(
            "violates PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false (container \"c\" must set"
        ));
        let hardened = json!({"spec": {
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "c", "securityContext": {
                "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}],
            "volumes": [{"name": "v", "emptyDir": {}}],
        }});
        assert!(violations(Level::Restricted, &hardened).is_empty());
    }
}
