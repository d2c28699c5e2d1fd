//! The suite's child processes and the guard that stops them: a [`Child`] is killed (SIGKILL)
//! and reaped by PID when it is dropped — at the end of its scenario, on an error, on a panic,
//! or when Ctrl-C drops the whole suite — so no run leaves a process behind. Each child's
//! stderr goes to a log file in the work directory.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{ChildStdout, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{Context, Error};

/// How long a child gets to print its first line (bound address) after it was started.
const READY_LIMIT: Duration = Duration::from_secs(15);

/// A running child process, killed and reaped when dropped.
#[derive(Debug)]
pub struct Child {
    what: String,
    inner: std::process::Child,
    /// Held so that a child writing to stdout later never gets SIGPIPE.
    _stdout: Option<BufReader<ChildStdout>>,
}

impl Child {
    /// Starts `cmd` with stdin closed and, given a `log`, stderr appended to it.
    pub fn spawn(what: &str, mut cmd: Command, log: Option<&Path>) -> Result<Child, Error> {
        if let Some(log) = log {
            let stderr = std::fs::File::options()
                .create(true)
                .append(true)
                .open(log)
                .map_err(Error::io(format!("opening {}", log.display())))?;
            cmd.stderr(stderr);
        }
        let inner = cmd
            .stdin(Stdio::null())
            .spawn()
            .map_err(|source| Error::Spawn {
                what: what.to_owned(),
                source,
            })?;
        Ok(Child {
            what: what.to_owned(),
            inner,
            _stdout: None,
        })
    }

    /// The child's PID.
    pub fn pid(&self) -> u32 {
        self.inner.id()
    }

    /// What this child is, for messages.
    pub fn what(&self) -> &str {
        &self.what
    }

    /// Sends `signal` (SIGSTOP, SIGCONT, …) to the child.
    pub fn signal(&self, signal: Signal) -> Result<(), Error> {
        send(self.pid(), signal).map_err(|e| Error::Child(format!("{}: {e}", self.what)))
    }

    /// Kills the child with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        let _ = self.inner.kill();
        let _ = self.inner.wait();
    }

    /// Whether the child is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.inner.try_wait(), Ok(None))
    }

    /// Takes the child's stdout pipe (spawned with `Stdio::piped()`).
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.inner.stdout.take()
    }

    /// Takes the child's stderr pipe (spawned with `Stdio::piped()`).
    pub fn take_stderr(&mut self) -> Option<std::process::ChildStderr> {
        self.inner.stderr.take()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends `signal` to `pid`.
pub fn send(pid: u32, signal: Signal) -> Result<(), nix::Error> {
    let pid = i32::try_from(pid).map_err(|_| nix::Error::ESRCH)?;
    kill(Pid::from_raw(pid), signal)
}

/// `tidegate echo-backend` listening on `listen` (port 0: a free one), optionally inside a
/// network namespace (`ip netns exec NAME …`: exec, so the PID is the backend's). Returns when
/// the backend has printed its bound address.
pub async fn echo_backend(
    ctx: &Context,
    what: &str,
    listen: SocketAddr,
    netns: Option<&str>,
) -> Result<(Child, SocketAddr), Error> {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(&ctx.tidegate);
            c
        }
        None => Command::new(&ctx.tidegate),
    };
    cmd.args(["echo-backend", "--listen", &listen.to_string()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped());
    let log = ctx.work.join(format!("{}.log", what.replace(' ', "-")));
    let mut child = Child::spawn(what, cmd, Some(&log))?;
    let stdout = child
        .take_stdout()
        .ok_or_else(|| Error::Child(format!("{what}: no stdout")))?;
    let (line, reader) = first_line(what, BufReader::new(stdout)).await?;
    child._stdout = Some(reader);
    let addr = line
        .trim()
        .rsplit(' ')
        .next()
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| Error::Child(format!("{what}: unexpected first line {line:?}")))?;
    Ok((child, addr))
}

/// Reads one line from a child's pipe, waiting at most [`READY_LIMIT`].
async fn first_line<R: BufRead + Send + 'static>(
    what: &str,
    mut reader: R,
) -> Result<(String, R), Error> {
    let read = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        reader.read_line(&mut line).map(|_| (line, reader))
    });
    match tokio::time::timeout(READY_LIMIT, read).await {
        Ok(Ok(Ok((line, reader)))) if !line.is_empty() => Ok((line, reader)),
        Ok(Ok(Ok(_))) => Err(Error::Child(format!("{what} exited before it was ready"))),
        Ok(Ok(Err(e))) => Err(Error::io(format!("reading from {what}"))(e)),
        Ok(Err(_)) => Err(Error::Child(format!("{what}: reader task failed"))),
        Err(_) => Err(Error::Timeout(format!("{what} to start"))),
    }
}
