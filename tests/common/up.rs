//! A running `vcluster up`, and its tenants.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use vcluster_testkit::clients::Kubectl;
use vcluster_testkit::tether::{self, Tethered};
use vcluster_testkit::{EtcdCluster, free_port};

use crate::vcluster_bin;

#[derive(Clone, Copy, Debug)]
pub enum StoreKind {
    Embedded,
    Etcd,
}

/// A running `vcluster up` on a free loopback port and a temporary data directory. Dropping
/// it kills it; one kept in a static (a server the tests of a binary share) is killed, and
/// its directory removed, when the test process exits (it is tethered:
/// `vcluster_testkit::tether`).
pub struct Up {
    process: Option<Tethered>,
    dir: tempfile::TempDir,
    port: u16,
    /// The tenants asked for with --tenant (none: only `default`).
    tenants: Vec<String>,
    simulated_nodes: usize,
    /// `--store ...` and what goes with it, and any other options a test asks for.
    store_args: Vec<String>,
    /// The most files the process may open (`prlimit --nofile`), if a test sets it.
    open_files: Option<u64>,
    /// An etcd member of its own, so that the tenants of different test binaries and runs,
    /// which have the same names, never meet.
    _etcd: Option<EtcdCluster>,
    /// What the process is, and so where its pods run.
    role: Role,
    /// The host clusters this one's pods run in (`--host`), when it has some of its own.
    host_clusters: Vec<(String, Up)>,
}

/// What a server process is, and so where its pods run.
#[derive(Clone, Debug)]
enum Role {
    /// `vcluster up --no-host --tenant-simulated-nodes N`: the tenants' own simulated nodes
    /// run their pods (none with N = 0).
    InTenants,
    /// `vcluster up --host ...` (the host given with the options): a host cluster runs them.
    OnHost,
    /// `vcluster up --simulated-nodes N`: its embedded host cluster `local` runs them.
    OnEmbeddedHost,
    /// `vcluster host --name <name> --simulated-nodes N`: a stand-in host cluster.
    Host(String),
}

/// The tenant a scenario runs in: its name with `-` for `_` (tenant names are DNS labels).
fn tenant_name(scenario: &str) -> String {
    scenario.replace('_', "-")
}

impl Up {
    /// Serves `tenants` (named after scenarios: see [`Up::tenant`]; none: only `default`),
    /// with no host cluster and `simulated_nodes` nodes in each tenant, which run its pods
    /// (`--no-host --tenant-simulated-nodes`); returns once every tenant answers and has its
    /// nodes.
    pub fn start(store: StoreKind, tenants: &[&str], simulated_nodes: usize) -> Self {
        Self::start_with(store, tenants, simulated_nodes, &[])
    }

    /// [`Up::start`] with more options for `vcluster up` (`--tls-san ...`).
    pub fn start_with(
        store: StoreKind,
        tenants: &[&str],
        simulated_nodes: usize,
        options: &[&str],
    ) -> Self {
        Self::launch(store, tenants, simulated_nodes, options, Role::InTenants)
    }

    /// `vcluster up` as a newcomer runs it: no `--host`, so its pods run in the embedded
    /// host cluster `local`, with `host_nodes` nodes there and none in the tenants.
    pub fn start_embedded(store: StoreKind, tenants: &[&str], host_nodes: usize) -> Self {
        Self::launch(store, tenants, host_nodes, &[], Role::OnEmbeddedHost)
    }

    fn launch(
        store: StoreKind,
        tenants: &[&str],
        simulated_nodes: usize,
        options: &[&str],
        role: Role,
    ) -> Self {
        let etcd = match store {
            StoreKind::Embedded => None,
            StoreKind::Etcd => Some(EtcdCluster::single()),
        };
        let mut store_args = match &etcd {
            None => vec![],
            Some(etcd) => vec![
                "--store".to_owned(),
                "etcd".to_owned(),
                "--etcd-endpoints".to_owned(),
                etcd.endpoints().join(","),
            ],
        };
        store_args.extend(options.iter().map(|o| (*o).to_owned()));
        let mut up = Self::unstarted("vcluster-up-", simulated_nodes, role);
        up.tenants = tenants.iter().map(|t| tenant_name(t)).collect();
        up.store_args = store_args;
        up._etcd = etcd;
        up.spawn();
        up
    }

    /// A server not started yet, on an embedded store in a new data directory.
    fn unstarted(prefix: &str, simulated_nodes: usize, role: Role) -> Self {
        Self {
            process: None,
            dir: tempfile::Builder::new()
                .prefix(prefix)
                .tempdir()
                .expect("data directory"),
            port: free_port(),
            tenants: Vec::new(),
            simulated_nodes,
            store_args: Vec::new(),
            open_files: None,
            _etcd: None,
            role,
            host_clusters: Vec::new(),
        }
    }

