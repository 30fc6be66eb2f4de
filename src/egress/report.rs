//! Rendering a [`Report`]: an aligned table, JSON, SARIF 2.1.0 and a Markdown egress table.

use std::collections::BTreeSet;
use std::io::{self, Write};

use serde_json::{json, Value as Json};
use sha2::{Digest, Sha256};

use super::allowlist::HostPattern;
use super::{Finding, Format, Report, Source, Verdict};

/// Write `report` to `out` in `format`.
pub fn render(report: &Report, format: Format, out: &mut dyn Write) -> io::Result<()> {
    match format {
        Format::Table => table(report, out),
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, report)?;
            writeln!(out)
        }
        Format::Sarif => {
            serde_json::to_writer_pretty(&mut *out, &sarif(report))?;
            writeln!(out)
        }
        Format::Markdown => markdown(report, out),
    }
}

fn destination(f: &Finding) -> String {
    let host = if f.host.contains(':') {
        format!("[{}]", f.host)
    } else {
        f.host.clone()
    };
    match f.port {
        Some(p) => format!("{host}:{p}"),
        None => host,
    }
}

fn verdict_cell(f: &Finding) -> String {
    let mut v = f.verdict.to_string();
    if f.commented {
        v.push_str(" (commented)");
    } else if f.source == Source::Doc {
        v.push_str(" (doc)");
    }
    v
}

fn table(r: &Report, out: &mut dyn Write) -> io::Result<()> {
    let head = [
        "VERDICT",
        "DESTINATION",
        "RULE",
        "LOCATION",
        "VALUE",
        "TEXT",
    ];
    let rows: Vec<[String; 6]> = r
        .findings
        .iter()
        .map(|f| {
            [
                verdict_cell(f),
                destination(f),
                f.rule.clone().unwrap_or_else(|| "-".into()),
                format!("{}:{}", f.file, f.line),
                f.value_path.clone().unwrap_or_else(|| "-".into()),
                f.text.clone(),
            ]
        })
        .collect();
    let mut w = head.map(|h| h.chars().count());
    for row in &rows {
        for (i, c) in row.iter().enumerate().take(5) {
            w[i] = w[i].max(c.chars().count().min(60));
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i < 5 {
                let c: String = c.chars().take(60).collect();
                s.push_str(&format!("{c:<width$}  ", width = w[i]));
            } else {
                s.push_str(c);
            }
        }
        s.trim_end().to_string()
    };
    writeln!(out, "{}", line(&head.map(String::from)))?;
    for row in &rows {
        writeln!(out, "{}", line(row))?;
    }
    if rows.is_empty() {
        writeln!(out, "(no destinations found)")?;
    }
    for d in &r.diagnostics {
        writeln!(out, "warning: {}:{}: {}", d.file, d.line, d.message)?;
    }
    let s = &r.summary;
    let counts: Vec<String> = Verdict::ALL
        .iter()
        .filter_map(|v| {
            s.verdicts
                .get(v.as_str())
                .filter(|n| **n > 0)
                .map(|n| format!("{n} {v}"))
        })
        .collect();
    writeln!(
        out,
        "\n{} finding(s) in {} file(s): {}; {} failing, {} file problem(s)",
        s.findings,
        s.files_scanned,
        if counts.is_empty() {
            "none".to_string()
        } else {
            counts.join(", ")
        },
        s.failing,
        s.diagnostics
    )
}

fn level(f: &Finding) -> (&'static str, &'static str) {
    match f.verdict {
        Verdict::Denied | Verdict::Unknown | Verdict::Unresolved
            if f.commented || f.source == Source::Doc =>
        {
            ("informational", "note")
        }
        Verdict::Denied => ("fail", "error"),
        Verdict::Unknown => ("fail", "error"),
        Verdict::Unresolved => ("fail", "warning"),
        _ => ("pass", "none"),
    }
}

