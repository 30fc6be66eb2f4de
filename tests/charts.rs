//! The chart corpus in `testdata/charts/`: every chart's values rewritten for a mirror and
//! rendered by real Helm, every values file read as Helm reads it, and the images each chart
//! needs checked against a bundle with the chart's `appVersion` as the default tag.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use ferry::bundle::manifest::ImageEntry;
use ferry::oci::reference::{ImageRef, Target};
use ferry::values::tree::{Kind, NodeId, Tree};
use ferry::values::{
    app_version, check_coverage, find_chart_images, find_images, rewrite, RewriteError,
    RewriteOptions,
};
use granit_parser::ScalarStyle;
use serde::Deserialize;

use crate::harness::{build_fixture, ferry};
use crate::util::helm;

/// The mirror of the expected files' `mirrored` images.
const MIRROR: &str = "harbor.example.com/mirror";

/// The parts of `NAME.expected.yaml` these tests read.
#[derive(Deserialize)]
struct Expected {
    #[serde(default)]
    images: Vec<ExpectedImage>,
    #[serde(default)]
    mirror_render_values: Vec<String>,
    #[serde(default)]
    lenient: Vec<Lenient>,
    /// `false` when the values alone do not name every image Helm renders, with its tag
    /// (subcharts with their own appVersion, parts switched off): `ferry images list` does.
    #[serde(default = "yes")]
    values_name_images: bool,
    /// Image maps whose `registry` and `repository` are null, filled by `ferry rewrite` from
    /// the chart's template defaults.
    #[serde(default)]
    template_defaults: Vec<String>,
}

#[derive(Deserialize)]
struct ExpectedImage {
    rendered: String,
    mirrored: String,
    /// `false` for an image written in a template: no values key moves it to the mirror.
    #[serde(default = "yes")]
    values_key: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct Lenient {
    line: usize,
    value_path: String,
    helm_reads: serde_json::Value,
}

fn charts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/charts")
}

