//! `ferry images list`: every image Helm renders is listed as required with the same
//! normalised reference, for the fixture and every chart of the corpus with every set of values
//! it renders with; conditional images are the ones Helm renders once their branch is switched
//! on; packaged charts, undecided conditions, the CLI formats and bad input.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use ferry::bundle::manifest::ImageEntry;
use ferry::images::{chart_images, missing_from, reference, ChartImages, Need};
use serde_json::Value;

use crate::harness::{ferry, fixture};
use crate::util::helm;

const CHARTS: &str = "testdata/charts";

/// The `image:` values of rendered manifests, normalised as ferry reads references.
fn helm_images(manifests: &str) -> BTreeSet<String> {
    manifests
        .lines()
        .filter_map(|line| {
            let t = line.trim_start();
            let t = t.strip_prefix("- ").unwrap_or(t).trim_start();
            let v = t.strip_prefix("image:")?.trim();
            let v = v.trim_matches(|c| c == '"' || c == '\'');
            (!v.is_empty()).then(|| {
                reference(v)
                    .unwrap_or_else(|| panic!("helm rendered `{v}`, not an image reference"))
                    .to_string()
            })
        })
        .collect()
}

fn with_need(found: &ChartImages, need: Need) -> BTreeSet<String> {
    found
        .images
        .iter()
        .filter(|i| i.need == need)
        .map(|i| i.reference.to_string())
        .collect()
}

