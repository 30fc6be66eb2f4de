//! `ferry egress observe`: judge connections that really happened — Cilium Hubble flows
//! (`hubble observe -o json`, one JSON object a line) or a plain `host port` list — against
//! the same allow-list, with the same verdicts and exit codes as `check`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use serde_json::Value as Json;

use super::allowlist::AllowList;
use super::classify::{classify, ClusterNames};
use super::{CheckOptions, EgressError, FailOn, Finding, Kind, Report, Source, Verdict};

/// Classify every outgoing connection in `logs`. Each line is a Hubble flow (JSON object with
/// a `flow` member, or the flow itself) or `host port` / `host:port` / `host`; blank lines and
/// `#` comments are skipped; lines that are neither are reported as diagnostics.
pub fn observe(allow: &AllowList, logs: &[PathBuf]) -> Result<Report, EgressError> {
    let names = ClusterNames::default();
    let mut report = Report {
        allow: Some(allow.clone()),
        ..Default::default()
    };
    for path in logs {
        let file = std::fs::File::open(path).map_err(|source| EgressError::Read {
            path: path.clone(),
            source,
        })?;
        let rel = path.display().to_string();
        for (i, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|source| EgressError::Read {
                path: path.clone(),
                source,
            })?;
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            let parsed = if t.starts_with('{') {
                hubble(t)
            } else {
                plain(t)
            };
            match parsed {
                Some(Conn::Skip) => {}
                Some(Conn::Dest {
                    host,
                    port,
                    in_cluster,
                    text,
                }) => {
                    let (mut verdict, mut rule) = classify(&host, port, Some(allow), &names);
                    if in_cluster && matches!(verdict, Verdict::Unknown | Verdict::Placeholder) {
                        verdict = Verdict::InCluster;
                        rule = Some("cluster endpoint".into());
                    }
                    report.findings.push(Finding {
                        host,
                        port,
                        verdict,
                        rule,
                        file: rel.clone(),
                        line: i + 1,
                        text,
                        value_path: None,
                        kind: Kind::Flow,
                        source: Source::Log,
                        commented: false,
                    });
                }
                None => report.diagnostics.push(super::Diagnostic {
                    file: rel.clone(),
                    line: i + 1,
                    message: "neither a Hubble flow nor a `host port` line; skipped".into(),
                }),
            }
        }
    }
    let fail_on = FailOn::default();
    let n = logs.len();
    report.summarize(&fail_on, n);
    Ok(report)
}

enum Conn {
    Skip,
    Dest {
        host: String,
        port: Option<u16>,
        in_cluster: bool,
        text: String,
    },
}

fn hubble(t: &str) -> Option<Conn> {
    let v: Json = serde_json::from_str(t).ok()?;
    let flow = v.get("flow").unwrap_or(&v);
    if !flow.is_object() {
        return None;
    }
    let dir = flow
        .get("traffic_direction")
        .and_then(Json::as_str)
        .unwrap_or("EGRESS");
    let reply = flow
        .get("is_reply")
        .and_then(Json::as_bool)
        .unwrap_or(false);
    if dir == "INGRESS" || reply {
        return Some(Conn::Skip);
    }
    let ip = flow.pointer("/IP/destination").and_then(Json::as_str);
    let name = flow
        .get("destination_names")
        .and_then(Json::as_array)
        .and_then(|a| a.first())
        .and_then(Json::as_str)
        .map(|n| n.trim_end_matches('.').to_ascii_lowercase());
    let l4 = flow.get("l4");
    let port = l4
        .and_then(|l| {
            l.pointer("/TCP/destination_port")
                .or_else(|| l.pointer("/UDP/destination_port"))
        })
        .and_then(Json::as_u64)
        .and_then(|p| u16::try_from(p).ok());
    // DNS lookups themselves are not destinations; the connections that follow are.
    if port == Some(53) {
        return Some(Conn::Skip);
    }
    let host = name.or_else(|| ip.map(str::to_string))?;
    let dest_ns = flow
        .pointer("/destination/namespace")
        .and_then(Json::as_str)
        .unwrap_or("");
    let src = match (
        flow.pointer("/source/namespace").and_then(Json::as_str),
        flow.pointer("/source/pod_name").and_then(Json::as_str),
    ) {
        (Some(ns), Some(p)) => format!("{ns}/{p}"),
        _ => "?".into(),
    };
    let verdict = flow.get("verdict").and_then(Json::as_str).unwrap_or("");
    let text = format!(
        "{src} -> {host}{}{} {verdict}",
        ip.filter(|i| *i != host)
            .map(|i| format!(" ({i})"))
            .unwrap_or_default(),
        port.map(|p| format!(":{p}")).unwrap_or_default()
    );
    Some(Conn::Dest {
        host,
        port,
        in_cluster: !dest_ns.is_empty(),
        text: text.trim().to_string(),
    })
}

fn plain(t: &str) -> Option<Conn> {
    let mut parts = t.split_whitespace();
    let first = parts.next()?;
    let second = parts.next();
    let (host, port) = match second {
        Some(p) => (first, Some(p.parse::<u16>().ok()?)),
        None => {
            if let Some(rest) = first.strip_prefix('[') {
                let (h, p) = rest.split_once(']')?;
                (h, p.strip_prefix(':').and_then(|p| p.parse().ok()))
            } else if first.matches(':').count() == 1 {
                let (h, p) = first.split_once(':')?;
                (h, Some(p.parse::<u16>().ok()?))
            } else {
                (first, None)
            }
        }
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if host.is_empty() {
        return None;
    }
    Some(Conn::Dest {
        host,
        port,
        in_cluster: false,
        text: t.to_string(),
    })
}

/// `observe` with the options of a check (the allow-list is required).
pub fn observe_with(opts: &CheckOptions, logs: &[PathBuf]) -> Result<Report, EgressError> {
    let allow = opts.allow.clone().unwrap_or_default();
    let mut r = observe(&allow, logs)?;
    let n = logs.len();
    r.summarize(&opts.fail_on, n);
    Ok(r)
}
