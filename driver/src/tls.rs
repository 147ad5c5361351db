//! TLS with mutual authentication on the driver's gRPC port (`[driver.tls]`): the driver shows
//! its certificate, and an executor must show one signed by `client_ca`, or the handshake fails
//! before it can send anything. The files are read and checked when the driver starts, so a
//! missing or broken file stops it at once, naming the key.
//!
//! Without `[driver.tls]` the port speaks plaintext: fine on loopback (a local run), and said
//! loudly at start when the port listens anywhere else, since any peer that reaches it can then
//! attach as an executor.

use std::path::Path;
use std::time::Duration;

use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tracing::warn;
use weir_common::config::{DriverSection, DriverTls};

use crate::error::DriverError;

/// HTTP/2 and TCP keepalive on executor connections: a peer that vanished without closing is
/// noticed by the transport, not only by the missing heartbeats.
const KEEPALIVE: Duration = Duration::from_secs(10);
/// How long a TLS handshake may take.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// The gRPC server the driver runs each term: TLS from `tls` (checked here), keepalives on.
#[derive(Clone)]
pub struct GrpcServer {
    tls: Option<ServerTlsConfig>,
}

impl GrpcServer {
    pub fn new(driver: &DriverSection) -> Result<Self, DriverError> {
        let tls = driver.tls.as_ref().map(server_tls).transpose()?;
        if tls.is_none() && !driver.grpc_listen.ip().is_loopback() {
            warn!(grpc_listen = %driver.grpc_listen,
                "The driver's gRPC port is plaintext and listens beyond this host: any peer that \
                 reaches it can attach as an executor and read the job's config. Set [driver.tls] \
                 (see docs/security.md)");
        }
        let server = GrpcServer { tls };
        server.builder()?; // rustls parses the files here: a bad one stops the start
        Ok(server)
    }

    pub fn builder(&self) -> Result<Server, DriverError> {
        let builder = Server::builder()
            .http2_keepalive_interval(Some(KEEPALIVE))
            .http2_keepalive_timeout(Some(KEEPALIVE))
            .tcp_keepalive(Some(KEEPALIVE));
        match &self.tls {
            Some(tls) => builder.tls_config(tls.clone()).map_err(|e| {
                DriverError::Unfit(format!(
                    "[driver.tls]: the certificate or key is not usable: {e}"
                ))
            }),
            None => Ok(builder),
        }
    }
}

fn server_tls(files: &DriverTls) -> Result<ServerTlsConfig, DriverError> {
    let identity = Identity::from_pem(read("cert", &files.cert)?, read("key", &files.key)?);
    let client_ca = Certificate::from_pem(read("client_ca", &files.client_ca)?);
    let tls = ServerTlsConfig::new().identity(identity).client_ca_root(client_ca);
    // A peer that starts a handshake and stalls is dropped, not kept.
    Ok(tls.timeout(HANDSHAKE))
}

fn read(key: &str, path: &Path) -> Result<Vec<u8>, DriverError> {
    std::fs::read(path).map_err(|e| {
        DriverError::Unfit(format!("driver.tls.{key}: cannot read {}: {e}", path.display()))
    })
}