/// Every (chart, values files) rendering of the corpus that Helm accepts, per the expected
/// files' `renders`, and the fixture with its values and a customer's.
fn renderings() -> Vec<(PathBuf, Vec<PathBuf>)> {
    let mut out = vec![
        (
            fixture().join("charts/agent-security"),
            vec![fixture().join("values.yaml")],
        ),
        (
            fixture().join("charts/agent-security"),
            vec![
                fixture().join("values.yaml"),
                fixture().join("my-values.yaml"),
            ],
        ),
    ];
    let mut charts: Vec<PathBuf> = fs::read_dir(CHARTS)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Chart.yaml").is_file())
        .collect();
    charts.sort();
    assert!(charts.len() >= 10, "{charts:?}");
    for chart in charts {
        let name = chart.file_name().unwrap().to_string_lossy().into_owned();
        let text = fs::read_to_string(format!("{CHARTS}/{name}.expected.yaml")).unwrap();
        let exp: Value = serde_saphyr::from_str(&text).unwrap();
        for r in exp["renders"].as_array().unwrap() {
            if r["result"] != "ok" {
                continue;
            }
            let values = r["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| Path::new(CHARTS).join(v.as_str().unwrap()))
                .collect();
            out.push((chart.clone(), values));
        }
    }
    out
}

/// The proof against Helm: for every rendering, the images in `helm template`'s output are
/// exactly the images ferry lists as required, with the same normalised reference; no image
/// Helm renders is conditional, undecided or unresolved.
#[test]
fn helm_rendered_images_are_the_required_images() {
    let mut failures = Vec::new();
    let (mut helm_total, mut listed) = (0, 0);
    for (chart, values) in renderings() {
        let refs: Vec<&Path> = values.iter().map(PathBuf::as_path).collect();
        let manifests = helm::template(&chart, &refs)
            .unwrap_or_else(|e| panic!("{} {values:?}: {e}", chart.display()));
        let want = helm_images(&manifests);
        let found = chart_images(std::slice::from_ref(&chart), &values)
            .unwrap_or_else(|e| panic!("{} {values:?}: {e}", chart.display()));
        let required = with_need(&found, Need::Required);
        helm_total += want.len();
        listed += want.intersection(&required).count();
        if want != required || !found.unresolved.is_empty() {
            failures.push(format!(
                "{} {values:?}:\n  helm {want:#?}\n  ferry required {required:#?}\n  unresolved {:?}",
                chart.display(),
                found.unresolved
            ));
        }
    }
    assert!(helm_total >= 40, "{helm_total} images in Helm's renderings");
    assert!(
        failures.is_empty(),
        "{listed} of {helm_total} Helm-rendered images listed as required:\n{}",
        failures.join("\n")
    );
}

/// Each conditional image of the umbrella chart is one Helm renders once the values switch its
/// branch on (a sidecar, an ephemeral container, a disabled subchart), and then ferry lists it
/// as required; the test hook's hard-coded image is the one no values key writes.
#[test]
fn conditional_images_are_rendered_when_switched_on() {
    let chart = PathBuf::from(CHARTS).join("umbrella-images");
    let off = chart_images(std::slice::from_ref(&chart), &[]).unwrap();
    let conditional = with_need(&off, Need::Conditional);
    assert_eq!(
        conditional,
        BTreeSet::from([
            "docker.io/acme-orchard/orchard-cache:7.4.2".to_string(),
            "docker.io/acme-orchard/toolbox:2024.10".to_string(),
            "quay.io/acme-orchard/orchard-exporter:0.9.4".to_string(),
        ])
    );
    let on = PathBuf::from(CHARTS).join("umbrella-images.all-on-values.yaml");
    let rendered = helm_images(&helm::template(&chart, &[&on]).unwrap());
    assert!(conditional.is_subset(&rendered), "{rendered:#?}");
    let all = chart_images(std::slice::from_ref(&chart), std::slice::from_ref(&on)).unwrap();
    assert_eq!(with_need(&all, Need::Required), rendered);
    assert!(with_need(&all, Need::Conditional).is_empty());

    let fixed: Vec<String> = off
        .images
        .iter()
        .filter(|i| !i.values_key)
        .map(|i| i.reference.to_string())
        .collect();
    assert_eq!(fixed, ["docker.io/library/busybox:1.36.1"]);
    let api = off
        .images
        .iter()
        .find(|i| i.reference.repository == "acme-orchard/orchard-api")
        .unwrap();
    assert!(api.app_version_tag && api.values_key, "{api:?}");
    assert_eq!(
        api.locations[0].file,
        "umbrella-images/templates/deployment.yaml"
    );
    assert_eq!(api.locations[0].line, 21);
}

fn chart_dir(tmp: &Path, files: &[(&str, &str)]) -> PathBuf {
    let chart = tmp.join("gate");
    for (path, text) in files {
        let p = chart.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
    chart
}

/// A branch behind `lookup` cannot be decided offline: Helm's `helm template` renders it (the
/// lookup is empty without a cluster), a cluster may not. ferry lists it as undecided, never
/// conditional, and a build does not fail on it (`missing_from` puts it with the others).
#[test]
fn undecided_branches_are_listed_but_never_fail() {
    let tmp = tempfile::tempdir().unwrap();
    let chart = chart_dir(
        tmp.path(),
        &[
            (
                "Chart.yaml",
                "apiVersion: v2\nname: gate\nversion: 0.1.0\nappVersion: \"2.0.0\"\n",
            ),
            (
                "values.yaml",
                "keygen:\n  image: quay.io/acme-gate/keygen:1.1\n",
            ),
            (
                "templates/job.yaml",
                "{{- if not (lookup \"v1\" \"Secret\" .Release.Namespace \"gate-keys\") }}\n\
                 apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: keygen\nspec:\n  template:\n    spec:\n      \
                 containers:\n        - name: keygen\n          image: {{ .Values.keygen.image }}\n\
                 {{- end }}\n",
            ),
        ],
    );
    let rendered = helm_images(&helm::template(&chart, &[]).unwrap());
    assert_eq!(
        rendered,
        BTreeSet::from(["quay.io/acme-gate/keygen:1.1".to_string()])
    );
    let found = chart_images(std::slice::from_ref(&chart), &[]).unwrap();
    assert_eq!(found.images.len(), 1);
    let keygen = &found.images[0];
    assert_eq!(keygen.need, Need::Undecided);
    assert!(keygen.reason.contains("offline"), "{}", keygen.reason);
    let (required, others) = missing_from(&found.images, &[]);
    assert!(required.is_empty());
    assert_eq!(others.len(), 1);
    // The spec block ships it: not commented out.
    let spec = ferry::images::spec_block(&found);
    assert!(
        spec.lines()
            .any(|l| l == "  - ref: quay.io/acme-gate/keygen:1.1"),
        "{spec}"
    );
}

/// `missing_from` matches as the values check does: Docker Hub's `library/` and aliases, the
/// `REGISTRY` placeholder, tags; required images apart from the rest.
#[test]
fn missing_from_splits_required_and_conditional() {
    let chart = PathBuf::from(CHARTS).join("umbrella-images");
    let found = chart_images(std::slice::from_ref(&chart), &[]).unwrap();
    let bundle = [
        crate::util::bundle_image("index.docker.io/busybox:1.36.1"),
        crate::util::bundle_image("ghcr.io/acme-orchard/orchard-api:3.2.1"),
        crate::util::bundle_image("docker.io/acme-orchard/orchard-search:8.15.0"),
        crate::util::bundle_image("quay.io/acme-orchard/orchard-exporter:0.9.4"),
        // The appVersion tag with a `v` matches too, as in `ferry images check`.
        crate::util::bundle_image("ghcr.io/acme-orchard/orchard-migrate:v3.2.1"),
    ];
    let (required, others) = missing_from(&found.images, &bundle);
    assert!(required.is_empty(), "{required:#?}");
    let names: Vec<String> = others.iter().map(|i| i.reference.to_string()).collect();
    assert_eq!(
        names,
        [
            "docker.io/acme-orchard/orchard-cache:7.4.2",
            "docker.io/acme-orchard/toolbox:2024.10"
        ]
    );
    let (required, _) = missing_from(&found.images, &bundle[1..]);
    let names: Vec<String> = required.iter().map(|i| i.reference.to_string()).collect();
    assert_eq!(names, ["docker.io/library/busybox:1.36.1"]);
    // The fixture's REGISTRY placeholder matches the bundle's registry.
    let fx = chart_images(
        &[fixture().join("charts/agent-security")],
        &[fixture().join("values.yaml")],
    )
    .unwrap();
    let shipped: Vec<ImageEntry> = fx
        .images
        .iter()
        .map(|i| {
            let r = format!(
                "registry.permit.io/{}:{}",
                i.reference.repository,
                i.reference.tag.as_deref().unwrap()
            );
            crate::util::bundle_image(&r)
        })
        .collect();
    assert_eq!(missing_from(&fx.images, &shipped).0.len(), 0);
    assert_eq!(missing_from(&fx.images, &shipped[1..]).0.len(), 1);
}

/// A packaged chart with a packaged subchart lists the same images at the same template
/// lines as the chart folder.
#[test]
fn packaged_charts_list_as_their_folders() {
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("umbrella-images");
    copy_dir(&PathBuf::from(CHARTS).join("umbrella-images"), &copy);
    let run = |args: &[&str]| {
        let out = std::process::Command::new(helm::helm())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let sub = copy.join("charts/search");
    run(&[
        "package",
        sub.to_str().unwrap(),
        "-d",
        copy.join("charts").to_str().unwrap(),
    ]);
    fs::remove_dir_all(&sub).unwrap();
    run(&[
        "package",
        copy.to_str().unwrap(),
        "-d",
        tmp.path().to_str().unwrap(),
    ]);
    let tgz = tmp.path().join("umbrella-images-0.3.0.tgz");
    assert!(copy.join("charts/search-1.0.0.tgz").is_file());
    let folder = chart_images(&[PathBuf::from(CHARTS).join("umbrella-images")], &[]).unwrap();
    let packaged = chart_images(std::slice::from_ref(&tgz), &[]).unwrap();
    assert_eq!(folder, packaged);
    let rendered = helm_images(&helm::template(&tgz, &[]).unwrap());
    assert_eq!(with_need(&packaged, Need::Required), rendered);
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// The three formats of the command line, and `--json`.
#[test]
fn list_formats() {
    let chart = PathBuf::from(CHARTS).join("umbrella-images");
    let text = ferry()
        .args(["images", "list"])
        .arg(&chart)
        .assert()
        .success()
        .get_output()
        .clone();
    let stdout = String::from_utf8_lossy(&text.stdout);
    let stderr = String::from_utf8_lossy(&text.stderr);
    assert!(
        stdout.lines().any(|l| l.starts_with("required")
            && l.contains("ghcr.io/acme-orchard/orchard-api:3.2.1")
            && l.ends_with("umbrella-images/templates/deployment.yaml:21")),
        "{stdout}"
    );
    assert!(
        stdout.lines().any(|l| l.starts_with("conditional")
            && l.contains("docker.io/acme-orchard/orchard-cache:7.4.2")
            && l.contains("cache.enabled")),
        "{stdout}"
    );
    assert!(
        stdout.contains("docker.io/library/busybox:1.36.1*"),
        "{stdout}"
    );
    assert!(
        stdout.contains("7 images: 4 required, 0 undecided, 3 conditional"),
        "{stdout}"
    );
    assert!(stderr.contains("`ferry rewrite` cannot move"), "{stderr}");

    for args in [&["--format", "json"][..], &["--json"][..]] {
        let out = ferry()
            .args(["images", "list"])
            .arg(&chart)
            .args(args)
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        let v: Value = serde_json::from_slice(&out).unwrap();
        let images = v["images"].as_array().unwrap();
        assert_eq!(images.len(), 7, "{v}");
        let busybox = images
            .iter()
            .find(|i| i["reference"] == "docker.io/library/busybox:1.36.1")
            .unwrap();
        assert_eq!(busybox["need"], "required");
        assert_eq!(busybox["values_key"], false);
        assert_eq!(
            busybox["locations"][0]["file"],
            "umbrella-images/templates/tests/test-api.yaml"
        );
        assert_eq!(busybox["locations"][0]["line"], 12);
        let exporter = images
            .iter()
            .find(|i| i["reference"] == "quay.io/acme-orchard/orchard-exporter:0.9.4")
            .unwrap();
        assert_eq!(exporter["need"], "conditional");
        assert!(exporter["reason"].as_str().unwrap().contains("switch off"));
    }

    let spec = ferry()
        .args(["images", "list", "--format", "spec"])
        .arg(&chart)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let spec = String::from_utf8(spec).unwrap();
    let parsed: Value = serde_saphyr::from_str(&spec).unwrap();
    let refs: Vec<&str> = parsed["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["ref"].as_str().unwrap())
        .collect();
    assert_eq!(
        refs,
        [
            "docker.io/acme-orchard/orchard-search:8.15.0",
            "docker.io/library/busybox:1.36.1",
            "ghcr.io/acme-orchard/orchard-api:3.2.1",
            "ghcr.io/acme-orchard/orchard-migrate:3.2.1"
        ]
    );
    assert!(
        spec.contains("  # - ref: quay.io/acme-orchard/orchard-exporter:0.9.4\n"),
        "{spec}"
    );
    assert!(spec.contains("cannot move it to a mirror"), "{spec}");
}

/// Bad input exits 2 with the file (and line) and what to do.
#[test]
fn bad_input_exits_2_located() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: Vec<(Vec<PathBuf>, Vec<PathBuf>, &str)> = {
        let broken = chart_dir(
            tmp.path(),
            &[
                ("Chart.yaml", "apiVersion: v2\nname: gate\nversion: 0.1.0\n"),
                ("templates/a.yaml", "x: 1\ny: {{ if .Values.a }}\n"),
            ],
        );
        let values = tmp.path().join("bad-values.yaml");
        fs::write(&values, "a: [1,\n").unwrap();
        vec![
            (vec![tmp.path().join("nope")], vec![], "no such file"),
            (vec![tmp.path().to_path_buf()], vec![], "has no Chart.yaml"),
            (vec![broken.clone()], vec![], "gate/templates/a.yaml:2:"),
            (
                vec![PathBuf::from(CHARTS).join("umbrella-images")],
                vec![values],
                "bad-values.yaml:",
            ),
        ]
    };
    for (charts, values, want) in cases {
        let mut cmd = ferry();
        cmd.args(["images", "list"]).args(&charts);
        for v in &values {
            cmd.arg("-f").arg(v);
        }
        let out = cmd.assert().code(2).get_output().stderr.clone();
        let msg = String::from_utf8_lossy(&out);
        assert!(msg.contains(want), "{charts:?}: {msg}");
    }
}

/// `ferry images check` on a bundle that carries charts renders them: an image a template
/// composes with the chart's appVersion as its tag, missing from the bundle, fails the check
/// (exit 1) although no values file names that tag.
#[test]
fn images_check_renders_the_bundle_charts() {
    let tmp = tempfile::tempdir().unwrap();
    crate::util::oci::write_layout(&tmp.path().join("layout"), 31);
    crate::util::oci::write_layout(&tmp.path().join("layout2"), 32);
    let chart = tmp.path().join("umbrella-images");
    copy_dir(&PathBuf::from(CHARTS).join("umbrella-images"), &chart);
    let images = [
        "docker.io/acme-orchard/orchard-search:8.15.0",
        "docker.io/library/busybox:1.36.1",
        "ghcr.io/acme-orchard/orchard-api:3.2.1",
        "ghcr.io/acme-orchard/orchard-migrate:3.2.0",
    ];
    let mut spec =
        String::from("name: orchard\nversion: '1'\ncharts:\n  - umbrella-images\nimages:\n");
    let sources = ["layout:app1", "layout:app2", "layout:multi", "layout2:app1"];
    for (r, from) in images.iter().zip(sources) {
        spec.push_str(&format!("  - ref: {r}\n    from: oci:{from}\n"));
    }
    fs::write(tmp.path().join("ferry.yaml"), spec).unwrap();
    let bundle = tmp.path().join("orchard.tar.gz");
    // The bundle lacks an image on purpose: `images check` is to find it.
    ferry()
        .args(["build", "-q", "--allow-missing-images", "-f"])
        .arg(tmp.path().join("ferry.yaml"))
        .arg("-o")
        .arg(&bundle)
        .assert()
        .success();
    let values = chart.join("values.yaml");
    let out = ferry()
        .args(["images", "check"])
        .arg(&values)
        .arg("--bundle")
        .arg(&bundle)
        .assert()
        .code(1)
        .get_output()
        .stderr
        .clone();
    let msg = String::from_utf8_lossy(&out);
    assert!(
        msg.contains("ghcr.io/acme-orchard/orchard-migrate:3.2.1")
            && msg.contains("umbrella-images/templates/deployment.yaml:17")
            && msg.contains("appVersion"),
        "{msg}"
    );
    // With the tag the template uses, the check passes; the hard-coded test image is noted.
    let fixed = tmp.path().join("migrate-values.yaml");
    fs::write(&fixed, "migrations:\n  image:\n    tag: \"3.2.0\"\n").unwrap();
    let out = ferry()
        .args(["images", "check"])
        .arg(&values)
        .arg(&fixed)
        .arg("--bundle")
        .arg(&bundle)
        .assert()
        .success()
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("docker.io/library/busybox:1.36.1 is written in the template"),
        "{stderr}"
    );
    assert!(
        stderr.contains("orchard-exporter:0.9.4") && stderr.contains("only with other values"),
        "{stderr}"
    );
}

/// A template default used because the values give null is no values key's: `ferry rewrite`
/// cannot move it. Once a values file writes the image, it is.
#[test]
fn template_defaults_for_null_values_are_not_values_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let chart = chart_dir(
        tmp.path(),
        &[
            ("Chart.yaml", "apiVersion: v2\nname: gate\nversion: 0.1.0\n"),
            ("values.yaml", "sidecar:\n  image: null\n"),
            (
                "templates/pod.yaml",
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n    - name: s\n      \
                 image: {{ .Values.sidecar.image | default \"acme/sidecar:1.0\" }}\n",
            ),
        ],
    );
    let run = |values: &[PathBuf]| {
        let refs: Vec<&Path> = values.iter().map(PathBuf::as_path).collect();
        let rendered = helm_images(&helm::template(&chart, &refs).unwrap());
        let found = chart_images(std::slice::from_ref(&chart), values).unwrap();
        assert_eq!(with_need(&found, Need::Required), rendered);
        let i = found.images[0].clone();
        (i.reference.to_string(), i.values_key)
    };
    assert_eq!(run(&[]), ("docker.io/acme/sidecar:1.0".to_string(), false));
    let mine = tmp.path().join("mine.yaml");
    fs::write(&mine, "sidecar:\n  image: quay.io/acme/sidecar:2.0\n").unwrap();
    assert_eq!(run(&[mine]), ("quay.io/acme/sidecar:2.0".to_string(), true));
}

/// A library chart renders nothing itself, as Helm renders it; its named templates still
/// compose the parent's images.
#[test]
fn library_charts_render_nothing_themselves() {
    let tmp = tempfile::tempdir().unwrap();
    let chart = chart_dir(
        tmp.path(),
        &[
            ("Chart.yaml", "apiVersion: v2\nname: gate\nversion: 0.1.0\nappVersion: \"5.1\"\n"),
            ("values.yaml", "image:\n  repository: quay.io/acme-gate/app\n"),
            (
                "templates/pod.yaml",
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n    - name: a\n      \
                 image: {{ include \"lib.image\" . }}\n",
            ),
            (
                "charts/lib/Chart.yaml",
                "apiVersion: v2\nname: lib\nversion: 1.0.0\ntype: library\n",
            ),
            (
                "charts/lib/templates/_image.tpl",
                "{{- define \"lib.image\" -}}{{ .Values.image.repository }}:{{ .Chart.AppVersion }}{{- end -}}\n",
            ),
            (
                "charts/lib/templates/example.yaml",
                "kind: Pod\nspec:\n  containers:\n    - image: docker.io/acme-gate/example:1\n",
            ),
        ],
    );
    let rendered = helm_images(&helm::template(&chart, &[]).unwrap());
    assert_eq!(
        rendered,
        BTreeSet::from(["quay.io/acme-gate/app:5.1".to_string()])
    );
    let found = chart_images(std::slice::from_ref(&chart), &[]).unwrap();
    let all: BTreeSet<String> = found
        .images
        .iter()
        .map(|i| i.reference.to_string())
        .collect();
    assert_eq!(all, rendered);
    assert!(found.images[0].values_key && found.images[0].app_version_tag);
}

/// `ferry build` refuses a bundle whose charts deploy an image the spec does not carry,
/// naming the image and the template line; `--allow-missing-images` builds it and says so.
#[test]
fn build_refuses_a_bundle_missing_an_image_its_charts_deploy() {
    let fx = crate::harness::fixture();
    let tmp = tempfile::tempdir().unwrap();
    let spec = tmp.path().join("ferry.yaml");
    let d = fx.display();
    std::fs::write(
        &spec,
        format!(
            "name: partial\nversion: '1'\ncharts: [{d}/charts/agent-security]\nvalues: [{d}/values.yaml]\nimages:\n\
             - ref: registry.permit.io/agent-security/gateway:1.4.0\n  from: oci:{d}/images/layout:gateway\n\
             - ref: registry.permit.io/agent-security/consent-service:1.4.0\n  from: oci:{d}/images/layout:consent-service\n\
             - ref: registry.permit.io/agent-security/platform:1.4.0\n  from: oci:{d}/images/layout:platform\n\
             - ref: registry.permit.io/agent-security/keycloak-setup:1.4.0\n  from: oci:{d}/images/layout:keycloak-setup\n\
             - ref: registry.permit.io/agent-security/postgres:16.4\n  from: oci-archive:{d}/images/postgres.oci.tar\n\
             - ref: registry.permit.io/agent-security/redis:7.2.5\n  from: docker-archive:{d}/images/redis.docker.tar:registry.permit.io/agent-security/redis:7.2.5\n"
        ),
    )
    .unwrap();
    let out_file = tmp.path().join("p.tar.gz");
    let out = crate::harness::ferry()
        .args(["build", "-f"])
        .arg(&spec)
        .arg("-o")
        .arg(&out_file)
        .assert()
        .code(1);
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(
        err.contains("nginx:1.25.3") && err.contains("agent-security/templates/nginx.yaml:"),
        "{err}"
    );
    assert!(!out_file.exists());
    let out = crate::harness::ferry()
        .args(["build", "--allow-missing-images", "-f"])
        .arg(&spec)
        .arg("-o")
        .arg(&out_file)
        .assert()
        .success();
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(err.contains("nginx:1.25.3"), "{err}");
    assert!(out_file.exists());
}

/// A field of a parenthesised pipeline, as charts reach an optional `global` map
/// (`(.Values.global).imageRegistry`): Helm renders the image, and so does ferry.
#[test]
fn a_field_of_a_parenthesised_pipeline_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let chart = dir.path().join("pg");
    fs::create_dir_all(chart.join("templates")).unwrap();
    fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: pg\nversion: 1.0.0\nappVersion: \"1.2\"\n",
    )
    .unwrap();
    fs::write(
        chart.join("values.yaml"),
        "image:\n  registry: quay.io\n  repository: prom/pushgateway\n  tag: \"\"\n",
    )
    .unwrap();
    fs::write(
        chart.join("templates/_image.tpl"),
        "{{- define \"pg.image\" -}}\n{{- $registry := default .Values.image.registry (.Values.global).imageRegistry }}\n{{- $tag := default .Chart.AppVersion .Values.image.tag }}\n{{- printf \"%s/%s:%s\" $registry .Values.image.repository $tag -}}\n{{- end -}}\n",
    )
    .unwrap();
    fs::write(
        chart.join("templates/pod.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\nspec:\n  containers:\n    - name: a\n      image: {{ include \"pg.image\" . }}\n",
    )
    .unwrap();
    let rendered = crate::util::helm::template(&chart, &[]).unwrap();
    assert!(
        rendered.contains("image: quay.io/prom/pushgateway:1.2"),
        "{rendered}"
    );
    let found = chart_images(std::slice::from_ref(&chart), &[]).unwrap();
    let refs: Vec<String> = found
        .images
        .iter()
        .filter(|i| i.need == Need::Required)
        .map(|i| i.reference.to_string())
        .collect();
    assert_eq!(refs, ["quay.io/prom/pushgateway:1.2"]);
    // With a global registry, that one wins, as in Helm.
    let global = dir.path().join("global.yaml");
    fs::write(
        &global,
        "global:\n  imageRegistry: harbor.example.com/mirror\n",
    )
    .unwrap();
    let rendered = crate::util::helm::template(&chart, &[global.as_path()]).unwrap();
    assert!(
        rendered.contains("image: harbor.example.com/mirror/prom/pushgateway:1.2"),
        "{rendered}"
    );
    let found = chart_images(&[chart], &[global]).unwrap();
    assert_eq!(
        found.images[0].reference.to_string(),
        "harbor.example.com/mirror/prom/pushgateway:1.2"
    );
}
