//! Durability of the embedded store across SIGKILL.
//!
//! The test re-runs its own binary as a child that writes from many tasks at once and
//! prints each acknowledged write; the parent kills it with SIGKILL mid-write, reopens the
//! store and checks that every acknowledged write is there with its revision. Three rounds
//! on the same file, so recovery of a recovered file is covered too.
//!
//! This file has its own `main` (`harness = false`) because the child needs to be a process
//! of its own; it prints libtest's summary line.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use bytes::Bytes;
use std::io::Write;
use vcluster_store::{Embedded, EmbeddedOptions, Store};

const CHILD_ENV: &str = "VCLUSTER_STORE_CRASH_CHILD";

fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        child(&spec);
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("store.redb");
    let mut acked: HashMap<String, u64> = HashMap::new();
    for round in 0..3 {
        let acks = run_child_and_kill(&path, round, 200 + 150 * round);
        println!(
            "round {round}: {} writes acknowledged before SIGKILL",
            acks.len()
        );
        acked.extend(acks);
        verify(&path, &acked);
    }
    println!("test embedded_store_survives_sigkill ... ok");
    println!("test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out");
}

/// Starts a writer child, lets it acknowledge at least `at_least` writes, kills it with
/// SIGKILL and returns every write it acknowledged (key → revision).
fn run_child_and_kill(path: &Path, round: usize, at_least: usize) -> HashMap<String, u64> {
    let mut child = Command::new(std::env::current_exe().expect("test binary path"))
        .env(CHILD_ENV, format!("{}|{round}", path.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the writer child");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut acks = HashMap::new();
    while acks.len() < at_least {
        match lines.next() {
            Some(Ok(line)) => acks.extend(parse_ack(&line)),
            _ => panic!("the writer child stopped before it was killed"),
        }
    }
    child.kill().expect("SIGKILL the writer child");
    // Acknowledgements already written to the pipe were acknowledged before the kill.
    for line in lines.map_while(Result::ok) {
        acks.extend(parse_ack(&line));
    }
    let status = child.wait().expect("reap the child");
    assert!(!status.success(), "the child was killed, not finished");
    acks
}

/// `ack <key> <revision>` → (key, revision).
fn parse_ack(line: &str) -> Option<(String, u64)> {
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next(), parts.next()) {
        (Some("ack"), Some(key), Some(rev)) => Some((key.to_owned(), rev.parse().ok()?)),
        _ => None,
    }
}

fn verify(path: &Path, acked: &HashMap<String, u64>) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let store = Embedded::open(path, EmbeddedOptions::default()).expect("reopen after SIGKILL");
        let current = store.current_revision().await.expect("revision");
        for (key, revision) in acked {
            let kv = store.get(key.as_bytes()).await.expect("get");
            let kv = kv.unwrap_or_else(|| panic!("acknowledged write {key} lost"));
            assert_eq!(kv.mod_revision, *revision, "{key} changed revision");
            assert!(current >= *revision, "the revision went backwards");
        }
        // The recovered store takes writes at the next revision.
        let kv = store
            .create(
                Bytes::from(format!("after-{current}")),
                Bytes::from("v"),
                None,
            )
            .await
            .expect("write after recovery");
        assert_eq!(kv.mod_revision, current + 1);
    });
}

/// Round 0 kills a child that never checkpointed (everything is recovered from the log);
/// later rounds use a small log checkpointed every few milliseconds, so the kill also lands
/// during checkpoints and after the log wrapped around.
fn options(round: &str) -> EmbeddedOptions {
    if round == "0" {
        return EmbeddedOptions::default();
    }
    EmbeddedOptions {
        wal_bytes: 64 << 10,
        checkpoint_interval: std::time::Duration::from_millis(5),
        ..EmbeddedOptions::default()
    }
}

/// The child: 32 tasks creating unique keys as fast as the store acknowledges them.
fn child(spec: &str) {
    let (path, round) = spec.split_once('|').expect("path|round");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let store = Arc::new(Embedded::open(path, options(round)).expect("open"));
        let tasks: Vec<_> = (0..32)
            .map(|t| {
                let store = store.clone();
                let round = round.to_owned();
                tokio::spawn(async move {
                    for i in 0.. {
                        let key = format!("r{round}/t{t}/{i}");
                        let value = Bytes::from(vec![b'x'; 256]);
                        let kv = store
                            .create(Bytes::from(key.clone()), value, None)
                            .await
                            .expect("child write");
                        // Stdout is line-buffered: each acknowledgement reaches the pipe
                        // before the next write starts.
                        writeln!(std::io::stdout(), "ack {key} {}", kv.mod_revision)
                            .expect("stdout");
                    }
                })
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    });
}
