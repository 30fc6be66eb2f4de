//! Finders that pick destinations out of one line of text: URLs, `host:port` pairs, IP
//! literals, whole-value host names, container image registries, and the arguments of network
//! commands in scripts. Also credential redaction and comment splitting.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::Kind;

/// Stands in for a template action that could not be resolved; counts as a host character.
pub const MARKER: char = '\u{E000}';

/// How an unresolved part of a host is shown.
pub const MARKER_SHOWN: &str = "{{?}}";

/// One destination found in a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// Byte range of the destination in the line.
    pub start: usize,
    /// End of the byte range (exclusive).
    pub end: usize,
    /// Lower-cased host (IPv6 without brackets); may contain [`MARKER`].
    pub host: String,
    /// Explicit port, or the URL scheme's default.
    pub port: Option<u16>,
    /// Shape of the destination.
    pub kind: Kind,
}

/// What is known about the line being scanned.
#[derive(Debug, Clone, Copy, Default)]
pub struct LineCtx<'a> {
    /// The line is YAML-like (`key: value`, `- value`).
    pub yaml: bool,
    /// The line is shell-like (`KEY=value`, commands such as `curl`).
    pub shell: bool,
    /// The env var name from a preceding `- name: X` line, for `value:` lines.
    pub env_name: Option<&'a str>,
}

/// The default port of a URL scheme, when the scheme has one.
pub fn default_port(scheme: &str) -> Option<u16> {
    Some(match scheme {
        "http" | "ws" => 80,
        "https" | "wss" | "oci" | "grpcs" => 443,
        "ftp" => 21,
        "ssh" | "sftp" | "git+ssh" => 22,
        "smtp" => 25,
        "smtps" => 465,
        "ldap" => 389,
        "ldaps" => 636,
        "postgres" | "postgresql" => 5432,
        "mysql" => 3306,
        "redis" => 6379,
        "rediss" => 6380,
        "mongodb" => 27017,
        "amqp" => 5672,
        "amqps" => 5671,
        "nats" => 4222,
        "git" => 9418,
        _ => return None,
    })
}

fn is_host_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_' || c == MARKER
}

/// Find every destination in `line`.
pub fn find(line: &str, ctx: LineCtx<'_>) -> Vec<Hit> {
    let mut hits = Vec::new();
    // Fast path: most lines hold nothing that can be a destination.
    let b = line.as_bytes();
    let interesting = b.iter().any(|&c| c == b':' || c == b'.' || c == b'@')
        || line.contains(MARKER)
        || ctx.yaml
        || ctx.shell;
    if !interesting {
        return hits;
    }
    find_urls(line, &mut hits);
    find_host_ports(line, &mut hits);
    find_ips(line, &mut hits);
    if ctx.yaml || ctx.shell {
        find_whole_values(line, ctx, &mut hits);
    }
    if line.contains('@') {
        find_scp_like(line, &mut hits);
    }
    if ctx.shell || line.contains("wget") || line.contains("curl") {
        find_commands(line, &mut hits);
    }
    hits.sort_by_key(|h| (h.start, h.end));
    hits.dedup_by(|a, b| a.start == b.start && a.host == b.host);
    hits
}

/// Git over SSH in scp form, `user@host:path`: port 22.
fn find_scp_like(line: &str, hits: &mut Vec<Hit>) {
    let b = line.as_bytes();
    for (at, _) in line.match_indices('@') {
        let user_start = line[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
            .map_or(0, |i| i + 1);
        if user_start == at || (user_start > 0 && matches!(b[user_start - 1], b'/' | b':')) {
            continue;
        }
        let rest = &line[at + 1..];
        let host_len = rest.find(|c: char| !is_host_char(c)).unwrap_or(rest.len());
        let host = &rest[..host_len];
        let path = &rest[host_len..];
        let Some(path) = path.strip_prefix(':') else {
            continue;
        };
        if !looks_like_dns_name(host)
            || !path.starts_with(|c: char| c.is_ascii_alphabetic() || c == '~' || c == '/')
        {
            continue;
        }
        let (start, end) = (user_start, at + 1 + host_len);
        if overlaps(hits, start, end) {
            continue;
        }
        hits.push(Hit {
            start,
            end,
            host: normalize_host(host),
            port: Some(22),
            kind: Kind::Url,
        });
    }
}

/// A single-label service name with a port (`myapp-redis:6379`): a Service in the namespace.
fn service_port(v: &str) -> Option<(String, u16)> {
    let (name, port) = v.split_once(':')?;
    let port = port.parse::<u16>().ok()?;
    let ok = name.len() >= 2
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == MARKER)
        && name.bytes().any(|c| c.is_ascii_lowercase())
        && !name.starts_with('-');
    ok.then(|| (name.to_string(), port))
}

