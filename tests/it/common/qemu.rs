//! QEMU (TCG, never KVM) running a disk, its serial console in a file: waited on for a
//! line of the console, stopped by its PID when dropped; and a disk of
//! `recipes/debian-vm.yaml` booted with user-mode networking and SSH forwarded from a
//! free loopback port, until root answers over SSH. One file, std only, shared by the
//! VM tests (`tools::debian_mirror`, `tools::secure_boot`) and `cargo xtask
//! bench-debian`, which includes it with `#[path]`.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A running `qemu-system-x86_64`, stopped by its PID when dropped.
pub struct Qemu {
    child: Child,
    serial: PathBuf,
    started: Instant,
}

impl Qemu {
    /// Starts `qemu` (a `qemu-system-x86_64` command line without `-serial`) with its
    /// serial console written to `serial`.
    pub fn start(mut qemu: Command, serial: &Path) -> std::io::Result<Qemu> {
        let started = Instant::now();
        let child = qemu
            .arg("-serial")
            .arg(format!("file:{}", serial.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        Ok(Qemu {
            child,
            serial: serial.to_path_buf(),
            started,
        })
    }

    /// The time since QEMU started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Whether QEMU has exited (the guest powered off, or `-no-reboot` and it reset).
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// What the serial console printed so far, without colour and cursor codes.
    pub fn console(&self) -> String {
        let text =
            String::from_utf8_lossy(&std::fs::read(&self.serial).unwrap_or_default()).into_owned();
        let mut plain = String::with_capacity(text.len());
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\x1b' && chars.peek() == Some(&'[') {
                // A control sequence: `[`, its parameters, then its final character.
                chars.next();
                for p in chars.by_ref() {
                    if !(p.is_ascii_digit() || p == ';') {
                        break;
                    }
                }
                continue;
            }
            plain.push(c);
        }
        plain
    }

    /// Waits until the console shows `text`: the time since QEMU started. An error
    /// with the console once `deadline` (from QEMU's start) has passed.
    pub fn wait_for_console(&self, text: &str, deadline: Duration) -> Result<Duration, String> {
        loop {
            if self.console().contains(text) {
                return Ok(self.started.elapsed());
            }
            if self.started.elapsed() > deadline {
                return Err(format!(
                    "no `{text}` within {deadline:?}; serial console:\n{}",
                    self.console()
                ));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a build of the recipe wrote, to boot.
pub struct VmDisk<'a> {
    pub kernel: &'a Path,
    /// The kernel command line (the `.cmdline` file's one line).
    pub cmdline: &'a str,
    pub qcow2: &'a Path,
}

/// QEMU running a disk that root logs in to over SSH.
pub struct SshVm {
    qemu: Qemu,
    port: u16,
    key: PathBuf,
}

impl Deref for SshVm {
    type Target = Qemu;

    fn deref(&self) -> &Qemu {
        &self.qemu
    }
}

impl SshVm {
    /// Starts QEMU on `disk` (in snapshot mode: the guest's writes are dropped), its
    /// serial console written to `serial`; root logs in with the private key `key`.
    pub fn start(disk: &VmDisk, key: &Path, serial: &Path) -> std::io::Result<SshVm> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut qemu = Command::new("qemu-system-x86_64");
        qemu.args([
            "-accel", "tcg", "-m", "1024", "-display", "none", "-monitor", "none",
        ])
        .arg("-kernel")
        .arg(disk.kernel)
        .args(["-append", disk.cmdline])
        .arg("-drive")
        .arg(format!(
            "file={},format=qcow2,if=none,id=root,snapshot=on",
            disk.qcow2.display()
        ))
        .args(["-device", "nvme,drive=root,serial=cairn"])
        .arg("-netdev")
        .arg(format!("user,id=net,hostfwd=tcp:127.0.0.1:{port}-:22"))
        .args(["-device", "virtio-net-pci,netdev=net"]);
        Ok(SshVm {
            qemu: Qemu::start(qemu, serial)?,
            port,
            key: key.to_path_buf(),
        })
    }

    /// `ssh root@127.0.0.1 COMMAND` into the guest, with the key and no host key check
    /// (the guest makes its host keys on first boot).
    pub fn ssh(&self, command: &str) -> std::io::Result<Output> {
        Command::new("ssh")
            .args(["-p", &self.port.to_string(), "-i"])
            .arg(&self.key)
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "ConnectTimeout=10",
                "-o",
                "LogLevel=ERROR",
                "root@127.0.0.1",
                command,
            ])
            .stdin(Stdio::null())
            .output()
    }

    /// Runs `command` over SSH until it succeeds: what it printed, and the time since
    /// QEMU started. An error with the console once `deadline` has passed.
    pub fn wait_for_ssh(
        &self,
        command: &str,
        deadline: Duration,
    ) -> Result<(String, Duration), String> {
        loop {
            let answer = self.ssh(command).map_err(|e| format!("ssh: {e}"))?;
            if answer.status.success() {
                let stdout = String::from_utf8_lossy(&answer.stdout).into_owned();
                return Ok((stdout, self.qemu.elapsed()));
            }
            if self.qemu.elapsed() > deadline {
                return Err(format!(
                    "no SSH answer within {deadline:?}: {}\nserial console:\n{}",
                    String::from_utf8_lossy(&answer.stderr),
                    self.console()
                ));
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}
