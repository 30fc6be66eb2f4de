//! Classification of one destination: the ordered checks of `bundle-spec/egress.md`, first
//! match wins — unresolved, loopback, deny rule, allow rule, inbound, in-cluster, placeholder,
//! service names (in-cluster), unknown.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::allowlist::AllowList;
use super::finder::{is_caps_placeholder, COMMON_TLDS, MARKER};
use super::Verdict;

/// Names of Kubernetes Services the checked charts define, and the charts' names.
#[derive(Debug, Clone, Default)]
pub struct ClusterNames {
    /// `metadata.name` of every rendered `kind: Service`.
    pub services: BTreeSet<String>,
    /// Chart names; `<chart>-<anything>` is taken for one of the chart's own services.
    pub charts: BTreeSet<String>,
    /// Ingress and Gateway API host names of the rendered charts (`*.x` for wildcards), and
    /// values that name the chart's own external address: inbound, not egress.
    pub inbound: BTreeSet<String>,
}

impl ClusterNames {
    fn is_inbound(&self, host: &str) -> bool {
        self.inbound.contains(host)
            || self.inbound.iter().any(|p| {
                p.strip_prefix("*.")
                    .is_some_and(|s| host.strip_suffix(s).is_some_and(|r| r.ends_with('.')))
            })
    }
}

/// Judge `host` (lower-case; IPv6 without brackets) on `port`.
/// Returns the verdict and the rule (or built-in class) that decided it.
pub fn classify(
    host: &str,
    port: Option<u16>,
    allow: Option<&AllowList>,
    names: &ClusterNames,
) -> (Verdict, Option<String>) {
    if host.contains(MARKER) || host.contains('$') {
        // A suffix that is certainly in-cluster stays in-cluster whatever fills the gap.
        if let Some(class) = in_cluster_suffix(host) {
            if !host.rsplit(MARKER).next().unwrap_or("").is_empty() {
                return (Verdict::InCluster, Some(class.into()));
            }
        }
        return (Verdict::Unresolved, None);
    }
    if let Some(class) = loopback(host) {
        return (Verdict::Loopback, Some(class.into()));
    }
    if let Some(list) = allow {
        if let Some(r) = list.deny.iter().find(|r| r.matches(host, port)) {
            return (Verdict::Denied, Some(r.name.clone()));
        }
        if let Some(r) = list.allow.iter().find(|r| r.matches(host, port)) {
            return (Verdict::Allowed, Some(r.name.clone()));
        }
    }
    if names.is_inbound(host) {
        return (Verdict::Inbound, Some("ingress host of the chart".into()));
    }
    if let Some(class) = in_cluster_suffix(host) {
        return (Verdict::InCluster, Some(class.into()));
    }
    if names.services.contains(host) {
        return (
            Verdict::InCluster,
            Some("service defined by the chart".into()),
        );
    }
    if !host.contains('.')
        && names.charts.iter().any(|c| {
            host == c
                || host
                    .strip_prefix(c.as_str())
                    .is_some_and(|r| r.starts_with('-'))
        })
    {
        return (Verdict::InCluster, Some("chart service name".into()));
    }
    if let Some(class) = placeholder(host) {
        return (Verdict::Placeholder, Some(class.into()));
    }
    if let Some(class) = service_name(host) {
        return (Verdict::InCluster, Some(class.into()));
    }
    (Verdict::Unknown, None)
}

fn loopback(host: &str) -> Option<&'static str> {
    if host == "localhost" || host.ends_with(".localhost") {
        return Some("loopback");
    }
    match host.parse::<IpAddr>() {
        Ok(ip) if ip.is_loopback() => Some("loopback"),
        Ok(ip) if ip.is_unspecified() => Some("unspecified address (bind address)"),
        _ => None,
    }
}

fn in_cluster_suffix(host: &str) -> Option<&'static str> {
    let h = host.trim_end_matches('.');
    if h.ends_with(".svc") || h.ends_with(".svc.cluster.local") || h.ends_with(".cluster.local") {
        Some("kubernetes service DNS")
    } else {
        None
    }
}

fn placeholder(host: &str) -> Option<&'static str> {
    const SUFFIXES: &[&str] = &[
        "yourcompany.com",
        "your-company.com",
        "yourdomain.com",
        "your-domain.com",
        "company.com",
        "example.com",
        "example.org",
        "example.net",
        "example",
        "invalid",
        "test",
    ];
    if host.starts_with('<') && host.ends_with('>') {
        return Some("placeholder <...>");
    }
    if is_caps_placeholder(host) {
        return Some("placeholder name");
    }
    if SUFFIXES
        .iter()
        .any(|s| host == *s || host.strip_suffix(s).is_some_and(|r| r.ends_with('.')))
    {
        return Some("placeholder domain");
    }
    if host.contains('.')
        && host
            .split('.')
            .any(|l| l.starts_with("your-") || l.starts_with("your_") || l.starts_with("my-"))
    {
        return Some("placeholder name");
    }
    None
}

/// A name only the cluster's DNS search path resolves: a single label (`myapp-redis`, a
/// Service in the pod's namespace) or `SERVICE.NAMESPACE` whose last label is no top-level
/// domain (`postgres.databases`).
fn service_name(host: &str) -> Option<&'static str> {
    if host.parse::<IpAddr>().is_ok() || host.is_empty() {
        return None;
    }
    let labels: Vec<&str> = host.split('.').collect();
    let dns_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
            && !l.starts_with('-')
    };
    if !labels.iter().all(|l| dns_label(l)) {
        return None;
    }
    match labels.as_slice() {
        [one] if one.bytes().any(|c| c.is_ascii_lowercase()) => {
            Some("service name in the namespace")
        }
        [_, ns] if ns.len() > 2 && !is_tld(ns) => Some("service.namespace name"),
        _ => None,
    }
}

/// Generic top-level domains in common use, besides `finder::COMMON_TLDS`.
const MORE_TLDS: &[&str] = &[
    "name",
    "pro",
    "mobi",
    "asia",
    "tel",
    "travel",
    "jobs",
    "cat",
    "coop",
    "museum",
    "aero",
    "arpa",
    "page",
    "run",
    "web",
    "blog",
    "shop",
    "store",
    "systems",
    "services",
    "network",
    "digital",
    "solutions",
    "software",
    "company",
    "group",
    "global",
    "world",
    "team",
    "tools",
    "works",
    "zone",
    "host",
    "space",
    "live",
    "news",
    "media",
    "email",
    "link",
    "click",
    "cloudflare",
    "microsoft",
    "apple",
    "amazon",
    "gle",
    "goog",
    "zip",
    "mov",
    "codes",
    "engineering",
    "security",
    "website",
    "center",
    "one",
    "top",
    "club",
    "work",
    "agency",
    "studio",
    "design",
    "ventures",
    "capital",
    "finance",
    "bank",
    "insurance",
    "health",
    "care",
    "academy",
    "education",
    "school",
    "university",
    "social",
    "support",
    "today",
    "plus",
    "pub",
    "wiki",
    "foundation",
    "institute",
    "partners",
    "consulting",
    "management",
    "enterprises",
    "industries",
    "international",
    "technology",
    "science",
];

/// Whether `label` is a top-level domain (every two-letter label is a country code).
fn is_tld(label: &str) -> bool {
    COMMON_TLDS.contains(&label) || MORE_TLDS.contains(&label)
}
