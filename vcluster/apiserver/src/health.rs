//! `/healthz`, `/livez` and `/readyz`, as kube-apiserver answers them: named checks, each
//! also reachable alone (`/readyz/etcd`), `?verbose` listing them (`[+]etcd ok`), `?exclude=`
//! leaving some out, and a failure answered with 500 and the failed checks' names (their
//! reasons withheld, as upstream, so the unauthenticated probe tells nothing more).
//!
//! The checks: `ping` (the server answers), `log` (always passes: logging cannot block),
//! `etcd` (the store answers a read within two seconds: etcd, or the embedded store, under
//! upstream's name so that tools probing `/livez/etcd` find it), and for readiness
//! `shutdown` (fails once the server has begun to drain, so load balancers stop sending
//! new requests before it stops).

use std::collections::HashMap;
use std::time::Duration;

use http::{Response, StatusCode};

use crate::http::{Body, text};
use crate::router::Probe;
use crate::tenant::Tenants;

/// How long the store may take to answer the `etcd` check.
const STORE_TIMEOUT: Duration = Duration::from_secs(2);

impl Probe {
    fn name(self) -> &'static str {
        match self {
            Self::Healthz => "healthz",
            Self::Livez => "livez",
            Self::Readyz => "readyz",
        }
    }

    fn checks(self) -> &'static [&'static str] {
        match self {
            Self::Healthz | Self::Livez => &["ping", "log", "etcd"],
            Self::Readyz => &["ping", "log", "etcd", "shutdown"],
        }
    }
}

/// Whether a check passes. Every check is the process's (the store is every tenant's), so
/// the probes answer alike whichever tenant a path names, or none.
async fn passes(tenants: &Tenants, check: &str) -> bool {
    match check {
        "etcd" => matches!(
            tokio::time::timeout(STORE_TIMEOUT, tenants.backend().current_revision()).await,
            Ok(Ok(_))
        ),
        "shutdown" => !tenants.is_draining(),
        _ => true,
    }
}

pub(crate) async fn answer(
    tenants: &Tenants,
    probe: Probe,
    only: Option<&str>,
    params: &HashMap<String, String>,
) -> Response<Body> {
    if let Some(check) = only {
        if !probe.checks().contains(&check) {
            return text(StatusCode::NOT_FOUND, "404 page not found\n".to_owned());
        }
        return if passes(tenants, check).await {
            text(StatusCode::OK, "ok".to_owned())
        } else {
            let body = format!("internal server error: {check} check failed\n");
            text(StatusCode::INTERNAL_SERVER_ERROR, body)
        };
    }
    let excluded: Vec<&str> = params
        .get("exclude")
        .map(|e| e.split(',').collect())
        .unwrap_or_default();
    let mut lines = String::new();
    let mut failed = false;
    for check in probe.checks().iter().filter(|c| !excluded.contains(c)) {
        if passes(tenants, check).await {
            lines.push_str(&format!("[+]{check} ok\n"));
        } else {
            failed = true;
            lines.push_str(&format!("[-]{check} failed: reason withheld\n"));
        }
    }
    for check in &excluded {
        if probe.checks().contains(check) {
            lines.push_str(&format!("[+]{check} excluded: ok\n"));
        }
    }
    let verbose = params.contains_key("verbose");
    if failed {
        let body = format!("{lines}{} check failed\n", probe.name());
        tracing::warn!(probe = probe.name(), checks = %lines.trim_end(), "health check failed");
        text(StatusCode::INTERNAL_SERVER_ERROR, body)
    } else if verbose {
        text(
            StatusCode::OK,
            format!("{lines}{} check passed\n", probe.name()),
        )
    } else {
        text(StatusCode::OK, "ok".to_owned())
    }
}
