//! `vcluster`: the command line. `vcluster up` runs the control plane in the foreground.
//!
//! The binary (`src/main.rs`) parses the arguments into [`Cli`], sets up logging and the
//! crypto provider, and hands over to [`run`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use vcluster_apiserver::Tenants;
use vcluster_store::{
    Backend, CompactionPolicy, Compactor, Embedded, EmbeddedOptions, Etcd, EtcdOptions,
};

/// The command line.
#[derive(Parser)]
#[command(name = "vcluster", version, about = "Virtual Kubernetes clusters")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the control plane in the foreground, serving the tenants of --tenant (`default`
    /// unless told otherwise). Their pods run in the host clusters of --host or, without
    /// one, in an embedded host cluster `local` with --simulated-nodes nodes.
    Up(UpArgs),
    /// Run a stand-in host cluster in the foreground: the API server serving one cluster
    /// (named --name) with --simulated-nodes nodes, its admin kubeconfig at
    /// `<data-dir>/kubeconfig`. What tests and `vcluster up --host` use where no real
    /// cluster is at hand.
    Host(HostArgs),
    /// Run the syncer alone in the foreground: the tenants of --tenant (reached by their
    /// kubeconfigs, through the public API) sync their pods to the host cluster of --host.
    /// What `vcluster up --host` runs in-process.
    Syncer(SyncerArgs),
}

#[derive(Clone, Copy, ValueEnum)]
pub enum StoreKind {
    /// One file under --data-dir.
    Embedded,
    /// A real etcd cluster (--etcd-endpoints).
    Etcd,
}

/// What `vcluster up` and `vcluster host` both take: where the data goes, where to serve,
/// the store, simulated nodes and the server's limits.
#[derive(clap::Args, Clone)]
pub struct ServeArgs {
    /// Where the embedded store and the kubeconfig go.
    #[arg(long, env = "VCLUSTER_DATA_DIR", default_value = ".vcluster")]
    pub data_dir: PathBuf,
    /// The address to serve the Kubernetes API on.
    #[arg(long, env = "VCLUSTER_LISTEN", default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    #[arg(long, value_enum, default_value = "embedded")]
    pub store: StoreKind,
    /// Comma-separated etcd client URLs, for --store etcd.
    #[arg(long, env = "VCLUSTER_ETCD_ENDPOINTS", value_delimiter = ',')]
    pub etcd_endpoints: Vec<String>,
    /// Register this many simulated nodes in the host cluster pods run in (the embedded
    /// `local` of `vcluster up`, the cluster `vcluster host` serves) and play their scheduler
    /// and kubelet: pods are bound, then Running and Ready; Jobs' pods complete.
    #[arg(long, env = "VCLUSTER_SIMULATED_NODES", default_value_t = 0)]
    pub simulated_nodes: usize,
    /// An extra DNS name or IP address for the serving certificate, for clients that reach
    /// the server by another name (repeatable, or comma-separated).
    #[arg(
        long,
        env = "VCLUSTER_TLS_SAN",
        value_delimiter = ',',
        value_name = "NAME"
    )]
    pub tls_san: Vec<String>,
    /// The most requests other than watches and streams answered at once; past it a 429
    /// (0: no limit). As kube-apiserver's flag.
    #[arg(long, default_value_t = 400)]
    pub max_requests_inflight: usize,
    /// The most mutating requests answered at once; past it a 429 (0: no limit). As
    /// kube-apiserver's flag.
    #[arg(long, default_value_t = 200)]
    pub max_mutating_requests_inflight: usize,
    /// The most of `--max-requests-inflight` one tenant may hold at once; past it a 429,
    /// its admin included (0: no share). Only the default tenant's admin, the platform's,
    /// is never refused.
    #[arg(long, default_value_t = 100)]
    pub max_requests_inflight_per_tenant: usize,
    /// The most of `--max-mutating-requests-inflight` one tenant may hold at once (0: no
    /// share).
    #[arg(long, default_value_t = 50)]
    pub max_mutating_requests_inflight_per_tenant: usize,
    /// How long a request other than a watch or a stream may take, sending its answer
    /// included (`60s`, `1m`). As kube-apiserver's flag.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// The most streams one HTTP/2 connection may have open at once. As
    /// kube-apiserver's flag (0: its default, 100).
    #[arg(long, default_value_t = 0)]
    pub http2_max_streams_per_connection: u32,
}

