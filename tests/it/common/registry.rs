//! A real distribution registry (Debian's `docker-registry`) for tests: each
//! [`Registry`] runs its own process on a free 127.0.0.1 port with its own config
//! file and storage directory in a temporary directory, and is killed by PID when
//! dropped. [`Registry::start_notifying`] adds a notifications endpoint (the push
//! hook's), and [`Registry::restart`] kills and starts it again on its storage.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const USER: &str = "alice";
pub const PASSWORD: &str = "correct horse battery";

/// How the registry authenticates.
pub enum RegistryAuth {
    None,
    /// htpasswd (bcrypt) with [`USER`] / [`PASSWORD`].
    Basic,
    /// Bearer tokens from a realm URL, checked against this certificate bundle
    /// (`auth: token`).
    Token {
        realm: String,
        service: String,
        issuer: String,
        root_cert: PathBuf,
    },
}

/// A notifications endpoint: where the registry POSTs its events, with the shared
/// secret as `Authorization: Bearer <secret>`.
pub struct Notify {
    pub url: String,
    pub secret: String,
}

pub struct Registry {
    child: Child,
    config: PathBuf,
    /// `127.0.0.1:PORT`
    pub host: String,
    /// Where the registry stores blobs and manifests.
    pub storage: PathBuf,
    _dir: tempfile::TempDir,
}

/// A free loopback port (bound and released: the registry binds it next).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Registry {
    pub fn start(auth: RegistryAuth) -> Registry {
        Registry::start_notifying(auth, None)
    }

    /// A registry that sends its events to `notify` (pulls left out, as the hook's
    /// own pulls would be), retrying each delivery every second until it is taken.
    pub fn start_notifying(auth: RegistryAuth, notify: Option<Notify>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage).unwrap();
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let auth_section = match auth {
            RegistryAuth::None => String::new(),
            RegistryAuth::Basic => {
                let out = Command::new("htpasswd")
                    .args(["-Bbn", USER, PASSWORD])
                    .output()
                    .expect("htpasswd (apache2-utils) is installed");
                assert!(out.status.success(), "htpasswd failed");
                let path = dir.path().join("htpasswd");
                std::fs::write(&path, &out.stdout).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: cairn-test\n    path: {}\n",
                    path.display()
                )
            }
            RegistryAuth::Token {
                realm,
                service,
                issuer,
                root_cert,
            } => format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {}\n",
                root_cert.display()
            ),
        };
        let notifications = match notify {
            Some(Notify { url, secret }) => format!(
                "notifications:\n  endpoints:\n    - name: cairn\n      url: {url}\n      headers:\n        Authorization: [Bearer {secret}]\n      timeout: 10s\n      threshold: 1\n      backoff: 1s\n      ignore:\n        actions: [pull]\n"
            ),
            None => String::new(),
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n  secret: cairn-test-secret\n{auth_section}{notifications}",
            storage.display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let registry = Registry {
            child: spawn(&config_path, dir.path()),
            config: config_path,
            host,
            storage,
            _dir: dir,
        };
        registry.wait_ready();
        registry
    }

    /// Kills the registry (losing the notifications it had yet to deliver) and starts
    /// it again with the same configuration and storage.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(&self.config, self._dir.path());
        self.wait_ready();
    }

    /// Waits until `/v2/` answers (200 or 401).
    fn wait_ready(&self) {
        for _ in 0..400 {
            if let Ok(mut s) = TcpStream::connect(&self.host) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = write!(
                    s,
                    "GET /v2/ HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                    self.host
                );
                let mut head = [0u8; 12];
                if s.read_exact(&mut head).is_ok()
                    && (head.ends_with(b"200") || head.ends_with(b"401"))
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!(
            "docker-registry did not answer on {}: {}",
            self.host,
            self.log()
        );
    }

    /// What the registry wrote on stderr.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("registry.log")).unwrap_or_default()
    }

    /// The file that holds blob `hex` in the registry's storage.
    pub fn blob_file(&self, hex: &str) -> PathBuf {
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Whether the repository has tag `tag` (looked up in the registry's storage).
    pub fn has_tag(&self, repository: &str, tag: &str) -> bool {
        self.storage
            .join("docker/registry/v2/repositories")
            .join(repository)
            .join("_manifests/tags")
            .join(tag)
            .exists()
    }
}

/// `docker-registry serve CONFIG`, its stderr appended to `dir/registry.log`.
fn spawn(config: &std::path::Path, dir: &std::path::Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("registry.log"))
        .unwrap();
    Command::new("docker-registry")
        .arg("serve")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("docker-registry (Debian package docker-registry) is installed")
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
