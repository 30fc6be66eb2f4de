//! Egress audit tests: extraction goldens, the seed-like bundle, output formats (SARIF checked
//! against the 2.1.0 schema), bad input, policies and runtime observation.

use std::path::{Path, PathBuf};

use ferry::egress::{
    self, check, observe, policy, render, AllowList, CheckOptions, Destination, EgressError,
    FailOn, Finding, Format, Report, Source, Verdict,
};

const CASES: &str = "testdata/egress/cases";
const SEEDLIKE: &str = "testdata/egress/seedlike";

fn allow_of(dir: &Path) -> Option<AllowList> {
    let p = dir.join("allow.yaml");
    p.exists()
        .then(|| AllowList::from_path(&p).expect("allow-list parses"))
}

fn check_case(dir: &Path) -> Report {
    let user = dir.join("user.yaml");
    let opts = CheckOptions {
        root: dir.join("bundle"),
        allow: allow_of(dir),
        values: if user.exists() {
            vec![user]
        } else {
            Vec::new()
        },
        ..Default::default()
    };
    check(&opts).unwrap_or_else(|e| panic!("check {}: {e}", dir.display()))
}

fn rendered(r: &Report, f: Format) -> String {
    let mut out = Vec::new();
    render(r, f, &mut out).expect("render");
    String::from_utf8(out).expect("utf-8")
}

fn find<'a>(r: &'a Report, host: &str, file_suffix: &str, line: usize) -> &'a Finding {
    r.findings
        .iter()
        .find(|f| f.host == host && f.file.ends_with(file_suffix) && f.line == line)
        .unwrap_or_else(|| {
            panic!(
                "no finding {host} at {file_suffix}:{line}; have:\n{}",
                rendered(r, Format::Table)
            )
        })
}

