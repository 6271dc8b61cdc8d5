//! A test certificate authority made by `openssl`: a CA certificate and a server
//! certificate it signs for `localhost` and `127.0.0.1`, with its key. (A self-signed
//! certificate that is also a CA is refused as a server certificate, so the two are
//! separate.)

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct TestCa {
    /// The CA certificate (PEM): what a client trusts.
    pub ca: PathBuf,
    /// The server certificate (PEM), signed by the CA.
    pub cert: PathBuf,
    /// The server certificate's private key (PEM).
    pub key: PathBuf,
}

/// `openssl req` arguments that make a new P-256 key, unencrypted.
const NEW_EC_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
];

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestCa {
    /// Makes the CA and the server certificate in `dir`, named `<name>-ca.pem`,
    /// `<name>-server.pem` and `<name>-server.key`.
    pub fn new(dir: &Path, name: &str) -> TestCa {
        let ca_key = format!("{name}-ca.key");
        let ca = format!("{name}-ca.pem");
        let (cert, key, csr) = (
            format!("{name}-server.pem"),
            format!("{name}-server.key"),
            format!("{name}-server.csr"),
        );
        let ext = format!("{name}-server.ext");
        std::fs::write(
            dir.join(&ext),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        let subject = format!("/CN={name} test CA");
        openssl(
            dir,
            &[
                &["req", "-x509"][..],
                &NEW_EC_KEY,
                &[
                    "-keyout",
                    &ca_key,
                    "-out",
                    &ca,
                    "-days",
                    "2",
                    "-subj",
                    &subject,
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ],
            ]
            .concat(),
        );
        openssl(
            dir,
            &[
                &["req"][..],
                &NEW_EC_KEY,
                &["-keyout", &key, "-out", &csr, "-subj", "/CN=localhost"],
            ]
            .concat(),
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-out",
                &cert,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        );
        TestCa {
            ca: dir.join(ca),
            cert: dir.join(cert),
            key: dir.join(key),
        }
    }
}
