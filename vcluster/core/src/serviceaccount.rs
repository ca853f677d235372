//! What upstream's `ServiceAccount` admission plugin does to a pod being created: the pod
//! runs as `default` unless it names an account, takes the account's image pull secrets
//! when it has none of its own, and, unless automounting is switched off on the pod or on
//! the account, gets a projected `kube-api-access-<suffix>` volume (a bound token, the
//! cluster's CA from `kube-root-ca.crt`, the namespace) mounted read-only at
//! [`TOKEN_MOUNT_PATH`] in every container that has nothing mounted there already.
//!
//! Looking the account up (and refusing a pod whose account does not exist) needs the store
//! and is the API server's part (`vcluster-apiserver`'s `admission.rs`).

use serde_json::{Value, json};

/// The account a pod runs as when it names none.
pub const DEFAULT_ACCOUNT: &str = "default";

/// Where a pod's containers find their service account's token.
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The projected volume's name, before its random suffix.
const VOLUME_PREFIX: &str = "kube-api-access-";

/// Upstream's bound-token lifetime for pods: an hour and seven seconds (the seven seconds
/// mark tokens the kubelet refreshes as "warn on use after an hour").
const TOKEN_EXPIRATION_SECONDS: i64 = 3607;

/// Mirror pods (a kubelet's static pods) are left as they are.
pub fn applies_to(pod: &Value) -> bool {
    pod.pointer("/metadata/annotations/kubernetes.io~1config.mirror")
        .is_none()
}

/// The account `pod` runs as, writing the default into the pod when it names none (both
/// `serviceAccountName` and its deprecated alias `serviceAccount`, as served upstream).
pub fn account(pod: &mut Value) -> String {
    let spec = &mut pod["spec"];
    let named = ["serviceAccountName", "serviceAccount"]
        .into_iter()
        .find_map(|f| spec[f].as_str().filter(|s| !s.is_empty()))
        .unwrap_or(DEFAULT_ACCOUNT)
        .to_owned();
    spec["serviceAccountName"] = json!(named);
    spec["serviceAccount"] = json!(named);
    named
}

/// Applies `account` (the ServiceAccount object the pod runs as) to `pod`; `suffix` makes
/// the name of a new token volume.
pub fn admit(pod: &mut Value, account: &Value, suffix: &str) {
    let spec = &mut pod["spec"];
    let own_secrets = spec["imagePullSecrets"]
        .as_array()
        .is_some_and(|s| !s.is_empty());
    if let Some(secrets) = account["imagePullSecrets"]
        .as_array()
        .filter(|_| !own_secrets)
    {
        spec["imagePullSecrets"] = json!(secrets);
    }
    let automount = spec["automountServiceAccountToken"]
        .as_bool()
        .or_else(|| account["automountServiceAccountToken"].as_bool())
        .unwrap_or(true);
    if automount {
        mount_token(spec, suffix);
    }
}