/// Every case under `testdata/egress/cases/` matches its `expected.json`
/// (`FERRY_BLESS=1 cargo test --test tests egress` rewrites them).
#[test]
fn extraction_goldens() {
    let bless = std::env::var_os("FERRY_BLESS").is_some();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(CASES)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 6, "cases missing");
    let mut failed = Vec::new();
    for dir in dirs {
        let report = check_case(&dir);
        let got = rendered(&report, Format::Json);
        let golden = dir.join("expected.json");
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

#[test]
fn template_constructs_resolve_to_values_paths() {
    let r = check_case(Path::new(&format!("{CASES}/template-control")));
    let t = "templates/deploy.yaml";
    // `if`/`else`: both branches are read.
    assert_eq!(
        find(&r, "backend.vendor-cloud.io", t, 11)
            .value_path
            .as_deref(),
        Some(".Values.backend.url")
    );
    find(&r, "fallback.vendor-cloud.io", t, 14);
    // `with` moves the dot; `range` visits every element.
    assert_eq!(
        find(&r, "postgres.internal.corp", t, 18)
            .value_path
            .as_deref(),
        Some(".Values.db.host")
    );
    assert_eq!(find(&r, "mirror-b.vendor-cloud.io", t, 22).port, Some(8443));
    assert_eq!(
        find(&r, "mirror-a.vendor-cloud.io", t, 22)
            .value_path
            .as_deref(),
        Some(".Values.mirrors[0].endpoint")
    );
    // printf, tpl, include.
    assert_eq!(find(&r, "metrics.vendor-cloud.io", t, 25).port, Some(9091));
    assert_eq!(
        find(&r, "hooks.vendor-cloud.io", t, 27)
            .value_path
            .as_deref(),
        Some(".Values.hooks.notify")
    );
    assert_eq!(find(&r, "postgres.internal.corp", t, 29).port, Some(5432));
    // What cannot be computed is unresolved, with the value path, never skipped.
    let lic = find(&r, "{{?}}", t, 31);
    assert_eq!(lic.verdict, Verdict::Unresolved);
    assert_eq!(lic.value_path.as_deref(), Some(".Values.licenseServer"));
    assert_eq!(find(&r, "{{?}}", t, 35).verdict, Verdict::Unresolved);
    // `default` supplies an in-cluster URL.
    assert_eq!(
        find(&r, "otel-collector.observability.svc", t, 33).verdict,
        Verdict::InCluster
    );
}

#[test]
fn urls_ports_ipv6_and_bare_hosts() {
    let r = check_case(Path::new(&format!("{CASES}/urls")));
    let v = "chart/values.yaml";
    let ipv6 = find(&r, "2001:db8::1", v, 7);
    assert_eq!(
        (ipv6.port, ipv6.verdict, ipv6.rule.as_deref()),
        (Some(8443), Verdict::Allowed, Some("Peers"))
    );
    let plain = find(&r, "plain.vendor-cloud.io", v, 6);
    assert_eq!(
        (plain.port, plain.verdict),
        (Some(8080), Verdict::Unknown),
        "port outside the rule's ports"
    );
    assert_eq!(
        find(&r, "api.vendor-cloud.io", v, 5).verdict,
        Verdict::Allowed
    );
    let meta = find(&r, "169.254.169.254", v, 8);
    assert_eq!(
        (meta.verdict, meta.rule.as_deref()),
        (Verdict::Denied, Some("Cloud metadata"))
    );
    assert_eq!(find(&r, "cache.vendor-cloud.io", v, 10).port, Some(11211));
    assert_eq!(find(&r, "localhost", v, 14).verdict, Verdict::Loopback);
    let t = "templates/cm.yaml";
    assert_eq!(find(&r, "2001:db8::2", t, 9).port, Some(9443));
    find(&r, "10.20.30.40", t, 10);
    let d = "templates/deploy.yaml";
    assert_eq!(
        find(&r, "ldap-server", d, 11).kind,
        egress::Kind::Host,
        "bare host name in an env var"
    );
    find(&r, "kafka.vendor-cloud.io", d, 13);
    assert!(
        !r.findings.iter().any(|f| f.host == "info.debug"),
        "a dotted log level is not a host"
    );
    let hub = find(&r, "docker.io", d, 17);
    assert_eq!(
        hub.kind,
        egress::Kind::Registry,
        "an image without a registry pulls from Docker Hub"
    );
}

#[test]
fn commented_lines_are_reported_but_do_not_fail() {
    let r = check_case(Path::new(&format!("{CASES}/urls")));
    let old = find(&r, "old.vendor-cloud.io", "chart/values.yaml", 12);
    assert!(old.commented);
    assert!(find(&r, "old-api.vendor-cloud.io", "templates/cm.yaml", 8).commented);
    let s = check_case(Path::new(&format!("{CASES}/scripts")));
    let c = find(&s, "commented.vendor-cloud.io", "install.sh", 9);
    assert!(c.commented && c.verdict == Verdict::Unknown);
    assert!(!c.fails(&FailOn::default()));
    assert!(c.fails(&"unknown,commented".parse().unwrap()));
    assert!(
        find(&s, "docs.vendor-cloud.io", "install.sh", 12).commented,
        "a trailing comment"
    );
}

#[test]
fn scripts_commands_are_found() {
    let r = check_case(Path::new(&format!("{CASES}/scripts")));
    let f = "scripts/install.sh";
    assert_eq!(
        find(&r, "permitio.github.io", f, 3).rule.as_deref(),
        Some("Helm repo")
    );
    assert_eq!(
        find(&r, "get.vendor-cloud.io", f, 4).verdict,
        Verdict::Allowed
    );
    assert_eq!(
        find(&r, "downloads.vendor-cloud.io", f, 5).verdict,
        Verdict::Allowed
    );
    let nc = find(&r, "db.vendor-cloud.io", f, 6);
    assert_eq!((nc.port, nc.verdict), (Some(5432), Verdict::Denied));
    find(&r, "bastion.vendor-cloud.io", f, 7);
    assert_eq!(find(&r, "quay.io", f, 8).kind, egress::Kind::Registry);
    assert_eq!(
        find(&r, "${keycloak_host}", f, 10).verdict,
        Verdict::Unresolved
    );
}

#[test]
fn credentials_never_printed_in_any_format() {
    for case in ["urls", "scripts"] {
        let r = check_case(Path::new(&format!("{CASES}/{case}")));
        for f in [Format::Table, Format::Json, Format::Sarif, Format::Markdown] {
            let out = rendered(&r, f);
            for secret in ["s3cr3t-pass", "hunter2-pw", "admin:"] {
                assert!(!out.contains(secret), "{case} {f:?} leaks {secret}:\n{out}");
            }
        }
    }
    let r = check_case(Path::new(&format!("{CASES}/urls")));
    assert!(find(&r, "db.vendor-cloud.io", "chart/values.yaml", 3)
        .text
        .contains("postgres://***@db.vendor-cloud.io"));
}

#[test]
fn config_payloads_nginx_and_oidc() {
    let r = check_case(Path::new(&format!("{CASES}/config")));
    let v = "chart/values.yaml";
    assert_eq!(
        find(&r, "keycloak.vendor-cloud.io", v, 9)
            .value_path
            .as_deref(),
        Some(".Values.nginx.config")
    );
    assert_eq!(
        find(&r, "cfg-gateway", v, 6).verdict,
        Verdict::InCluster,
        "a Service the chart defines"
    );
    assert!(find(&r, "old-keycloak.vendor-cloud.io", v, 10).commented);
    find(&r, "login.vendor-cloud.io", "templates/configmap.yaml", 9);
    find(&r, "backend.vendor-cloud.io", "files/upstream.conf", 2);
}

#[test]
fn user_values_overlay_like_helm() {
    let r = check_case(Path::new(&format!("{CASES}/overlay")));
    assert!(
        r.findings.iter().all(|f| f.host != "api.permit.io"),
        "overridden by the user's values"
    );
    assert!(
        r.findings.iter().all(|f| f.host != "api.segment.io"),
        "deleted with null"
    );
    let f = find(&r, "permit.customer.internal", "templates/cm.yaml", 4);
    assert_eq!(
        f.value_path.as_deref(),
        Some(".Values.global.permit.apiUrl")
    );
    find(&r, "permit.customer.internal", "overlay/user.yaml", 3);
}

#[test]
fn broken_template_is_reported_and_the_rest_checked() {
    let r = check_case(Path::new(&format!("{CASES}/broken-template")));
    assert_eq!(r.diagnostics.len(), 1, "{:?}", r.diagnostics);
    let d = &r.diagnostics[0];
    assert_eq!((d.file.as_str(), d.line), ("chart/templates/bad.yaml", 5));
    assert!(d.message.contains("unclosed"), "{}", d.message);
    find(&r, "api.segment.io", "templates/good.yaml", 5);
    find(&r, "before.vendor-cloud.io", "templates/bad.yaml", 4);
    find(&r, "after.vendor-cloud.io", "templates/bad.yaml", 6);
    assert_eq!(r.exit_code(&"denied".parse().unwrap()), 0);
    assert_eq!(r.exit_code(&FailOn::default()), 1);
    let sarif = rendered(&r, Format::Sarif);
    assert!(sarif.contains("egress/unreadable"));
}

fn seedlike() -> Report {
    let allow = AllowList::from_path(Path::new(&format!("{SEEDLIKE}/allow.yaml"))).unwrap();
    check(&CheckOptions {
        root: format!("{SEEDLIKE}/bundle").into(),
        allow: Some(allow),
        declared: vec![Destination {
            name: "Your Permit Platform URL".into(),
            hosts: vec!["permit.yourcompany.com".into()],
            ports: vec![443],
            required: true,
            purpose: Some("Permit API for authorization, Keycloak for OIDC".into()),
        }],
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn seedlike_bundle_verdicts_with_file_and_line() {
    let r = seedlike();
    let c = "charts/agent-security/";
    let expect = [
        (
            "permit.yourcompany.com",
            "values.yaml",
            5,
            Verdict::Allowed,
            "Permit Platform",
        ),
        (
            "permit.yourcompany.com",
            &format!("{c}templates/gateway.yaml"),
            14,
            Verdict::Allowed,
            "Permit Platform",
        ),
        (
            "permit.yourcompany.com",
            &format!("{c}templates/platform.yaml"),
            13,
            Verdict::Allowed,
            "Permit Platform",
        ),
        (
            "permit.yourcompany.com",
            &format!("{c}values.yaml"),
            21,
            Verdict::Allowed,
            "Permit Platform",
        ),
        (
            "permitio-pdp.permit.svc.cluster.local",
            &format!("{c}templates/gateway.yaml"),
            16,
            Verdict::Allowed,
            "PDP",
        ),
        (
            "REGISTRY",
            &format!("{c}values.yaml"),
            8,
            Verdict::Allowed,
            "Container registry",
        ),
        (
            "REGISTRY",
            &format!("{c}templates/platform.yaml"),
            10,
            Verdict::Allowed,
            "Container registry",
        ),
        (
            "api.segment.io",
            &format!("{c}templates/gateway.yaml"),
            21,
            Verdict::Denied,
            "Telemetry",
        ),
        (
            "api.permit.io",
            &format!("{c}templates/platform.yaml"),
            15,
            Verdict::Denied,
            "Permit cloud",
        ),
        (
            "agent-security-gateway",
            &format!("{c}templates/platform.yaml"),
            17,
            Verdict::InCluster,
            "service defined by the chart",
        ),
    ];
    for (host, file, line, verdict, rule) in expect {
        let f = r
            .findings
            .iter()
            .find(|f| f.host == host && f.file == file && f.line == line)
            .unwrap_or_else(|| {
                panic!(
                    "missing {host} {file}:{line}\n{}",
                    rendered(&r, Format::Table)
                )
            });
        assert_eq!(
            (f.verdict, f.rule.as_deref()),
            (verdict, Some(rule)),
            "{host} {file}:{line}"
        );
    }
    assert_eq!(
        find(&r, "permit.yourcompany.com", "templates/platform.yaml", 13)
            .value_path
            .as_deref(),
        Some(".Values.platform.oidc.discoveryUrl")
    );
    assert!(
        r.findings.iter().all(|f| !f.file.starts_with("images/")),
        "images/ is not scanned"
    );
    assert_eq!(r.exit_code(&FailOn::default()), 1);
    let md = rendered(&r, Format::Markdown);
    assert!(
        md.contains("| Destination | Required? | Purpose | Verdict | Evidence |"),
        "{md}"
    );
    assert!(md.contains("| Your Permit Platform URL (`permit.yourcompany.com`) | Required | Permit API for authorization, Keycloak for OIDC | allowed |"), "{md}");
    assert!(md.contains("`api.segment.io` (443) | Must not be used | Denied by rule: Telemetry | denied | `charts/agent-security/templates/gateway.yaml:21`"), "{md}");
}

#[test]
fn fail_on_tunes_the_exit_code() {
    let r = seedlike();
    assert_eq!(r.exit_code(&FailOn::default()), 1);
    assert_eq!(
        r.exit_code(&"unknown".parse().unwrap()),
        0,
        "only a doc link is unknown"
    );
    assert_eq!(r.exit_code(&"unknown,docs".parse().unwrap()), 1);
    assert_eq!(r.exit_code(&"none".parse().unwrap()), 0);
    assert!("denied,bogus".parse::<FailOn>().is_err());
    let doc = find(&r, "docs.permit.io", "README.md", 2);
    assert_eq!(doc.source, Source::Doc);
}

#[test]
fn json_has_the_documented_fields() {
    let r = seedlike();
    let v: serde_json::Value = serde_json::from_str(&rendered(&r, Format::Json)).unwrap();
    let f = &v["findings"][0];
    for key in [
        "host",
        "port",
        "verdict",
        "rule",
        "file",
        "line",
        "text",
        "value_path",
        "kind",
    ] {
        assert!(f.get(key).is_some(), "missing {key} in {f}");
    }
    assert_eq!(
        v["summary"]["findings"].as_u64(),
        Some(r.findings.len() as u64)
    );
    assert_eq!(v["summary"]["verdicts"]["denied"].as_u64(), Some(2));
}

#[test]
fn sarif_validates_against_the_2_1_0_schema() {
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("testdata/sarif-schema-2.1.0.json").unwrap())
            .unwrap();
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let mut reports = vec![seedlike()];
    for case in ["urls", "broken-template", "scripts"] {
        reports.push(check_case(Path::new(&format!("{CASES}/{case}"))));
    }
    for r in reports {
        let doc: serde_json::Value = serde_json::from_str(&rendered(&r, Format::Sarif)).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&doc)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "SARIF invalid:\n{}", errors.join("\n"));
        let results = doc["runs"][0]["results"].as_array().unwrap();
        assert_eq!(results.len(), r.findings.len() + r.diagnostics.len());
        for res in results {
            let loc = &res["locations"][0]["physicalLocation"];
            assert!(
                loc["artifactLocation"]["uri"].is_string()
                    && loc["region"]["startLine"].as_u64().unwrap() >= 1
            );
        }
    }
    // A document the schema must reject, so the check above is not vacuous.
    let bad = serde_json::json!({"version": "2.1.0", "runs": [{"results": []}]});
    assert!(!validator.is_valid(&bad));
}

#[test]
fn malformed_allow_lists_name_line_and_column() {
    let table: &[(&str, u64, u64, &str)] = &[
        ("allow:\n  - name: a\n    hostz: [x.com]\n", 3, 5, "hostz"),
        (
            "allow:\n  - name: a\n    hosts: [\"ok.com\", \"bad/99\"]\n",
            3,
            23,
            "CIDR",
        ),
        (
            "allow:\n  - name: a\n    hosts: [\"a.*.com\"]\n",
            3,
            13,
            "`*`",
        ),
        (
            "allow:\n  - name: a\n    hosts: [x.com\n",
            3,
            12,
            "unclosed bracket",
        ),
        ("alow: []\n", 1, 1, "alow"),
        ("version: 2\n", 1, 1, "version"),
    ];
    for (text, line, column, needle) in table {
        let err = AllowList::parse(text, Path::new("allow.yaml")).expect_err(text);
        match &err {
            EgressError::AllowList {
                line: l,
                column: c,
                message,
                ..
            } => {
                assert_eq!((*l, *c), (*line, *column), "{text:?}: {err}");
                assert!(message.contains(needle), "{text:?}: {message}");
            }
            other => panic!("{text:?}: unexpected {other}"),
        }
        assert!(
            err.to_string()
                .starts_with(&format!("allow.yaml:{line}:{column}:")),
            "{err}"
        );
    }
}

#[test]
fn host_patterns_match_as_documented() {
    use ferry::egress::HostPattern;
    let table: &[(&str, &str, bool)] = &[
        ("*.example.org", "a.example.org", true),
        ("*.example.org", "a.b.example.org", true),
        ("*.example.org", "example.org", false),
        ("*.example.org", "badexample.org", false),
        ("Permit.YourCompany.com", "permit.yourcompany.com", true),
        ("REGISTRY", "REGISTRY", true),
        ("10.0.0.0/8", "10.200.1.1", true),
        ("10.0.0.0/8", "11.0.0.1", false),
        ("2001:db8::/32", "2001:db8::1", true),
        ("[::1]", "::1", true),
        ("*", "anything.io", true),
    ];
    for (pat, host, want) in table {
        assert_eq!(
            HostPattern::parse(pat).unwrap().matches(host),
            *want,
            "{pat} vs {host}"
        );
    }
}

#[test]
fn classification_order() {
    let allow = AllowList::parse(
        "allow:\n  - name: all-svc\n    hosts: ['*.svc.cluster.local']\n  - name: corp\n    hosts: ['*.yourcompany.com']\n    ports: [443]\ndeny:\n  - name: kube-api\n    hosts: ['kubernetes.default.svc.cluster.local']\n  - name: lo\n    hosts: ['localhost']\n",
        Path::new("a.yaml"),
    )
    .unwrap();
    let opts = CheckOptions {
        allow: Some(allow),
        ..Default::default()
    };
    let table: &[(&str, Option<u16>, Verdict)] = &[
        ("localhost", Some(80), Verdict::Loopback),
        (
            "kubernetes.default.svc.cluster.local",
            Some(443),
            Verdict::Denied,
        ),
        ("pdp.permit.svc.cluster.local", Some(7766), Verdict::Allowed),
        ("redis.cache.svc", Some(6379), Verdict::InCluster),
        ("permit.yourcompany.com", Some(443), Verdict::Allowed),
        ("permit.yourcompany.com", Some(8443), Verdict::Placeholder),
        ("<your-registry>", None, Verdict::Placeholder),
        ("api.example.com", Some(443), Verdict::Placeholder),
        ("api.segment.io", Some(443), Verdict::Unknown),
        ("\u{e000}.example.io", None, Verdict::Unresolved),
    ];
    for (host, port, want) in table {
        assert_eq!(
            egress::scan::classify_host(host, *port, &opts),
            *want,
            "{host}"
        );
    }
}

#[test]
fn finder_table() {
    use egress::finder::{find, LineCtx};
    let yaml = LineCtx {
        yaml: true,
        ..Default::default()
    };
    let plain = LineCtx::default();
    type Row<'a> = (&'a str, LineCtx<'a>, &'a [(&'a str, Option<u16>)]);
    let table: &[Row<'_>] = &[
        (
            "url: https://a.example.io/x",
            yaml,
            &[("a.example.io", Some(443))],
        ),
        (
            "curl http://10.1.2.3:8080/health",
            plain,
            &[("10.1.2.3", Some(8080))],
        ),
        (
            "endpoint: \"wss://[2001:db8::5]:9000\"",
            yaml,
            &[("2001:db8::5", Some(9000))],
        ),
        (
            "addr: db.example.io:5432",
            yaml,
            &[("db.example.io", Some(5432))],
        ),
        ("image: postgres:16", yaml, &[("docker.io", Some(443))]),
        (
            "image: registry.local:5000/team/app:1.2",
            yaml,
            &[("registry.local", Some(5000))],
        ),
        ("time: 12:30:00", yaml, &[]),
        ("version: 1.2.3", yaml, &[]),
        ("config: values.yaml", yaml, &[]),
        (
            "- redis://cache.internal:6380",
            yaml,
            &[("cache.internal", Some(6380))],
        ),
        ("server 192.168.1.10;", plain, &[("192.168.1.10", None)]),
        ("ref: docker.io/library/redis:7", yaml, &[]),
        ("see file:///etc/hosts", plain, &[]),
    ];
    for (line, ctx, want) in table {
        let got: Vec<(String, Option<u16>)> = find(line, *ctx)
            .into_iter()
            .map(|h| (h.host, h.port))
            .collect();
        let want: Vec<(String, Option<u16>)> =
            want.iter().map(|(h, p)| (h.to_string(), *p)).collect();
        assert_eq!(got, want, "{line}");
    }
}

#[test]
fn packaged_chart_is_unpacked_and_checked() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("charts")).unwrap();
    let tgz = std::fs::File::create(tmp.path().join("charts/agent-security-1.4.0.tgz")).unwrap();
    let gz = flate2::write::GzEncoder::new(tgz, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    tar.append_dir_all(
        "agent-security",
        format!("{SEEDLIKE}/bundle/charts/agent-security"),
    )
    .unwrap();
    tar.into_inner().unwrap().finish().unwrap();
    let allow = AllowList::from_path(Path::new(&format!("{SEEDLIKE}/allow.yaml"))).unwrap();
    let r = check(&CheckOptions {
        root: tmp.path().into(),
        allow: Some(allow),
        ..Default::default()
    })
    .unwrap();
    let f = find(
        &r,
        "api.segment.io",
        "charts/agent-security-1.4.0.tgz/agent-security/templates/gateway.yaml",
        21,
    );
    assert_eq!(f.verdict, Verdict::Denied);
}

/// A packaged chart `NAME` whose template names `NAME.example.com`, holding `copies`
/// copies of `sub` (itself a packaged chart) under `NAME/charts/`.
fn nested_chart(name: &str, sub: Option<&[u8]>, copies: usize) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |path: String, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, path, data).unwrap();
    };
    add(
        format!("{name}/Chart.yaml"),
        format!("apiVersion: v2\nname: {name}\nversion: 1.0.0\n").as_bytes(),
    );
    add(
        format!("{name}/templates/cm.yaml"),
        format!("kind: ConfigMap\ndata:\n  url: https://{name}.example.com/api\n").as_bytes(),
    );
    if let Some(sub) = sub {
        for i in 0..copies {
            add(format!("{name}/charts/sub{i}.tgz"), sub);
        }
    }
    let tar = tar.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    gz.finish().unwrap()
}

