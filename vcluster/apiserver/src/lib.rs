//! `vcluster-apiserver`: the tenant control plane's Kubernetes API, for many tenants in one
//! process, over a [`vcluster_store::Backend`].
//!
//! Start reading at `server.rs` (the listener), then `api.rs` (which tenant, who is asking,
//! which endpoint), `resources.rs` (CRUD) and `watch.rs` with `cache.rs` (watches). The
//! resources themselves are described once, in `vcluster_core::registry`.

mod accounts;
mod admission;
mod api;
mod authz;
mod cache;
mod crds;
mod feed;
mod handlers;
mod health;
mod http;
mod identity;
mod inflight;
mod kubelet;
mod limits;
mod list;
mod metrics;
mod objects;
mod openapi;
mod reviews;
mod router;
mod server;
mod services;
mod stored;
mod tenant;
mod tls;
mod tokens;
mod types;
mod watch;
mod write;

pub use api::{Connection, KUBE_VERSION, User, handle};
pub use identity::Kubeconfig;
pub use inflight::{Gate, Held, TimedOut};
pub use limits::{Limits, raise_open_files_limit};
pub use server::{DRAIN_TIMEOUT, serve, serve_until};
pub use tenant::{BOOTSTRAP_NAMESPACES, Error as TenantError, Tenant, Tenants};

impl Tenant {
    /// A kubeconfig for this tenant's admin (cluster-admin of this tenant only), reaching
    /// the server at `server` (`https://host:port`). `by_name` adds the tenant's host name as
    /// `tls-server-name`, for servers that serve several tenants on one address.
    pub fn admin_kubeconfig(
        &self,
        tenants: &Tenants,
        server: &str,
        by_name: bool,
    ) -> Result<String, identity::Error> {
        let (cert, key) = self.identity.issue_client("admin", &["system:masters"])?;
        let host = tenants.host(&self.name);
        Ok(Kubeconfig {
            cluster: &self.name,
            server,
            tls_server_name: by_name.then_some(host.as_str()),
            ca_pem: self.identity.ca_cert_pem(),
            user: "admin",
            client_cert_pem: Some(&cert),
            client_key_pem: Some(&key),
            token: None,
        }
        .render())
    }

    /// The same, authenticating with the tenant admin's bearer token instead of a client
    /// certificate.
    pub fn admin_token_kubeconfig(&self, tenants: &Tenants, server: &str, by_name: bool) -> String {
        let host = tenants.host(&self.name);
        Kubeconfig {
            cluster: &self.name,
            server,
            tls_server_name: by_name.then_some(host.as_str()),
            ca_pem: self.identity.ca_cert_pem(),
            user: "admin",
            client_cert_pem: None,
            client_key_pem: None,
            token: Some(self.identity.admin_token()),
        }
        .render()
    }
}
