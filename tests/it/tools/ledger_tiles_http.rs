//! `ledger verify --tiles URL`: a published log served over HTTP by `python3 -m
//! http.server` on a loopback port, as any static web server would serve it, verifies
//! from the URL alone; an altered tile and a missing bundle are named by their URL.

use crate::ledger_tiles::{assert_says, Log};
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A static file server over `dir` on loopback, stopped (by its PID) when dropped.
struct StaticServer {
    child: Child,
    url: String,
}

impl StaticServer {
    fn start(dir: &Path) -> StaticServer {
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let child = Command::new("python3")
                .args(["-m", "http.server", "--bind", "127.0.0.1", "--directory"])
                .arg(dir)
                .arg(port.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start python3 -m http.server");
            let mut server = StaticServer {
                child,
                url: format!("http://127.0.0.1:{port}/"),
            };
            if server.serves_checkpoint(port) {
                return server;
            }
        }
        panic!("the static file server did not start (5 ports tried)");
    }

    /// Whether the server on `port` is this one and serves the log's checkpoint.
    fn serves_checkpoint(&mut self, port: u16) -> bool {
        for _ in 0..200 {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return false;
            }
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut response = String::new();
                if stream
                    .write_all(b"GET /checkpoint HTTP/1.0\r\n\r\n")
                    .is_ok()
                    && stream.read_to_string(&mut response).is_ok()
                    && response.starts_with("HTTP/1.0 200")
                {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_log_served_over_http_verifies_from_its_url_and_alterations_are_named() {
    let log = Log::new();
    log.grow_to(300, "a");
    let tiles = log.path("tiles");
    log.publish(&tiles);
    let server = StaticServer::start(&tiles);
    let url = Path::new(&server.url);
    log.assert_verifies(url, 300);

    let tile = tiles.join("tile/0/000");
    let mut bytes = std::fs::read(&tile).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&tile, bytes).unwrap();
    let (code, said) = log.verify_tiles(url, &[]);
    assert_eq!(code, 1, "{said}");
    assert_says(
        &said,
        "FAIL tile/0/000 does not hold the hashes of the entries it covers",
    );

    std::fs::remove_file(tiles.join("tile/entries/001.p/44")).unwrap();
    let (code, said) = log.verify_tiles(url, &[]);
    assert_eq!(code, 1, "{said}");
    assert_says(
        &said,
        &format!(
            "cannot fetch {}tile/entries/001.p/44: the server answered 404",
            server.url
        ),
    );
}
