//! Runs one command and measures it: wall time (`Instant`, fine here: xtask is not the
//! build path), CPU time (user + system) and peak resident set size from `wait4`. Linux's `wait4` reports the
//! child's own usage together with that of every descendant it waited for, so for
//! `bash -c 'a | b | c'` the peak is the largest of bash, a, b and c.

use std::io::{self, Read};
use std::mem::MaybeUninit;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

pub struct Measured {
    pub wall: Duration,
    /// User plus system CPU time of the command and every descendant it waited for.
    pub cpu: Duration,
    pub peak_rss_bytes: u64,
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Runs `command` to completion with stdin closed and stdout/stderr captured.
pub fn run(command: &mut Command) -> Result<Measured> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("could not start {command:?}"))?;
    let stdout = child.stdout.take().map(read_all_in_thread);
    let stderr = child.stderr.take().map(read_all_in_thread);
    let (status, usage) = wait4(child.id()).with_context(|| format!("waiting for {command:?}"))?;
    let wall = start.elapsed();
    let collect = |reader: Option<thread::JoinHandle<io::Result<Vec<u8>>>>| -> Result<Vec<u8>> {
        match reader {
            Some(handle) => handle
                .join()
                .map_err(|_| anyhow::anyhow!("output reader thread panicked"))?
                .context("reading the child's output"),
            None => Ok(Vec::new()),
        }
    };
    let seconds = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    Ok(Measured {
        wall,
        cpu: seconds(usage.ru_utime) + seconds(usage.ru_stime),
        // ru_maxrss is in KiB on Linux.
        peak_rss_bytes: u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024,
        status,
        stdout: collect(stdout)?,
        stderr: collect(stderr)?,
    })
}

fn read_all_in_thread(
    mut reader: impl Read + Send + 'static,
) -> thread::JoinHandle<io::Result<Vec<u8>>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        reader.read_to_end(&mut buf)?;
        Ok(buf)
    })
}

/// Reaps `pid` and returns its status and resource usage. The `Child` handle is not
/// waited on afterwards; dropping it does nothing to a reaped process.
fn wait4(pid: u32) -> io::Result<(ExitStatus, libc::rusage)> {
    let pid = libc::pid_t::try_from(pid).map_err(io::Error::other)?;
    let mut status = 0;
    let mut usage = MaybeUninit::<libc::rusage>::zeroed();
    loop {
        // SAFETY: `status` and `usage` are valid for writes; `pid` is our own child.
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, usage.as_mut_ptr()) };
        if reaped == pid {
            // SAFETY: wait4 filled `usage` on success (and it was zeroed before).
            return Ok((ExitStatus::from_raw(status), unsafe { usage.assume_init() }));
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_status_output_and_peak_rss_of_a_whole_pipeline() {
        // The middle stage holds 64 MiB: `tail -c N` on a pipe must buffer N bytes.
        let measured = run(Command::new("bash").args([
            "-c",
            "set -o pipefail; head -c 67108864 /dev/zero | tail -c 67108864 | wc -c",
        ]))
        .expect("run pipeline");
        assert!(measured.status.success());
        assert_eq!(String::from_utf8_lossy(&measured.stdout).trim(), "67108864");
        assert!(
            measured.cpu > Duration::ZERO,
            "copying 64 MiB through a pipe takes some CPU time"
        );
        assert!(
            measured.peak_rss_bytes > 60 * 1024 * 1024,
            "peak RSS {} should include tail's buffer",
            measured.peak_rss_bytes
        );

        let failed = run(Command::new("bash").args(["-c", "echo oops >&2; exit 3"]))
            .expect("run failing command");
        assert_eq!(failed.status.code(), Some(3));
        assert_eq!(failed.stderr, b"oops\n");
    }
}