fn overlaps(hits: &[Hit], start: usize, end: usize) -> bool {
    hits.iter().any(|h| start < h.end && h.start < end)
}

fn find_urls(line: &str, hits: &mut Vec<Hit>) {
    let b = line.as_bytes();
    let mut from = 0;
    // A byte search for `:` then a check for `//`: cheaper than a substring searcher per line.
    while let Some(rel) = b[from..].iter().position(|&c| c == b':') {
        let i = from + rel;
        from = i + 1;
        if !b[i + 1..].starts_with(b"//") {
            continue;
        }
        from = i + 3;
        let mut s = i;
        while s > 0 && (b[s - 1].is_ascii_alphanumeric() || matches!(b[s - 1], b'+' | b'.' | b'-'))
        {
            s -= 1;
        }
        let scheme = line[s..i].to_ascii_lowercase();
        if scheme.is_empty() || !scheme.as_bytes()[0].is_ascii_alphabetic() || scheme == "file" {
            continue;
        }
        let rest = &line[i + 3..];
        let auth_len = authority_len(rest);
        if auth_len == 0 {
            continue;
        }
        let authority = &rest[..auth_len];
        let end = i + 3 + auth_len;
        if scheme == "docker" {
            // `docker://IMAGE` (skopeo): the authority is an image reference.
            let img_end = rest
                .find(|c: char| c.is_whitespace() || c == '"' || c == '\'')
                .unwrap_or(rest.len());
            if let Some((host, port)) = image_registry(&rest[..img_end]) {
                hits.push(Hit {
                    start: s,
                    end: i + 3 + img_end,
                    host,
                    port,
                    kind: Kind::Registry,
                });
            }
            continue;
        }
        let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let Some((host, port)) = split_host_port(hostport) else {
            continue;
        };
        let port = match port {
            PortPart::Num(p) => Some(p),
            PortPart::None => default_port(&scheme),
            PortPart::Unresolved => None,
        };
        hits.push(Hit {
            start: s,
            end,
            host,
            port,
            kind: Kind::Url,
        });
    }
}

/// Length of a URL authority at the start of `rest`.
fn authority_len(rest: &str) -> usize {
    let mut in_brackets = false;
    let mut in_angle = false;
    for (idx, c) in rest.char_indices() {
        match c {
            '[' if idx == 0 || rest[..idx].ends_with('@') => in_brackets = true,
            ']' if in_brackets => in_brackets = false,
            '<' if idx == 0 || rest[..idx].ends_with('@') => in_angle = true,
            '>' if in_angle => in_angle = false,
            _ if in_brackets || in_angle => {}
            c if c.is_whitespace() => return idx,
            '/' | '?' | '#' | '"' | '\'' | '`' | '<' | '>' | '\\' | ',' | ';' | '(' | ')' | '|'
            | '^' | ']' | '[' | '*' => return idx,
            _ => {}
        }
    }
    rest.len()
}

enum PortPart {
    Num(u16),
    None,
    Unresolved,
}

/// Split `host[:port]`, `[v6][:port]` or `<placeholder>[:port]`; lower-cases the host.
fn split_host_port(s: &str) -> Option<(String, PortPart)> {
    let s = s.trim_end_matches('.');
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let close = rest.find(']')?;
        (&rest[..close], rest[close + 1..].strip_prefix(':'))
    } else if s.starts_with('<') {
        let close = s.find('>')?;
        (&s[..=close], s[close + 1..].strip_prefix(':'))
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let host = host.trim_end_matches('.');
    if host.is_empty() {
        return None;
    }
    let port = match port {
        None | Some("") => PortPart::None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) => PortPart::Num(n),
            Err(_) if p.contains(MARKER) || p.contains('$') => PortPart::Unresolved,
            Err(_) => return None,
        },
    };
    Some((normalize_host(host), port))
}

/// Lower-case a host unless it is an all-capitals placeholder such as `REGISTRY`.
pub fn normalize_host(h: &str) -> String {
    if is_caps_placeholder(h) {
        h.to_string()
    } else {
        h.to_ascii_lowercase()
    }
}

/// `REGISTRY`, `YOUR_REGISTRY`, `MY-HOST`: capitals, digits, `_` and `-` only, with a letter.
pub fn is_caps_placeholder(h: &str) -> bool {
    h.len() >= 3
        && h.bytes().any(|c| c.is_ascii_uppercase())
        && h.bytes()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
}