    /// A stand-in host cluster: `vcluster host --name <name>` with `simulated_nodes` nodes
    /// (embedded store); returns once it answers and lists its nodes. Its admin kubeconfig
    /// is [`Up::kubeconfig`].
    pub fn host(name: &str, simulated_nodes: usize) -> Self {
        let mut host = Self::unstarted(
            "vcluster-host-",
            simulated_nodes,
            Role::Host(name.to_owned()),
        );
        host.spawn();
        host
    }

    /// [`Up::start`] whose tenants' pods run in a host cluster of its own (`vcluster host
    /// --name local` with `host_nodes` nodes, passed as `--host local=<its kubeconfig>`),
    /// which lives as long as it does. The tenants have no nodes of their own.
    pub fn start_on_host(store: StoreKind, tenants: &[&str], host_nodes: usize) -> Self {
        Self::start_on_hosts(store, tenants, &["local"], host_nodes, &[])
    }

    /// [`Up::start_on_host`] with a host cluster of its own for each of `hosts` (each
    /// `vcluster host` with `host_nodes` nodes, started together), and more options.
    pub fn start_on_hosts(
        store: StoreKind,
        tenants: &[&str],
        hosts: &[&str],
        host_nodes: usize,
        options: &[&str],
    ) -> Self {
        let started: Vec<(String, Up)> = std::thread::scope(|scope| {
            let starting: Vec<_> = hosts
                .iter()
                .map(|name| scope.spawn(move || ((*name).to_owned(), Self::host(name, host_nodes))))
                .collect();
            starting
                .into_iter()
                .map(|h| h.join().expect("a host cluster starts"))
                .collect()
        });
        let host_options: Vec<String> = started
            .iter()
            .flat_map(|(name, host)| {
                [
                    "--host".to_owned(),
                    format!("{name}={}", host.kubeconfig().display()),
                ]
            })
            .collect();
        let mut all: Vec<&str> = host_options.iter().map(String::as_str).collect();
        all.extend(options);
        let mut up = Self::launch(store, tenants, 0, &all, Role::OnHost);
        up.host_clusters = started;
        up
    }

    /// Host cluster `name` of [`Up::start_on_hosts`], to kill and start again.
    pub fn host_cluster_mut(&mut self, name: &str) -> &mut Up {
        &mut self
            .host_clusters
            .iter_mut()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no host cluster {name}"))
            .1
    }

    /// Kills the server at once (SIGKILL), as a machine lost would; [`Up::restart`] starts
    /// it again.
    pub fn kill(&mut self) {
        self.process.take();
    }

    /// The default tenant alone, on an embedded store, in a process that may open at most
    /// `open_files` files (soft and hard limit, set by util-linux's `prlimit`).
    pub fn start_with_open_files(open_files: u64) -> Self {
        // Started once as usual, then again on the same data directory within the limit.
        let mut up = Self::start(StoreKind::Embedded, &[], 0);
        up.open_files = Some(open_files);
        up.restart();
        up
    }