/// Every chart of the corpus (a folder with a `NAME.expected.yaml`), by name.
fn charts() -> Vec<(String, Expected)> {
    let mut out = Vec::new();
    for entry in fs::read_dir(charts_dir()).unwrap() {
        let path = entry.unwrap().path();
        if !path.is_dir() {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let expected = charts_dir().join(format!("{name}.expected.yaml"));
        let text =
            fs::read_to_string(&expected).unwrap_or_else(|e| panic!("{}: {e}", expected.display()));
        let parsed: Expected =
            serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", expected.display()));
        out.push((name, parsed));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 9, "the corpus has {} charts", out.len());
    out
}

/// The `image:` values of rendered manifests, unquoted and sorted.
fn rendered_images(manifests: &str) -> Vec<String> {
    let mut out: Vec<String> = manifests
        .lines()
        .filter_map(|line| {
            let t = line.trim_start();
            let t = t.strip_prefix("- ").unwrap_or(t).trim_start();
            let v = t.strip_prefix("image:")?.trim();
            Some(v.trim_matches(|c| c == '"' || c == '\'').to_string())
        })
        .filter(|v| !v.is_empty())
        .collect();
    out.sort();
    out
}

fn sorted(images: impl Iterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = images.collect();
    v.sort();
    v
}

/// For every chart: `ferry rewrite values.yaml --registry harbor.example.com/mirror`, then
/// `helm template` with the rewritten values alone renders every image from the mirror with its
/// path, tag and digest kept, exactly the expected file's `mirrored` list. Charts that check
/// their own images (`mirror_render_values` in the expected file) render without the extra
/// values file, because ferry set the flag itself and said so.
#[test]
fn rewritten_charts_render_from_the_mirror() {
    let tmp = tempfile::tempdir().unwrap();
    let charts = charts();
    let mut failures = Vec::new();
    let mut passed = 0;
    for (name, expected) in &charts {
        let chart = charts_dir().join(name);
        let before = helm::template(&chart, &[]).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            rendered_images(&before),
            sorted(expected.images.iter().map(|i| i.rendered.clone())),
            "{name}: the chart as shipped does not render the expected images"
        );
        let out = tmp.path().join(format!("{name}.yaml"));
        let json = ferry()
            .args(["rewrite", "--json", "--registry", MIRROR])
            .arg(chart.join("values.yaml"))
            .arg("-o")
            .arg(&out)
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        let report: serde_json::Value = serde_json::from_slice(&json).unwrap();
        let notes: Vec<&str> = report["files"][0]["edits"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e.get("note").is_some())
            .map(|e| e["path"].as_str().unwrap())
            .collect();
        // Every map filled from a template default says so on its `registry` edit.
        let mut want_notes: Vec<String> = expected
            .template_defaults
            .iter()
            .map(|m| format!("{m}.registry"))
            .collect();
        if !expected.mirror_render_values.is_empty() {
            want_notes.push("global.security.allowInsecureImages".into());
        }
        assert_eq!(
            notes, want_notes,
            "{name}: notes (Helm needs {:?} for a mirror: ferry must set the flag and say so)",
            expected.mirror_render_values
        );
        assert_eq!(
            report["files"][0]["unmoved"],
            serde_json::json!([]),
            "{name}: maps left as they were"
        );
        let want = sorted(expected.images.iter().map(|i| i.mirrored.clone()));
        match helm::template(&chart, &[&out]) {
            Err(e) => failures.push(format!("{name}: helm template failed: {e}")),
            Ok(manifests) => {
                let got = rendered_images(&manifests);
                let fixed: Vec<&String> = expected
                    .images
                    .iter()
                    .filter(|i| !i.values_key)
                    .map(|i| &i.rendered)
                    .collect();
                let outside: Vec<&String> = got
                    .iter()
                    .filter(|i| !i.starts_with(&format!("{MIRROR}/")) && !fixed.contains(i))
                    .collect();
                if got != want || !outside.is_empty() {
                    failures.push(format!(
                        "{name}: rendered {got:#?}\nexpected {want:#?}\nnot from the mirror: {outside:?}"
                    ));
                } else {
                    passed += 1;
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{passed} of {} charts render from the mirror; failures:\n{}",
        charts.len(),
        failures.join("\n")
    );
    assert_eq!(passed, charts.len());
}

/// The human output names the flag ferry set, and why.
#[test]
fn rewrite_says_why_it_allows_mirror_images() {
    let chart = charts_dir().join("bitnami-style");
    let out = ferry()
        .args(["rewrite", "--registry", MIRROR, "--diff"])
        .arg(chart.join("values.yaml"))
        .assert()
        .success()
        .get_output()
        .clone();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("+    allowInsecureImages: true"),
        "{stdout}"
    );
    assert!(
        stderr.contains("values.yaml:14: global.security.allowInsecureImages: set to true")
            && stderr.contains("same repositories, tags and digests"),
        "{stderr}"
    );
}

/// Every values file of the corpus parses for rewrite and for the images check: the chart
/// values, the extra values files beside the charts and the charts' `ci/` and override files.
#[test]
fn every_values_file_parses() {
    let mut files: Vec<PathBuf> = walk(&charts_dir())
        .into_iter()
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            let in_templates = p.components().any(|c| c.as_os_str() == "templates");
            (name.ends_with(".yaml") || name.ends_with(".yml"))
                && !in_templates
                && !name.ends_with(".expected.yaml")
                && name != "Chart.yaml"
                && !p.components().any(|c| c.as_os_str() == "crds")
        })
        .collect();
    files.sort();
    assert!(files.len() >= 14, "{files:?}");
    let opts = RewriteOptions {
        target: Target::parse(MIRROR).unwrap(),
        images: Vec::new(),
        pin_digests: false,
    };
    for file in &files {
        let text = fs::read_to_string(file).unwrap();
        if let Err(e) = find_images(&text, file) {
            panic!("images check cannot read {}: {e}", file.display());
        }
        match rewrite(&text, file, &opts) {
            Ok(_) | Err(RewriteError::Ambiguous { .. }) => {}
            Err(e) => panic!("rewrite cannot read {}: {e}", file.display()),
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The values tree reads `lenient-yaml/values.yaml` as Helm does: every construct listed in the
/// expected file's `lenient` section has the value Helm reads.
#[test]
fn lenient_values_read_as_helm_reads_them() {
    let (_, expected) = charts()
        .into_iter()
        .find(|(n, _)| n == "lenient-yaml")
        .unwrap();
    assert!(expected.lenient.len() >= 10);
    let text = fs::read_to_string(charts_dir().join("lenient-yaml/values.yaml")).unwrap();
    let tree = Tree::parse(&text).unwrap();
    let root = tree.roots[0];
    for l in &expected.lenient {
        let mut node = root;
        for key in l.value_path.split('.') {
            node = tree
                .get(node, key)
                .unwrap_or_else(|| panic!("{}: no {key}", l.value_path));
        }
        assert_eq!(
            to_json(&tree, node),
            l.helm_reads,
            "line {}: {}",
            l.line,
            l.value_path
        );
    }
}

/// A node as go-yaml reads it into JSON: YAML 1.1 booleans, merge keys, later keys win.
fn to_json(tree: &Tree<'_>, id: NodeId) -> serde_json::Value {
    use serde_json::Value;
    let id = tree.resolve(id).expect("aliases resolve");
    match &tree.nodes[id].kind {
        Kind::Scalar { value, style } => {
            if *style != ScalarStyle::Plain {
                return Value::String(value.to_string());
            }
            match value.as_ref() {
                "" | "~" | "null" => Value::Null,
                "true" | "yes" | "Yes" | "on" | "y" => Value::Bool(true),
                "false" | "no" | "No" | "off" | "n" => Value::Bool(false),
                v => v
                    .parse::<i64>()
                    .map(Value::from)
                    .unwrap_or_else(|_| Value::String(v.to_string())),
            }
        }
        Kind::Seq { items } => Value::Array(items.iter().map(|&i| to_json(tree, i)).collect()),
        Kind::Map { entries } => {
            let mut merged = BTreeMap::new();
            let mut own = BTreeMap::new();
            for &(k, v) in entries {
                let key = tree.scalar(k).unwrap().0.to_string();
                if key == "<<" {
                    if let Value::Object(m) = to_json(tree, v) {
                        merged.extend(m);
                    }
                } else {
                    own.insert(key, to_json(tree, v));
                }
            }
            merged.extend(own);
            Value::Object(merged.into_iter().collect())
        }
        Kind::Alias => Value::Null,
    }
}

/// The images check of each chart's values, with the chart's `appVersion` as the tag of image
/// maps that give none, against a bundle of exactly the images Helm renders: every use is
/// covered with its exact tag, before and after rewriting for the mirror.
#[test]
fn chart_images_are_checked_with_app_version_tags() {
    let opts = RewriteOptions {
        target: Target::parse(MIRROR).unwrap(),
        images: Vec::new(),
        pin_digests: false,
    };
    for (name, expected) in charts() {
        let dir = charts_dir().join(&name);
        let version = app_version(&fs::read_to_string(dir.join("Chart.yaml")).unwrap());
        assert!(version.is_some(), "{name}");
        // Images written in templates are not in the values; `ferry images list` finds them.
        let bundle: Vec<ImageEntry> = expected
            .images
            .iter()
            .filter(|i| i.values_key)
            .map(|i| crate::util::bundle_image(&i.rendered))
            .collect();
        let file = dir.join("values.yaml");
        let text = fs::read_to_string(&file).unwrap();
        if !expected.template_defaults.is_empty() {
            // Image maps left empty name no image: the chart's templates do, which rendering
            // the chart finds (`ferry images list`) and `ferry rewrite` in the chart folder
            // fills (`rewritten_charts_render_from_the_mirror`).
            let uses = find_chart_images(&text, &file, version.as_deref()).unwrap();
            assert!(uses.is_empty(), "{name}: {uses:#?}");
            continue;
        }
        let rewritten = rewrite(&text, &file, &opts).unwrap().text;
        for (what, values) in [("values", &text), ("rewritten values", &rewritten)] {
            let uses = find_chart_images(values, &file, version.as_deref()).unwrap();
            let cov = check_coverage(&uses, &bundle);
            let missing: Vec<String> = cov.missing.iter().map(|m| m.to_string()).collect();
            if !expected.values_name_images {
                // The limit of reading values alone, which rendering the chart overcomes.
                assert!(
                    !missing.is_empty(),
                    "{name} {what}: the values name every image"
                );
                continue;
            }
            assert!(missing.is_empty(), "{name} {what}: {missing:#?}");
            let inexact: Vec<&str> = cov
                .found
                .iter()
                .filter(|c| !c.exact)
                .map(|c| c.image_use.raw.as_str())
                .collect();
            assert!(inexact.is_empty(), "{name} {what}: inexact {inexact:?}");
            // Every image Helm renders is one the values name.
            for image in &bundle {
                assert!(
                    cov.found
                        .iter()
                        .any(|c| c.image.reference == image.reference),
                    "{name} {what}: {} is rendered but not found in the values",
                    image.reference
                );
            }
        }
    }
}

/// `ferry images check` on a chart folder, and on a values file with a `Chart.yaml` beside it,
/// takes the tag of an image map without one from the chart's `appVersion`.
#[test]
fn images_check_uses_the_chart_app_version() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("b.tar.gz");
    build_fixture(&bundle, 0);
    let chart = tmp.path().join("gateway");
    fs::create_dir(&chart).unwrap();
    fs::write(
        chart.join("values.yaml"),
        "gateway:\n  image:\n    registry: registry.permit.io\n    repository: agent-security/gateway\n    tag: \"\"\n",
    )
    .unwrap();
    let chart_yaml = |app: &str| {
        fs::write(
            chart.join("Chart.yaml"),
            format!("apiVersion: v2\nname: gateway\nversion: 0.1.0\nappVersion: \"{app}\"\n"),
        )
        .unwrap()
    };
    chart_yaml("1.4.0");
    for target in [chart.clone(), chart.join("values.yaml")] {
        let out = ferry()
            .args(["images", "check", "--json"])
            .arg(&target)
            .arg("--bundle")
            .arg(&bundle)
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let found = &v["coverage"]["found"][0];
        assert_eq!(found["exact"], true, "{v}");
        assert_eq!(found["image_use"]["reference"]["tag"], "1.4.0", "{v}");
        assert_eq!(found["image_use"]["app_version"], "1.4.0", "{v}");
    }
    chart_yaml("9.9.9");
    let out = ferry()
        .args(["images", "check"])
        .arg(&chart)
        .arg("--bundle")
        .arg(&bundle)
        .assert()
        .code(1)
        .get_output()
        .stderr
        .clone();
    let msg = String::from_utf8_lossy(&out);
    assert!(
        msg.contains("agent-security/gateway:9.9.9") && msg.contains("appVersion"),
        "{msg}"
    );
}

/// Bitnami's `global.imageRegistry`, when the vendor sets it, replaces every map's registry in
/// the chart: rewritten with the maps, the chart still renders every image from the mirror.
#[test]
fn global_image_registry_rewritten_renders_from_the_mirror() {
    let tmp = tempfile::tempdir().unwrap();
    let chart = charts_dir().join("bitnami-style");
    let text = fs::read_to_string(chart.join("values.yaml")).unwrap();
    let global = text.replace("imageRegistry: \"\"", "imageRegistry: docker.io");
    assert_ne!(global, text);
    // With the maps' registries kept, and with them empty (the global one alone is joined).
    let only_global = global.replace("registry: docker.io", "registry: \"\"");
    assert_ne!(only_global, global);
    for vendor in [global, only_global] {
        render_rewritten_bitnami(&chart, tmp.path(), &vendor);
    }
}

fn render_rewritten_bitnami(chart: &Path, tmp: &Path, vendor: &str) {
    let values = tmp.join("values.yaml");
    fs::write(&values, vendor).unwrap();
    let opts = RewriteOptions {
        target: Target::parse(MIRROR).unwrap(),
        images: Vec::new(),
        pin_digests: false,
    };
    let out = rewrite(vendor, &values, &opts).unwrap();
    assert!(out
        .text
        .contains("imageRegistry: harbor.example.com/mirror\n"));
    fs::write(&values, &out.text).unwrap();
    let manifests =
        helm::template(chart, &[&values]).unwrap_or_else(|e| panic!("{e}\n{}", out.text));
    let (_, expected) = charts()
        .into_iter()
        .find(|(n, _)| n == "bitnami-style")
        .unwrap();
    assert_eq!(
        rendered_images(&manifests),
        sorted(expected.images.iter().map(|i| i.mirrored.clone()))
    );
}

/// Values that Helm reads although YAML 1.2 does not allow them (or reads them otherwise): for
/// each, real Helm renders a chart with it, and ferry reads it for rewrite and images check.
#[test]
fn what_helm_reads_ferry_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let chart = values_chart(tmp.path());
    let cases = [
        "a:\n  b: [\n\tx,\n  ]\n",
        "a:\n  b: {\n\t\tk: v,\n\t\"q\": 1 }\n",
        "a: [\n\t{k: v},\n]\n",
        "a:\t[x,\ty]\nb:\tquay.io/a/b:1\n",
        "a: 1\t# c\n",
        "a:\n  b: {\nc: 1}\n",
        "a:\n  b: [\n1,\n2]\n",
        "a:\n  b: [x,\ny]\nc: 1\n",
        "a:\n  b: \"x\ny\"\n",
        "a:\n  b: 'x\ny'\n",
        "a:\n  b: {c: \"d\ne\"}\n",
        "a:\n  b: [\n  ]\n  c: {\n}\n",
        "a:\n  b: [\n    # x\n    c]\n",
        "a: [1,2,]\n",
        "a: {b: [c, {d: e}],\n}\n",
        "d: &d {registry: quay.io}\ne:\n  <<: *d\n  f: 1\n",
        "a: 1\nb: 2\na: 3\n",
        "on: yes\noff: n\n",
        "image:\n  registry: registry.k8s.io\n  image: ingress-nginx/controller\n  registry: quay.io\n",
        "images: [\n\tquay.io/a/b:1,\n  {repository: ghcr.io/c/d, tag: \"2\"}\n]\n",
        // Tabs near a `-` that go-yaml accepts: after a key's colon, in a comment, in quotes,
        // in a block scalar's text.
        "l:\n- a:\t1\n- b # c\t\n- \"\t\"\nm: |\n  -\tz\n",
    ];
    let opts = RewriteOptions {
        target: Target::parse(MIRROR).unwrap(),
        images: Vec::new(),
        pin_digests: false,
    };
    for case in cases {
        let values = tmp.path().join("values.yaml");
        fs::write(&values, case).unwrap();
        if let Err(e) = helm::template(&chart, &[&values]) {
            panic!("helm does not read {case:?}: {e}");
        }
        if let Err(e) = find_images(case, &values) {
            panic!("images check does not read {case:?}: {e}");
        }
        match rewrite(case, &values, &opts) {
            Ok(out) => {
                // What ferry wrote, Helm still reads.
                fs::write(&values, &out.text).unwrap();
                if let Err(e) = helm::template(&chart, &[&values]) {
                    panic!(
                        "helm does not read the rewrite of {case:?}: {e}\n{}",
                        out.text
                    );
                }
            }
            Err(e) => panic!("rewrite does not read {case:?}: {e}"),
        }
    }
}

/// A chart whose one template renders the values it is given, for Helm to judge values files.
fn values_chart(dir: &Path) -> PathBuf {
    let chart = dir.join("c");
    fs::create_dir_all(chart.join("templates")).unwrap();
    fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: c\nversion: 0.1.0\n",
    )
    .unwrap();
    fs::write(
        chart.join("templates/cm.yaml"),
        "v: {{ toJson .Values | quote }}\n",
    )
    .unwrap();
    chart
}

