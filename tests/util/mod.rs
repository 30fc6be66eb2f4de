//! Shared test harness: real registries, a fault-injecting proxy, skopeo, OCI test images.
#![allow(dead_code)]

pub mod containerd;
pub mod cosign;
pub mod faultproxy;
pub mod helm;
pub mod httpserver;
pub mod oci;
pub mod registry;
pub mod release;
pub mod skopeo;
pub mod splitorigin;

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

/// A TCP port on 127.0.0.1 that was free a moment ago (bound and released). Another process
/// may take it before it is used: `registry::Registry::start` notices and picks another one.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A port on 127.0.0.1 where nobody listens, for as long as this lives: the port is bound
/// (so no other process can take it) but not listening, so connections are refused.
pub struct ClosedPort {
    _socket: socket2::Socket,
    /// The port.
    pub port: u16,
}

impl ClosedPort {
    /// Binds a fresh port without listening on it.
    pub fn new() -> ClosedPort {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
        socket.bind(&any.into()).unwrap();
        let port = socket.local_addr().unwrap().as_socket().unwrap().port();
        ClosedPort {
            _socket: socket,
            port,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// A bundle image for a reference `registry/path:tag[@digest]` (a made-up digest when none).
pub fn bundle_image(reference: &str) -> ferry::bundle::manifest::ImageEntry {
    let (name_tag, digest) = match reference.split_once('@') {
        Some((n, d)) => (n, d.to_string()),
        None => (reference, format!("sha256:{}", "e".repeat(64))),
    };
    let r = ferry::oci::reference::ImageRef::parse(name_tag).unwrap();
    ferry::bundle::manifest::ImageEntry {
        reference: name_tag.to_string(),
        registry: r.host().to_string(),
        repository: r.repository,
        tag: r.tag,
        digest: digest.parse().unwrap(),
        media_type: "application/vnd.oci.image.manifest.v1+json".to_string(),
        source_digest: None,
        non_distributable: Vec::new(),
        platforms: vec!["linux/amd64".to_string()],
        size: 1,
        referrers: Vec::new(),
    }
}
