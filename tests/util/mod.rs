//! Shared test harness: real registries, a fault-injecting proxy, skopeo, OCI test images.
#![allow(dead_code)]

pub mod faultproxy;
pub mod helm;
pub mod oci;
pub mod registry;
pub mod skopeo;

use std::path::PathBuf;

/// Panics with the install command when `tool` is not on `PATH` (tests never skip).
pub fn require_tool(tool: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let p = dir.join(tool);
        if p.is_file() {
            return p;
        }
    }
    panic!("`{tool}` is not installed; run: apt-get install -y {package}");
}

/// A free TCP port on 127.0.0.1 (bound and released; small race accepted).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