/// `levels` packaged charts, each inside the next, `copies` of each in its parent;
/// `level1` is the outermost.
fn nested_charts(levels: usize, copies: usize) -> Vec<u8> {
    let mut inner: Option<Vec<u8>> = None;
    for level in (1..=levels).rev() {
        inner = Some(nested_chart(
            &format!("level{level}"),
            inner.as_deref(),
            copies,
        ));
    }
    inner.unwrap()
}

#[test]
fn nested_packaged_charts_are_checked_three_levels_deep() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("charts")).unwrap();
    std::fs::write(tmp.path().join("charts/top.tgz"), nested_charts(6, 1)).unwrap();
    let r = check(&CheckOptions {
        root: tmp.path().into(),
        ..Default::default()
    })
    .unwrap();
    let hosts: Vec<&str> = r.findings.iter().map(|f| f.host.as_str()).collect();
    for level in 1..=3 {
        assert!(
            hosts.contains(&format!("level{level}.example.com").as_str()),
            "level {level} was not checked: {hosts:?}"
        );
    }
    assert!(
        !hosts.contains(&"level4.example.com"),
        "level 4 was unpacked: {hosts:?}"
    );
    let deep =
        "charts/top.tgz/level1/charts/sub0.tgz/level2/charts/sub0.tgz/level3/charts/sub0.tgz";
    assert!(
        r.diagnostics
            .iter()
            .any(|d| d.file == deep && d.message.contains("nested 4 levels deep")),
        "no diagnostic names {deep}: {:?}",
        r.diagnostics
    );
}