/// Values that YAML 1.2 allows and Helm's YAML reader refuses: real Helm fails on each, and
/// ferry refuses it too, at the line and column of the offending text, saying what to change.
#[test]
fn what_helm_refuses_ferry_refuses() {
    let tmp = tempfile::tempdir().unwrap();
    let chart = values_chart(tmp.path());
    // (values, line, column, what the message says)
    let cases = [
        ("list:\n-\tquay.io/a/b:1\n", 2, 2, "tab after the `-`"),
        ("list:\n  - \tx\n", 2, 5, "tab after the `-`"),
        ("list:\n-\t# note\n  - x\n", 2, 2, "tab after the `-`"),
        (
            "%YAML 1.1\n---\nimage: quay.io/a/b:1\n",
            1,
            1,
            "`%YAML 1.1`",
        ),
        ("%YAML 1.2\n---\na: 1\n", 1, 1, "`%YAML 1.2`"),
        ("%TAG !e! tag:example.com,2000:\n---\na: 1\n", 1, 1, "`%TAG"),
    ];
    let opts = RewriteOptions {
        target: Target::parse(MIRROR).unwrap(),
        images: Vec::new(),
        pin_digests: false,
    };
    for (case, line, column, says) in cases {
        let values = tmp.path().join("values.yaml");
        fs::write(&values, case).unwrap();
        if let Ok(out) = helm::template(&chart, &[&values]) {
            panic!("helm reads {case:?}:\n{out}");
        }
        for result in [
            rewrite(case, &values, &opts).map(|_| ()),
            find_images(case, &values).map(|_| ()),
        ] {
            match result {
                Err(RewriteError::Parse {
                    line: l,
                    column: c,
                    message,
                    ..
                }) => {
                    assert_eq!((l, c), (line, column), "{case:?}: {message}");
                    assert!(message.contains(says), "{case:?}: {message}");
                    assert!(message.contains("Helm"), "{case:?}: {message}");
                }
                other => panic!("{case:?} is read: {other:?}"),
            }
        }
    }
    // The command says where and what, and exits 2.
    let values = tmp.path().join("values.yaml");
    fs::write(&values, "list:\n-\tx\n").unwrap();
    let out = ferry()
        .args(["rewrite", "--registry", MIRROR])
        .arg(&values)
        .assert()
        .code(2)
        .get_output()
        .stderr
        .clone();
    let msg = String::from_utf8_lossy(&out);
    assert!(
        msg.contains("values.yaml:2:2:") && msg.contains("write spaces"),
        "{msg}"
    );
}

