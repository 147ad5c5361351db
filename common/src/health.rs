//! Health over HTTP, for every Weir process: the answer `/healthz` and `/readyz` give, and the
//! client side a container's health check runs (`weir-driver health`, `weir-executor health`),
//! so an image needs no curl. The client is a plain HTTP/1.0 GET: one request, the connection
//! closed by the server.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// GETs `path` from `base` (`http://host:port` or `host:port`); returns the status code and the
/// body, or why there is none.
pub async fn get(base: &str, path: &str, timeout: Duration) -> Result<(u16, String), String> {
    get_with_token(base, path, timeout, None).await
}

/// [`get`] with `Authorization: Bearer {token}` when a token is given (`driver.http_token`).
pub async fn get_with_token(
    base: &str,
    path: &str,
    timeout: Duration,
    token: Option<&str>,
) -> Result<(u16, String), String> {
    let host = base.strip_prefix("http://").unwrap_or(base).trim_end_matches('/').to_owned();
    let url = format!("http://{host}{path}");
    let authorization = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let fetch = async {
        let mut stream = TcpStream::connect(&host).await.map_err(|e| e.to_string())?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n{authorization}\r\n");
        stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&response);
        let (head, body) = text.split_once("\r\n\r\n").ok_or("not an HTTP response")?;
        let code = head
            .lines()
            .next()
            .and_then(|status| status.split_whitespace().nth(1))
            .and_then(|code| code.parse::<u16>().ok())
            .ok_or("no HTTP status line")?;
        Ok((code, body.to_owned()))
    };
    match tokio::time::timeout(timeout, fetch).await {
        Ok(result) => result.map_err(|e: String| format!("{url}: {e}")),
        Err(_) => Err(format!("{url}: no answer within {timeout:?}")),
    }
}

/// The whole health check a container runs: GET `/readyz` (or `/healthz` with `live_only`),
/// print the answer, exit 0 on 200 and 1 otherwise.
pub async fn check(base: &str, live_only: bool) -> std::process::ExitCode {
    let path = if live_only { "/healthz" } else { "/readyz" };
    match get(base, path, Duration::from_secs(3)).await {
        Ok((200, body)) => {
            println!("{}", body.trim());
            std::process::ExitCode::SUCCESS
        }
        Ok((code, body)) => {
            println!("{code}: {}", body.trim());
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            println!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}