fn find_host_ports(line: &str, hits: &mut Vec<Hit>) {
    let b = line.as_bytes();
    let mut i = 0;
    while let Some(rel) = line[i..].find(':') {
        let colon = i + rel;
        i = colon + 1;
        // Digits right after the colon.
        let mut e = colon + 1;
        while e < b.len() && b[e].is_ascii_digit() {
            e += 1;
        }
        if e == colon + 1 || e - colon - 1 > 5 {
            continue;
        }
        if e < b.len()
            && (b[e].is_ascii_alphanumeric() || matches!(b[e], b'.' | b':' | b'-' | b'_'))
        {
            continue;
        }
        let Ok(port) = line[colon + 1..e].parse::<u16>() else {
            continue;
        };
        // The host before the colon.
        let (start, host) = if colon > 0 && b[colon - 1] == b']' {
            let Some(open) = line[..colon].rfind('[') else {
                continue;
            };
            let inner = &line[open + 1..colon - 1];
            if inner.parse::<Ipv6Addr>().is_err() {
                continue;
            }
            (open, inner.to_ascii_lowercase())
        } else {
            let mut s = colon;
            while s > 0 {
                let c = line[..s].chars().next_back().unwrap_or(' ');
                if !is_host_char(c) {
                    break;
                }
                s -= c.len_utf8();
            }
            let host = line[s..colon].trim_start_matches('.');
            let s = colon - host.len();
            if host.is_empty() || host.ends_with('.') {
                continue;
            }
            if s > 0 && matches!(b[s - 1], b'/' | b':' | b'$' | b'%' | b'{') {
                continue;
            }
            // A flag's value `--server=name:port` is an address even with a single label
            // (a Service in the namespace).
            let flag_value = s > 0 && b[s - 1] == b'=' && service_port(&line[s..e]).is_some();
            if !(looks_like_dns_name(host)
                || host.parse::<Ipv4Addr>().is_ok()
                || host == "localhost"
                || host.contains(MARKER)
                || flag_value)
            {
                continue;
            }
            (s, normalize_host(host))
        };
        if overlaps(hits, start, e) {
            continue;
        }
        hits.push(Hit {
            start,
            end: e,
            host,
            port: Some(port),
            kind: Kind::HostPort,
        });
    }
}

/// Dotted DNS name whose last label is alphabetic (a TLD) and not a file extension.
pub fn looks_like_dns_name(h: &str) -> bool {
    if !h.contains('.') || h.starts_with('.') || h.starts_with('-') || h.len() > 253 {
        return false;
    }
    if !h
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_' || c == MARKER)
    {
        return false;
    }
    if h.split('.').any(str::is_empty) {
        return false;
    }
    let tld = h.rsplit('.').next().unwrap_or("");
    if tld.contains(MARKER) {
        return true;
    }
    tld.len() >= 2 && tld.bytes().all(|c| c.is_ascii_alphabetic()) && !is_file_extension(tld)
}

/// A whole value that is not under a host-like key must end in a well-known top-level domain
/// to count as a host name: `info.debug` or `app.main` are not destinations.
fn common_tld(h: &str) -> bool {
    let tld = h.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
    tld.len() == 2 || COMMON_TLDS.contains(&tld.as_str())
}

/// The top-level domains a bare value must end in to be read as a host name (the names also
/// used on their own as configuration words, such as `name` or `pro`, are left out here; see
/// `classify::is_tld` for the longer list).
pub(super) const COMMON_TLDS: &[&str] = &[
    "com",
    "org",
    "net",
    "io",
    "dev",
    "app",
    "cloud",
    "ai",
    "co",
    "gov",
    "edu",
    "mil",
    "int",
    "biz",
    "info",
    "tech",
    "xyz",
    "site",
    "online",
    "sh",
    "me",
    "local",
    "internal",
    "corp",
    "lan",
    "home",
    "svc",
    "example",
    "test",
    "invalid",
    "localhost",
    "azure",
    "aws",
    "google",
];

