//! A pod's kubelet endpoints through the API server: `pods/log`, `pods/exec`, `pods/attach`
//! and `pods/portforward`. As kube-apiserver, the pod is checked first (its container, its
//! node), then the node's kubelet is located (its preferred address and
//! `daemonEndpoints.kubeletEndpoint.Port`) and dialled; a dial that fails is answered as
//! upstream answers it (a 500 naming the address and the dial error).
//!
//! Not yet: proxying the kubelet's answer. No node of a tenant runs a kubelet API today
//! (the node simulator registers nodes only); the syncer issue gives the host clusters'
//! simulated nodes one, and the proxying comes with it. A kubelet that does answer is met
//! with a 501 that says so, never a pretended success.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use serde_json::Value;
use vcluster_core::object::meta_str;
use vcluster_core::registry;
use vcluster_core::status::{ApiError, Reason};

use crate::objects::{Result, get};
use crate::router::Target;
use crate::tenant::Tenant;

/// How long a kubelet may take to accept a connection.
const DIAL_TIMEOUT: Duration = Duration::from_secs(3);

/// The kubelet's port when a node does not say (upstream's `--kubelet-port` default).
const DEFAULT_PORT: u64 = 10250;

/// The address types tried, in kube-apiserver's default `--kubelet-preferred-address-types`.
const PREFERRED: [&str; 5] = [
    "Hostname",
    "InternalDNS",
    "InternalIP",
    "ExternalDNS",
    "ExternalIP",
];

/// Answers a request for one of a pod's kubelet endpoints (`subresource`).
pub(crate) async fn connect(
    tenant: &Tenant,
    target: &Target,
    subresource: &str,
    params: &HashMap<String, String>,
) -> Result<Infallible> {
    let pod = get(tenant, target).await?;
    let name = meta_str(&pod, "name").unwrap_or_default().to_owned();
    let namespace = meta_str(&pod, "namespace").unwrap_or_default().to_owned();
    let container = match subresource {
        "portforward" => String::new(),
        _ => container(&pod, &name, params.get("container").map(String::as_str))?,
    };
    let node_name = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(format!("pod {name} does not have a host assigned"))
        })?;
    let nodes = registry::find("", "v1", "nodes").expect("nodes are built in");
    let node = get(
        tenant,
        &Target {
            rt: nodes,
            namespace: None,
            name: Some(node_name.to_owned()),
            subresource: None,
        },
    )
    .await?;
    let (host, port) = kubelet_address(&node)?;
    let failure = match dial(&host, port).await {
        Ok(()) => {
            return Err(ApiError::new(
                501,
                Reason::Unknown,
                format!(
                    "proxying pods/{subresource} to the kubelet at {host}:{port} is not implemented yet"
                ),
            ));
        }
        Err(failure) => failure,
    };
    let dialled = format!("dial tcp{failure}");
    let message = match subresource {
        "log" => format!(
            "Get \"https://{}/containerLogs/{namespace}/{name}/{container}\": {dialled}",
            join(&host, port)
        ),
        _ => format!("error dialing backend: {dialled}"),
    };
    Err(ApiError::new(500, Reason::Unknown, message))
}

/// The container a request names, or the pod's only one; upstream's 400s otherwise.
fn container(pod: &Value, name: &str, asked: Option<&str>) -> Result<String> {
    let names: Vec<&str> = ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .flat_map(|list| {
            pod.pointer(&format!("/spec/{list}"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|c| c["name"].as_str())
        })
        .collect();
    match asked.filter(|c| !c.is_empty()) {
        Some(c) if names.contains(&c) => Ok(c.to_owned()),
        Some(c) => Err(ApiError::bad_request(format!(
            "container {c} is not valid for pod {name}"
        ))),
        None => {
            let main: Vec<&str> = pod
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|c| c["name"].as_str())
                .collect();
            match main.as_slice() {
                [only] => Ok((*only).to_owned()),
                many => Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    many.join(" ")
                ))),
            }
        }
    }
}