/// `vcluster up`'s arguments.
#[derive(clap::Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    /// A tenant to serve, opened or created in the store (repeatable, or comma-separated in
    /// the environment). The first is also the one served to requests that name none (by
    /// the SNI host `<name>.vcluster.local` or the path prefix `/clusters/<name>`). Each
    /// tenant's admin kubeconfig goes to `<data-dir>/tenants/<name>/kubeconfig` (reaching it
    /// by SNI), the first's also to `<data-dir>/kubeconfig`.
    #[arg(
        long = "tenant",
        value_name = "NAME",
        env = "VCLUSTER_TENANTS",
        value_delimiter = ',',
        default_value = "default"
    )]
    pub tenants: Vec<String>,
    /// A host cluster the tenants' pods run in, as `NAME=KUBECONFIG` (the admin
    /// kubeconfig of any Kubernetes cluster, e.g. one `vcluster host` serves); repeatable.
    /// Each tenant namespace goes to one of them: the one its annotation
    /// `vcluster.io/host-cluster` names, every one with `vcluster.io/placement: spread`, or
    /// the one with the most free pod slots. Without --host, the tenants' pods run in an embedded host cluster named `local`:
    /// another API server in this process, on its own embedded store under
    /// `<data-dir>/hosts/local/` (its admin kubeconfig there), with --simulated-nodes nodes.
    #[arg(long = "host", value_name = "NAME=KUBECONFIG", value_parser = parse_host)]
    pub hosts: Vec<(String, PathBuf)>,
    #[command(flatten)]
    pub failover: FailoverArgs,
    /// No host cluster and no syncer: the tenants' APIs alone. Their pods run only where
    /// something plays the kubelet in the tenant itself (--tenant-simulated-nodes).
    #[arg(long, conflicts_with = "hosts")]
    pub no_host: bool,
    /// Register this many simulated nodes in each tenant itself, which then schedule and run
    /// its pods there (with --no-host: two schedulers would fight over them).
    #[arg(long, env = "VCLUSTER_TENANT_SIMULATED_NODES", default_value_t = 0)]
    pub tenant_simulated_nodes: usize,
}

/// The name of the host cluster `vcluster up` embeds when given no --host.
const EMBEDDED_HOST: &str = "local";

/// `vcluster syncer`'s arguments.
#[derive(clap::Args)]
pub struct SyncerArgs {
    /// A tenant to sync, as `NAME=KUBECONFIG` (its name in the control plane, a DNS label
    /// without `--`, and a kubeconfig of its admin); repeatable.
    #[arg(long = "tenant", value_name = "NAME=KUBECONFIG", value_parser = parse_tenant, required = true)]
    pub tenants: Vec<(String, PathBuf)>,
    /// A host cluster, as `NAME=KUBECONFIG`; repeatable (placed as `vcluster up --host`).
    #[arg(long = "host", value_name = "NAME=KUBECONFIG", value_parser = parse_host, required = true)]
    pub hosts: Vec<(String, PathBuf)>,
    #[command(flatten)]
    pub failover: FailoverArgs,
}

/// When the syncer gives up on a host cluster.
#[derive(clap::Args, Clone, Copy)]
pub struct FailoverArgs {
    /// How long a host cluster may be unreachable before its pods are marked for deletion
    /// (their controllers replace them on another host) and its namespaces placed again.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub host_failover_after: Duration,
}

/// A tenant's `NAME=KUBECONFIG`, its name checked as `vcluster up` checks it.
fn parse_tenant(text: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = parse_host(text)?;
    check_tenant_names(std::slice::from_ref(&name)).map_err(|ConfigError(e)| e)?;
    Ok((name, path))
}

