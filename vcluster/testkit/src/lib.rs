//! `vcluster-testkit`: real components for tests and benchmarks, started as child processes.
//!
//! [`EtcdCluster`] runs one or more real etcd members on private loopback ports with
//! temporary data directories, and can kill (SIGKILL) and restart members. A missing etcd
//! binary is a loud failure, never a skipped test: install it with `scripts/setup` (or
//! `apt-get install etcd-server`), or point `VCLUSTER_ETCD_BIN` at one.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub mod tether;
use tether::Tethered;

/// Environment variable naming the etcd binary (default: `etcd` on `PATH`).
pub const ETCD_BIN_ENV: &str = "VCLUSTER_ETCD_BIN";
/// Environment variable with the client URLs of an etcd that the test run started itself
/// (`.ci/run` does); tests that don't restart or compact etcd share it.
pub const SHARED_ETCD_ENV: &str = "VCLUSTER_TEST_ETCD_ENDPOINTS";

/// A memory figure of process `pid` (`None`: this process) from `/proc/<pid>/status`, in
/// KiB: `field` is `VmRSS` (resident now) or `VmHWM` (the peak). `None` once the process is
/// gone.
pub fn memory_kib(pid: Option<u32>, field: &str) -> Option<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_owned(),
    };
    let status = std::fs::read_to_string(path).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A free loopback port. Another process could take it before etcd binds it; the start-up
/// check then fails loudly rather than talking to the wrong server.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral loopback port");
    listener.local_addr().expect("local address").port()
}

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Tethered>,
}

/// Real etcd members on loopback. Dropping it kills them and removes their data.
pub struct EtcdCluster {
    members: Vec<Member>,
    dir: TempDir,
    initial_cluster: String,
}

fn etcd_bin() -> String {
    std::env::var(ETCD_BIN_ENV).unwrap_or_else(|_| "etcd".into())
}

impl EtcdCluster {
    /// One member.
    pub fn single() -> Self {
        Self::start(1)
    }

    /// `n` members forming one cluster; returns once every member answers as healthy.
    pub fn start(n: usize) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("vcluster-etcd-")
            .tempdir()
            .expect("create a temporary etcd data directory");
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                child: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Self {
            members,
            dir,
            initial_cluster,
        };
        for i in 0..n {
            cluster.spawn(i);
        }
        for i in 0..n {
            cluster.wait_healthy(i);
        }
        cluster
    }

    fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(&self.members[i].name)
    }

    fn spawn(&mut self, i: usize) {
        let data_dir = self.data_dir(i);
        let log = std::fs::File::create(
            self.dir
                .path()
                .join(format!("{}.log", self.members[i].name)),
        )
        .expect("create the etcd log file");
        let m = &self.members[i];
        let client = format!("http://127.0.0.1:{}", m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        // Tethered: a member of a cluster kept in a static (a server the tests of a binary
        // share) is killed, and the cluster's directory removed, when the test process exits.
        let child = Tethered::spawn(
            tether::command(etcd_bin(), Some(self.dir.path()))
                .args(["--name", &m.name, "--data-dir"])
                .arg(&data_dir)
                .args([
                    "--listen-client-urls",
                    &client,
                    "--advertise-client-urls",
                    &client,
                ])
                .args([
                    "--listen-peer-urls",
                    &peer,
                    "--initial-advertise-peer-urls",
                    &peer,
                ])
                .args(["--initial-cluster", &self.initial_cluster])
                .args([
                    "--initial-cluster-state",
                    "new",
                    "--initial-cluster-token",
                    "vcluster-test",
                ])
                .args(["--logger", "zap", "--log-outputs", "stderr"])
                // Short heartbeats make elections after a killed member take well under a second.
                .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
                .stdout(Stdio::null())
                .stderr(log),
        )
        .unwrap_or_else(|e| panic!("cannot start sh for etcd: {e}"));
        self.members[i].child = Some(child);
    }

    fn wait_healthy(&mut self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = self.members[i].client_port;
        while Instant::now() < deadline {
            if let Some(child) = self.members[i].child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                // 127: `sh` found no etcd to exec.
                let missing = if status.code() == Some(127) {
                    format!(
                        " (no {}: install it with scripts/setup, apt-get install etcd-server, \
                         or set {ETCD_BIN_ENV})",
                        etcd_bin()
                    )
                } else {
                    String::new()
                };
                panic!(
                    "etcd member {i} exited during start-up ({status}){missing}; see {}",
                    self.log_hint(i)
                );
            }
            if healthy(port) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "etcd member {i} not healthy after 30 s; see {}",
            self.log_hint(i)
        );
    }

    fn log_hint(&self, i: usize) -> String {
        let path = self
            .dir
            .path()
            .join(format!("{}.log", self.members[i].name));
        let log = std::fs::read_to_string(&path).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(5).collect();
        format!("{} (last lines: {:?})", path.display(), tail)
    }

    /// Client URLs of every member.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client_port))
            .collect()
    }

    /// Kills member `i` with SIGKILL.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            child.kill();
        }
    }

    /// Starts member `i` again on its data directory and waits until it is healthy.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
        self.wait_healthy(i);
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

/// Whether the member at `port` answers `/health` with `"health":"true"`.
fn healthy(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.contains("\"health\":\"true\"")
}

/// The etcd a test may share: the one named by [`SHARED_ETCD_ENV`], or else a fresh one
/// owned by the caller.
pub enum SharedEtcd {
    External(Vec<String>),
    Owned(EtcdCluster),
}

