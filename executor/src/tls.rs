//! TLS to the driver: the executor's side of `[driver.tls]`. With `--tls-ca`, `--tls-cert` and
//! `--tls-key` the executor checks the driver's certificate against the CA and shows its own;
//! without them it speaks plaintext. It never falls back: an executor with TLS refuses a
//! plaintext driver URL (whoever can write the leader key must not be able to lure it to a
//! driver of their own in clear), and one without TLS names the flags it needs when the driver
//! speaks TLS.

use std::path::Path;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// The three files, read at start: a missing one fails the start naming its flag.
pub fn client_config(
    ca: Option<&Path>,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<Option<ClientTlsConfig>, String> {
    let (ca, cert, key) = match (ca, cert, key) {
        (None, None, None) => return Ok(None),
        (Some(ca), Some(cert), Some(key)) => (ca, cert, key),
        _ => return Err("--tls-ca, --tls-cert and --tls-key go together: give all three".into()),
    };
    let read = |flag: &str, path: &Path| {
        std::fs::read(path).map_err(|e| format!("{flag}: cannot read {}: {e}", path.display()))
    };
    let identity = Identity::from_pem(read("--tls-cert", cert)?, read("--tls-key", key)?);
    let ca = Certificate::from_pem(read("--tls-ca", ca)?);
    Ok(Some(ClientTlsConfig::new().ca_certificate(ca).identity(identity)))
}

/// A channel to the driver at `url`, over TLS when `tls` is set; the schemes must agree.
pub async fn connect(url: &str, tls: Option<&ClientTlsConfig>) -> Result<Channel, String> {
    let endpoint = Endpoint::from_shared(url.to_owned()).map_err(|e| format!("bad URL: {e}"))?;
    let endpoint = match (url.starts_with("https://"), tls) {
        (true, Some(tls)) => endpoint.tls_config(tls.clone()).map_err(|e| e.to_string())?,
        (false, None) => endpoint,
        (true, None) => {
            return Err("the driver speaks TLS: start this executor with --tls-ca, --tls-cert \
                        and --tls-key"
                .into());
        }
        (false, Some(_)) => {
            return Err("the driver offers plaintext and this executor speaks only TLS \
                        (--tls-ca is set): refusing to send it anything"
                .into());
        }
    };
    endpoint.connect().await.map_err(|e| {
        // The transport error alone says "transport error"; its source says why (a refused
        // certificate, a refused connection).
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            text.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        text
    })
}