/// `vcluster host`'s arguments.
#[derive(clap::Args)]
pub struct HostArgs {
    /// The host cluster's name: a DNS label, the suffix of the nodes tenants see of it.
    #[arg(long)]
    pub name: String,
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// `NAME=KUBECONFIG`: a cluster's name (a DNS label) and its kubeconfig.
fn parse_host(text: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = text
        .split_once('=')
        .ok_or_else(|| "expected NAME=KUBECONFIG".to_owned())?;
    if !vcluster_core::names::is_dns_label(name) {
        return Err(format!("host name {name:?} is not a DNS label"));
    }
    if path.is_empty() {
        return Err("the kubeconfig path is empty".to_owned());
    }
    Ok((name.to_owned(), PathBuf::from(path)))
}

/// A duration as kube-apiserver's flags take them (`60s`, `1m`, `1m30s`).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let parsed: jiff::SignedDuration = text
        .parse()
        .map_err(|e| format!("not a duration like 60s or 1m: {e}"))?;
    Duration::try_from(parsed).map_err(|_| "a duration cannot be negative".to_owned())
}

impl ServeArgs {
    /// The server's limits: kube-apiserver's defaults (the connection caps follow the
    /// open-file limit) with this command line's flags.
    fn limits(&self) -> vcluster_apiserver::Limits {
        let defaults = vcluster_apiserver::Limits::default();
        vcluster_apiserver::Limits {
            max_requests_inflight: self.max_requests_inflight,
            max_mutating_requests_inflight: self.max_mutating_requests_inflight,
            max_requests_inflight_per_tenant: self.max_requests_inflight_per_tenant,
            max_mutating_requests_inflight_per_tenant: self
                .max_mutating_requests_inflight_per_tenant,
            request_timeout: self.request_timeout,
            http2_max_streams_per_connection: match self.http2_max_streams_per_connection {
                0 => defaults.http2_max_streams_per_connection,
                n => n,
            },
            ..defaults
        }
    }
}

/// Runs a parsed command line to its end; the exit code is 64 for bad configuration, 1 for
/// any other error.
pub fn run(cli: Cli) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Up(args) => up(args).await,
            Command::Host(args) => host(args).await,
            Command::Syncer(args) => syncer(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(if e.is::<ConfigError>() { 64 } else { 1 })
        }
    }
}