/// The images an expected file lists, as bundle images with made-up digests
/// (`sha256:aaa…`, `sha256:bbb…`, …), for the `--pin-digests` checks.
fn pinned_bundle(expected: &Expected) -> Vec<ImageEntry> {
    expected
        .images
        .iter()
        .zip(['a', 'b', 'c'])
        .map(|(i, d)| {
            crate::util::bundle_image(&format!(
                "{}@sha256:{}",
                i.rendered,
                d.to_string().repeat(64)
            ))
        })
        .collect()
}

/// With `--pin-digests`, the Bitnami-style chart renders the mirror's images by the bundle's
/// digests, and its image check is off because ferry set the flag: the mirror's images are
/// checkable as the ones the chart was released with.
#[test]
fn pinned_bitnami_values_render_by_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let chart = charts_dir().join("bitnami-style");
    let (_, expected) = charts()
        .into_iter()
        .find(|(n, _)| n == "bitnami-style")
        .unwrap();
    let bundle = pinned_bundle(&expected);
    let values = chart.join("values.yaml");
    let text = fs::read_to_string(&values).unwrap();
    let opts = RewriteOptions {
        target: Target::parse(MIRROR).unwrap(),
        images: bundle.clone(),
        pin_digests: true,
    };
    let out = rewrite(&text, &values, &opts).unwrap();
    let note = out
        .edits
        .iter()
        .find(|e| e.path == "global.security.allowInsecureImages")
        .and_then(|e| e.note.as_deref())
        .unwrap();
    assert!(note.contains("pinned in these values"), "{note}");
    let rewritten = tmp.path().join("values.yaml");
    fs::write(&rewritten, &out.text).unwrap();
    let manifests = helm::template(&chart, &[&rewritten]).unwrap();
    let want = sorted(bundle.iter().map(|b| {
        let r = ImageRef::parse(&b.reference).unwrap();
        format!("{MIRROR}/{}@{}", r.repository, b.digest)
    }));
    assert_eq!(rendered_images(&manifests), want);
}

