//! A throwaway PostgreSQL 15 cluster for one test: `initdb` in a temp directory as the
//! unprivileged `postgres` user (initdb refuses root), password authentication for
//! TCP, a free loopback port, stopped by its postmaster's PID when dropped. `crash` and
//! `start` simulate a server crash and its recovery, `pause` and `resume` a server
//! that stops answering; `require_tls` serves TLS only; `psql` runs SQL as the
//! superuser.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = "/usr/lib/postgresql/15/bin";
/// The superuser the tests connect as, and its password.
pub const USER: &str = "cairn";
pub const PASSWORD: &str = "ledger-test-pw";

pub struct Cluster {
    dir: tempfile::TempDir,
    pub port: u16,
}

fn as_postgres(program: &str) -> Command {
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", "postgres", "--", &format!("{BIN}/{program}")]);
    cmd
}

fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// Not `common::registry::free_port`: `benches/ledger.rs` includes this file on its own.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Cluster {
    pub fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        // The postgres user must traverse to its data directory.
        let mut p = dir.path().to_path_buf();
        loop {
            let _ = Command::new("chmod").arg("o+x").arg(&p).status();
            if !p.pop() || p.as_os_str().is_empty() || p == Path::new("/") {
                break;
            }
        }
        ok(Command::new("chown").arg("postgres").arg(dir.path()));
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).unwrap();
        ok(Command::new("chown").arg("postgres").arg(&pwfile));
        ok(as_postgres("initdb")
            .args([
                "-U",
                USER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .arg("-D")
            .arg(dir.path().join("data")));
        let cluster = Cluster {
            dir,
            port: free_port(),
        };
        cluster.start_server();
        cluster
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts the server (again, after [`Cluster::crash`]) and waits until it accepts.
    pub fn start_server(&self) {
        ok(as_postgres("pg_ctl")
            .arg("-w")
            .arg("-D")
            .arg(self.data())
            .args([
                "-l",
                &self.dir.path().join("log").display().to_string(),
                "-o",
                &format!(
                    "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on",
                    self.port,
                    self.dir.path().display()
                ),
                "start",
            ]));
    }

    /// Stops the server as a crash would (`pg_ctl stop -m immediate`).
    pub fn crash(&self) {
        ok(as_postgres("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "stop"]));
    }

    /// The postmaster's PID, from its `postmaster.pid`.
    fn postmaster_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.data().join("postmaster.pid"))
            .ok()
            .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<i32>().ok()))
    }

    /// Stops the postmaster (SIGSTOP): connections are still accepted by the kernel,
    /// but nothing answers, as with a hung server.
    pub fn pause(&self) {
        let pid = self.postmaster_pid().expect("the server runs");
        // SAFETY: kill(2) with a valid signal number.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    }

    /// Lets a [`Cluster::pause`]d server go on.
    pub fn resume(&self) {
        let pid = self.postmaster_pid().expect("the server runs");
        // SAFETY: kill(2) with a valid signal number.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    }

    /// Serves TLS with `cert` and `key` (PEM) and refuses TCP connections without it.
    pub fn require_tls(&self, cert: &Path, key: &Path) {
        for (from, name, mode) in [(cert, "server.crt", "0644"), (key, "server.key", "0600")] {
            let to = self.data().join(name);
            std::fs::copy(from, &to).unwrap();
            ok(Command::new("chown").arg("postgres").arg(&to));
            ok(Command::new("chmod").arg(mode).arg(&to));
        }
        let conf = self.data().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).unwrap();
        text.push_str("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        std::fs::write(&conf, text).unwrap();
        let hba = self.data().join("pg_hba.conf");
        let text = std::fs::read_to_string(&hba).unwrap();
        let text: String = text
            .lines()
            .map(|l| match l.strip_prefix("host ") {
                Some(rest) => format!("hostssl {rest}\n"),
                None => format!("{l}\n"),
            })
            .collect();
        std::fs::write(&hba, text).unwrap();
        ok(as_postgres("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("reload"));
        // The reload is asynchronous: wait until the server speaks TLS.
        for _ in 0..100 {
            if self.psql("SHOW ssl").trim() == "on" {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("the server did not turn TLS on");
    }

    /// The URL of database `db` as `user` with `password`.
    pub fn url_as(&self, user: &str, password: &str, db: &str) -> String {
        format!(
            "postgres://{user}:{password}@127.0.0.1:{}/{db}?sslmode=disable",
            self.port
        )
    }

    /// The URL of the default database as the superuser.
    pub fn url(&self) -> String {
        self.url_as(USER, PASSWORD, "postgres")
    }

    /// Runs `sql` through `psql` as the superuser on the default database; returns
    /// its unaligned output.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_in("postgres", sql)
    }

    /// [`Cluster::psql`] on database `db`.
    pub fn psql_in(&self, db: &str, sql: &str) -> String {
        ok(as_postgres("psql").args([
            "-h",
            &self.dir.path().display().to_string(),
            "-p",
            &self.port.to_string(),
            "-U",
            USER,
            "-d",
            db,
            "-v",
            "ON_ERROR_STOP=1",
            "-At",
            "-c",
            sql,
        ]))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(pid) = self.postmaster_pid() {
            // A paused server would not act on SIGQUIT.
            unsafe {
                libc::kill(pid, libc::SIGCONT);
            }
            // SIGQUIT: the postmaster's immediate shutdown; the data is thrown away.
            unsafe {
                libc::kill(pid, libc::SIGQUIT);
            }
            for _ in 0..100 {
                if unsafe { libc::kill(pid, 0) } != 0 {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    }
}
