//! Reads the leading driver's `/api/status` (JSON): the executors, running tasks and what the
//! job waits for live only in the driver.

use std::time::Duration;

/// GETs `{base}/api/status` (base like `http://127.0.0.1:7071`) and parses the JSON.
pub async fn driver_status(base: &str) -> Result<serde_json::Value, String> {
    let (code, body) =
        weir_common::health::get(base, "/api/status", Duration::from_secs(5)).await?;
    if code != 200 {
        return Err(format!("{base}/api/status answered {code}"));
    }
    serde_json::from_str(&body).map_err(|e| format!("{base}/api/status: not JSON: {e}"))
}
