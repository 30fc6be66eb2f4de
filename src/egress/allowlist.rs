//! The egress allow-list file: rules of host patterns and ports, parsed with positions so a
//! mistake is reported with its line and column.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::EgressError;

/// A parsed allow-list: `allow` rules and `deny` rules.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AllowList {
    /// Destinations that may be reached.
    pub allow: Vec<Rule>,
    /// Destinations that must not be reached; checked before `allow`.
    pub deny: Vec<Rule>,
}

/// One named rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The rule's name, shown as the reason for a verdict.
    pub name: String,
    /// Host patterns.
    pub hosts: Vec<HostPattern>,
    /// Ports; empty means any port.
    pub ports: Vec<u16>,
    /// Whether the destination is needed for normal operation.
    pub required: bool,
    /// Why it is needed (allow) or forbidden (deny).
    pub purpose: String,
}

/// A host pattern of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// An exact name, compared case-insensitively (`permit.yourcompany.com`, `REGISTRY`).
    Exact(String),
    /// `*.suffix`: any name ending in `.suffix`, at any depth; not `suffix` itself.
    Suffix(String),
    /// One IP address.
    Ip(IpAddr),
    /// A CIDR block.
    Cidr(IpAddr, u8),
    /// `*`: every destination.
    Any,
}

impl HostPattern {
    /// Parse one pattern; the error says what is wrong.
    pub fn parse(s: &str) -> Result<HostPattern, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty host pattern".into());
        }
        if s == "*" {
            return Ok(HostPattern::Any);
        }
        if let Some((addr, bits)) = s.split_once('/') {
            let ip: IpAddr = addr
                .parse()
                .map_err(|_| format!("`{s}` is not a CIDR block (expected ADDRESS/BITS)"))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let bits: u8 = bits
                .parse()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| format!("`{s}`: prefix length must be 0..={max}"))?;
            return Ok(HostPattern::Cidr(ip, bits));
        }
        let bare = s.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(HostPattern::Ip(ip));
        }
        let (suffix, name) = match s.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        if name.contains('*') {
            return Err(format!(
                "`{s}`: `*` is only allowed as a whole first label (`*.example.org`) or alone"
            ));
        }
        if name.contains(['/', ':', ' ', '@']) {
            return Err(format!(
                "`{s}` is not a host name; write the host only (ports go in `ports`)"
            ));
        }
        // Exact names keep their spelling (`REGISTRY` stays a recognisable placeholder);
        // matching ignores case either way.
        let name = name.trim_end_matches('.');
        Ok(if suffix {
            HostPattern::Suffix(name.to_ascii_lowercase())
        } else {
            HostPattern::Exact(name.to_string())
        })
    }

    /// Does `host` (lower-case, IPv6 without brackets) match?
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Any => true,
            HostPattern::Exact(n) => host.eq_ignore_ascii_case(n),
            HostPattern::Suffix(s) => {
                host.len() > s.len() + 1
                    && host.to_ascii_lowercase().ends_with(s.as_str())
                    && host.as_bytes()[host.len() - s.len() - 1] == b'.'
            }
            HostPattern::Ip(ip) => host.parse::<IpAddr>().is_ok_and(|h| h == *ip),
            HostPattern::Cidr(net, bits) => host
                .parse::<IpAddr>()
                .is_ok_and(|h| cidr_contains(*net, *bits, h)),
        }
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostPattern::Any => f.write_str("*"),
            HostPattern::Exact(n) => f.write_str(n),
            HostPattern::Suffix(s) => write!(f, "*.{s}"),
            HostPattern::Ip(ip) => write!(f, "{ip}"),
            HostPattern::Cidr(ip, b) => write!(f, "{ip}/{b}"),
        }
    }
}

/// True when `addr` is inside `net/bits`.
pub fn cidr_contains(net: IpAddr, bits: u8, addr: IpAddr) -> bool {
    match (net, addr) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(bits))
            };
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(bits))
            };
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

impl Rule {
    /// Does the rule cover `host` on `port`? A rule without ports covers every port; a
    /// finding without a known port is judged on its host alone.
    pub fn matches(&self, host: &str, port: Option<u16>) -> bool {
        self.hosts.iter().any(|p| p.matches(host))
            && (self.ports.is_empty() || port.is_none_or(|p| self.ports.contains(&p)))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawList {
    #[serde(default)]
    version: Option<u32>,
    #[serde(default)]
    allow: Vec<RawRule>,
    #[serde(default)]
    deny: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    hosts: Vec<Spanned<String>>,
    #[serde(default)]
    ports: Vec<u16>,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    purpose: String,
}

impl AllowList {
    /// Read and check an allow-list file.
    pub fn from_path(path: &Path) -> Result<AllowList, EgressError> {
        let text = std::fs::read_to_string(path).map_err(|source| EgressError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        AllowList::parse(&text, path)
    }

    /// Parse allow-list text; `path` is used in error messages only.
    pub fn parse(text: &str, path: &Path) -> Result<AllowList, EgressError> {
        let err = |line: u64, column: u64, message: String| EgressError::AllowList {
            path: PathBuf::from(path),
            line,
            column,
            message,
        };
        let raw: RawList = serde_saphyr::from_str(text).map_err(|e| {
            let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
            // The rendered message repeats the position and a snippet; keep its first line.
            let msg = e.to_string();
            let first = msg.lines().next().unwrap_or("").trim();
            // Drop the parser's own "error: line L column C:" prefix; the position is ours.
            let first = match first.find(": ") {
                Some(i) if first.starts_with("error: line ") => first[i + 2..].to_string(),
                _ => first.to_string(),
            };
            err(line, column, first)
        })?;
        if let Some(v) = raw.version {
            if v != 1 {
                return Err(err(1, 1, format!("version {v} is not supported (only 1)")));
            }
        }
        let convert = |rules: Vec<RawRule>| -> Result<Vec<Rule>, EgressError> {
            rules
                .into_iter()
                .map(|r| {
                    if r.hosts.is_empty() {
                        return Err(err(0, 0, format!("rule `{}` has no hosts", r.name)));
                    }
                    let hosts = r
                        .hosts
                        .iter()
                        .map(|h| {
                            HostPattern::parse(&h.value)
                                .map_err(|m| err(h.referenced.line(), h.referenced.column(), m))
                        })
                        .collect::<Result<_, _>>()?;
                    Ok(Rule {
                        name: r.name,
                        hosts,
                        ports: r.ports,
                        required: r.required,
                        purpose: r.purpose,
                    })
                })
                .collect()
        };
        Ok(AllowList {
            allow: convert(raw.allow)?,
            deny: convert(raw.deny)?,
        })
    }
}