/// Logs to stderr, filtered by `VCLUSTER_LOG` (default `info`), as JSON if
/// `VCLUSTER_LOG_FORMAT=json`.
pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("VCLUSTER_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("VCLUSTER_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Bad configuration: exits 64.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

/// The names of --tenant: at least one, each a DNS label (what a tenant's store prefix and
/// host name need), none twice.
fn check_tenant_names(names: &[String]) -> Result<(), ConfigError> {
    if names.is_empty() {
        return Err(ConfigError("--tenant names no tenant".into()));
    }
    for (i, name) in names.iter().enumerate() {
        vcluster_store::tenant_prefix(name)
            .map_err(|e| ConfigError(format!("--tenant {name:?}: {e}")))?;
        // A host namespace is `vc-<tenant>--<namespace>`: the tenant's part ends at the
        // first `--`, so that no two tenants' namespaces share one.
        if name.contains("--") {
            return Err(ConfigError(format!(
                "--tenant {name:?}: a tenant name may not contain \"--\""
            )));
        }
        if names[..i].contains(name) {
            return Err(ConfigError(format!("--tenant {name:?} is given twice")));
        }
    }
    Ok(())
}

/// Pods run in the tenants (their own simulated nodes) or on host clusters, never both: two
/// schedulers would fight over them.
fn check_where_pods_run(args: &UpArgs) -> Result<(), ConfigError> {
    if args.tenant_simulated_nodes > 0 && !args.no_host {
        return Err(ConfigError(
            "--tenant-simulated-nodes runs pods in the tenants: give --no-host too (a host cluster would run them as well)".into(),
        ));
    }
    Ok(())
}

async fn open_store(args: &ServeArgs) -> anyhow::Result<Arc<dyn Backend>> {
    Ok(match args.store {
        StoreKind::Embedded => {
            std::fs::create_dir_all(&args.data_dir)
                .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
            let path = args.data_dir.join("store.redb");
            Arc::new(
                Embedded::open(&path, EmbeddedOptions::default())
                    .with_context(|| format!("cannot open the store at {}", path.display()))?,
            )
        }
        StoreKind::Etcd => {
            if args.etcd_endpoints.is_empty() {
                bail!(ConfigError("--store etcd needs --etcd-endpoints".into()));
            }
            Arc::new(
                Etcd::connect(EtcdOptions::new(args.etcd_endpoints.clone()))
                    .await
                    .context("cannot connect to etcd")?,
            )
        }
    })
}

/// `vcluster up`: serves until interrupted (Ctrl-C) or the server fails.
pub async fn up(args: UpArgs) -> anyhow::Result<()> {
    serve(args, None).await
}

/// Serves the tenants of `args` until interrupted or the server fails; `ready` is told
/// once every kubeconfig is written (for the embedded host, which says nothing itself).
async fn serve(
    args: UpArgs,
    ready: Option<tokio::sync::oneshot::Sender<()>>,
) -> anyhow::Result<()> {
    check_tenant_names(&args.tenants)?;
    check_where_pods_run(&args)?;
    if args.serve.simulated_nodes > 0 && (args.no_host || !args.hosts.is_empty()) {
        tracing::warn!(
            "--simulated-nodes are the embedded host cluster's nodes: with --host or --no-host there is none"
        );
    }
    let hosts = if args.no_host || !args.hosts.is_empty() {
        args.hosts.clone()
    } else {
        vec![(EMBEDDED_HOST.to_owned(), embedded_host(&args.serve).await?)]
    };
    check_host_names(&hosts)?;
    match vcluster_apiserver::raise_open_files_limit() {
        Ok(files) => tracing::debug!(files, "the open-file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
    let serve = &args.serve;
    let limits = serve.limits();
    tracing::info!(
        connections = limits.max_connections,
        per_source = limits.max_connections_per_source,
        "connection caps"
    );
    let backend = open_store(serve).await?;
    // Kubernetes keeps five minutes of history; so do we.
    let compactor = Compactor::new(CompactionPolicy {
        keep_revisions: None,
        keep_for: Some(Duration::from_secs(300)),
    });
    tokio::spawn(compactor.run(backend.clone(), Duration::from_secs(60)));

    let host = match serve.listen.ip() {
        ip if ip.is_unspecified() => "127.0.0.1".to_owned(),
        ip => ip.to_string(),
    };
    let mut names = vec![
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
        "localhost".to_owned(),
    ];
    for name in std::iter::once(&host).chain(&serve.tls_san) {
        if !name.is_empty() && !names.contains(name) {
            names.push(name.clone());
        }
    }
    let tenants = Arc::new(Tenants::new(backend, "vcluster.local", names));
    tenants
        .load_all()
        .await
        .context("cannot load the tenants")?;
    let mut served = Vec::new();
    for name in &args.tenants {
        let tenant = tenants
            .open_or_create(name)
            .await
            .with_context(|| format!("cannot open tenant {name}"))?;
        served.push(tenant);
    }
    tenants.set_default(&served[0].name);

    let listener = tokio::net::TcpListener::bind(serve.listen)
        .await
        .with_context(|| format!("cannot listen on {}", serve.listen))?;
    let port = listener.local_addr()?.port();
    let server = match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(_)) => format!("https://[{host}]:{port}"),
        _ => format!("https://{host}:{port}"),
    };
    for tenant in &served {
        let dir = serve.data_dir.join("tenants").join(&tenant.name);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let kubeconfig = dir.join("kubeconfig");
        write_private(
            &kubeconfig,
            &tenant.admin_kubeconfig(&tenants, &server, true)?,
        )?;
        if args.tenant_simulated_nodes > 0 {
            tokio::spawn(simulate_nodes(
                tenant.name.clone(),
                kubeconfig,
                args.tenant_simulated_nodes,
            ));
        }
    }
    if !hosts.is_empty() {
        let hosts = host_clusters(&hosts, args.failover).await?;
        for tenant in &served {
            let kubeconfig = serve
                .data_dir
                .join("tenants")
                .join(&tenant.name)
                .join("kubeconfig");
            let tenant = vcluster_syncer::Cluster {
                name: tenant.name.clone(),
                client: client_of(&kubeconfig).await?,
            };
            tokio::spawn(vcluster_syncer::run(
                tenant,
                hosts.clone(),
                vcluster_syncer::Options::default(),
            ));
        }
    }
    // The first tenant's also where it always was, reaching it without SNI.
    let kubeconfig = serve.data_dir.join("kubeconfig");
    write_private(
        &kubeconfig,
        &served[0].admin_kubeconfig(&tenants, &server, false)?,
    )?;
    match ready {
        Some(ready) => {
            tracing::info!(%server, kubeconfig = %kubeconfig.display(), "the embedded host cluster is up");
            let _ = ready.send(());
        }
        None => said_up(&args, &server, &kubeconfig, &hosts),
    }
    let shutdown = shutdown_signal()?;
    vcluster_apiserver::serve_until(listener, tenants, limits, shutdown)
        .await
        .context("the server stopped")?;
    tracing::info!("stopped");
    Ok(())
}

/// What `vcluster up` tells whoever started it: where the API is, and where the pods run.
fn said_up(args: &UpArgs, server: &str, kubeconfig: &std::path::Path, hosts: &[(String, PathBuf)]) {
    tracing::info!(%server, kubeconfig = %kubeconfig.display(), tenants = ?args.tenants, "vcluster is up");
    eprintln!(
        "vcluster is up at {server}\n  kubectl --kubeconfig {} get namespaces",
        kubeconfig.display()
    );
    if args.tenants.len() > 1 {
        eprintln!(
            "  every tenant's kubeconfig: {}/tenants/<name>/kubeconfig",
            args.serve.data_dir.display()
        );
    }
    for (name, host) in hosts {
        eprintln!(
            "  pods run in host cluster {name}: kubectl --kubeconfig {} get pods -A",
            host.display()
        );
    }
}

/// Starts the embedded host cluster: a server of its own in this process, serving one
/// cluster named [`EMBEDDED_HOST`] from an embedded store under `<data-dir>/hosts/local/`,
/// on a loopback port of the system's choosing, with `--simulated-nodes` nodes. Its admin
/// kubeconfig, once it serves. (A boxed future: it runs `serve`, which calls it.)
fn embedded_host(
    serve: &ServeArgs,
) -> std::pin::Pin<Box<dyn Future<Output = anyhow::Result<PathBuf>> + Send + 'static>> {
    let dir = serve.data_dir.join("hosts").join(EMBEDDED_HOST);
    let args = UpArgs {
        serve: ServeArgs {
            data_dir: dir.clone(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            store: StoreKind::Embedded,
            etcd_endpoints: Vec::new(),
            simulated_nodes: 0,
            tls_san: Vec::new(),
            ..serve.clone()
        },
        tenants: vec![EMBEDDED_HOST.to_owned()],
        hosts: Vec::new(),
        // No host: no failover.
        failover: FailoverArgs {
            host_failover_after: Duration::MAX,
        },
        no_host: true,
        tenant_simulated_nodes: serve.simulated_nodes,
    };
    Box::pin(async move {
        let (ready, started) = tokio::sync::oneshot::channel();
        tokio::spawn(serve_host(args, ready));
        started.await.map_err(|_| {
            anyhow::anyhow!("the embedded host cluster did not start (its error is logged above)")
        })?;
        Ok(dir.join("kubeconfig"))
    })
}

/// Runs the embedded host cluster to its end, logging why it ended early.
async fn serve_host(args: UpArgs, ready: tokio::sync::oneshot::Sender<()>) -> anyhow::Result<()> {
    let result = serve(args, Some(ready)).await;
    if let Err(e) = &result {
        tracing::error!(error = %format!("{e:#}"), "the embedded host cluster stopped");
    }
    result
}

/// What ends a foreground command: Ctrl-C, or SIGTERM (what process managers and
/// Kubernetes send), which drains the same way.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; shutting down"),
            _ = terminate.recv() => tracing::info!("terminated; shutting down"),
        }
    })
}