fn is_file_extension(tld: &str) -> bool {
    const EXT: &[&str] = &[
        "yaml",
        "yml",
        "json",
        "txt",
        "md",
        "conf",
        "cfg",
        "ini",
        "sh",
        "py",
        "js",
        "ts",
        "tpl",
        "tgz",
        "gz",
        "tar",
        "zip",
        "crt",
        "pem",
        "key",
        "cert",
        "csr",
        "log",
        "html",
        "htm",
        "css",
        "xml",
        "toml",
        "env",
        "lock",
        "sql",
        "lua",
        "rb",
        "go",
        "rs",
        "java",
        "jar",
        "war",
        "so",
        "properties",
        "svg",
        "png",
        "jpg",
        "jpeg",
        "gif",
        "ico",
        "bash",
        "exe",
        "dll",
        "bin",
        "cnf",
        "der",
        "p12",
        "pfx",
        "jks",
        "csv",
        "tf",
        "tmpl",
        "j2",
        "out",
        "err",
        "pid",
        "sock",
        "db",
        "bak",
        "tmp",
        "cjs",
        "mjs",
        "map",
        "wasm",
        "whl",
        "deb",
        "rpm",
        "apk",
        "hcl",
        "rst",
        "adoc",
        "mod",
        "sum",
        "pub",
    ];
    EXT.contains(&tld.to_ascii_lowercase().as_str())
}

fn find_ips(line: &str, hits: &mut Vec<Hit>) {
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_hexdigit() && b[i] != b':' {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && (b[i].is_ascii_hexdigit() || b[i] == b'.' || b[i] == b':') {
            i += 1;
        }
        let prev_ok = start == 0
            || !(b[start - 1].is_ascii_alphanumeric()
                || matches!(b[start - 1], b'.' | b'-' | b'_' | b'/' | b'[' | b'v' | b'$'));
        let next_ok = i >= b.len()
            || !(b[i].is_ascii_alphanumeric() || matches!(b[i], b'_' | b'-' | b'/' | b']' | b'%'));
        if !prev_ok || !next_ok {
            continue;
        }
        let tok = line[start..i].trim_end_matches(['.', ':']);
        let end = start + tok.len();
        if overlaps(hits, start, end) {
            continue;
        }
        if let Ok(v4) = tok.parse::<Ipv4Addr>() {
            hits.push(Hit {
                start,
                end,
                host: v4.to_string(),
                port: None,
                kind: Kind::Host,
            });
        } else if tok.matches(':').count() >= 2
            && (tok.contains("::") || tok.matches(':').count() == 7)
        {
            if let Ok(v6) = tok.parse::<Ipv6Addr>() {
                hits.push(Hit {
                    start,
                    end,
                    host: v6.to_string(),
                    port: None,
                    kind: Kind::Host,
                });
            }
        }
    }
}