#[test]
fn a_fan_out_of_nested_packaged_charts_is_bounded() {
    // Four copies of each chart in its parent, twelve levels: over 4^11 archives if every
    // level were unpacked, from a file of a few KiB.
    let bomb = nested_charts(12, 4);
    assert!(bomb.len() < 64 * 1024, "{} bytes", bomb.len());
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("charts")).unwrap();
    std::fs::write(tmp.path().join("charts/bomb.tgz"), &bomb).unwrap();
    let r = check(&CheckOptions {
        root: tmp.path().into(),
        ..Default::default()
    })
    .unwrap();
    // Levels 1 to 3 are unpacked (1 + 4 + 16 archives); each of the 64 level-4 archives
    // is reported, none is opened.
    assert_eq!(
        r.diagnostics
            .iter()
            .filter(|d| d.message.contains("nested 4 levels deep"))
            .count(),
        64
    );
    assert!(!r.findings.iter().any(|f| f.host == "level4.example.com"));
}

#[test]
fn policy_yaml_has_cidr_and_fqdn_rules() {
    let allow = AllowList::parse(
        "allow:\n  - name: Permit Platform\n    hosts: [permit.yourcompany.com, '*.corp.example.org']\n    ports: [443]\n  - name: Office\n    hosts: [10.0.0.0/8, 192.0.2.7]\n  - name: in-cluster\n    hosts: ['*.svc.cluster.local']\n  - name: registry\n    hosts: [REGISTRY]\ndeny:\n  - name: cloud\n    hosts: [api.permit.io]\n",
        Path::new("a.yaml"),
    )
    .unwrap();
    let text = policy(&allow, "agent-security");
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(docs.len(), 2, "{text}");
    let np = &docs[0];
    assert_eq!(np["kind"], "NetworkPolicy");
    assert_eq!(np["metadata"]["namespace"], "agent-security");
    let egress = np["spec"]["egress"].as_array().unwrap();
    assert_eq!(
        egress[0]["to"][0]["podSelector"]["matchLabels"]["k8s-app"],
        "kube-dns"
    );
    assert_eq!(egress[0]["ports"][0]["port"], 53);
    let cidrs: Vec<&str> = egress
        .iter()
        .flat_map(|r| r["to"].as_array().into_iter().flatten())
        .filter_map(|t| t["ipBlock"]["cidr"].as_str())
        .collect();
    assert_eq!(cidrs, ["10.0.0.0/8", "192.0.2.7/32"]);
    assert!(
        egress
            .iter()
            .any(|r| r["to"][0]["namespaceSelector"].is_object()),
        "in-cluster rule"
    );
    let cnp = &docs[1];
    assert_eq!(cnp["kind"], "CiliumNetworkPolicy");
    let rules = cnp["spec"]["egress"].as_array().unwrap();
    let fqdn: Vec<String> = rules
        .iter()
        .flat_map(|r| r["toFQDNs"].as_array().into_iter().flatten())
        .map(|f| {
            format!(
                "{}{}",
                f["matchName"].as_str().unwrap_or(""),
                f["matchPattern"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(fqdn, ["permit.yourcompany.com", "*.corp.example.org"]);
    let permit = rules.iter().find(|r| r["toFQDNs"].is_array()).unwrap();
    assert_eq!(permit["toPorts"][0]["ports"][0]["port"], "443");
    assert!(rules.iter().any(|r| r["toCIDR"][0] == "10.0.0.0/8"));
    assert!(rules.iter().any(|r| r["toEntities"][0] == "cluster"));
    assert!(
        !text.contains("matchName: \"REGISTRY\""),
        "a placeholder is not a DNS name"
    );
}

#[test]
fn observe_hubble_flows_and_host_port_lists() {
    let allow = AllowList::from_path(Path::new(&format!("{SEEDLIKE}/allow.yaml"))).unwrap();
    let r = observe(
        &allow,
        &[
            PathBuf::from("testdata/egress/observe/hubble.jsonl"),
            PathBuf::from("testdata/egress/observe/connections.txt"),
        ],
    )
    .unwrap();
    let got: Vec<(String, Option<u16>, Verdict, usize)> = r
        .findings
        .iter()
        .map(|f| (f.host.clone(), f.port, f.verdict, f.line))
        .collect();
    let want: Vec<(String, Option<u16>, Verdict, usize)> = [
        ("permit.yourcompany.com", Some(443), Verdict::Allowed, 1),
        ("api.segment.io", Some(443), Verdict::Denied, 2),
        ("10.0.2.9", Some(7766), Verdict::InCluster, 3),
        ("198.51.100.7", Some(8443), Verdict::Unknown, 5),
        ("permit.yourcompany.com", Some(443), Verdict::Allowed, 2),
        ("api.permit.io", Some(443), Verdict::Denied, 3),
        ("registry.yourcompany.com", Some(5000), Verdict::Allowed, 4),
        ("2001:db8::1", Some(8443), Verdict::Unknown, 5),
        ("127.0.0.1", Some(8080), Verdict::Loopback, 6),
    ]
    .into_iter()
    .map(|(h, p, v, l)| (h.to_string(), p, v, l))
    .collect();
    assert_eq!(got, want);
    assert_eq!(r.diagnostics.len(), 1, "the malformed line");
    assert_eq!(r.diagnostics[0].line, 7);
    assert_eq!(r.exit_code(&FailOn::default()), 1);
    assert!(r.findings[1]
        .text
        .contains("agent-security/platform-5f6b -> api.segment.io"));
}

#[test]
fn not_a_folder_is_an_error() {
    let err = check(&CheckOptions {
        root: "testdata/egress/does-not-exist".into(),
        ..Default::default()
    })
    .unwrap_err();
    assert!(matches!(err, EgressError::NotAFolder { .. }), "{err}");
    assert!(err.to_string().contains("ferry extract"));
}

#[test]
fn bad_user_values_file_names_line_and_column() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("my-values.yaml");
    std::fs::write(&bad, "global:\n  permit: [unclosed\n").unwrap();
    let err = check(&CheckOptions {
        root: format!("{SEEDLIKE}/bundle").into(),
        values: vec![bad],
        ..Default::default()
    })
    .unwrap_err();
    match err {
        EgressError::Values { line, .. } => assert!(line >= 2),
        other => panic!("{other}"),
    }
}

/// Helm accepts a flow collection whose closing bracket sits at its parent's indentation, with
/// comments inside; so does the audit, which reads the values file as values (with lines and
/// paths, aliases followed) instead of falling back to its text.
#[test]
fn values_with_flow_closed_at_parent_indentation() {
    let tmp = tempfile::tempdir().unwrap();
    let chart = tmp.path().join("charts/demo");
    std::fs::create_dir_all(chart.join("templates")).unwrap();
    std::fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: demo\nversion: 0.1.0\n",
    )
    .unwrap();
    std::fs::write(
        chart.join("values.yaml"),
        "extraEnv: {\n  # \"CUSTOM_ENV_VAR\": \"VALUE\"\n}\napi:\n  url: https://api.vendor-cloud.io/v1\ntolerations: [\n]\nmetrics:\n  base: &base\n    endpoint: metrics.vendor-cloud.io:9090\n  copy: *base\n",
    )
    .unwrap();
    std::fs::write(
        chart.join("templates/cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\ndata:\n  url: {{ .Values.api.url }}\n  metrics: {{ .Values.metrics.copy.endpoint }}\n",
    )
    .unwrap();
    let r = check(&CheckOptions {
        root: tmp.path().into(),
        ..Default::default()
    })
    .unwrap();
    assert!(r.diagnostics.is_empty(), "{:?}", r.diagnostics);
    let f = find(&r, "api.vendor-cloud.io", "charts/demo/values.yaml", 5);
    assert_eq!(f.value_path.as_deref(), Some(".Values.api.url"));
    let f = find(&r, "api.vendor-cloud.io", "templates/cm.yaml", 4);
    assert_eq!(f.value_path.as_deref(), Some(".Values.api.url"));
    let f = find(&r, "metrics.vendor-cloud.io", "templates/cm.yaml", 5);
    assert_eq!(
        f.value_path.as_deref(),
        Some(".Values.metrics.copy.endpoint")
    );
    find(&r, "metrics.vendor-cloud.io", "charts/demo/values.yaml", 10);
}

#[test]
fn table_output_is_aligned() {
    let r = seedlike();
    let t = rendered(&r, Format::Table);
    let lines: Vec<&str> = t.lines().take_while(|l| !l.is_empty()).collect();
    let col = lines[0].find("DESTINATION").unwrap();
    for l in &lines[1..] {
        if l.starts_with("warning:") {
            continue;
        }
        assert_eq!(l.chars().nth(col - 1), Some(' '), "misaligned: {l}");
        assert_ne!(l.chars().nth(col), Some(' '), "misaligned: {l}");
    }
    assert!(t.contains("finding(s) in"));
}

#[test]
fn extracted_bundle_folder_is_entered() {
    // `tar -xzf bundle.tar.gz -C out` leaves `out/NAME-VERSION/`.
    let tmp = tempfile::tempdir().unwrap();
    let inner = tmp.path().join("agent-security-1.4.0");
    copy_dir(Path::new(&format!("{SEEDLIKE}/bundle")), &inner);
    let allow = AllowList::from_path(Path::new(&format!("{SEEDLIKE}/allow.yaml"))).unwrap();
    let r = check(&CheckOptions {
        root: tmp.path().into(),
        allow: Some(allow),
        ..Default::default()
    })
    .unwrap();
    let f = find(
        &r,
        "api.segment.io",
        "charts/agent-security/templates/gateway.yaml",
        21,
    );
    assert_eq!(
        f.file, "charts/agent-security/templates/gateway.yaml",
        "paths are relative to the bundle folder"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    for e in walkdir::WalkDir::new(from) {
        let e = e.unwrap();
        let dest = to.join(e.path().strip_prefix(from).unwrap());
        if e.file_type().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}