/// No two host clusters of the same name.
fn check_host_names(hosts: &[(String, PathBuf)]) -> Result<(), ConfigError> {
    let mut seen = std::collections::HashSet::new();
    match hosts.iter().find(|(name, _)| !seen.insert(name)) {
        Some((name, _)) => Err(ConfigError(format!(
            "--host {name} is given more than once: host cluster names are unique"
        ))),
        None => Ok(()),
    }
}

/// Clients of the host clusters, with their health probed (in a task of its own) from now
/// on.
async fn host_clusters(
    hosts: &[(String, PathBuf)],
    failover: FailoverArgs,
) -> anyhow::Result<Arc<vcluster_syncer::Hosts>> {
    let mut clusters = Vec::new();
    for (name, kubeconfig) in hosts {
        clusters.push(vcluster_syncer::Cluster {
            name: name.clone(),
            client: client_of(kubeconfig)
                .await
                .with_context(|| format!("host cluster {name}: {}", kubeconfig.display()))?,
        });
    }
    let hosts = vcluster_syncer::Hosts::new(clusters, failover.host_failover_after);
    tokio::spawn(hosts.clone().probe());
    Ok(hosts)
}

/// `vcluster syncer`: the syncer alone, for every tenant named, against the host clusters,
/// until interrupted.
pub async fn syncer(args: SyncerArgs) -> anyhow::Result<()> {
    check_host_names(&args.hosts)?;
    if args.tenants.is_empty() {
        bail!(ConfigError("--tenant names no tenant".into()));
    }
    let hosts = host_clusters(&args.hosts, args.failover).await?;
    let mut syncers = tokio::task::JoinSet::new();
    for (name, kubeconfig) in &args.tenants {
        let tenant = vcluster_syncer::Cluster {
            name: name.clone(),
            client: client_of(kubeconfig)
                .await
                .with_context(|| format!("tenant {name}: {}", kubeconfig.display()))?,
        };
        syncers.spawn(vcluster_syncer::run(
            tenant,
            hosts.clone(),
            vcluster_syncer::Options::default(),
        ));
    }
    shutdown_signal()?.await;
    syncers.shutdown().await;
    Ok(())
}