/// With `--pin-digests`, an image map whose tag comes from the chart's `appVersion` (the
/// alert router's, `v` + appVersion in the template) is pinned to the bundle image with that
/// tag, like the maps that write their tag: Helm renders every image from the mirror by digest.
#[test]
fn pinned_app_version_tags_render_by_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let chart = charts_dir().join("probes-and-alerts");
    let (_, expected) = charts()
        .into_iter()
        .find(|(n, _)| n == "probes-and-alerts")
        .unwrap();
    let bundle = pinned_bundle(&expected);
    let opts = RewriteOptions {
        target: Target::parse(MIRROR).unwrap(),
        images: bundle.clone(),
        pin_digests: true,
    };
    // As `ferry rewrite` and `ferry load --values` rewrite a values file: the Chart.yaml
    // beside it gives the appVersion.
    let values = chart.join("values.yaml");
    let out = ferry::load::rewrite_values(std::slice::from_ref(&values), &opts).unwrap();
    let pinned = out[0]
        .edits
        .iter()
        .find(|e| e.path == "alertmanager.image.digest")
        .unwrap_or_else(|| panic!("not pinned: {:#?}", out[0].edits));
    assert_eq!(pinned.after, bundle[0].digest.to_string());
    let rewritten = tmp.path().join("values.yaml");
    fs::write(&rewritten, &out[0].after).unwrap();
    let manifests = helm::template(&chart, &[&rewritten]).unwrap();
    let want = sorted(bundle.iter().map(|b| {
        let r = ImageRef::parse(&b.reference).unwrap();
        format!("{MIRROR}/{}:{}@{}", r.repository, r.tag.unwrap(), b.digest)
    }));
    assert_eq!(rendered_images(&manifests), want);
    // Without the chart's appVersion the map's tag is unknown, and it is left unpinned.
    let text = fs::read_to_string(&values).unwrap();
    let alone = rewrite(&text, &values, &opts).unwrap();
    assert!(
        !alone
            .edits
            .iter()
            .any(|e| e.path == "alertmanager.image.digest"),
        "{:#?}",
        alone.edits
    );
}

