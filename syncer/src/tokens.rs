//! The tenant's service-account tokens of host pods (the design note's D9). A host pod
//! never holds a host credential; in its place, each projected volume that held a token in
//! the tenant reads, from the pod's token Secret beside it on the host
//! (`translate::token_secret`), a token the *tenant* issued (a TokenRequest bound to the
//! tenant pod, with the projection's audience and life), the tenant's CA and the tenant
//! namespace. In-cluster clients of the host pod thus authenticate to the tenant API as the
//! tenant pod's service account, and to nothing on the host.
//!
//! The Secret is owned by the host pod, so the host's garbage collector deletes it with
//! the pod, and its tokens are issued again at 80% of their life, as the kubelet renews
//! projected tokens; a token bound to the tenant pod stops working once that pod is gone.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, ServiceAccount};
use kube::ResourceExt;
use kube::api::{Api, PostParams};

use crate::translate::{self, Projections};
use crate::{Ctx, Error, conflict};

/// Makes the token Secret of host pod `host` (made for tenant pod `pod`) hold fresh tokens:
/// how long until they are due again (none: the pod needs no Secret).
pub(crate) async fn ensure(ctx: &Ctx, pod: &Pod, host: &Pod) -> Result<Option<Duration>, Error> {
    let wanted = Projections::of(pod);
    if wanted.is_empty() {
        return Ok(None);
    }
    let namespace = pod.namespace().unwrap_or_default();
    let name = translate::token_secret(&pod.name_any());
    let secrets: Api<Secret> =
        Api::namespaced(ctx.host.clone(), &ctx.scope.host_namespace(&namespace));
    let existing = secrets.get_opt(&name).await.map_err(Error::Host)?;
    if let Some(secret) = &existing
        && !ctx.scope.owns(&secret.metadata)
    {
        return Err(Error::NotOurs(format!("secret {name}")));
    }
    let now = jiff::Timestamp::now();
    if let Some(due) = existing
        .as_ref()
        .filter(|s| current(s, pod, host))
        .and_then(translate::token_refresh_of)
        .filter(|due| *due > now)
    {
        return Ok(Some(until(now, due)));
    }

    let (data, due) = issue(ctx, pod, &wanted, now).await?;
    let mut secret = ctx.scope.token_secret_to_host(pod, host, data, due);
    let written = match existing {
        None => secrets.create(&PostParams::default(), &secret).await,
        Some(old) => {
            secret.metadata.resource_version = old.resource_version();
            secrets
                .replace(&name, &PostParams::default(), &secret)
                .await
        }
    };
    match written {
        Ok(_) => Ok(Some(until(now, due))),
        // Written meanwhile: looked at again shortly.
        Err(e) if conflict(&e) => Ok(Some(Duration::from_secs(1))),
        Err(e) => Err(Error::Host(e)),
    }
}

/// Whether a token Secret is this pod's: made for this tenant pod and owned by this host
/// pod (one left by an earlier pod of the same name is replaced).
fn current(secret: &Secret, pod: &Pod, host: &Pod) -> bool {
    let made_for = translate::origin(&secret.metadata).map(|o| o.uid);
    let owner = secret
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| Some(&o.uid) == host.metadata.uid.as_ref());
    made_for.as_ref() == pod.metadata.uid.as_ref() && owner
}

fn until(now: jiff::Timestamp, due: jiff::Timestamp) -> Duration {
    Duration::try_from(due.duration_since(now)).unwrap_or(Duration::from_secs(1))
}

/// What the token Secret holds: a token per projection, issued by the tenant for the
/// tenant pod's service account and bound to the pod, the tenant's CA and namespace; and
/// when the first of the tokens is due to be issued again.
async fn issue(
    ctx: &Ctx,
    pod: &Pod,
    wanted: &Projections,
    now: jiff::Timestamp,
) -> Result<(BTreeMap<String, ByteString>, jiff::Timestamp), Error> {
    let namespace = pod.namespace().unwrap_or_default();
    let account = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| "default".into());
    let accounts: Api<ServiceAccount> = Api::namespaced(ctx.tenant.clone(), &namespace);
    let mut data = BTreeMap::new();
    let mut due: Option<jiff::Timestamp> = None;
    for projection in &wanted.tokens {
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: projection.audience.iter().cloned().collect(),
                expiration_seconds: Some(projection.expiration_seconds),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(pod.name_any()),
                    uid: pod.uid(),
                }),
            },
            ..TokenRequest::default()
        };
        let issued = accounts
            .create_token_request(&account, &PostParams::default(), &request)
            .await
            .map_err(Error::Tenant)?;
        let Some(status) = issued.status else {
            return Err(Error::Unexpected("a TokenRequest answered without a token"));
        };
        data.insert(
            projection.key.clone(),
            ByteString(status.token.into_bytes()),
        );
        let refresh = translate::token_refresh(now, status.expiration_timestamp.0);
        due = Some(due.map_or(refresh, |d| d.min(refresh)));
    }
    if wanted.ca {
        let config_maps: Api<ConfigMap> = Api::namespaced(ctx.tenant.clone(), &namespace);
        let ca = config_maps
            .get("kube-root-ca.crt")
            .await
            .map_err(Error::Tenant)?
            .data
            .and_then(|d| d.get(translate::TOKEN_SECRET_CA).cloned())
            .ok_or(Error::Unexpected(
                "the tenant's kube-root-ca.crt has no ca.crt",
            ))?;
        data.insert(
            translate::TOKEN_SECRET_CA.into(),
            ByteString(ca.into_bytes()),
        );
    }
    if wanted.namespace {
        data.insert(
            translate::TOKEN_SECRET_NAMESPACE.into(),
            ByteString(namespace.into_bytes()),
        );
    }
    // With no token in it, the Secret is looked at again at the patrol.
    let due = due.unwrap_or(now + jiff::SignedDuration::from_hours(24));
    Ok((data, due))
}
