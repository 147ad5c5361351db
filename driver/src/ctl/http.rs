//! Reads the leading driver's `/api/status` (JSON): the executors, running tasks and what the
//! job waits for live only in the driver. A plain HTTP/1.0 GET: one request, the connection
//! closed by the server, no client library needed.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TIMEOUT: Duration = Duration::from_secs(5);

/// GETs `{base}/api/status` (base like `http://127.0.0.1:7071`) and parses the JSON.
pub async fn driver_status(base: &str) -> Result<serde_json::Value, String> {
    let url = format!("{base}/api/status");
    let fetch = async {
        let host = base
            .strip_prefix("http://")
            .ok_or_else(|| format!("{base} is not an http:// address"))?
            .trim_end_matches('/');
        let mut stream = TcpStream::connect(host).await.map_err(|e| e.to_string())?;
        let request =
            format!("GET /api/status HTTP/1.0\r\nHost: {host}\r\nAccept: application/json\r\n\r\n");
        stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&response);
        let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP response")?;
        let status = head.lines().next().unwrap_or_default();
        if !status.contains(" 200") {
            return Err(format!("answered {status:?}"));
        }
        serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))
    };
    match tokio::time::timeout(TIMEOUT, fetch).await {
        Ok(result) => result.map_err(|e| format!("{url}: {e}")),
        Err(_) => Err(format!("{url}: no answer within {TIMEOUT:?}")),
    }
}