fn mount_token(spec: &mut Value, suffix: &str) {
    let existing = spec["volumes"].as_array().and_then(|volumes| {
        volumes.iter().find_map(|v| {
            v["name"]
                .as_str()
                .filter(|n| n.starts_with(VOLUME_PREFIX))
                .map(str::to_owned)
        })
    });
    let name = existing
        .clone()
        .unwrap_or_else(|| format!("{VOLUME_PREFIX}{suffix}"));
    let mount = json!({"name": name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
    let mut mounted = false;
    for list in ["initContainers", "containers"] {
        let Some(containers) = spec[list].as_array_mut() else {
            continue;
        };
        for c in containers {
            let taken = c["volumeMounts"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|m| m["mountPath"] == TOKEN_MOUNT_PATH);
            if taken {
                continue;
            }
            match c["volumeMounts"].as_array_mut() {
                Some(mounts) => mounts.push(mount.clone()),
                None => c["volumeMounts"] = json!([mount.clone()]),
            }
            mounted = true;
        }
    }
    if !mounted || existing.is_some() {
        return;
    }
    let volume = json!({
        "name": name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
        },
    });
    match spec["volumes"].as_array_mut() {
        Some(volumes) => volumes.push(volume),
        None => spec["volumes"] = json!([volume]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": spec})
    }

    #[test]
    fn a_pod_without_an_account_runs_as_default_and_mounts_a_token_everywhere() {
        let mut p = pod(json!({
            "initContainers": [{"name": "init", "image": "busybox"}],
            "containers": [{"name": "app", "image": "nginx", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "data", "emptyDir": {}}],
        }));
        assert_eq!(account(&mut p), "default");
        admit(&mut p, &json!({"metadata": {"name": "default"}}), "x2b4q");
        assert_eq!(p["spec"]["serviceAccountName"], "default");
        assert_eq!(p["spec"]["serviceAccount"], "default");
        let mount = json!({"name": "kube-api-access-x2b4q", "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
        assert_eq!(
            p["spec"]["initContainers"][0]["volumeMounts"],
            json!([mount])
        );
        assert_eq!(p["spec"]["containers"][0]["volumeMounts"][1], mount);
        let volumes = p["spec"]["volumes"].as_array().expect("an array");
        assert_eq!(volumes.len(), 2);
        assert_eq!(volumes[1]["name"], "kube-api-access-x2b4q");
        let sources = volumes[1]["projected"]["sources"]
            .as_array()
            .expect("an array");
        assert_eq!(sources[0]["serviceAccountToken"]["expirationSeconds"], 3607);
        assert_eq!(sources[1]["configMap"]["name"], "kube-root-ca.crt");
        assert_eq!(
            sources[2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"],
            "metadata.namespace"
        );
    }

    #[test]
    fn the_deprecated_field_names_the_account_too() {
        let mut p = pod(json!({"serviceAccount": "builder", "containers": []}));
        assert_eq!(account(&mut p), "builder");
        assert_eq!(p["spec"]["serviceAccountName"], "builder");
    }

    #[test]
    fn automount_is_switched_off_by_the_pod_first_then_the_account() {
        let containers = json!([{"name": "app", "image": "nginx"}]);
        let off = json!({"automountServiceAccountToken": false});
        let mut p = pod(json!({"containers": containers}));
        admit(&mut p, &off, "aaaaa");
        assert!(p["spec"].get("volumes").is_none());
        let mut p = pod(json!({"containers": containers, "automountServiceAccountToken": true}));
        admit(&mut p, &off, "aaaaa");
        assert_eq!(p["spec"]["volumes"][0]["name"], "kube-api-access-aaaaa");
        let mut p = pod(json!({"containers": containers, "automountServiceAccountToken": false}));
        admit(&mut p, &json!({}), "aaaaa");
        assert!(p["spec"].get("volumes").is_none());
    }

    #[test]
    fn a_container_with_its_own_mount_at_the_token_path_keeps_it() {
        let own = json!({"name": "mine", "mountPath": TOKEN_MOUNT_PATH});
        let mut p = pod(json!({
            "containers": [{"name": "app", "image": "nginx", "volumeMounts": [own]}],
            "volumes": [{"name": "mine", "secret": {"secretName": "s"}}],
        }));
        admit(&mut p, &json!({}), "aaaaa");
        assert_eq!(p["spec"]["containers"][0]["volumeMounts"], json!([own]));
        assert_eq!(p["spec"]["volumes"].as_array().expect("an array").len(), 1);
    }

    #[test]
    fn an_existing_token_volume_is_reused() {
        let mut p = pod(json!({
            "containers": [{"name": "app", "image": "nginx"}],
            "volumes": [{"name": "kube-api-access-abcde", "projected": {"sources": []}}],
        }));
        admit(&mut p, &json!({}), "zzzzz");
        assert_eq!(
            p["spec"]["containers"][0]["volumeMounts"][0]["name"],
            "kube-api-access-abcde"
        );
        assert_eq!(p["spec"]["volumes"].as_array().expect("an array").len(), 1);
    }

    #[test]
    fn the_accounts_pull_secrets_fill_in_only_when_the_pod_has_none() {
        let account = json!({"imagePullSecrets": [{"name": "registry"}]});
        let mut p = pod(json!({"containers": []}));
        admit(&mut p, &account, "aaaaa");
        assert_eq!(p["spec"]["imagePullSecrets"], json!([{"name": "registry"}]));
        let mut p = pod(json!({"containers": [], "imagePullSecrets": [{"name": "own"}]}));
        admit(&mut p, &account, "aaaaa");
        assert_eq!(p["spec"]["imagePullSecrets"], json!([{"name": "own"}]));
    }
}