impl SharedEtcd {
    pub fn get() -> Self {
        match std::env::var(SHARED_ETCD_ENV) {
            Ok(urls) if !urls.trim().is_empty() => {
                SharedEtcd::External(urls.split(',').map(|s| s.trim().to_owned()).collect())
            }
            _ => SharedEtcd::Owned(EtcdCluster::single()),
        }
    }

    pub fn endpoints(&self) -> Vec<String> {
        match self {
            SharedEtcd::External(urls) => urls.clone(),
            SharedEtcd::Owned(cluster) => cluster.endpoints(),
        }
    }
}

/// The real Kubernetes clients `scripts/clients` installs into `.tools/`.
pub mod clients {
    use std::path::{Path, PathBuf};
    use std::process::{Command, Output};

    /// The workspace root (where `.tools/` is).
    pub fn workspace() -> PathBuf {
        let here = Path::new(env!("CARGO_MANIFEST_DIR"));
        here.ancestors()
            .nth(2)
            .expect("vcluster/testkit is two levels below the workspace root")
            .to_path_buf()
    }

    fn tool(path: &str) -> PathBuf {
        let path = workspace().join(".tools").join(path);
        assert!(
            path.exists(),
            "{} is missing: run scripts/clients (scripts/test does)",
            path.display()
        );
        path
    }

    /// The kubectl versions the tests drive: the oldest supported and the newest.
    pub const KUBECTL_VERSIONS: &[&str] = &["v33", "v36"];

    /// kubectl of one version (`v33` is 1.33, `v36` is 1.36).
    pub fn kubectl_bin(version: &str) -> PathBuf {
        tool(&format!("{version}/kubectl/kubectl"))
    }

    /// helm shipped beside that kubectl (`v33`: helm 3.18; `v36`: helm 4.2).
    pub fn helm_bin(version: &str) -> PathBuf {
        tool(&format!("{version}/helm/helm"))
    }

    /// The Python interpreter of the virtualenv with the Kubernetes client.
    pub fn python_bin() -> PathBuf {
        tool("venv/bin/python")
    }

    /// A kubectl bound to one kubeconfig, with its own cache directory.
    pub struct Kubectl {
        pub bin: PathBuf,
        pub kubeconfig: PathBuf,
        cache: tempfile::TempDir,
    }

    /// The outcome of one kubectl run.
    pub struct Run {
        pub ok: bool,
        pub stdout: String,
        pub stderr: String,
    }

    impl Run {
        fn from(output: Output) -> Self {
            Self {
                ok: output.status.success(),
                stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            }
        }
    }

    impl Kubectl {
        pub fn new(version: &str, kubeconfig: impl Into<PathBuf>) -> Self {
            Self {
                bin: kubectl_bin(version),
                kubeconfig: kubeconfig.into(),
                cache: tempfile::tempdir().expect("kubectl cache directory"),
            }
        }

        pub fn command(&self, args: &[&str]) -> Command {
            let mut cmd = Command::new(&self.bin);
            cmd.arg("--kubeconfig")
                .arg(&self.kubeconfig)
                .arg("--cache-dir")
                .arg(self.cache.path())
                .args(args);
            cmd
        }

        /// Runs kubectl, feeding `stdin` if given.
        pub fn run_with(&self, args: &[&str], stdin: Option<&str>) -> Run {
            use std::io::Write;
            use std::process::Stdio;
            let mut cmd = self.command(args);
            cmd.stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = cmd.spawn().expect("start kubectl");
            if let Some(input) = stdin {
                child
                    .stdin
                    .take()
                    .expect("piped stdin")
                    .write_all(input.as_bytes())
                    .expect("write to kubectl");
            } else {
                drop(child.stdin.take());
            }
            Run::from(child.wait_with_output().expect("kubectl ran"))
        }

        pub fn run(&self, args: &[&str]) -> Run {
            self.run_with(args, None)
        }

        /// Runs kubectl and returns its stdout, failing the test if it fails.
        pub fn ok(&self, args: &[&str]) -> String {
            let run = self.run(args);
            assert!(run.ok, "kubectl {args:?} failed: {}", run.stderr);
            run.stdout
        }

        /// Runs kubectl until it succeeds with output `done` accepts (30 s at most);
        /// returns that output.
        pub fn eventually(&self, args: &[&str], done: impl Fn(&str) -> bool) -> String {
            self.eventually_within(std::time::Duration::from_secs(30), args, done)
        }

        /// [`Kubectl::eventually`] with `limit` in place of 30 s (for what waits on a
        /// timer of the product's, such as a failover).
        pub fn eventually_within(
            &self,
            limit: std::time::Duration,
            args: &[&str],
            done: impl Fn(&str) -> bool,
        ) -> String {
            let deadline = std::time::Instant::now() + limit;
            loop {
                let run = self.run(args);
                if run.ok && done(&run.stdout) {
                    return run.stdout;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "kubectl {args:?} never came right: {}{}",
                    run.stdout,
                    run.stderr
                );
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }

        /// Runs kubectl expecting it to fail; returns its stderr.
        pub fn fails(&self, args: &[&str]) -> String {
            let run = self.run(args);
            assert!(!run.ok, "kubectl {args:?} succeeded: {}", run.stdout);
            run.stderr
        }
    }
}

/// Runs `op(client, i)` from `clients` concurrent tasks for `run_for` and returns the
/// operations completed per second: the throughput loop every benchmark shares.
pub async fn rate<F, Fut>(clients: usize, run_for: std::time::Duration, op: F) -> f64
where
    F: Fn(u64, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    let op = Arc::new(op);
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients as u64)
        .map(|client| {
            let (op, done) = (op.clone(), done.clone());
            tokio::spawn(async move {
                let mut i = 0;
                while start.elapsed() < run_for {
                    op(client, i).await;
                    i += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("benchmark task");
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}
