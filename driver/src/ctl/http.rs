//! Reads the leading driver's `/api/status` (JSON): the executors, running tasks and what the
//! job waits for live only in the driver.

use std::time::Duration;

/// GETs `{base}/api/status` (base like `http://127.0.0.1:7071`) and parses the JSON; `token`:
/// the driver's `http_token`, resolved.
pub async fn driver_status(base: &str, token: Option<&str>) -> Result<serde_json::Value, String> {
    let timeout = Duration::from_secs(5);
    let (code, body) =
        weir_common::health::get_with_token(base, "/api/status", timeout, token).await?;
    if code == 401 {
        return Err(format!(
            "{base}/api/status needs the driver's http_token: give --config with driver.http_token"
        ));
    }
    if code != 200 {
        return Err(format!("{base}/api/status answered {code}"));
    }
    serde_json::from_str(&body).map_err(|e| format!("{base}/api/status: not JSON: {e}"))
}
