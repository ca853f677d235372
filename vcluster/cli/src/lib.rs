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
    /// Run the control plane in the foreground, serving the tenant `default`.
    Up(UpArgs),
}

#[derive(Clone, Copy, ValueEnum)]
pub enum StoreKind {
    /// One file under --data-dir.
    Embedded,
    /// A real etcd cluster (--etcd-endpoints).
    Etcd,
}

#[derive(clap::Args)]
pub struct UpArgs {
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
    /// Register this many simulated nodes in the tenant and play their scheduler and
    /// kubelet (pods are bound, then Running and Ready; Jobs' pods complete).
    #[arg(long, env = "VCLUSTER_SIMULATED_NODES", default_value_t = 0)]
    pub simulated_nodes: usize,
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

async fn open_store(args: &UpArgs) -> anyhow::Result<Arc<dyn Backend>> {
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
    let backend = open_store(&args).await?;
    // Kubernetes keeps five minutes of history; so do we.
    let compactor = Compactor::new(CompactionPolicy {
        keep_revisions: None,
        keep_for: Some(Duration::from_secs(300)),
    });
    tokio::spawn(compactor.run(backend.clone(), Duration::from_secs(60)));

    let host = match args.listen.ip() {
        ip if ip.is_unspecified() => "127.0.0.1".to_owned(),
        ip => ip.to_string(),
    };
    let mut names = vec![
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
        "localhost".to_owned(),
    ];
    if !names.contains(&host) {
        names.push(host.clone());
    }
    let tenants = Arc::new(Tenants::new(backend, "vcluster.local", names));
    tenants
        .load_all()
        .await
        .context("cannot load the tenants")?;
    let tenant = tenants
        .open_or_create("default")
        .await
        .context("cannot open tenant default")?;
    tenants.set_default("default");

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let port = listener.local_addr()?.port();
    let server = match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(_)) => format!("https://[{host}]:{port}"),
        _ => format!("https://{host}:{port}"),
    };
    std::fs::create_dir_all(&args.data_dir)?;
    let kubeconfig = args.data_dir.join("kubeconfig");
    let rendered = tenant.admin_kubeconfig(&tenants, &server, false)?;
    write_private(&kubeconfig, &rendered)?;
    tracing::info!(%server, kubeconfig = %kubeconfig.display(), "vcluster is up");
    eprintln!(
        "vcluster is up at {server}\n  kubectl --kubeconfig {} get namespaces",
        kubeconfig.display()
    );
    if args.simulated_nodes > 0 {
        tokio::spawn(simulate_nodes(kubeconfig.clone(), args.simulated_nodes));
    }
    tokio::select! {
        served = vcluster_apiserver::serve(listener, tenants) => served.context("the server stopped")?,
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; shutting down"),
    }
    Ok(())
}

/// Runs the node simulator against the tenant, as a client of its API like any other.
async fn simulate_nodes(kubeconfig: PathBuf, nodes: usize) {
    let result = async {
        let config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&kubeconfig)?,
            &kube::config::KubeConfigOptions::default(),
        )
        .await?;
        let client = kube::Client::try_from(config)?;
        let options = vcluster_nodesim::Options {
            nodes,
            ..Default::default()
        };
        tracing::info!(nodes, "node simulator starting");
        vcluster_nodesim::run(client, options).await?;
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = result {
        tracing::error!(error = %format!("{e:#}"), "the node simulator stopped");
    }
}

/// Writes a file only its owner can read (it holds a private key).
fn write_private(path: &std::path::Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}