/// `vcluster host`: a stand-in host cluster (the control plane serving one cluster, named
/// after the host) until interrupted.
pub async fn host(args: HostArgs) -> anyhow::Result<()> {
    up(UpArgs {
        tenant_simulated_nodes: args.serve.simulated_nodes,
        serve: ServeArgs {
            simulated_nodes: 0,
            ..args.serve
        },
        tenants: vec![args.name],
        hosts: Vec::new(),
        // No host: no failover.
        failover: FailoverArgs {
            host_failover_after: Duration::MAX,
        },
        no_host: true,
    })
    .await
}

/// A client of the cluster a kubeconfig names (its current context).
async fn client_of(kubeconfig: &std::path::Path) -> anyhow::Result<kube::Client> {
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(kubeconfig)?,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    Ok(kube::Client::try_from(config)?)
}

/// Runs the node simulator against a tenant, as a client of its API like any other.
async fn simulate_nodes(tenant: String, kubeconfig: PathBuf, nodes: usize) {
    let result = async {
        let client = client_of(&kubeconfig).await?;
        let options = vcluster_nodesim::Options {
            nodes,
            ..Default::default()
        };
        tracing::info!(tenant, nodes, "node simulator starting");
        vcluster_nodesim::run(client, options).await?;
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = result {
        tracing::error!(tenant, error = %format!("{e:#}"), "the node simulator stopped");
    }
}

/// Writes a file only its owner can read (it holds a private key).
fn write_private(path: &std::path::Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    // The mode above applies only to a file this call creates: one already there keeps its
    // own until it is set here, on the open (and now empty) file, before the key is written.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot make {} private", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up_args(args: &[&str]) -> UpArgs {
        let cli = Cli::try_parse_from([&["vcluster", "up"], args].concat()).expect("parses");
        match cli.command {
            Command::Up(args) => args,
            Command::Host(_) | Command::Syncer(_) => unreachable!("parsed as up"),
        }
    }

    #[test]
    fn tenants_default_to_default_and_repeat_in_order() {
        assert_eq!(up_args(&[]).tenants, ["default"]);
        let args = up_args(&["--tenant", "b", "--tenant", "a"]);
        assert_eq!(args.tenants, ["b", "a"]);
        check_tenant_names(&args.tenants).expect("valid names");
    }

    #[test]
    fn pods_run_in_the_tenants_or_on_hosts_never_both() {
        assert!(
            check_where_pods_run(&up_args(&[])).is_ok(),
            "the embedded host"
        );
        assert!(
            check_where_pods_run(&up_args(&["--no-host", "--tenant-simulated-nodes", "3"])).is_ok()
        );
        let ConfigError(message) =
            check_where_pods_run(&up_args(&["--tenant-simulated-nodes", "3"]))
                .expect_err("refused");
        assert!(message.contains("--no-host"), "{message}");
        assert!(
            Cli::try_parse_from(["vcluster", "up", "--no-host", "--host", "h=/k"]).is_err(),
            "no host, and a host"
        );
    }

    #[test]
    fn hosts_are_name_equals_kubeconfig() {
        let args = up_args(&["--host", "eu-1=/tmp/k"]);
        assert_eq!(args.hosts, [("eu-1".to_owned(), PathBuf::from("/tmp/k"))]);
        for bad in ["eu-1", "Bad_Name=/tmp/k", "eu-1="] {
            assert!(
                Cli::try_parse_from(["vcluster", "up", "--host", bad]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn several_hosts_with_unique_names_and_a_failover_time() {
        let args = up_args(&[
            "--host",
            "eu=/k/eu",
            "--host",
            "us=/k/us",
            "--host-failover-after",
            "5s",
        ]);
        assert_eq!(args.hosts.len(), 2);
        assert!(check_host_names(&args.hosts).is_ok());
        assert_eq!(args.failover.host_failover_after, Duration::from_secs(5));
        assert_eq!(
            up_args(&[]).failover.host_failover_after,
            Duration::from_secs(60),
            "a minute by default"
        );
        let twice = up_args(&["--host", "eu=/k/a", "--host", "eu=/k/b"]);
        let ConfigError(e) = check_host_names(&twice.hosts).expect_err("refused");
        assert!(e.contains("eu"), "{e}");
    }

    #[test]
    fn the_syncer_takes_tenants_and_a_host_by_kubeconfig() {
        let cli = Cli::try_parse_from([
            "vcluster", "syncer", "--tenant", "a=/k/a", "--tenant", "b=/k/b", "--host", "h=/k/h",
        ])
        .expect("parses");
        let Command::Syncer(args) = cli.command else {
            panic!("not the syncer");
        };
        assert_eq!(args.tenants.len(), 2);
        assert_eq!(args.hosts, [("h".to_owned(), PathBuf::from("/k/h"))]);
        for bad in [
            vec!["--host", "h=/k/h"],
            vec!["--tenant", "a=/k/a"],
            vec!["--tenant", "a--b=/k/a", "--host", "h=/k/h"],
        ] {
            let args = [vec!["vcluster", "syncer"], bad.clone()].concat();
            assert!(Cli::try_parse_from(args).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bad_or_repeated_tenant_names_are_configuration_errors() {
        for (names, wanted) in [
            (vec!["Bad_Name"], "not a DNS label"),
            (vec!["a", "b", "a"], "given twice"),
            (vec!["a--b"], "may not contain"),
            (vec![], "no tenant"),
        ] {
            let names: Vec<String> = names.into_iter().map(str::to_owned).collect();
            let ConfigError(message) = check_tenant_names(&names).expect_err("refused");
            assert!(message.contains(wanted), "{names:?}: {message}");
        }
    }

    #[test]
    fn the_kubeconfig_is_private_even_when_it_was_not() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("kubeconfig");
        let mode = |path| {
            std::fs::metadata(path)
                .expect("metadata")
                .permissions()
                .mode()
                & 0o777
        };
        write_private(&path, "created").expect("write a new file");
        assert_eq!(mode(&path), 0o600, "a new file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
            .expect("make it readable to all");
        write_private(&path, "rewritten").expect("write over it");
        assert_eq!(mode(&path), 0o600, "an existing 0644 file");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "rewritten");
    }
}
