//! Test certificates, made with the `openssl` command line into a test's directory: a CA, a
//! server certificate for 127.0.0.1 and localhost, and client certificates, all PEM, valid for
//! two days. Nothing here is ever used outside a test.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A certificate and its key.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A test CA in `dir`, named `name`; it signs the certificates it issues.
#[derive(Debug, Clone)]
pub struct TestCa {
    pub dir: PathBuf,
    pub name: String,
    /// The CA's own certificate: what clients and servers trust.
    pub cert: PathBuf,
    key: PathBuf,
}

impl TestCa {
    pub fn new(dir: &Path, name: &str) -> Self {
        std::fs::create_dir_all(dir).expect("certificate directory");
        let (cert, key) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            path(&key),
            "-out",
            path(&cert),
        ]);
        TestCa { dir: dir.to_owned(), name: name.to_owned(), cert, key }
    }

    /// A server certificate for 127.0.0.1 and localhost.
    pub fn server(&self, name: &str) -> CertFiles {
        self.issue(name, "serverAuth", "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    }

    /// A server certificate for 127.0.0.1 and localhost that is also good as a client's: etcd
    /// with `--client-cert-auth` dials itself (its gRPC gateway) with its server certificate.
    pub fn server_and_client(&self, name: &str) -> CertFiles {
        self.issue(name, "serverAuth,clientAuth", "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    }

    /// A client certificate.
    pub fn client(&self, name: &str) -> CertFiles {
        self.issue(name, "clientAuth", "")
    }

    fn issue(&self, name: &str, usage: &str, more: &str) -> CertFiles {
        let base = self.dir.join(format!("{}-{name}", self.name));
        let files = CertFiles { cert: base.with_extension("pem"), key: base.with_extension("key") };
        let (csr, ext) = (base.with_extension("csr"), base.with_extension("ext"));
        std::fs::write(&ext, format!("extendedKeyUsage={usage}\n{more}")).expect("extensions file");
        openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            path(&files.key),
            "-out",
            path(&csr),
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            path(&csr),
            "-CA",
            path(&self.cert),
            "-CAkey",
            path(&self.key),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            path(&ext),
            "-out",
            path(&files.cert),
        ]);
        files
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl").args(args).output().expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