/// Case-insensitive substring test without allocating.
fn contains_ci(hay: &str, needle: &str) -> bool {
    hay.as_bytes()
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// Key names that suggest the value is a destination (compared ignoring case): they contain
/// host, url, uri, endpoint, server, addr, domain, proxy, upstream, dsn, issuer, discovery,
/// broker, webhook, remote, fqdn, origin, gateway or registry — but not hostPath,
/// hostNetwork, hostPort, hostPID, hostIPC, hostAliases, hostUsers.
pub fn host_like_key(key: &str) -> bool {
    // An environment variable name (`KEYCLOAK_DATABASE_HOST`) names a destination when its
    // last word does: `WATCH_SERVER_TIMEOUT` or `HOSTNAME_PREFIX` do not.
    if key.contains('_')
        && key
            .bytes()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_')
    {
        let last = key.rsplit('_').find(|w| !w.is_empty()).unwrap_or("");
        return matches!(
            last,
            "HOST"
                | "HOSTS"
                | "HOSTNAME"
                | "URL"
                | "URLS"
                | "URI"
                | "URIS"
                | "ENDPOINT"
                | "ENDPOINTS"
                | "SERVER"
                | "SERVERS"
                | "ADDR"
                | "ADDRESS"
                | "DSN"
                | "DOMAIN"
                | "PROXY"
                | "BROKER"
                | "BROKERS"
                | "REGISTRY"
                | "ISSUER"
                | "UPSTREAM"
                | "WEBHOOK"
                | "FQDN"
                | "ORIGIN"
                | "GATEWAY"
                | "REMOTE"
        );
    }
    // A dotted configuration key (`server.secretkey`, `server.url`) is judged by its last part.
    if let Some((_, last)) = key.rsplit_once('.') {
        if !last.is_empty() {
            return host_like_key(last);
        }
    }
    // Lower-case once into a small buffer; one pass with a dispatch on the first letter.
    let mut buf = [0u8; 64];
    let long;
    let k: &[u8] = match buf.get_mut(..key.len()) {
        Some(k) => {
            k.copy_from_slice(key.as_bytes());
            k.make_ascii_lowercase();
            k
        }
        None => {
            long = key.to_ascii_lowercase();
            long.as_bytes()
        }
    };
    let mut found = false;
    for i in 0..k.len() {
        let r = &k[i..];
        let hit = match r[0] {
            b'h' => {
                r.starts_with(b"host")
                    && ![
                        &b"path"[..],
                        b"network",
                        b"port",
                        b"pid",
                        b"ipc",
                        b"aliases",
                        b"users",
                    ]
                    .iter()
                    .any(|n| r[4..].starts_with(n))
            }
            b'u' => r.starts_with(b"url") || r.starts_with(b"uri") || r.starts_with(b"upstream"),
            b'e' => r.starts_with(b"endpoint"),
            b's' => r.starts_with(b"server"),
            b'a' => r.starts_with(b"addr"),
            b'd' => {
                r.starts_with(b"domain") || r.starts_with(b"dsn") || r.starts_with(b"discovery")
            }
            b'p' => r.starts_with(b"proxy"),
            b'i' => r.starts_with(b"issuer"),
            b'b' => r.starts_with(b"broker"),
            b'w' => r.starts_with(b"webhook"),
            b'r' => r.starts_with(b"remote") || r.starts_with(b"registry"),
            b'f' => r.starts_with(b"fqdn"),
            b'o' => r.starts_with(b"origin"),
            b'g' => r.starts_with(b"gateway"),
            _ => false,
        };
        if hit {
            found = true;
            break;
        }
    }
    found
}

/// Keys whose whole value is a name or an identifier, not a host: `query_name`, `id`,
/// `secretName`, `leaderElectionID`.
fn names_no_host(key: &str) -> bool {
    let k = key.rsplit(['.', '/']).next().unwrap_or(key).as_bytes();
    let ends = |s: &[u8]| k.len() >= s.len() && k[k.len() - s.len()..].eq_ignore_ascii_case(s);
    k.eq_ignore_ascii_case(b"id") || ends(b"name") || ends(b"_id") || ends(b"electionid")
}

/// Keys whose value is a container image reference.
pub fn image_key(key: &str) -> bool {
    let b = key.as_bytes();
    b.len() >= 5
        && b[b.len() - 5..].eq_ignore_ascii_case(b"image")
        && !contains_ci(key, "pull")
        && !contains_ci(key, "policy")
}

/// Split a YAML-ish or env-ish line into its key and value (quotes and trailing comment gone).
pub fn key_value<'l>(line: &'l str, ctx: LineCtx<'_>) -> Option<(&'l str, &'l str, usize)> {
    let t = line.trim_start();
    let lead = line.len() - t.len();
    let t2 = t.strip_prefix("- ").map_or(t, str::trim_start);
    let off = lead + (t.len() - t2.len());
    let colon = if ctx.yaml {
        t2.as_bytes().windows(2).position(|w| w == b": ")
    } else {
        None
    };
    let (key, val, voff) = if let Some(p) = colon {
        (
            t2[..p].trim().trim_matches(['"', '\'']),
            &t2[p + 2..],
            off + p + 2,
        )
    } else if ctx.yaml && t2.len() != t.len() {
        ("", t2, off)
    } else if ctx.yaml && !ctx.shell {
        return None;
    } else {
        let t3 = t2.strip_prefix("export ").unwrap_or(t2);
        let off = off + (t2.len() - t3.len());
        let p = t3.find('=')?;
        // `key = value` (INI, TOML) as well as `KEY=value`.
        let key = t3[..p].trim_start_matches('-').trim_end();
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return None;
        }
        (key, &t3[p + 1..], off + p + 1)
    };
    let raw = val.trim_start();
    let voff = voff + (val.len() - raw.len());
    let raw = split_comment(raw).0.trim_end();
    // A JSON member (`"host": "smtp.example.net",`) ends with a comma after its quotes.
    let raw = match raw.strip_suffix(',') {
        Some(r) if r.ends_with(['"', '\'']) => r,
        _ => raw,
    };
    let v = raw.trim_matches(['"', '\'']).trim();
    // `v` is a sub-slice of `raw`: its offset is the pointer difference.
    let voff = voff + (v.as_ptr() as usize - raw.as_ptr() as usize);
    Some((key, v, voff))
}

