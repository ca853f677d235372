//! Child processes that cannot outlive the test process that started them.
//!
//! A [`std::process::Child`] is stopped only by whoever owns it, and a test binary's statics
//! (a server its tests share) are never dropped: such a child would run on after the tests.
//! [`command`] starts the program through `sh`, which first forks a watcher and then `exec`s
//! the program, so the child *is* the program (`kill`, `wait` and the exit status are its
//! own). The watcher reads the child's standard input, a pipe whose only writer is the test
//! process. When it reaches end of file (the test process exited, however it exited, or
//! dropped the pipe), the watcher kills the program (SIGKILL) if it still runs, waits for it
//! to be gone and removes the directory it was given. [`Tethered::kill`], an owner stopping
//! the program itself (say to restart it on the same directory), says `keep` down the pipe
//! first: the watcher then ends without touching anything. The watcher signals the program
//! only while it is still the program's child, so never a process id that has been reused.

use std::ffi::OsStr;
use std::io::Write;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};

/// `sh -c WATCHER sh DIR PROGRAM ARGS...`: fd 3 keeps the pipe for the watcher (a background
/// list's standard input is /dev/null); the watcher ignores the signals a Ctrl-C or a closed
/// terminal sends, so that it lives to clean up, and writes nowhere, so that it holds open no
/// pipe the test reads.
const WATCHER: &str = r#"dir=$1
shift
exec 3<&0
{
    trap '' INT HUP TERM
    keep=
    while read -r line <&3; do
        if [ "$line" = keep ]; then keep=1; fi
    done
    if [ -n "$keep" ]; then exit 0; fi
    read -r _ _ _ parent _ </proc/self/stat
    if [ "$parent" = "$$" ]; then
        kill -KILL "$$"
        while read -r _ _ _ parent _ </proc/self/stat && [ "$parent" = "$$" ]; do
            sleep 0.05
        done
    fi
    if [ -n "$dir" ]; then rm -rf -- "$dir"; fi
} >/dev/null 2>&1 &
exec "$@" 3<&- </dev/null
"#;

/// A command that runs `program` tethered to this process: add its arguments, environment
/// and output as usual and start it with [`Tethered::spawn`]. If this process exits while the
/// program runs, the program is killed and `remove` (a data directory of the program's)
/// deleted. The program's standard input is /dev/null.
pub fn command(program: impl AsRef<OsStr>, remove: Option<&Path>) -> Command {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", WATCHER, "sh"])
        .arg(remove.map_or(OsStr::new(""), Path::as_os_str))
        .arg(program)
        .stdin(Stdio::piped());
    cmd
}

/// A running tethered program (see [`command`]). Dropping it kills the program (SIGKILL)
/// and waits for it; its directory stays, for its owner to remove or to start the program
/// on again.
pub struct Tethered {
    child: Child,
    /// The tether: the write end of the watcher's pipe. `Child::wait` would close it before
    /// waiting, and so have the program killed, so it is kept apart.
    tether: Option<ChildStdin>,
}

impl Tethered {
    pub fn spawn(command: &mut Command) -> std::io::Result<Self> {
        let mut child = command.spawn()?;
        let tether = child.stdin.take();
        Ok(Self { child, tether })
    }

    /// The program's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The program's exit status, if it has ended.
    pub fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// Waits for the program to end on its own.
    pub fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait()
    }

    /// Kills the program (SIGKILL) and waits for it; its directory stays.
    pub fn kill(&mut self) {
        if let Some(mut tether) = self.tether.take() {
            // Best effort: a watcher that is gone has nothing left to do.
            let _ = tether.write_all(b"keep\n");
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Tethered {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// Whether `pid` runs (a zombie does not).
    fn runs(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| stat.split_whitespace().nth(2) != Some("Z"))
    }

    fn eventually(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn the_child_is_the_program_and_its_status_is_the_programs() {
        let mut program =
            Tethered::spawn(command("sh", None).args(["-c", "exit 7"])).expect("spawn");
        assert_eq!(program.wait().expect("wait").code(), Some(7));
    }

    #[test]
    fn closing_the_tether_kills_the_program_and_removes_its_directory() {
        let dir = tempfile::tempdir().expect("dir");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("data dir");
        let mut program = Tethered::spawn(command("sleep", Some(&data)).arg("600")).expect("spawn");
        let pid = program.id();
        assert!(runs(pid));
        // What this process's exit does: the pipe's last writer goes.
        program.tether.take();
        eventually("the program still runs", || !runs(pid));
        eventually("the directory was not removed", || !data.exists());
        program.wait().expect("wait");
    }

    #[test]
    fn a_program_that_ended_by_itself_has_its_directory_removed_at_the_end() {
        let dir = tempfile::tempdir().expect("dir");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("data dir");
        let mut program = Tethered::spawn(&mut command("true", Some(&data))).expect("spawn");
        assert!(program.wait().expect("wait").success());
        assert!(data.exists());
        program.tether.take();
        eventually("the directory was not removed", || !data.exists());
    }

    #[test]
    fn a_program_killed_by_its_owner_keeps_its_directory() {
        let dir = tempfile::tempdir().expect("dir");
        let mut program =
            Tethered::spawn(command("sleep", Some(dir.path())).arg("600")).expect("spawn");
        let pid = program.id();
        program.kill();
        assert!(!runs(pid));
        drop(program);
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            dir.path().exists(),
            "the directory of a restartable program went"
        );
    }
}