fn rule_text(v: Verdict) -> (&'static str, &'static str, &'static str) {
    match v {
        Verdict::Loopback => ("LoopbackDestination", "Connection to the pod itself", "The destination is a loopback or unspecified address; traffic does not leave the pod."),
        Verdict::Denied => ("DeniedDestination", "Destination forbidden by the allow-list", "The destination matches a deny rule of the allow-list. Remove the reference, disable the feature that uses it, or change the allow-list."),
        Verdict::Allowed => ("AllowedDestination", "Destination permitted by the allow-list", "The destination matches an allow rule of the allow-list."),
        Verdict::InCluster => ("InClusterDestination", "Kubernetes in-cluster destination", "The destination is a Kubernetes service name (*.svc, *.cluster.local, or a Service the chart defines)."),
        Verdict::Inbound => ("InboundName", "Name clients use to reach the chart", "The name is an Ingress or Gateway API host of the chart: clients connect to it, the software does not connect out to it."),
        Verdict::Placeholder => ("PlaceholderDestination", "Customer-configured placeholder", "The destination is a placeholder the customer replaces (yourcompany.com, example.com, <...>, REGISTRY)."),
        Verdict::Unknown => ("UnknownDestination", "Destination not covered by the allow-list", "No allow or deny rule covers this destination. Add it to the allow-list if it is expected, or remove it."),
        Verdict::Unresolved => ("UnresolvedDestination", "Destination that could not be computed", "The destination depends on a template expression or variable that could not be resolved offline. Supply the values (--values) or review the template."),
    }
}

fn sarif(r: &Report) -> Json {
    let mut rules: Vec<Json> = Verdict::ALL
        .iter()
        .map(|v| {
            let (name, short, full) = rule_text(*v);
            let lvl = match v {
                Verdict::Denied | Verdict::Unknown => "error",
                Verdict::Unresolved => "warning",
                _ => "none",
            };
            json!({
                "id": format!("egress/{v}"),
                "name": name,
                "shortDescription": {"text": short},
                "fullDescription": {"text": full},
                "help": {"text": full},
                "defaultConfiguration": {"level": lvl},
                "properties": {"tags": ["security", "egress"]}
            })
        })
        .collect();
    rules.push(json!({
        "id": "egress/unreadable",
        "name": "UnreadableFile",
        "shortDescription": {"text": "File that could not be understood"},
        "fullDescription": {"text": "A file (for example a chart template with an unclosed action) could not be parsed; its destinations may be incomplete."},
        "help": {"text": "Fix the file; the rest of the bundle was still checked."},
        "defaultConfiguration": {"level": "warning"}
    }));
    let mut fingerprints = Fingerprints::default();
    let mut results: Vec<Json> = r
        .findings
        .iter()
        .map(|f| {
            let idx = Verdict::ALL
                .iter()
                .position(|v| *v == f.verdict)
                .unwrap_or(0);
            let (kind, level) = level(f);
            let mut msg = format!("{} destination {}", f.verdict, destination(f));
            if let Some(rule) = &f.rule {
                msg.push_str(&format!(" (rule: {rule})"));
            }
            if let Some(p) = &f.value_path {
                msg.push_str(&format!(" from {p}"));
            }
            if f.commented {
                msg.push_str(" on a commented-out line");
            }
            let fp = fingerprints.unique(&format!(
                "{}|{}|{:?}|{}|{}|{}",
                f.verdict,
                destination(f),
                f.kind,
                f.file,
                f.line,
                f.text
            ));
            json!({
                "ruleId": format!("egress/{}", f.verdict),
                "ruleIndex": idx,
                "kind": kind,
                "level": level,
                "message": {"text": msg},
                "locations": [location(&f.file, f.line, Some(&f.text))],
                "partialFingerprints": {"egressFinding/v1": fp},
                "properties": {
                    "host": f.host,
                    "port": f.port,
                    "kind": f.kind,
                    "source": f.source,
                    "commented": f.commented,
                }
            })
        })
        .collect();
    for d in &r.diagnostics {
        results.push(json!({
            "ruleId": "egress/unreadable",
            "ruleIndex": Verdict::ALL.len(),
            "kind": "fail",
            "level": "warning",
            "message": {"text": d.message},
            "locations": [location(&d.file, d.line, None)],
            "partialFingerprints": {
                "egressFinding/v1": fingerprints.unique(&format!("diagnostic|{}|{}|{}", d.file, d.line, d.message))
            },
        }));
    }
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "ferry-egress",
                "fullName": "ferry egress check",
                "version": env!("CARGO_PKG_VERSION"),
                "semanticVersion": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://github.com/ferry/ferry/blob/main/bundle-spec/egress.md",
                "rules": rules
            }},
            "columnKind": "unicodeCodePoints",
            "results": results
        }]
    })
}