fn find_whole_values(line: &str, ctx: LineCtx<'_>, hits: &mut Vec<Hit>) {
    let Some((key, v, voff)) = key_value(line, ctx) else {
        return;
    };
    // Hosts and image references hold no spaces; most YAML values are ruled out here.
    if v.is_empty() || v.contains(char::is_whitespace) {
        return;
    }
    let end = voff + v.len();
    if image_key(key) {
        if let Some((host, port)) = image_registry(v) {
            // The registry replaces a plain host:port hit on the same span.
            hits.retain(|h| !(h.start >= voff && h.end <= end));
            hits.push(Hit {
                start: voff,
                end,
                host,
                port,
                kind: Kind::Registry,
            });
        }
        return;
    }
    // A label or annotation key (`cert-manager.io/cluster-issuer`) names no destination; nor
    // does a name or an identifier (`query_name`, `leaderElection.id`) unless the key says host.
    let annotation = key.contains('/');
    let keyish = !annotation
        && (host_like_key(key) || (key == "value" && ctx.env_name.is_some_and(host_like_key)));
    if !keyish && names_no_host(key) {
        return;
    }
    if overlaps(hits, voff, end) {
        return;
    }
    if !v.chars().all(is_host_char) {
        if keyish {
            if let Some((host, port)) = service_port(v) {
                hits.push(Hit {
                    start: voff,
                    end,
                    host,
                    port: Some(port),
                    kind: Kind::HostPort,
                });
            }
        }
        return;
    }
    let single_label = v.len() <= 63
        && v.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && v.bytes().any(|c| c.is_ascii_lowercase())
        && !matches!(
            v,
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "none"
        );
    let placeholder = keyish && is_caps_placeholder(v);
    let dotted = looks_like_dns_name(v) && (keyish || common_tld(v));
    if dotted || (keyish && (single_label || placeholder || v.contains(MARKER) && !v.contains(' ')))
    {
        if v.starts_with('-') || v.contains("..") {
            return;
        }
        let kind = if key.to_ascii_lowercase().contains("registry") {
            Kind::Registry
        } else {
            Kind::Host
        };
        hits.push(Hit {
            start: voff,
            end,
            host: normalize_host(v),
            port: None,
            kind,
        });
    }
}

/// The registry host of an image reference (`docker.io` when none is named).
pub fn image_registry(image: &str) -> Option<(String, Option<u16>)> {
    let image = image.trim().trim_matches(['"', '\'']);
    if image.is_empty()
        || image.contains("://")
        || image.contains(char::is_whitespace)
        || image.starts_with(['/', '.', '-', '$'])
        || image.ends_with('/')
    {
        return None;
    }
    let first = image.split('/').next()?;
    let has_path = image.contains('/');
    let (host, port) = if has_path
        && (first.contains('.')
            || first.contains(':')
            || first == "localhost"
            || is_caps_placeholder(first)
            || first.contains(MARKER))
    {
        match first.split_once(':') {
            Some((h, p)) => (h, p.parse().ok()),
            None => (first, None),
        }
    } else {
        // Docker Hub: `postgres:16`, `bitnami/redis:7`.
        let name = image.split([':', '@']).next()?;
        if name.is_empty()
            || !name.bytes().all(|c| {
                c.is_ascii_lowercase()
                    || c.is_ascii_digit()
                    || matches!(c, b'.' | b'_' | b'-' | b'/')
            })
        {
            return None;
        }
        ("docker.io", None)
    };
    Some((normalize_host(host), port.or(Some(443))))
}

