//! `ferry egress` through the command line, on the fixture bundle.

use crate::harness::{build_fixture, ferry, fixture};

#[test]
fn fixture_bundle_egress_against_its_allow_list() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("b.tar.gz");
    build_fixture(&bundle, 0);
    let allow = fixture().join("egress-allow.yaml");
    let values = fixture().join("my-values.yaml");
    let out = ferry()
        .args(["egress", "check", "--format", "json"])
        .arg(&bundle)
        .arg("--allow")
        .arg(&allow)
        .arg("--values")
        .arg(&values)
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let findings = v["findings"].as_array().unwrap();
    let with = |host: &str, verdict: &str| -> Vec<&serde_json::Value> {
        findings
            .iter()
            .filter(|f| f["host"] == host && f["verdict"] == verdict)
            .collect()
    };
    // The vendor's real destinations are allowed, each with evidence.
    for host in [
        "permit.yourcompany.com",
        "pdp.yourcompany.com",
        "registry.yourcompany.com",
    ] {
        let hits = with(host, "allowed");
        assert!(!hits.is_empty(), "{host} not reported as allowed");
        assert!(hits.iter().all(|f| f["file"].is_string()
            && f["line"].as_u64().unwrap() > 0
            && f["rule"].is_string()));
    }
    let oidc = findings.iter().find(|f| {
        f["text"].as_str().unwrap_or("").contains("discoveryUrl")
            || f["value_path"]
                .as_str()
                .unwrap_or("")
                .contains("discoveryUrl")
    });
    assert!(
        oidc.is_some_and(|f| f["verdict"] == "allowed"),
        "the OIDC discovery URL must be found and allowed"
    );
    // The planted telemetry and cloud endpoints are denied, with file and line.
    for (host, file) in [
        ("api.segment.io", "templates/platform.yaml"),
        ("api.permit.io", "templates/gateway.yaml"),
    ] {
        let hits = with(host, "denied");
        assert!(!hits.is_empty(), "{host} not denied");
        assert!(
            hits.iter()
                .any(|f| f["file"].as_str().unwrap().ends_with(file)
                    && f["line"].as_u64().unwrap() > 0),
            "{host}: {hits:?}"
        );
    }
    // Markdown and SARIF are produced for the same run; --fail-on none turns the exit to 0.
    let md = ferry()
        .args([
            "egress",
            "check",
            "--format",
            "markdown",
            "--fail-on",
            "none",
        ])
        .arg(&bundle)
        .arg("--allow")
        .arg(&allow)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let md = String::from_utf8_lossy(&md);
    assert!(md.contains("| ") && md.contains("api.segment.io"), "{md}");
    let sarif = ferry()
        .args(["egress", "check", "--format", "sarif"])
        .arg(&bundle)
        .arg("--allow")
        .arg(&allow)
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let sarif: serde_json::Value = serde_json::from_slice(&sarif).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    // A malformed allow-list is a usage error with its line and column.
    let bad = tmp.path().join("bad.yaml");
    std::fs::write(&bad, "allow:\n  - name: x\n    hostz: [a]\n").unwrap();
    let err = ferry()
        .args(["egress", "check"])
        .arg(&bundle)
        .arg("--allow")
        .arg(&bad)
        .assert()
        .code(2)
        .get_output()
        .stderr
        .clone();
    assert!(
        String::from_utf8_lossy(&err).contains("bad.yaml:3"),
        "{}",
        String::from_utf8_lossy(&err)
    );
    // The policy generator writes both kinds of policy.
    let policy = ferry()
        .args([
            "egress",
            "policy",
            "--namespace",
            "agent-security",
            "--allow",
        ])
        .arg(&allow)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let policy = String::from_utf8_lossy(&policy);
    assert!(
        policy.contains("kind: NetworkPolicy")
            && policy.contains("kind: CiliumNetworkPolicy")
            && policy.contains("toFQDNs"),
        "{policy}"
    );
}

/// A failing check with `--json` prints one JSON document: the report, nothing after it.
#[test]
fn failing_check_with_json_prints_one_document() {
    let out = ferry()
        .args(["--json", "egress", "check"])
        .arg(fixture().join("charts/agent-security"))
        .arg("--allow")
        .arg(fixture().join("egress-allow.yaml"))
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let mut docs = serde_json::Deserializer::from_slice(&out).into_iter::<serde_json::Value>();
    let report = docs
        .next()
        .expect("a JSON document")
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)));
    assert!(
        docs.next().is_none(),
        "more than one JSON document: {}",
        String::from_utf8_lossy(&out)
    );
    assert!(
        report["summary"]["failing"].as_u64().unwrap() > 0,
        "{report}"
    );
    assert!(report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["verdict"] == "denied"));
}