/// SARIF fingerprints, unique within one log: a result identical to an earlier one gets the
/// next number after its text.
#[derive(Default)]
struct Fingerprints {
    seen: std::collections::HashMap<String, usize>,
}

impl Fingerprints {
    fn unique(&mut self, text: &str) -> String {
        let n = self.seen.entry(text.to_string()).or_default();
        *n += 1;
        let text = if *n == 1 {
            text.to_string()
        } else {
            format!("{text}|{n}")
        };
        hex::encode(Sha256::digest(text))
    }
}

fn location(file: &str, line: usize, snippet: Option<&str>) -> Json {
    let uri = if file.starts_with('/') {
        format!("file://{file}")
    } else {
        file.replace(' ', "%20")
    };
    let mut region = json!({"startLine": line.max(1)});
    if let Some(s) = snippet {
        region["snippet"] = json!({"text": s});
    }
    let mut art = json!({"uri": uri});
    if !file.starts_with('/') {
        art["uriBaseId"] = json!("%SRCROOT%");
    }
    json!({"physicalLocation": {"artifactLocation": art, "region": region}})
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn evidence_cell(fs: &[&Finding]) -> String {
    let mut locs: Vec<String> = Vec::new();
    for f in fs {
        let l = format!("`{}:{}`", f.file, f.line);
        if !locs.contains(&l) {
            locs.push(l);
        }
    }
    let more = locs.len().saturating_sub(3);
    let mut s = locs.into_iter().take(3).collect::<Vec<_>>().join(", ");
    if more > 0 {
        s.push_str(&format!(" and {more} more"));
    }
    if s.is_empty() {
        "—".into()
    } else {
        s
    }
}

fn verdicts_cell(fs: &[&Finding]) -> String {
    let set: BTreeSet<Verdict> = fs.iter().map(|f| f.verdict).collect();
    if set.is_empty() {
        return "not found in bundle".into();
    }
    set.iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// One row of the Markdown table.
fn md_row(
    out: &mut dyn Write,
    dest: &str,
    req: &str,
    purpose: &str,
    fs: &[&Finding],
) -> io::Result<()> {
    writeln!(
        out,
        "| {} | {} | {} | {} | {} |",
        cell(dest),
        req,
        cell(purpose),
        verdicts_cell(fs),
        evidence_cell(fs)
    )
}

fn markdown(r: &Report, out: &mut dyn Write) -> io::Result<()> {
    let active: Vec<&Finding> = r
        .findings
        .iter()
        .filter(|f| !f.commented && f.source != Source::Doc)
        .collect();
    let mut used = vec![false; active.len()];
    writeln!(out, "## Egress Requirements\n")?;
    writeln!(
        out,
        "| Destination | Required? | Purpose | Verdict | Evidence |"
    )?;
    writeln!(out, "|---|---|---|---|---|")?;
    md_declared(r, &active, &mut used, out)?;
    md_allowed(r, &active, &mut used, out)?;
    md_rest(&active, &used, out)?;
    md_unreferenced(r, out)?;
    md_footer(r, active.len(), out)
}

/// 1. What the vendor declared.
fn md_declared(
    r: &Report,
    active: &[&Finding],
    used: &mut [bool],
    out: &mut dyn Write,
) -> io::Result<()> {
    for d in &r.declared {
        let pats: Vec<HostPattern> = d
            .hosts
            .iter()
            .filter_map(|h| HostPattern::parse(h).ok())
            .collect();
        let mut fs = Vec::new();
        for (i, f) in active.iter().enumerate() {
            let port_ok = d.ports.is_empty() || f.port.is_none_or(|p| d.ports.contains(&p));
            if !used[i] && port_ok && pats.iter().any(|p| p.matches(&f.host)) {
                used[i] = true;
                fs.push(*f);
            }
        }
        let hosts = if d.hosts.is_empty() {
            String::new()
        } else {
            format!(" (`{}`)", d.hosts.join("`, `"))
        };
        md_row(
            out,
            &format!("{}{hosts}", d.name),
            if d.required { "Required" } else { "Optional" },
            d.purpose.as_deref().unwrap_or(""),
            &fs,
        )?;
    }
    Ok(())
}

/// 2. Allow rules that matched something.
fn md_allowed(
    r: &Report,
    active: &[&Finding],
    used: &mut [bool],
    out: &mut dyn Write,
) -> io::Result<()> {
    let Some(list) = &r.allow else {
        return Ok(());
    };
    for rule in &list.allow {
        let mut fs = Vec::new();
        for (i, f) in active.iter().enumerate() {
            if !used[i]
                && f.verdict == Verdict::Allowed
                && f.rule.as_deref() == Some(rule.name.as_str())
            {
                used[i] = true;
                fs.push(*f);
            }
        }
        if !fs.is_empty() {
            let hosts: Vec<String> = rule.hosts.iter().map(|h| h.to_string()).collect();
            let req = if rule.required {
                "Required"
            } else {
                "Optional"
            };
            md_row(
                out,
                &format!("{} (`{}`)", rule.name, hosts.join("`, `")),
                req,
                &rule.purpose,
                &fs,
            )?;
        }
    }
    Ok(())
}

/// 3. Everything else, one row per verdict and host.
fn md_rest(active: &[&Finding], used: &[bool], out: &mut dyn Write) -> io::Result<()> {
    let mut groups: Vec<((Verdict, String), Vec<&Finding>)> = Vec::new();
    for (i, f) in active.iter().enumerate() {
        if used[i] {
            continue;
        }
        let key = (f.verdict, f.host.clone());
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(*f),
            None => groups.push((key, vec![*f])),
        }
    }
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    for ((v, host), fs) in &groups {
        let (req, purpose) = match v {
            Verdict::Denied => (
                "Must not be used",
                format!("Denied by rule: {}", fs[0].rule.as_deref().unwrap_or("-")),
            ),
            Verdict::Unknown => ("Unknown", "Not covered by the allow-list".to_string()),
            Verdict::Unresolved => ("Unknown", "Could not be resolved offline".to_string()),
            Verdict::InCluster => ("In-cluster", "Service inside the cluster".to_string()),
            Verdict::Loopback => ("Local", "Within the pod".to_string()),
            Verdict::Inbound => ("Inbound", "Name clients use to reach the chart".to_string()),
            Verdict::Placeholder => (
                "Customer-configured",
                "Placeholder the customer replaces".to_string(),
            ),
            Verdict::Allowed => ("—", fs[0].rule.clone().unwrap_or_default()),
        };
        let ports: BTreeSet<String> = fs
            .iter()
            .filter_map(|f| f.port)
            .map(|p| p.to_string())
            .collect();
        let dest = if ports.is_empty() {
            format!("`{host}`")
        } else {
            format!(
                "`{host}` ({})",
                ports.into_iter().collect::<Vec<_>>().join(", ")
            )
        };
        md_row(out, &dest, req, &purpose, fs)?;
    }
    Ok(())
}

/// 4. Deny rules nothing matched: the promise that they are not needed, backed by a check.
fn md_unreferenced(r: &Report, out: &mut dyn Write) -> io::Result<()> {
    let Some(list) = &r.allow else {
        return Ok(());
    };
    for rule in &list.deny {
        if !r.findings.iter().any(|f| {
            f.verdict == Verdict::Denied
                && f.rule.as_deref() == Some(rule.name.as_str())
                && !f.commented
        }) {
            let hosts: Vec<String> = rule.hosts.iter().map(|h| h.to_string()).collect();
            writeln!(
                out,
                "| {} (`{}`) | Not required | {} | not referenced | — |",
                cell(&rule.name),
                hosts.join("`, `"),
                cell(&rule.purpose)
            )?;
        }
    }
    Ok(())
}

/// What the table leaves out, and the files that could not be understood.
fn md_footer(r: &Report, listed: usize, out: &mut dyn Write) -> io::Result<()> {
    let skipped = r.findings.len() - listed;
    if skipped > 0 {
        writeln!(out, "\n{skipped} reference(s) on commented-out lines or in documentation are not listed; see `--format json`.")?;
    }
    if !r.diagnostics.is_empty() {
        writeln!(
            out,
            "\n{} file(s) could not be fully understood: {}.",
            r.diagnostics.len(),
            r.diagnostics
                .iter()
                .map(|d| format!("`{}:{}`", d.file, d.line))
                .collect::<Vec<_>>()
                .join(", ")
        )?;
    }
    Ok(())
}