/// The ingress-nginx shape: one chart-wide `global.image.registry`, and image maps whose
/// `image:` is only the repository path, with their own `registry` commented out. The
/// chart-wide registry is what rewrite edits; the names stay as they are.
#[test]
fn chart_wide_image_registry_with_name_only_maps_renders_from_the_mirror() {
    let tmp = tempfile::tempdir().unwrap();
    let chart = tmp.path().join("relay");
    fs::create_dir_all(chart.join("templates")).unwrap();
    fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: relay\nversion: 0.1.0\nappVersion: \"2.0.1\"\n",
    )
    .unwrap();
    let values = "global:\n  image:\n    # -- where every image comes from\n    registry: registry.k8s.io\n\
controller:\n  image:\n    # registry: registry.k8s.io\n    image: relay/controller\n    tag: \"v2.0.1\"\n\
helper:\n  image:\n    image: relay-helper\n    tag: \"1.4\"\n    digest: \"\"\n";
    fs::write(chart.join("values.yaml"), values).unwrap();
    fs::write(
        chart.join("templates/pods.yaml"),
        r#"{{- range $name := list "controller" "helper" }}
{{- $image := (index $.Values $name).image }}
---
apiVersion: v1
kind: Pod
metadata:
  name: {{ $name }}
spec:
  containers:
    - name: {{ $name }}
      image: {{ $image.registry | default $.Values.global.image.registry }}/{{ $image.image }}:{{ $image.tag }}{{ if $image.digest }}@{{ $image.digest }}{{ end }}
{{- end }}
"#,
    )
    .unwrap();
    let before = helm::template(&chart, &[]).unwrap();
    assert_eq!(
        rendered_images(&before),
        [
            "registry.k8s.io/relay-helper:1.4",
            "registry.k8s.io/relay/controller:v2.0.1"
        ]
    );
    let out = tmp.path().join("values.mirror.yaml");
    ferry()
        .args(["rewrite", "--registry", MIRROR])
        .arg(chart.join("values.yaml"))
        .arg("-o")
        .arg(&out)
        .assert()
        .success();
    let rewritten = fs::read_to_string(&out).unwrap();
    assert_eq!(
        rewritten,
        values.replace(
            "    registry: registry.k8s.io\ncontroller",
            &format!("    registry: {MIRROR}\ncontroller")
        ),
        "only the chart-wide registry changes"
    );
    let after = helm::template(&chart, &[&out]).unwrap();
    assert_eq!(
        rendered_images(&after),
        [
            format!("{MIRROR}/relay-helper:1.4"),
            format!("{MIRROR}/relay/controller:v2.0.1")
        ]
    );
}

