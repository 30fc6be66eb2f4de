//! The Helm chart corpus in `testdata/charts/`: every chart's egress findings checked against
//! its expected file (recall of destinations, no failing finding on inbound, in-cluster and
//! non-destination lines, no credential in any output format), a per-chart golden of the
//! findings, and every destination of Helm's own rendering found by ferry.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use ferry::egress::{check, render, CheckOptions, FailOn, Finding, Format, Report};

use crate::util::helm::helm;

const CHARTS: &str = "testdata/charts";

/// Every chart folder of the corpus, in name order.
fn charts() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(CHARTS)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Chart.yaml").is_file())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 9, "charts missing from {CHARTS}");
    dirs
}

fn name_of(chart: &Path) -> String {
    chart.file_name().unwrap().to_string_lossy().into_owned()
}

fn expected(chart: &Path) -> Value {
    let path = PathBuf::from(format!("{CHARTS}/{}.expected.yaml", name_of(chart)));
    let text = std::fs::read_to_string(&path).unwrap();
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn check_chart(chart: &Path) -> Report {
    let opts = CheckOptions {
        root: chart.to_path_buf(),
        ..Default::default()
    };
    check(&opts).unwrap_or_else(|e| panic!("check {}: {e}", chart.display()))
}

fn rendered(r: &Report, f: Format) -> String {
    let mut out = Vec::new();
    render(r, f, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn entries<'v>(exp: &'v Value, section: &str) -> Vec<&'v Value> {
    exp.get(section)
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

fn text_of<'v>(entry: &'v Value, key: &str) -> Option<&'v str> {
    entry.get(key).and_then(Value::as_str)
}

/// `PATH:LINE` evidence of an entry.
fn evidence(entry: &Value) -> Vec<(String, usize)> {
    entry
        .get("evidence")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|e| {
                    let (file, line) = e.rsplit_once(':').unwrap();
                    (file.to_string(), line.trim().parse().unwrap())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The expected files name the release `rel`; ferry names it after the chart.
fn unrel(s: &str) -> String {
    s.to_ascii_lowercase().replace("rel-", "")
}

/// A host names the same thing as an expected text when one holds the other.
fn related(host: &str, text: &str) -> bool {
    let (h, t) = (unrel(host), unrel(text));
    let t = t.trim_start_matches("*.");
    !h.is_empty() && (h == t || t.contains(&h) || h.contains(t))
}

fn at<'r>(r: &'r Report, file: &str, line: usize) -> impl Iterator<Item = &'r Finding> {
    let file = file.to_string();
    r.findings
        .iter()
        .filter(move |f| f.file == file && f.line == line)
}

/// What the corpus check measured for one chart.
#[derive(Debug, Default)]
struct Score {
    found: usize,
    wanted: usize,
    missed: Vec<String>,
    false_failing: Vec<String>,
    leaked: Vec<String>,
}

fn score(chart: &Path, r: &Report) -> Score {
    let exp = expected(chart);
    let fail_on = FailOn::default();
    let mut s = Score::default();
    for d in entries(&exp, "destinations") {
        let host = text_of(d, "host").unwrap();
        for (file, line) in evidence(d) {
            s.wanted += 1;
            if at(r, &file, line).any(|f| f.host.eq_ignore_ascii_case(host)) {
                s.found += 1;
            } else {
                s.missed.push(format!("{host} at {file}:{line}"));
            }
        }
    }
    for section in ["inbound", "in_cluster"] {
        for e in entries(&exp, section) {
            for (file, line) in evidence(e) {
                for f in at(r, &file, line).filter(|f| f.fails(&fail_on)) {
                    s.false_failing
                        .push(format!("{section} {file}:{line}: {} {}", f.verdict, f.host));
                }
            }
        }
    }
    for e in entries(&exp, "not_destinations") {
        let text = text_of(e, "text").unwrap();
        for (file, line) in evidence(e) {
            for f in at(r, &file, line).filter(|f| f.fails(&fail_on) && related(&f.host, text)) {
                s.false_failing.push(format!(
                    "not a destination {file}:{line}: {} {} (text {text})",
                    f.verdict, f.host
                ));
            }
        }
    }
    for e in entries(&exp, "secrets") {
        let value = text_of(e, "value").unwrap();
        for format in [Format::Table, Format::Json, Format::Sarif, Format::Markdown] {
            if rendered(r, format).contains(value) {
                s.leaked.push(format!("{value} in {format:?}"));
            }
        }
    }
    s
}