fn find_commands(line: &str, hits: &mut Vec<Hit>) {
    let words: Vec<(usize, &str)> = line
        .split_whitespace()
        .map(|w| (w.as_ptr() as usize - line.as_ptr() as usize, w))
        .collect();
    for (i, (_, w)) in words.iter().enumerate() {
        let cmd = w.rsplit('/').next().unwrap_or(w);
        match cmd {
            "curl" | "wget" | "ssh" | "scp" | "ping" | "dig" | "nslookup" => {
                for (off, arg) in words.iter().skip(i + 1) {
                    if arg.starts_with('-') || matches!(*arg, "|" | "&&" | ";" | "||") {
                        if !arg.starts_with('-') {
                            break;
                        }
                        continue;
                    }
                    let a = arg.trim_matches(['"', '\'']);
                    let q = arg.len() - arg.trim_start_matches(['"', '\'']).len();
                    let a = a.rsplit_once('@').map_or(a, |(_, h)| h);
                    let hostpart = a.split(['/', ':']).next().unwrap_or("");
                    let service = a
                        .split('/')
                        .next()
                        .and_then(service_port)
                        .is_some_and(|_| matches!(cmd, "curl" | "wget"));
                    if looks_like_dns_name(hostpart)
                        || hostpart.parse::<IpAddr>().is_ok()
                        || service
                    {
                        let start =
                            off + q + arg.trim_matches(['"', '\'']).find(hostpart).unwrap_or(0);
                        let end = start + hostpart.len();
                        if !overlaps(hits, start, end) {
                            hits.push(Hit {
                                start,
                                end,
                                host: hostpart.to_ascii_lowercase(),
                                port: None,
                                kind: Kind::Host,
                            });
                        }
                    }
                }
            }
            "docker" | "podman" | "skopeo" | "crane" | "nerdctl" => {
                let Some((_, sub)) = words.get(i + 1) else {
                    continue;
                };
                if !matches!(
                    *sub,
                    "pull" | "push" | "run" | "login" | "inspect" | "copy" | "create"
                ) {
                    continue;
                }
                for (off, arg) in words.iter().skip(i + 2) {
                    if arg.starts_with('-') || arg.contains("://") {
                        continue;
                    }
                    let a = arg.trim_matches(['"', '\'']);
                    let found = if *sub == "login" {
                        split_host_port(a).and_then(|(h, p)| {
                            (looks_like_dns_name(&h)
                                || h.parse::<IpAddr>().is_ok()
                                || h == "localhost")
                                .then_some({
                                    (
                                        h,
                                        if let PortPart::Num(n) = p {
                                            Some(n)
                                        } else {
                                            Some(443)
                                        },
                                    )
                                })
                        })
                    } else {
                        image_registry(a)
                    };
                    if let Some((host, port)) = found {
                        let (start, end) = (*off, off + arg.len());
                        hits.retain(|x| !(x.start >= start && x.end <= end));
                        hits.push(Hit {
                            start,
                            end,
                            host,
                            port,
                            kind: Kind::Registry,
                        });
                    }
                    break;
                }
            }
            "nc" | "ncat" | "telnet" => {
                let args: Vec<&(usize, &str)> = words[i + 1..]
                    .iter()
                    .filter(|(_, a)| !a.starts_with('-'))
                    .collect();
                if let (Some((off, h)), Some((_, p))) = (args.first(), args.get(1)) {
                    if let Ok(port) = p.parse::<u16>() {
                        if looks_like_dns_name(h)
                            || h.parse::<IpAddr>().is_ok()
                            || *h == "localhost"
                        {
                            let (start, end) = (*off, off + h.len());
                            hits.retain(|x| !(x.start >= start && x.end <= end));
                            hits.push(Hit {
                                start,
                                end,
                                host: h.to_ascii_lowercase(),
                                port: Some(port),
                                kind: Kind::HostPort,
                            });
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// Split a line at a `#` comment: a `#` at the start or after whitespace, outside quotes.
/// Returns (code, comment) where the comment starts at the `#`.
pub fn split_comment(line: &str) -> (&str, Option<&str>) {
    let b = line.as_bytes();
    let (mut sq, mut dq) = (false, false);
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'\'' if !dq => sq = !sq,
            b'"' if !sq => dq = !dq,
            b'#' if !sq && !dq && (i == 0 || b[i - 1] == b' ' || b[i - 1] == b'\t') => {
                return (&line[..i], Some(&line[i..]));
            }
            _ => {}
        }
    }
    (line, None)
}

/// Replace the user-info part of every URL (`https://user:pass@host`) with `***`.
pub fn redact(line: &str) -> String {
    if !line.contains('@') || !line.contains("://") {
        return line.to_string();
    }
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find("://") {
        out.push_str(&rest[..i + 3]);
        let after = &rest[i + 3..];
        let auth_end = authority_end_with_actions(after);
        // Up to the next space or quote, not just the authority: a password holding a `/` or
        // `#` must not leak; redacting too much is the safe mistake.
        let auth = &after[..auth_end];
        match auth.rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&auth[at..]);
            }
            None => out.push_str(auth),
        }
        rest = &after[auth_end..];
    }
    out.push_str(rest);
    out
}

/// Where the text that may hold URL user-info ends: at the next space or quote, except inside
/// template actions (`https://{{ .Values.user }}:{{ .Values.password }}@host`).
fn authority_end_with_actions(after: &str) -> usize {
    let mut i = 0;
    while i < after.len() {
        let rest = &after[i..];
        if rest.starts_with("{{") {
            match rest.find("}}") {
                Some(j) => {
                    i += j + 2;
                    continue;
                }
                None => return after.len(),
            }
        }
        let Some(c) = rest.chars().next() else { break };
        if c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>' | '\\') {
            return i;
        }
        i += c.len_utf8();
    }
    after.len()
}

/// URL prefixes whose path is itself the credential (incoming-webhook URLs).
const SECRET_PATHS: &[&str] = &[
    "hooks.slack.com/services/",
    "hooks.slack.com/workflows/",
    "hooks.slack.com/triggers/",
    ".webhook.office.com/webhookb2/",
    "outlook.office.com/webhook/",
    "discord.com/api/webhooks/",
    "discordapp.com/api/webhooks/",
    "chat.googleapis.com/v1/spaces/",
    "api.telegram.org/bot",
];

/// The words an `Authorization` header's credential follows.
const TOKEN_WORDS: &[&str] = &["bearer ", "basic ", "token "];

/// Hide the token after `Bearer`/`Basic` (an `Authorization` header) and the path of webhook
/// URLs whose path is the credential (`https://hooks.slack.com/services/***`).
pub fn redact_tokens(line: &str) -> String {
    // One pass over the line decides whether there is anything to hide (most lines have
    // none); only then is it searched word by word.
    static ANY: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        let words: Vec<String> = TOKEN_WORDS
            .iter()
            .chain(SECRET_PATHS)
            .map(|w| regex::escape(w))
            .collect();
        regex::Regex::new(&format!("(?i){}", words.join("|"))).expect("a constant pattern")
    });
    if !ANY.is_match(line) {
        return line.to_string();
    }
    let lower = line.to_ascii_lowercase();
    let mut cuts: Vec<(usize, usize)> = Vec::new();
    let stop = |c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>' | '\\');
    for word in TOKEN_WORDS {
        for (i, _) in lower.match_indices(word) {
            if i > 0 && lower.as_bytes()[i - 1].is_ascii_alphanumeric() {
                continue;
            }
            let from = i + word.len();
            let rest = &line[from..];
            let skip = rest.len() - rest.trim_start().len();
            let len = rest[skip..].find(stop).unwrap_or(rest.len() - skip);
            if len > 0 && !rest[skip..].starts_with("***") {
                cuts.push((from + skip, from + skip + len));
            }
        }
    }
    for prefix in SECRET_PATHS {
        for (i, _) in lower.match_indices(prefix) {
            let from = i + prefix.len();
            let len = line[from..].find(stop).unwrap_or(line.len() - from);
            if len > 0 {
                cuts.push((from, from + len));
            }
        }
    }
    if cuts.is_empty() {
        return line.to_string();
    }
    cuts.sort_unstable();
    let mut out = String::with_capacity(line.len());
    let mut at = 0;
    for (s, e) in cuts {
        if s < at {
            continue;
        }
        out.push_str(&line[at..s]);
        out.push_str("***");
        at = e;
    }
    out.push_str(&line[at..]);
    out
}