/// The chart's image maps with `registry` and `repository` null: the values file alone says
/// which maps it could not point at the mirror, and why, and changes nothing; inside the chart
/// folder every map is filled from the template defaults and Helm renders the mirror's images.
#[test]
fn null_image_maps_need_the_chart() {
    let tmp = tempfile::tempdir().unwrap();
    let chart = charts_dir().join("template-defaults");
    let alone = tmp.path().join("values.yaml");
    fs::copy(chart.join("values.yaml"), &alone).unwrap();
    let out = ferry()
        .args(["rewrite", "--json", "--registry", MIRROR])
        .arg(&alone)
        .assert()
        .success()
        .get_output()
        .clone();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let file = &report["files"][0];
    assert_eq!(file["edits"], serde_json::json!([]), "{file:#}");
    assert_eq!(
        file["text"].as_str().unwrap(),
        fs::read_to_string(&alone).unwrap()
    );
    let unmoved: Vec<(u64, &str)> = file["unmoved"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["line"].as_u64().unwrap(), u["path"].as_str().unwrap()))
        .collect();
    assert_eq!(
        unmoved,
        [(4, "image"), (20, "hub.image"), (28, "gateway.image")]
    );
    let human = ferry()
        .args(["rewrite", "--registry", MIRROR])
        .arg(&alone)
        .assert()
        .success()
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&human.stderr);
    assert!(
        stderr.contains(&format!("{}:4: image: not rewritten:", alone.display()))
            && stderr.contains("no chart was found to render them"),
        "{stderr}"
    );
    // In the chart folder, the note on each filled map names the default image and its line.
    let human = ferry()
        .args(["rewrite", "--registry", MIRROR, "--diff"])
        .arg(chart.join("values.yaml"))
        .assert()
        .success()
        .get_output()
        .clone();
    let stdout = String::from_utf8_lossy(&human.stdout);
    let stderr = String::from_utf8_lossy(&human.stderr);
    assert!(
        stdout.contains(&format!(
            "+  registry: {MIRROR}  # @schema type:[string, null]"
        )) && stdout.contains("+  repository: library/acme-proxy  # @schema"),
        "{stdout}"
    );
    assert!(
        stderr.contains(
            "values.yaml:4: image.registry: filled from the chart's template default: with this \
             map empty the chart renders docker.io/library/acme-proxy:v3.4.1 \
             (template-defaults/templates/deployment.yaml:16)"
        ) && stderr.contains("hub.image.registry: filled from the chart's template default"),
        "{stderr}"
    );
}