/// The kubelet's host and port, from the node's status.
fn kubelet_address(node: &Value) -> Result<(String, u16)> {
    let addresses: Vec<(&str, &str)> = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|a| Some((a["type"].as_str()?, a["address"].as_str()?)))
        .collect();
    let host = PREFERRED
        .iter()
        .find_map(|kind| addresses.iter().find(|(t, _)| t == kind).map(|(_, a)| *a))
        .ok_or_else(|| {
            let known: Vec<String> = addresses
                .iter()
                .map(|(t, a)| format!("{{{t} {a}}}"))
                .collect();
            ApiError::new(
                500,
                Reason::Unknown,
                format!(
                    "no preferred addresses found; known addresses: [{}]",
                    known.join(" ")
                ),
            )
        })?;
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .filter(|p| *p > 0)
        .unwrap_or(DEFAULT_PORT);
    let port = u16::try_from(port)
        .map_err(|_| ApiError::new(500, Reason::Unknown, format!("invalid kubelet port {port}")))?;
    Ok((host.to_owned(), port))
}

/// `host:port`, with brackets around an IPv6 address, as Go joins them.
fn join(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Connects to the kubelet, or says why not in Go's words, after `dial tcp`: `: lookup
/// <host>: no such host`, or ` <address>: connect: connection refused` (or `: i/o timeout`).
async fn dial(host: &str, port: u16) -> Result<(), String> {
    let addresses: Vec<std::net::SocketAddr> = match tokio::net::lookup_host((host, port)).await {
        Ok(found) => found.collect(),
        Err(_) => return Err(format!(": lookup {host}: no such host")),
    };
    let Some(address) = addresses.first() else {
        return Err(format!(": lookup {host}: no such host"));
    };
    let shown = join(host, port);
    match tokio::time::timeout(DIAL_TIMEOUT, tokio::net::TcpStream::connect(address)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!(" {shown}: {}", connect_error(&e))),
        Err(_) => Err(format!(" {shown}: i/o timeout")),
    }
}

/// A failed connect in Go's words (`connect: connection refused`).
fn connect_error(e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::ConnectionRefused => "connect: connection refused".to_owned(),
        ErrorKind::HostUnreachable => "connect: no route to host".to_owned(),
        ErrorKind::NetworkUnreachable => "connect: network is unreachable".to_owned(),
        ErrorKind::TimedOut => "i/o timeout".to_owned(),
        _ => format!("connect: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers_are_chosen_as_upstream_chooses_them() {
        let pod = json!({"spec": {"containers": [{"name": "web"}, {"name": "log"}], "initContainers": [{"name": "init"}]}});
        assert_eq!(container(&pod, "p", Some("log")).expect("valid"), "log");
        assert_eq!(container(&pod, "p", Some("init")).expect("valid"), "init");
        let e = container(&pod, "p", Some("db")).expect_err("invalid");
        assert_eq!(e.message, "container db is not valid for pod p");
        let e = container(&pod, "p", None).expect_err("ambiguous");
        assert_eq!(
            e.message,
            "a container name must be specified for pod p, choose one of: [web log]"
        );
        let single = json!({"spec": {"containers": [{"name": "web"}]}});
        assert_eq!(container(&single, "p", None).expect("the only one"), "web");
    }

    #[test]
    fn the_kubelet_is_found_at_the_preferred_address() {
        let node = json!({"status": {
            "addresses": [{"type": "ExternalIP", "address": "1.2.3.4"}, {"type": "InternalIP", "address": "10.0.0.7"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10255}},
        }});
        assert_eq!(
            kubelet_address(&node).expect("found"),
            ("10.0.0.7".to_owned(), 10255)
        );
        let bare = json!({"status": {"addresses": [{"type": "InternalIP", "address": "fd00::1"}]}});
        let (host, port) = kubelet_address(&bare).expect("found");
        assert_eq!(join(&host, port), "[fd00::1]:10250");
        let none = kubelet_address(&json!({"status": {}})).expect_err("no address");
        assert_eq!(
            none.message,
            "no preferred addresses found; known addresses: []"
        );
    }
}
