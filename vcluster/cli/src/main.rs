//! `vcluster`: the command line. `vcluster up` runs the control plane in the foreground.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use vcluster_apiserver::Tenants;
use vcluster_store::{
    Backend, CompactionPolicy, Compactor, Embedded, EmbeddedOptions, Etcd, EtcdOptions,
};

#[derive(Parser)]
#[command(name = "vcluster", version, about = "Virtual Kubernetes clusters")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane in the foreground, serving the tenant `default`.
    Up(UpArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum StoreKind {
    /// One file under --data-dir.
    Embedded,
    /// A real etcd cluster (--etcd-endpoints).
    Etcd,
}

#[derive(clap::Args)]
struct UpArgs {
    /// Where the embedded store and the kubeconfig go.
    #[arg(long, env = "VCLUSTER_DATA_DIR", default_value = ".vcluster")]
    data_dir: PathBuf,
    /// The address to serve the Kubernetes API on.
    #[arg(long, env = "VCLUSTER_LISTEN", default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    #[arg(long, value_enum, default_value = "embedded")]
    store: StoreKind,
    /// Comma-separated etcd client URLs, for --store etcd.
    #[arg(long, env = "VCLUSTER_ETCD_ENDPOINTS", value_delimiter = ',')]
    etcd_endpoints: Vec<String>,
    /// Register this many simulated nodes in the tenant and play their scheduler and
    /// kubelet (pods are bound, then Running and Ready; Jobs' pods complete).
    #[arg(long, env = "VCLUSTER_SIMULATED_NODES", default_value_t = 0)]
    simulated_nodes: usize,
    /// An extra DNS name or IP address for the serving certificate, for clients that reach
    /// the server by another name (repeatable, or comma-separated).
    #[arg(
        long,
        env = "VCLUSTER_TLS_SAN",
        value_delimiter = ',',
        value_name = "NAME"
    )]
    tls_san: Vec<String>,
}

/// mimalloc: glibc's allocator spent ~15% of the API's CPU in malloc/free and blocked on its
/// arena locks under load (measured with `perf`, API benchmark).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = Cli::parse();
    init_logging();
    rustls::crypto::ring::default_provider()
        .install_default()
        .expect("no other crypto provider is installed");
    let runtime = tokio::runtime::Runtime::new().expect("start the tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Command::Up(args) => up(args).await,
        }
    });
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(if e.is::<ConfigError>() { 64 } else { 1 });
    }
}

fn init_logging() {
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
struct ConfigError(String);

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

async fn up(args: UpArgs) -> anyhow::Result<()> {
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
    for name in std::iter::once(&host).chain(&args.tls_san) {
        if !name.is_empty() && !names.contains(name) {
            names.push(name.clone());
        }
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
    // SIGTERM (what process managers and Kubernetes send) drains like Ctrl-C.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; shutting down"),
            _ = terminate.recv() => tracing::info!("terminated; shutting down"),
        }
    };
    vcluster_apiserver::serve_until(listener, tenants, shutdown)
        .await
        .context("the server stopped")?;
    tracing::info!("stopped");
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
    use std::os::unix::fs::PermissionsExt;

    use super::write_private;

    #[test]
    fn the_kubeconfig_is_private_even_when_it_was_not() {
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
