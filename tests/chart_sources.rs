//! Charts from where they live: Helm's OCI artifacts pushed with real `helm push`, and a
//! classic chart repository made with `helm repo index` and served over HTTP, fetched with
//! ferry's registry client and checked.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use ferry::registry::charts::{fetch_oci_chart, fetch_repo_chart, ChartError};
use ferry::registry::push::{push, LayoutSource, NoProgress, PushOptions};
use ferry::registry::RegistryError;

use crate::pull::{options, runtime};
use crate::util::helm::helm;
use crate::util::httpserver::HttpServer;
use crate::util::oci::write_layout;
use crate::util::registry::{Registry, Setup};

/// `helm` with its config, cache and registry login files in `home`.
fn helm_in(home: &Path) -> Command {
    let mut c = Command::new(helm());
    c.env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env("HELM_REGISTRY_CONFIG", home.join("registry.json"));
    c
}

fn run(mut c: Command) -> String {
    let out = c
        .output()
        .unwrap_or_else(|e| panic!("cannot run {c:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{c:?} failed: {text}");
    text
}

/// Writes a small chart `name` at `version` and packages it into `out`; returns the `.tgz`.
fn package(home: &Path, out: &Path, name: &str, version: &str, salt: &str) -> PathBuf {
    let src = home.join(format!("src-{name}-{version}"));
    std::fs::create_dir_all(src.join("templates")).unwrap();
    std::fs::write(
        src.join("Chart.yaml"),
        format!("apiVersion: v2\nname: {name}\nversion: {version}\nappVersion: \"1.0\"\n"),
    )
    .unwrap();
    std::fs::write(
        src.join("values.yaml"),
        format!("image:\n  repository: registry.example.com/team/{name}\n  tag: \"{salt}\"\n"),
    )
    .unwrap();
    std::fs::write(
        src.join("templates/configmap.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\ndata:\n  image: {{ .Values.image.repository }}:{{ .Values.image.tag }}\n",
    )
    .unwrap();
    std::fs::create_dir_all(out).unwrap();
    let mut c = helm_in(home);
    c.arg("package").arg(&src).arg("-d").arg(out);
    run(c);
    out.join(format!("{name}-{version}.tgz"))
}

#[test]
fn an_oci_chart_pushed_by_helm_comes_back_byte_identical() {
    let reg = Registry::start(Setup::Plain);
    let home = tempfile::tempdir().unwrap();
    let rt = runtime();
    let opts = options(&reg.host());
    for version in ["0.1.0", "0.2.0+build.7"] {
        let tgz = package(
            home.path(),
            &home.path().join("out"),
            "podinfo",
            version,
            version,
        );
        let mut c = helm_in(home.path());
        c.arg("push")
            .arg(&tgz)
            .arg(format!("oci://{}/charts", reg.host()))
            .arg("--plain-http");
        let said = run(c);
        let reference = format!("oci://{}/charts/podinfo:{version}", reg.host());
        let chart = rt.block_on(fetch_oci_chart(&opts, &reference)).unwrap();
        assert!(chart.bytes == std::fs::read(&tgz).unwrap(), "{reference}");
        assert_eq!(
            chart.digest.to_string(),
            format!("sha256:{}", crate::harness::sha256_hex(&chart.bytes))
        );
        let manifest = chart.manifest_digest.unwrap().to_string();
        assert!(
            said.contains(&manifest),
            "helm push said {said:?}, ferry read {manifest}"
        );
        assert_eq!(chart.source, reference);
    }

    // A version that is not there, and an image that is not a chart.
    let e = rt
        .block_on(fetch_oci_chart(
            &opts,
            &format!("oci://{}/charts/podinfo:9.9.9", reg.host()),
        ))
        .unwrap_err();
    assert!(
        matches!(e, ChartError::Registry(RegistryError::NotFound { .. })),
        "{e:?}"
    );
    assert!(e.to_string().contains("charts/podinfo:9.9.9"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let layout = write_layout(dir.path(), 41);
    let images = layout.to_push("charts");
    let src = Arc::new(LayoutSource::open(dir.path()).unwrap());
    push(
        &PushOptions::new(options(&reg.host())),
        src,
        &images[..1],
        Arc::new(NoProgress),
    )
    .unwrap();
    let e = rt
        .block_on(fetch_oci_chart(
            &opts,
            &format!("oci://{}/charts/team/app1:1.0", reg.host()),
        ))
        .unwrap_err();
    assert!(matches!(e, ChartError::NotAChart { .. }), "{e:?}");
    assert!(
        e.to_string()
            .contains("application/vnd.oci.image.config.v1+json"),
        "{e}"
    );
    let e = rt
        .block_on(fetch_oci_chart(&opts, "https://example.com/app:1"))
        .unwrap_err();
    assert!(matches!(e, ChartError::BadReference { .. }), "{e:?}");
}

#[test]
fn a_classic_repository_serves_charts_checked_against_its_index() {
    let home = tempfile::tempdir().unwrap();
    let root = home.path().join("www");
    let repo = root.join("stable");
    let v1 = package(home.path(), &repo, "gateway", "1.0.0", "a");
    package(home.path(), &repo, "gateway", "1.1.0", "b");
    package(home.path(), &repo, "agent", "0.3.0", "c");
    // Relative URLs in the index (no --url): they resolve against the repository URL.
    let mut c = helm_in(home.path());
    c.args(["repo", "index"]).arg(&repo);
    run(c);
    let server = HttpServer::start(&root);
    let repo_url = format!("{}/stable", server.url());
    let rt = runtime();
    let opts = options(&format!("127.0.0.1:{}", server.port));

    let chart = rt
        .block_on(fetch_repo_chart(&opts, &repo_url, "gateway", "1.0.0"))
        .unwrap();
    assert!(chart.bytes == std::fs::read(&v1).unwrap());
    assert_eq!(chart.source, format!("{repo_url}/gateway-1.0.0.tgz"));
    assert!(chart.notes.is_empty(), "{:?}", chart.notes);
    assert!(chart.manifest_digest.is_none());

    let e = rt
        .block_on(fetch_repo_chart(&opts, &repo_url, "gateway", "2.0.0"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("2.0.0") && e.contains("1.1.0") && e.contains("1.0.0") && e.contains(&repo_url),
        "{e}"
    );
    let e = rt
        .block_on(fetch_repo_chart(&opts, &repo_url, "nginx", "1.0.0"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("nginx") && e.contains("agent, gateway"), "{e}");

    // The file changed after the index was made: refused, naming chart, version and URL.
    std::fs::copy(repo.join("gateway-1.1.0.tgz"), &v1).unwrap();
    let e = rt
        .block_on(fetch_repo_chart(&opts, &repo_url, "gateway", "1.0.0"))
        .unwrap_err();
    assert!(matches!(e, ChartError::DigestMismatch { .. }), "{e:?}");
    assert_eq!(e.exit_code(), 1);
    let msg = e.to_string();
    assert!(
        msg.contains("gateway 1.0.0") && msg.contains(&format!("{repo_url}/gateway-1.0.0.tgz")),
        "{msg}"
    );

    // An index without digests: fetched, and the chart says it could not be checked.
    let index = std::fs::read_to_string(repo.join("index.yaml")).unwrap();
    let stripped: String = index
        .lines()
        .filter(|l| !l.trim_start().starts_with("digest:"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(stripped, index);
    std::fs::write(repo.join("index.yaml"), stripped).unwrap();
    let chart = rt
        .block_on(fetch_repo_chart(&opts, &repo_url, "agent", "0.3.0"))
        .unwrap();
    assert!(
        chart
            .notes
            .iter()
            .any(|n| n.contains("lists no digest") && n.contains("agent 0.3.0")),
        "{:?}",
        chart.notes
    );

    // Not an index at all.
    std::fs::write(repo.join("index.yaml"), "entries: [not, a, map]\n").unwrap();
    let e = rt
        .block_on(fetch_repo_chart(&opts, &repo_url, "agent", "0.3.0"))
        .unwrap_err();
    assert!(matches!(e, ChartError::BadIndex { .. }), "{e:?}");
    assert!(e.to_string().contains("/stable/index.yaml"), "{e}");
}

/// `ferry build` takes charts from a registry and a classic repository: each is stored as
/// `charts/NAME-VERSION.tgz` byte for byte, locked by digest, and a locked rebuild is
/// identical.
#[test]
fn build_carries_charts_from_registries_and_repositories() {
    let reg = Registry::start(Setup::Plain);
    let home = tempfile::tempdir().unwrap();
    let oci = package(
        home.path(),
        &home.path().join("oci"),
        "gateway",
        "1.4.0",
        "x",
    );
    let mut c = helm_in(home.path());
    c.arg("push")
        .arg(&oci)
        .arg(format!("oci://{}/charts", reg.host()))
        .arg("--plain-http");
    run(c);
    let repo = home.path().join("www/stable");
    let classic = package(home.path(), &repo, "agent", "0.3.0", "y");
    let mut c = helm_in(home.path());
    c.args(["repo", "index"]).arg(&repo);
    run(c);
    let server = HttpServer::start(&home.path().join("www"));

    let work = tempfile::tempdir().unwrap();
    let spec = work.path().join("ferry.yaml");
    std::fs::write(
        &spec,
        format!(
            "name: charts\nversion: '1'\ncharts:\n  - oci://{}/charts/gateway:1.4.0\n  - repo: {}/stable\n    name: agent\n    version: 0.3.0\n",
            reg.host(),
            server.url()
        ),
    )
    .unwrap();
    let build = |out: &str, extra: &[&str]| {
        // The charts' images live nowhere here: this is about the charts.
        crate::harness::ferry()
            .args(["build", "--plain-http", "--allow-missing-images", "-f"])
            .arg(&spec)
            .arg("-o")
            .arg(work.path().join(out))
            .args(extra)
            .assert()
    };
    build("a.tar.gz", &[]).success();
    let extracted = work.path().join("x");
    crate::harness::ferry()
        .arg("extract")
        .arg(work.path().join("a.tar.gz"))
        .arg("-C")
        .arg(&extracted)
        .assert()
        .success();
    for (tgz, name) in [(&oci, "gateway-1.4.0.tgz"), (&classic, "agent-0.3.0.tgz")] {
        let inside = extracted.join("charts-1/charts").join(name);
        assert_eq!(
            std::fs::read(&inside).unwrap_or_else(|e| panic!("{}: {e}", inside.display())),
            std::fs::read(tgz).unwrap(),
            "{name}"
        );
    }
    let lock = std::fs::read_to_string(work.path().join("ferry.lock")).unwrap();
    assert!(lock.contains("gateway") && lock.contains("agent"), "{lock}");
    build("b.tar.gz", &["--locked"]).success();
    assert_eq!(
        std::fs::read(work.path().join("a.tar.gz")).unwrap(),
        std::fs::read(work.path().join("b.tar.gz")).unwrap()
    );
    // A chart republished under the same version: the locked build names it.
    package(home.path(), &repo, "agent", "0.3.0", "z");
    let mut c = helm_in(home.path());
    c.args(["repo", "index"]).arg(&repo);
    run(c);
    let out = build("c.tar.gz", &["--locked"]).failure().code(2);
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(err.contains("agent") && err.contains("ferry.lock"), "{err}");
}
