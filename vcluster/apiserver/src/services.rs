//! Service addresses, given at create as upstream's service registry gives them: a cluster
//! IP from the tenant's service range (10.96.0.0/12; `10.96.0.1` is the `kubernetes`
//! Service's) unless the Service is headless or an ExternalName, and a node port from
//! 30000–32767 for each port of a NodePort or LoadBalancer Service that names none. An
//! address asked for must be free and in range (422 otherwise, in upstream's words).
//!
//! What is taken is read fresh from the tenant's Services in the store, under the tenant's
//! allocation lock, held by `resources::create` until the Service is stored: two creates in
//! one process never get one address. (A tenant is served by one process; several would
//! need a shared allocator, as upstream's IPAddress objects are.)

use std::collections::HashSet;
use std::net::Ipv4Addr;

use rand::Rng;
use serde_json::{Value, json};
use vcluster_core::object::meta_str;
use vcluster_core::registry::{self, ResourceType};
use vcluster_core::status::{ApiError, Cause};
use vcluster_store::RangeRequest;

use crate::objects::{Result, store_error};
use crate::stored;
use crate::tenant::Tenant;

/// The tenant's service range: 10.96.0.0/12.
const RANGE_BASE: u32 = u32::from_be_bytes([10, 96, 0, 0]);
const RANGE_BITS: u32 = 12;
const RANGE_TEXT: &str = "10.96.0.0/12";
const NODE_PORTS: std::ops::RangeInclusive<i64> = 30000..=32767;

fn range_size() -> u32 {
    1 << (32 - RANGE_BITS)
}

fn in_range(ip: Ipv4Addr) -> bool {
    let offset = u32::from(ip).wrapping_sub(RANGE_BASE);
    offset > 0 && offset < range_size() - 1
}

pub(crate) fn is_service(rt: &ResourceType) -> bool {
    rt.gk() == ("", "Service")
}

/// The addresses and node ports the tenant's Services hold.
async fn taken(tenant: &Tenant, rt: &ResourceType) -> Result<(HashSet<String>, HashSet<i64>)> {
    let page = tenant
        .store
        .range(RangeRequest::prefix(registry::storage_prefix(rt, None)))
        .await
        .map_err(store_error)?;
    let (mut ips, mut ports) = (HashSet::new(), HashSet::new());
    for kv in &page.kvs {
        let Some(service) = stored::readable(kv) else {
            continue;
        };
        for ip in service
            .pointer("/spec/clusterIPs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .chain(service.pointer("/spec/clusterIP"))
            .filter_map(Value::as_str)
        {
            ips.insert(ip.to_owned());
        }
        for port in service
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(p) = port.get("nodePort").and_then(Value::as_i64) {
                ports.insert(p);
            }
        }
    }
    Ok((ips, ports))
}

fn invalid(rt: &ResourceType, service: &Value, field: &str, value: &str, why: String) -> ApiError {
    let name = meta_str(service, "name").unwrap_or_default();
    ApiError::invalid(rt, name, vec![Cause::invalid(field, value, &why)])
}

/// Gives a Service being created its cluster IP and node ports.
pub(crate) async fn allocate(
    tenant: &Tenant,
    rt: &ResourceType,
    mut service: Value,
) -> Result<Value> {
    let kind = service
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_owned();
    if kind == "ExternalName" {
        return Ok(service);
    }
    let (ips, ports) = taken(tenant, rt).await?;
    let asked = service
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .filter(|ip| !ip.is_empty())
        .map(str::to_owned);
    match asked.as_deref() {
        Some("None") => {
            service["spec"]["clusterIPs"] = json!(["None"]);
        }
        Some(ip) => {
            let parsed: Option<Ipv4Addr> = ip.parse().ok();
            let field = "spec.clusterIPs";
            let shown = format!("[\"{ip}\"]");
            if !parsed.is_some_and(in_range) {
                return Err(invalid(
                    rt,
                    &service,
                    field,
                    &shown,
                    format!(
                        "failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. The range of valid IPs is {RANGE_TEXT}"
                    ),
                ));
            }
            if ips.contains(ip) {
                return Err(invalid(
                    rt,
                    &service,
                    field,
                    &shown,
                    format!("failed to allocate IP {ip}: provided IP is already allocated"),
                ));
            }
            service["spec"]["clusterIPs"] = json!([ip]);
        }
        None => {
            let ip = free_ip(&ips).ok_or_else(|| {
                ApiError::internal("failed to allocate a serviceIP: range is full")
            })?;
            service["spec"]["clusterIP"] = json!(ip);
            service["spec"]["clusterIPs"] = json!([ip]);
        }
    }
    if asked.as_deref() != Some("None") {
        service["spec"]["ipFamilies"] = json!(["IPv4"]);
        service["spec"]["ipFamilyPolicy"] = json!("SingleStack");
    }
    if matches!(kind.as_str(), "NodePort" | "LoadBalancer") {
        allocate_node_ports(rt, &mut service, ports)?;
    }
    Ok(service)
}