/// Hide the values of secrets that sit beside destinations: `curl -u user:pass`,
/// `--password X`, and `KEY=value` / `key: value` where the key names a password or token.
pub fn redact_secrets(line: &str) -> String {
    let lower = line.to_ascii_lowercase();
    if !["-u", "pass", "secret", "token", "key"]
        .iter()
        .any(|w| lower.contains(w))
    {
        return line.to_string();
    }
    let mut out: Vec<String> = Vec::new();
    let mut hide_next = false;
    for w in line.split(' ') {
        if hide_next && !w.is_empty() {
            out.push("***".into());
            hide_next = false;
            continue;
        }
        let lw = w.to_ascii_lowercase();
        if matches!(
            lw.as_str(),
            "-u" | "--user" | "--password" | "--pass" | "--token" | "--api-key" | "--apikey"
        ) {
            hide_next = true;
            out.push(w.to_string());
            continue;
        }
        let secretish = [
            "password", "passwd", "secret", "token", "apikey", "api_key", "api-key",
        ];
        if let Some((k, _)) = w.split_once('=') {
            let lk = k.to_ascii_lowercase();
            if !k.is_empty() && secretish.iter().any(|s| lk.contains(s)) {
                out.push(format!("{k}=***"));
                continue;
            }
        }
        out.push(w.to_string());
    }
    let joined = out.join(" ");
    // YAML `password: value` (but not `passwordSecret: name`-style references).
    if let Some(p) = joined.find(": ") {
        let key = joined[..p]
            .trim()
            .trim_start_matches("- ")
            .to_ascii_lowercase();
        let reference = key.ends_with("secret")
            || key.ends_with("secretkey")
            || key.ends_with("secretname")
            || key.ends_with("ref");
        if !reference
            && ["password", "passwd", "token", "apikey", "api_key"]
                .iter()
                .any(|s| key.ends_with(s))
        {
            return format!("{}: ***", &joined[..p]);
        }
    }
    joined
}

/// Show a host for people: the unresolved marker becomes `{{?}}`.
pub fn shown(host: &str) -> String {
    host.replace(MARKER, MARKER_SHOWN)
}
