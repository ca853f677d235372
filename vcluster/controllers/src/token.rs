//! The token controller: a Secret of type `kubernetes.io/service-account-token` naming a
//! service account (`kubernetes.io/service-account.name`) gets a token for it, and
//! `ca.crt`, `namespace` and the account's uid annotation, as upstream's does. The token is
//! bound to the Secret: it authenticates while the Secret and the account exist, and lasts
//! as long as they do. A Secret whose account does not exist yet is filled when it is next
//! looked at (a resync), as upstream waits for the account too.

use std::sync::{Arc, LazyLock};

use base64::Engine;
use serde_json::{Value, json};
use vcluster_core::object::{UpdateScope, meta_str};

use crate::queue::{Key, Queue};
use crate::{Api, Change, LegacyToken, Requeue, Resource, Result};

pub(crate) static RESOURCE: LazyLock<Resource> = LazyLock::new(|| Resource::builtin("", "secrets"));

/// The annotation naming a legacy token Secret's service account.
const ACCOUNT_NAME: &str = "kubernetes.io/service-account.name";

/// Whether `secret` is a legacy token Secret still waiting for its token.
fn wants_token(secret: &Value) -> bool {
    secret["type"] == "kubernetes.io/service-account-token"
        && secret.pointer("/data/token").is_none()
        && secret
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(ACCOUNT_NAME))
            .is_some()
}

pub(crate) fn watch(change: &Change, queue: &Queue) {
    if change.resource == *RESOURCE
        && let Some(secret) = change.object.as_deref().filter(|s| wants_token(s))
        && let Some(key) = Key::of(&change.tenant, secret)
    {
        queue.add(key);
    }
}

pub(crate) async fn reconcile(api: Arc<dyn Api>, key: Key) -> Result<Requeue> {
    let tenant = &*key.tenant;
    let namespace = Some(key.namespace.as_str());
    let Some(secret) = api.get(tenant, &RESOURCE, namespace, &key.name).await? else {
        return Ok(None);
    };
    if !wants_token(&secret) {
        return Ok(None);
    }
    let account_name = secret["metadata"]["annotations"][ACCOUNT_NAME]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let accounts = Resource::builtin("", "serviceaccounts");
    let Some(account) = api.get(tenant, &accounts, namespace, &account_name).await? else {
        return Ok(None);
    };
    let uid = |o: &Value| meta_str(o, "uid").unwrap_or_default().to_owned();
    let token = api.legacy_token(
        tenant,
        &LegacyToken {
            namespace: key.namespace.clone(),
            account: account_name,
            account_uid: uid(&account),
            secret: key.name.clone(),
            secret_uid: uid(&secret),
        },
    )?;
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let mut next = secret;
    next["data"]["token"] = json!(b64(&token));
    next["data"]["ca.crt"] = json!(b64(&api.root_ca(tenant)?));
    next["data"]["namespace"] = json!(b64(&key.namespace));
    next["metadata"]["annotations"]["kubernetes.io/service-account.uid"] = json!(uid(&account));
    api.replace(tenant, &RESOURCE, &next, UpdateScope::Main)
        .await?;
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{self, Case};

    fn accounts() -> Resource {
        Resource::builtin("", "serviceaccounts")
    }

    fn robot() -> (Resource, Value) {
        let account = json!({"metadata": {"name": "robot", "namespace": "dev", "uid": "sa-1"}});
        (accounts(), account)
    }

    /// A legacy token Secret for the account `robot`, with `data`.
    fn secret(data: Value) -> (Resource, Value) {
        let secret = json!({
            "metadata": {"name": "robot-token", "namespace": "dev", "uid": "secret-1",
                "annotations": {ACCOUNT_NAME: "robot"}},
            "type": "kubernetes.io/service-account-token",
            "data": data,
        });
        (RESOURCE.clone(), secret)
    }

    #[tokio::test]
    async fn token_secrets_of_existing_accounts_are_filled_once() {
        let mut opaque = secret(json!({})).1;
        opaque["type"] = json!("Opaque");
        let fakes = fake::table(
            reconcile,
            "dev",
            "robot-token",
            vec![
                Case {
                    name: "the account exists: the Secret is filled",
                    given: vec![robot(), secret(json!({}))],
                    writes: vec!["update secrets dev/robot-token"],
                },
                Case {
                    name: "the account is missing: left until it is there",
                    given: vec![secret(json!({}))],
                    writes: vec![],
                },
                Case {
                    name: "already filled: not written again",
                    given: vec![robot(), secret(json!({"token": "dG9rZW4="}))],
                    writes: vec![],
                },
                Case {
                    name: "not a token Secret",
                    given: vec![robot(), (RESOURCE.clone(), opaque)],
                    writes: vec![],
                },
            ],
        )
        .await;
        let filled = fakes[0]
            .object(&RESOURCE, Some("dev"), "robot-token")
            .expect("the Secret");
        let decoded = |field: &str| {
            let text = filled["data"][field].as_str().expect("a data field");
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text)
                .expect("base64");
            String::from_utf8(bytes).expect("text")
        };
        let token = LegacyToken {
            namespace: "dev".into(),
            account: "robot".into(),
            account_uid: "sa-1".into(),
            secret: "robot-token".into(),
            secret_uid: "secret-1".into(),
        };
        assert_eq!(decoded("token"), fake::legacy_token(fake::TENANT, &token));
        assert_eq!(decoded("ca.crt"), fake::CA);
        assert_eq!(decoded("namespace"), "dev");
        assert_eq!(
            filled["metadata"]["annotations"]["kubernetes.io/service-account.uid"],
            "sa-1"
        );
    }
}