/// A null map that feeds no rendered image, and one inside a list, are left as they were with
/// why; the maps that feed images are still filled.
#[test]
fn null_image_maps_the_chart_does_not_render_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let chart = tmp.path().join("template-defaults");
    fs::create_dir_all(chart.join("templates")).unwrap();
    let source = charts_dir().join("template-defaults");
    for f in [
        "Chart.yaml",
        "templates/_helpers.tpl",
        "templates/_podtemplate.tpl",
        "templates/deployment.yaml",
        "templates/gateway.yaml",
        "templates/hub.yaml",
    ] {
        fs::copy(source.join(f), chart.join(f)).unwrap();
    }
    let mut values = fs::read_to_string(source.join("values.yaml")).unwrap();
    values.push_str(
        "unused:\n  image:\n    registry: \"\"\n    repository: \"\"\n\
         sidecars:\n  - image:\n      registry:\n      repository:\n",
    );
    fs::write(chart.join("values.yaml"), &values).unwrap();
    let opts = RewriteOptions {
        target: Target::parse(MIRROR).unwrap(),
        images: Vec::new(),
        pin_digests: false,
    };
    let out = ferry::load::rewrite_values(&[chart.join("values.yaml")], &opts).unwrap();
    let unmoved: Vec<(&str, &str)> = out[0]
        .unmoved
        .iter()
        .map(|u| (u.path.as_str(), u.reason.as_str()))
        .collect();
    assert_eq!(unmoved.len(), 2, "{unmoved:#?}");
    assert_eq!(unmoved[0].0, "unused.image");
    assert!(
        unmoved[0]
            .1
            .contains("no image the chart renders takes its registry from this map"),
        "{}",
        unmoved[0].1
    );
    assert_eq!(unmoved[1].0, "sidecars[0].image");
    assert!(unmoved[1].1.contains("inside a list"), "{}", unmoved[1].1);
    let rewritten = tmp.path().join("rewritten.yaml");
    fs::write(&rewritten, &out[0].after).unwrap();
    let manifests = helm::template(&chart, &[&rewritten]).unwrap();
    assert_eq!(
        rendered_images(&manifests),
        [
            format!("{MIRROR}/acme-edge/gateway:2.4.0"),
            format!("{MIRROR}/acme-edge/hub-agent:1.8.2"),
            format!("{MIRROR}/library/acme-proxy:v3.4.1"),
        ]
    );
}

/// With `--pin-digests`, a null map with a `digest` key that the chart renders is pinned to
/// the bundle's image of the default reference; Helm renders it from the mirror by digest.
#[test]
fn pinned_template_defaults_render_by_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let chart = charts_dir().join("template-defaults");
    let bundle = vec![
        crate::util::bundle_image(&format!(
            "docker.io/library/acme-proxy:v3.4.1@sha256:{}",
            "a".repeat(64)
        )),
        crate::util::bundle_image(&format!(
            "ghcr.io/acme-edge/hub-agent:1.8.2@sha256:{}",
            "b".repeat(64)
        )),
        crate::util::bundle_image(&format!(
            "quay.io/acme-edge/gateway:2.4.0@sha256:{}",
            "c".repeat(64)
        )),
    ];
    let opts = RewriteOptions {
        target: Target::parse(MIRROR).unwrap(),
        images: bundle.clone(),
        pin_digests: true,
    };
    let out = ferry::load::rewrite_values(&[chart.join("values.yaml")], &opts).unwrap();
    let pinned = out[0]
        .edits
        .iter()
        .find(|e| e.path == "image.digest")
        .unwrap_or_else(|| panic!("not pinned: {:#?}", out[0].edits));
    assert_eq!(pinned.after, bundle[0].digest.to_string());
    let rewritten = tmp.path().join("values.yaml");
    fs::write(&rewritten, &out[0].after).unwrap();
    let manifests = helm::template(&chart, &[&rewritten]).unwrap();
    assert_eq!(
        rendered_images(&manifests),
        [
            // The gateway's digest would replace its tag: the map is filled, not pinned.
            format!("{MIRROR}/acme-edge/gateway:2.4.0"),
            // The hub agent's map has no `digest` key: pinned only by the tag it keeps.
            format!("{MIRROR}/acme-edge/hub-agent:1.8.2"),
            format!("{MIRROR}/library/acme-proxy:v3.4.1@{}", bundle[0].digest),
        ]
    );
}