    /// The port it serves on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        let process = self.process.as_mut().expect("a running server");
        matches!(process.try_wait(), Ok(None))
    }

    fn spawn(&mut self) {
        let mut command = match self.open_files {
            None => tether::command(vcluster_bin(), Some(self.dir.path())),
            Some(n) => {
                let mut command = tether::command("prlimit", Some(self.dir.path()));
                command
                    .arg(format!("--nofile={n}:{n}"))
                    .arg("--")
                    .arg(vcluster_bin());
                command
            }
        };
        let nodes = self.simulated_nodes.to_string();
        match &self.role {
            Role::InTenants => {
                command.args(["up", "--no-host", "--tenant-simulated-nodes", &nodes])
            }
            Role::OnHost => command.arg("up"),
            Role::OnEmbeddedHost => command.args(["up", "--simulated-nodes", &nodes]),
            Role::Host(name) => command.args(["host", "--name", name, "--simulated-nodes", &nodes]),
        };
        command
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .arg("--data-dir")
            .arg(self.dir.path())
            .args(&self.store_args)
            .args(self.tenants.iter().flat_map(|t| ["--tenant", t.as_str()]))
            .env("VCLUSTER_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        self.process = Some(Tethered::spawn(&mut command).expect("start vcluster up"));
        self.wait_ready();
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.process.as_ref().expect("a running server").id()
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `<data-dir>/kubeconfig`: the first tenant's admin, reaching it without SNI.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// The tenant of a scenario (`Up::start` was given its name).
    pub fn tenant(&self, scenario: &str) -> Tenant {
        let name = tenant_name(scenario);
        assert!(
            self.tenants.contains(&name),
            "tenant {name} is not served: {:?}",
            self.tenants
        );
        Tenant {
            kubeconfig: self
                .dir
                .path()
                .join("tenants")
                .join(&name)
                .join("kubeconfig"),
            name,
            host_kubeconfigs: self.host_kubeconfigs(),
        }
    }

    /// The name and admin kubeconfig of each host cluster its pods run in.
    fn host_kubeconfigs(&self) -> Vec<(String, PathBuf)> {
        match self.role {
            Role::OnHost => self
                .host_clusters
                .iter()
                .map(|(name, h)| (name.clone(), h.kubeconfig()))
                .collect(),
            Role::OnEmbeddedHost => vec![("local".to_owned(), self.embedded_host_kubeconfig())],
            Role::InTenants | Role::Host(_) => Vec::new(),
        }
    }

    /// `<data-dir>/hosts/local/kubeconfig`: the embedded host cluster's admin.
    pub fn embedded_host_kubeconfig(&self) -> PathBuf {
        self.dir
            .path()
            .join("hosts")
            .join("local")
            .join("kubeconfig")
    }

    /// Each tenant's admin kubeconfig (only `default`'s: `<data-dir>/kubeconfig`, when no
    /// --tenant was given).
    fn tenant_kubeconfigs(&self) -> Vec<PathBuf> {
        if self.tenants.is_empty() {
            return vec![self.kubeconfig()];
        }
        self.tenants
            .iter()
            .map(|t| self.tenant(t).kubeconfig)
            .collect()
    }

    /// Asks the server to stop as process managers do (SIGTERM) and waits until it has:
    /// how it exited. Its data directory stays, for [`Up::restart`].
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let process = self.process.as_mut().expect("a running server");
        let pid = process.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -TERM {pid} failed");
        process.wait().expect("wait for vcluster up")
    }

    /// Kills the server and starts it again on the same data directory and port; returns
    /// once it serves again, with kubeconfigs it wrote anew.
    pub fn restart(&mut self) {
        self.process.take();
        let mut written = self.tenant_kubeconfigs();
        written.push(self.kubeconfig());
        written.dedup();
        for kubeconfig in written {
            std::fs::remove_file(&kubeconfig)
                .unwrap_or_else(|e| panic!("remove {}: {e}", kubeconfig.display()));
        }
        self.spawn();
    }

    /// Until the server answers `/healthz` (it has written every kubeconfig by then), then
    /// until every tenant lists its simulated nodes.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let kubeconfigs = self.tenant_kubeconfigs();
        let k = Kubectl::new("v36", self.kubeconfig());
        loop {
            if let Some(Ok(Some(status))) = self.process.as_mut().map(Tethered::try_wait) {
                panic!("vcluster up exited during start-up ({status})");
            }
            if self.kubeconfig().exists() && k.run(&["get", "--raw", "/healthz"]).ok {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "vcluster up did not serve within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        for kubeconfig in &kubeconfigs {
            assert!(
                kubeconfig.exists(),
                "{} was not written",
                kubeconfig.display()
            );
            if self.simulated_nodes > 0 && matches!(self.role, Role::InTenants | Role::Host(_)) {
                self.wait_for_nodes(kubeconfig);
            }
        }
        if self.simulated_nodes > 0 && matches!(self.role, Role::OnEmbeddedHost) {
            self.wait_for_nodes(&self.embedded_host_kubeconfig());
        }
    }

    /// Until the cluster of `kubeconfig` lists the simulated nodes.
    fn wait_for_nodes(&self, kubeconfig: &Path) {
        Kubectl::new("v36", kubeconfig).eventually(&["get", "nodes", "-o", "name"], |out| {
            out.lines().count() >= self.simulated_nodes
        });
    }
}

/// One tenant of a running [`Up`].
pub struct Tenant {
    pub name: String,
    kubeconfig: PathBuf,
    /// The name and admin kubeconfig of each host cluster its pods run in.
    host_kubeconfigs: Vec<(String, PathBuf)>,
}

impl Tenant {
    /// Its admin kubeconfig, reaching it by SNI (`<name>.vcluster.local`).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// A kubectl of one version (`v33`, `v36`) for its admin.
    pub fn kubectl(&self, version: &str) -> Kubectl {
        Kubectl::new(version, &self.kubeconfig)
    }

    /// The admin kubeconfig of the (first) host cluster its pods run in
    /// ([`Up::start_on_host`]).
    pub fn host_kubeconfig(&self) -> &Path {
        &self
            .host_kubeconfigs
            .first()
            .expect("a tenant of a server with a host cluster")
            .1
    }

    /// A kubectl of one version for the admin of the (first) host cluster its pods run in.
    pub fn host_kubectl(&self, version: &str) -> Kubectl {
        Kubectl::new(version, self.host_kubeconfig())
    }

    /// A kubectl of one version for the admin of host cluster `name`
    /// ([`Up::start_on_hosts`]).
    pub fn kubectl_of_host(&self, name: &str, version: &str) -> Kubectl {
        let (_, kubeconfig) = self
            .host_kubeconfigs
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no host cluster {name}"));
        Kubectl::new(version, kubeconfig)
    }
}