/// Every destination of every chart's expected file is found at each of its evidence lines;
/// no inbound, in-cluster or non-destination line has a failing finding; no credential is
/// printed in any format.
#[test]
fn corpus_recall_and_false_positives() {
    let mut problems = Vec::new();
    let mut summary = Vec::new();
    for chart in charts() {
        let r = check_chart(&chart);
        let s = score(&chart, &r);
        let name = name_of(&chart);
        summary.push(format!(
            "{name}: recall {}/{}, failing false positives {}, leaked {}",
            s.found,
            s.wanted,
            s.false_failing.len(),
            s.leaked.len()
        ));
        for m in &s.missed {
            problems.push(format!("{name}: missed {m}"));
        }
        for m in &s.false_failing {
            problems.push(format!("{name}: failing {m}"));
        }
        for m in &s.leaked {
            problems.push(format!("{name}: leaked {m}"));
        }
    }
    assert!(
        problems.is_empty(),
        "{}\n\n{}",
        summary.join("\n"),
        problems.join("\n")
    );
}

/// `testdata/charts/NAME.egress.json` is the JSON report of `egress check` on chart NAME
/// (`FERRY_BLESS=1 cargo test --test tests charts_egress` rewrites them).
#[test]
fn corpus_goldens() {
    let bless = std::env::var_os("FERRY_BLESS").is_some();
    let mut failed = Vec::new();
    for chart in charts() {
        let got = rendered(&check_chart(&chart), Format::Json);
        let golden = PathBuf::from(format!("{CHARTS}/{}.egress.json", name_of(&chart)));
        if bless {
            std::fs::write(&golden, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&golden).unwrap_or_default();
        if want != got {
            failed.push(format!("{}:\n{got}", golden.display()));
        }
    }
    assert!(
        failed.is_empty(),
        "goldens differ (FERRY_BLESS=1 to refresh):\n{}",
        failed.join("\n")
    );
}

/// `helm template` with the release named after the chart and ferry's namespace, as ferry
/// renders it, with `values` files on top of the chart's.
fn helm_template(chart: &Path, values: &[PathBuf]) -> String {
    let name = name_of(chart);
    let mut cmd = Command::new(helm());
    cmd.args(["template", &name])
        .arg(chart)
        .args(["--namespace", "release-namespace"]);
    for v in values {
        cmd.arg("-f").arg(v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "helm template {}: {}",
        chart.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn host_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_'
}

/// A dotted name with an alphabetic last label.
fn dotted(h: &str) -> bool {
    let tld = h.rsplit('.').next().unwrap_or("");
    h.contains('.')
        && !h.starts_with('.')
        && !h.contains("..")
        && tld.len() >= 2
        && tld.chars().all(|c| c.is_ascii_alphabetic())
}

/// Destinations in Helm's output, found without ferry's code: the host of every
/// `scheme://host` URL, of every `host:port` with a dotted host, and the registry of every
/// `image:` value. Description text (CRD documentation) is skipped.
fn helm_destinations(yaml: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in yaml.lines() {
        let t = line.trim_start().trim_start_matches("- ").trim_start();
        if t.starts_with('#') || t.starts_with("description:") {
            continue;
        }
        if let Some(img) = t.strip_prefix("image:") {
            let img = img.trim().trim_matches(['"', '\'']);
            let first = img.split('/').next().unwrap_or("");
            let registry = if img.contains('/')
                && (first.contains('.') || first.contains(':') || first == "localhost")
            {
                first.split(':').next().unwrap_or(first).to_string()
            } else {
                "docker.io".to_string()
            };
            out.insert(registry.to_ascii_lowercase());
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("://") {
            let after = &rest[i + 3..];
            let auth: String = after
                .chars()
                .take_while(|c| !matches!(c, '/' | '"' | '\'' | ' ' | '?' | '#' | ','))
                .collect();
            let hostport = auth.rsplit('@').next().unwrap_or("");
            let host = hostport.split(':').next().unwrap_or("");
            if !host.is_empty() && !host.contains('$') && !host.contains('{') {
                out.insert(host.to_ascii_lowercase());
            }
            rest = after;
        }
        let chars: Vec<(usize, char)> = line.char_indices().collect();
        for (k, &(i, c)) in chars.iter().enumerate() {
            if c != ':' || !chars.get(k + 1).is_some_and(|(_, d)| d.is_ascii_digit()) {
                continue;
            }
            let start = line[..i]
                .char_indices()
                .rev()
                .take_while(|(_, c)| host_char(*c))
                .last()
                .map_or(i, |(s, _)| s);
            let host = &line[start..i];
            let before = line[..start].chars().next_back();
            let after_digits = line[i + 1..]
                .chars()
                .find(|c| !c.is_ascii_digit())
                .unwrap_or(' ');
            if dotted(host)
                && !matches!(before, Some('/' | '@' | ':'))
                && !after_digits.is_ascii_alphanumeric()
                && after_digits != '.'
            {
                out.insert(host.to_ascii_lowercase());
            }
        }
    }
    out
}

/// The values files of every rendering the expected file says succeeds (the chart's own
/// values alone first).
fn successful_renders(chart: &Path) -> Vec<Vec<PathBuf>> {
    let exp = expected(chart);
    let mut out = Vec::new();
    for r in entries(&exp, "renders") {
        if text_of(r, "result") != Some("ok") {
            continue;
        }
        let files = r
            .get("values")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(|f| Path::new(CHARTS).join(f))
                    .collect()
            })
            .unwrap_or_default();
        out.push(files);
    }
    assert!(
        out.first().is_some_and(Vec::is_empty),
        "{}",
        chart.display()
    );
    out
}

/// Every destination in Helm's rendering of a chart is among ferry's findings, for the
/// chart's own values and for every other set of values files it renders with: ferry renders
/// every branch, so it may find more, never fewer.
#[test]
fn helm_rendering_destinations_are_found() {
    let mut missing = Vec::new();
    for chart in charts() {
        for values in successful_renders(&chart) {
            let yaml = helm_template(&chart, &values);
            let opts = CheckOptions {
                root: chart.clone(),
                values: values.clone(),
                ..Default::default()
            };
            let r = check(&opts).unwrap();
            let hosts: BTreeSet<String> = r.findings.iter().map(|f| f.host.clone()).collect();
            let want = helm_destinations(&yaml);
            assert!(!want.is_empty(), "{}", chart.display());
            for h in want {
                if !hosts.contains(&h) {
                    missing.push(format!("{} with {values:?}: {h}", name_of(&chart)));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "in helm's rendering, not among ferry's findings:\n{}",
        missing.join("\n")
    );
}

/// The files `helm package` puts in the package of a chart folder, relative to that folder.
fn packaged_files(chart: &Path, out: &Path) -> BTreeSet<String> {
    let pkg = Command::new(helm())
        .arg("package")
        .arg(chart)
        .arg("-d")
        .arg(out)
        .output()
        .unwrap();
    assert!(
        pkg.status.success(),
        "helm package {}: {}",
        chart.display(),
        String::from_utf8_lossy(&pkg.stderr)
    );
    let tgz = std::fs::read_dir(out)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let list = Command::new("tar").arg("-tzf").arg(&tgz).output().unwrap();
    assert!(list.status.success(), "tar -tzf {}", tgz.display());
    String::from_utf8(list.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('/').map(|(_, rest)| rest.to_string()))
        .filter(|l| !l.is_empty() && !l.ends_with('/'))
        .collect()
}

/// Every finding is in a file that Helm puts in the chart's package: what `.helmignore`
/// leaves out (the root chart's rules reach into subchart folders) is never reported.
#[test]
fn findings_are_in_files_helm_packages() {
    let mut stray = Vec::new();
    for chart in charts() {
        let tmp = tempfile::tempdir().unwrap();
        let shipped = packaged_files(&chart, tmp.path());
        for f in &check_chart(&chart).findings {
            if !shipped.contains(&f.file) {
                stray.push(format!(
                    "{}: {}:{} {}",
                    name_of(&chart),
                    f.file,
                    f.line,
                    f.host
                ));
            }
        }
    }
    assert!(
        stray.is_empty(),
        "findings in files helm package leaves out:\n{}",
        stray.join("\n")
    );
}

/// A chart's values file that Helm refuses (a tab after a list entry's `-`) is a located file
/// problem, and its values are still checked.
#[test]
fn values_helm_refuses_are_a_problem_and_still_checked() {
    let tmp = temp_chart(
        "hosts:\n-\tapi.acme-partner.com\n",
        "kind: ConfigMap\ndata:\n  n: {{ len .Values.hosts | quote }}\n",
    );
    let err = crate::util::helm::template(tmp.path(), &[]).unwrap_err();
    assert!(err.contains("values.yaml"), "{err}");
    let r = check_with(tmp.path(), "version: 1\nallow: []\n");
    assert!(
        r.findings
            .iter()
            .any(|f| f.host == "api.acme-partner.com" && f.file == "values.yaml" && f.line == 2),
        "{:#?}",
        r.findings
    );
    let d = r
        .diagnostics
        .iter()
        .find(|d| d.file == "values.yaml")
        .unwrap();
    assert_eq!(d.line, 2);
    assert!(d.message.contains("Helm will not read"), "{}", d.message);
}

/// A chart in a temporary folder: `Chart.yaml`, `values.yaml` and one template.
fn temp_chart(values: &str, template: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::create_dir_all(root.join("templates")).unwrap();
    std::fs::write(
        root.join("Chart.yaml"),
        "apiVersion: v2\nname: demo\nversion: 1.2.3\nappVersion: v2.9.0\n",
    )
    .unwrap();
    std::fs::write(root.join("values.yaml"), values).unwrap();
    std::fs::write(root.join("templates/t.yaml"), template).unwrap();
    tmp
}

fn check_with(root: &Path, allow: &str) -> Report {
    let list = root.join("allow.yaml");
    std::fs::write(&list, allow).unwrap();
    let opts = CheckOptions {
        root: root.to_path_buf(),
        allow: Some(ferry::egress::AllowList::from_path(&list).unwrap()),
        ..Default::default()
    };
    check(&opts).unwrap()
}

/// Helm and Sprig functions compute what real charts build: `.Chart.AppVersion`, `dict` and
/// `include`, `set` on a variable, `regexReplaceAll`, `semverCompare` on `.Capabilities`,
/// `{{- with.Values.x }}` without a space; `lookup` is unresolved, never a failure; an
/// unresolved tag leaves the registry host intact.
#[test]
fn template_functions_of_real_charts() {
    let values = "image:\n  repository: quay.io/acme/app\n  tag: \"\"\nsso:\n  issuer: https://login.acme-idp.io/realms/x/\nextra:\n  url: https://extra.acme-idp.io\n";
    let template = r#"{{- define "img" -}}{{ .image.repository }}:{{ .image.tag | default .root.Chart.AppVersion }}{{- end -}}
{{- $p := dict "a" "1" -}}
{{- $_ := set $p "url" (printf "https://%s" "set.acme-idp.io") -}}
kind: ConfigMap
data:
  image: {{ include "img" (dict "image" .Values.image "root" $) }}
  set: {{ $p.url }}
  issuerHost: {{ regexReplaceAll "^https://([^/]+)/.*$" .Values.sso.issuer "${1}" }}
  {{- if semverCompare ">=1.21-0" .Capabilities.KubeVersion.Version }}
  modern: {{ "yes" }}
  {{- end }}
  {{- with.Values.extra }}
  extra: {{ .url }}
  {{- end }}
  {{- $s := lookup "v1" "Secret" .Release.Namespace "x" }}
  secret: {{ $s.data.token }}
  image: quay.io/acme/other:{{ $s.data.tag }}
  list: {{ list "a" "b" | join "," }}
  count: {{ until 3 | len }}
{{- define "pdb" -}}{{ if .Capabilities.APIVersions.Has "policy/v1" }}https://pdb.acme-idp.io{{ else }}https://old.acme-idp.io{{ end }}{{- end }}
  pdbUrl: {{ include "pdb" $ }}
"#;
    let tmp = temp_chart(values, template);
    let r = check_with(tmp.path(), "allow:\n  - name: quay\n    hosts: [quay.io]\n");
    let at = |line: usize| -> Vec<&Finding> {
        r.findings
            .iter()
            .filter(|f| f.file == "templates/t.yaml" && f.line == line)
            .collect()
    };
    assert!(r.diagnostics.is_empty(), "{:?}", r.diagnostics);
    let image = at(6);
    assert_eq!(image.len(), 1, "{image:?}");
    assert_eq!(image[0].host, "quay.io");
    assert_eq!(image[0].verdict, ferry::egress::Verdict::Allowed);
    assert!(
        at(7).iter().any(|f| f.host == "set.acme-idp.io"),
        "{:?}",
        at(7)
    );
    assert!(
        at(8).iter().any(|f| f.host == "login.acme-idp.io"),
        "{:?}",
        at(8)
    );
    assert!(
        at(13).iter().any(|f| f.host == "extra.acme-idp.io"),
        "{:?}",
        at(13)
    );
    assert!(
        at(21).iter().any(|f| f.host == "pdb.acme-idp.io"),
        "{:?}",
        at(21)
    );
    assert!(
        !at(21).iter().any(|f| f.host == "old.acme-idp.io"),
        "{:?}",
        at(21)
    );
    let pinned = at(17);
    assert!(
        pinned
            .iter()
            .any(|f| f.host == "quay.io" && f.verdict == ferry::egress::Verdict::Allowed),
        "{pinned:?}"
    );
}

/// Every SARIF result has its own fingerprint and a location, diagnostics included.
#[test]
fn sarif_fingerprints_are_unique_and_diagnostics_located() {
    for chart in charts() {
        let mut r = check_chart(&chart);
        r.diagnostics.push(ferry::egress::Diagnostic {
            file: "templates/x.yaml".into(),
            line: 3,
            message: "unclosed action".into(),
        });
        let sarif: Value = serde_json::from_str(&rendered(&r, Format::Sarif)).unwrap();
        let results = sarif["runs"][0]["results"].as_array().unwrap();
        let mut seen = BTreeSet::new();
        for res in results {
            let fp = res["partialFingerprints"]["egressFinding/v1"]
                .as_str()
                .unwrap_or_else(|| panic!("no fingerprint: {res}"));
            assert!(seen.insert(fp.to_string()), "fingerprint repeated: {res}");
            assert!(
                res["locations"][0]["physicalLocation"]["region"]["startLine"].is_u64(),
                "{res}"
            );
        }
    }
}