fn free_ip(taken: &HashSet<String>) -> Option<String> {
    let mut rng = rand::rng();
    // Random picks first (the range is mostly free), then a scan.
    let random = (0..64).map(|_| rng.random_range(2..range_size() - 1));
    random
        .chain(2..range_size() - 1)
        .map(|offset| Ipv4Addr::from(RANGE_BASE + offset).to_string())
        .find(|ip| !taken.contains(ip))
}

fn allocate_node_ports(
    rt: &ResourceType,
    service: &mut Value,
    mut taken: HashSet<i64>,
) -> Result<()> {
    let snapshot = service.clone();
    let Some(Value::Array(ports)) = service.pointer_mut("/spec/ports") else {
        return Ok(());
    };
    let mut rng = rand::rng();
    for (i, port) in ports.iter_mut().enumerate() {
        // 0 is no port (as in Go, where it is the unset value: protobuf bodies carry it).
        match port
            .get("nodePort")
            .and_then(Value::as_i64)
            .filter(|p| *p != 0)
        {
            Some(p) => {
                let field = format!("spec.ports[{i}].nodePort");
                if !NODE_PORTS.contains(&p) {
                    return Err(invalid(
                        rt,
                        &snapshot,
                        &field,
                        &p.to_string(),
                        format!(
                            "provided port is not in the valid range. The range of valid ports is {}-{}",
                            NODE_PORTS.start(),
                            NODE_PORTS.end()
                        ),
                    ));
                }
                if !taken.insert(p) {
                    return Err(invalid(
                        rt,
                        &snapshot,
                        &field,
                        &p.to_string(),
                        "provided port is already allocated".into(),
                    ));
                }
            }
            None => {
                let random = (0..64).map(|_| rng.random_range(NODE_PORTS));
                let free = random
                    .chain(NODE_PORTS)
                    .find(|p| !taken.contains(p))
                    .ok_or_else(|| {
                        ApiError::internal("failed to allocate a nodePort: range is full")
                    })?;
                taken.insert(free);
                port["nodePort"] = json!(free);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant::KUBERNETES_IP;

    #[test]
    fn the_range_excludes_its_network_and_broadcast_addresses() {
        assert!(!in_range("10.96.0.0".parse().expect("ip")));
        assert!(in_range("10.96.0.1".parse().expect("ip")));
        assert!(in_range("10.111.255.254".parse().expect("ip")));
        assert!(!in_range("10.111.255.255".parse().expect("ip")));
        assert!(!in_range("10.112.0.1".parse().expect("ip")));
        let free = free_ip(&HashSet::from([KUBERNETES_IP.to_owned()])).expect("free");
        assert!(in_range(free.parse().expect("ip")) && free != KUBERNETES_IP);
    }

    #[test]
    fn node_ports_are_unique_and_in_range() {
        let rt = registry::find("", "v1", "services").expect("services");
        let mut svc = json!({"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}, {"port": 81, "nodePort": 30001}]}});
        allocate_node_ports(&rt, &mut svc, HashSet::new()).expect("allocated");
        let first = svc["spec"]["ports"][0]["nodePort"].as_i64().expect("port");
        assert!(NODE_PORTS.contains(&first) && first != 30001);
        let mut clash = json!({"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80, "nodePort": 30001}]}});
        let e = allocate_node_ports(&rt, &mut clash, HashSet::from([30001])).expect_err("taken");
        assert_eq!(e.code, 422);
        let mut out =
            json!({"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80, "nodePort": 80}]}});
        assert!(allocate_node_ports(&rt, &mut out, HashSet::new()).is_err());
    }
}
