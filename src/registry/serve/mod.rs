//! `ferry serve`: a read-only OCI Distribution registry answering straight from signed
//! bundles, with nothing extracted.
//!
//! `catalog` verifies every input once (the indexing pass of `registry::bundle_source`) and
//! lists what each repository name answers for; `http` routes requests onto the catalog
//! (request paths are matched against it, never mapped onto the filesystem) and writes the
//! spec's answers and errors; `body` streams blobs in place, hashing whole ones as they are
//! sent; `listen` is the server: hyper on tokio, TLS on rustls, htpasswd (bcrypt) basic
//! auth, timeouts against slow clients and a graceful stop on SIGINT and SIGTERM; `mirror`
//! writes the node configuration (containerd, k3s, CRI-O) that sends pulls of the original
//! references here.

mod body;
pub mod catalog;
mod http;
mod listen;
pub mod mirror;

pub use catalog::{Catalog, CatalogError, CatalogOptions};
pub use http::valid_name;
pub use listen::{prepare, serve, Prepared, ServeError, ServeOptions, TlsFiles};

/// A receiver of log lines.
pub type LogFn = Box<dyn Fn(&str) + Send + Sync>;

/// Where the server's log lines go: one per request (when asked for) and one per event
/// worth knowing (a cut response, a refused TLS handshake, the stop).
pub struct Events {
    event: LogFn,
    access: Option<LogFn>,
}

impl Events {
    /// `event` receives events, `access` (when given) one line per request.
    pub fn new(event: impl Fn(&str) + Send + Sync + 'static, access: Option<LogFn>) -> Events {
        Events {
            event: Box::new(event),
            access,
        }
    }

    pub(crate) fn event(&self, line: &str) {
        (self.event)(&format!("{} {line}", now()));
    }

    pub(crate) fn access(&self, line: impl FnOnce() -> String) {
        if let Some(access) = &self.access {
            access(&format!("{} {}", now(), line()));
        }
    }
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
