//! etcd helpers for tests: a connected client, and a per-test key prefix.

use std::time::Duration;

use crate::services;

/// A client connected to the test etcd. Fails the test with the address when it cannot connect.
pub async fn client() -> etcd_client::Client {
    let endpoints = &services::ensure().etcd_endpoints;
    let options = etcd_client::ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(10));
    etcd_client::Client::connect(endpoints, Some(options))
        .await
        .unwrap_or_else(|e| panic!("cannot connect to etcd at {endpoints:?}: {e}"))
}

/// `/weir-test/{name}/`: every key a test writes lives under its own prefix.
pub fn prefix(name: &str) -> String {
    format!("/weir-test/{name}/")
}
