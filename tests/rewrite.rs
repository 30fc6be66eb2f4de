//! Values rewriting: goldens under `testdata/rewrite/`, refusals, coverage, and a property test
//! that every byte outside the rewritten scalars survives.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use ferry::bundle::manifest::ImageEntry;
use ferry::oci::reference::{ImageRef, Target};
use ferry::values::{
    check_coverage, find_images, rewrite, unified_diff, Ambiguity, MissingReason, RewriteError,
    RewriteOptions,
};
use proptest::prelude::*;

fn digest(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

/// `registry/repository[:tag]@digest` → a bundle image.
fn known(s: &str) -> ImageEntry {
    assert!(s.contains('@'), "bundle images carry a digest: {s}");
    crate::util::bundle_image(s)
}

fn permit() -> Vec<ImageEntry> {
    [("gateway", '1'), ("platform", '2'), ("worker", '3')]
        .iter()
        .map(|(name, d)| {
            known(&format!(
                "registry.permit.io/agent-security/{name}:1.4.0@{}",
                digest(*d)
            ))
        })
        .collect()
}

fn options(registry: &str, images: Vec<ImageEntry>, pin_digests: bool) -> RewriteOptions {
    RewriteOptions {
        target: Target::parse(registry).unwrap(),
        images,
        pin_digests,
    }
}

fn case_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/rewrite")
}

#[derive(serde::Deserialize)]
struct Args {
    registry: String,
    images: Vec<String>,
    pin_digests: bool,
}

/// Every `testdata/rewrite/<case>/input.yaml` rewritten with `args.json` must equal
/// `expected.yaml` byte for byte; rewriting the expected file again must change nothing; and
/// `expected.diff`, where present, is the unified diff. `FERRY_BLESS=1` rewrites the expected
/// files (check every one by hand: they are the specification).
#[test]
fn goldens() {
    let bless = std::env::var_os("FERRY_BLESS").is_some();
    let mut dirs: Vec<PathBuf> = fs::read_dir(case_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 10,
        "expected at least 10 golden cases, found {}",
        dirs.len()
    );
    let mut failures = String::new();
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy();
        let args: Args = serde_json::from_slice(&fs::read(dir.join("args.json")).unwrap()).unwrap();
        let input = fs::read_to_string(dir.join("input.yaml")).unwrap();
        let opts = options(
            &args.registry,
            args.images.iter().map(|s| known(s)).collect(),
            args.pin_digests,
        );
        let file = Path::new("values.yaml");
        let out = match rewrite(&input, file, &opts) {
            Ok(out) => out,
            Err(e) => {
                writeln!(failures, "{name}: {e}").unwrap();
                continue;
            }
        };
        let diff = unified_diff(file, &input, &out.text);
        if bless {
            fs::write(dir.join("expected.yaml"), &out.text).unwrap();
            fs::write(dir.join("expected.diff"), &diff).unwrap();
            continue;
        }
        let expected = fs::read_to_string(dir.join("expected.yaml")).unwrap();
        if out.text != expected {
            writeln!(
                failures,
                "{name}: output differs from expected.yaml:\n{}",
                unified_diff(file, &expected, &out.text)
            )
            .unwrap();
        }
        if let Ok(expected_diff) = fs::read_to_string(dir.join("expected.diff")) {
            if diff != expected_diff {
                writeln!(failures, "{name}: diff differs from expected.diff:\n{diff}").unwrap();
            }
        }
        match rewrite(&expected, file, &opts) {
            Ok(again) if again.text == expected && again.edits.is_empty() => {}
            Ok(again) => writeln!(failures, "{name}: not idempotent: {:?}", again.edits).unwrap(),
            Err(e) => writeln!(failures, "{name}: rewriting the output failed: {e}").unwrap(),
        }
        // Edits report where they happened: the line of each edit holds its old value.
        for edit in &out.edits {
            let line = input.lines().nth(edit.line - 1).unwrap_or("");
            if !edit.before.is_empty() && !line.contains(&edit.before) {
                writeln!(
                    failures,
                    "{name}: edit {edit:?} does not point at its value"
                )
                .unwrap();
            }
        }
    }
    assert!(failures.is_empty(), "{failures}");
}

/// Where the rewriter cannot be sure, it refuses and names the line.
#[test]
fn refusals() {
    let cases: &[(&str, &str, usize, Ambiguity)] = &[
        (
            "alias on image key",
            "base: &gw registry.permit.io/agent-security/gateway:1.4.0\ngateway:\n  image: *gw\n",
            1,
            Ambiguity::Anchor,
        ),
        ("alias as image", "x: &gw foo\ngateway:\n  image: *gw\n", 3, Ambiguity::Alias),
        ("anchor on flow image map", "x: &img {repository: a, tag: b}\ngateway:\n  image: *img\n", 1, Ambiguity::Anchor),
        (
            "anchor on image map",
            "gateway:\n  image: &img\n    repository: registry.permit.io/agent-security/gateway\n    tag: 1.4.0\nworker:\n  image: *img\n",
            2,
            Ambiguity::Anchor,
        ),
        ("alias as tag", "t: &t 1.4.0\nimage:\n  repository: agent-security/gateway\n  tag: *t\n", 4, Ambiguity::Alias),
        (
            "alias as registry field",
            "r: &r docker.io\nimage:\n  registry: *r\n  repository: agent-security/gateway\n",
            3,
            Ambiguity::Alias,
        ),
        ("alias in images list", "a: &a x\nimages:\n  - foo:1\n  - *a\n", 4, Ambiguity::Alias),
        (
            "merge key in image map",
            "base: &b {registry: docker.io}\nimage:\n  <<: *b\n  repository: bitnami/nginx\n",
            3,
            Ambiguity::Merge,
        ),
        (
            "block scalar image",
            "gateway:\n  image: |\n    registry.permit.io/agent-security/gateway:1.4.0\n",
            3,
            Ambiguity::BlockScalar,
        ),
        ("folded registry", "global:\n  imageRegistry: >-\n    registry.permit.io\n", 3, Ambiguity::BlockScalar),
        (
            "image folded over two lines",
            "gateway:\n  image: registry.permit.io/agent-security/\n    gateway:1.4.0\n",
            2,
            Ambiguity::MultiLine,
        ),
        ("escaped image", "gateway:\n\n  image: \"registry.permit.io/agent-security/g\\x61teway:1.4.0\"\n", 3, Ambiguity::Escapes),
    ];
    let opts = options("harbor.example.com/mcp", permit(), false);
    for (what, text, line, reason) in cases {
        match rewrite(text, Path::new("v.yaml"), &opts) {
            Err(RewriteError::Ambiguous {
                line: got_line,
                reason: got,
                ref file,
                ..
            }) => {
                assert_eq!((got_line, &got), (*line, reason), "{what}");
                assert_eq!(file, Path::new("v.yaml"));
                let err = rewrite(text, Path::new("v.yaml"), &opts)
                    .unwrap_err()
                    .to_string();
                assert!(err.starts_with(&format!("v.yaml:{line}:")), "{what}: {err}");
            }
            other => panic!("{what}: expected a refusal at line {line}, got {other:?}"),
        }
        // The coverage check refuses the same places (escapes matter only to editing).
        if *reason != Ambiguity::Escapes {
            assert!(find_images(text, Path::new("v.yaml")).is_err(), "{what}");
        }
    }
}

/// Pinning a digest into a flow map would need a key inserted; a conflicting digest in the values
/// is an error, not silently replaced.
#[test]
fn pinning_refusals() {
    let opts = options("harbor.example.com/mcp", permit(), true);
    let flow =
        "gateway:\n  image: {repository: registry.permit.io/agent-security/gateway, tag: 1.4.0}\n";
    match rewrite(flow, Path::new("v.yaml"), &opts) {
        Err(RewriteError::Ambiguous {
            line: 2,
            reason: Ambiguity::FlowInsert,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    let wrong = format!(
        "image: registry.permit.io/agent-security/gateway:1.4.0@{}\n",
        digest('f')
    );
    match rewrite(&wrong, Path::new("v.yaml"), &opts) {
        Err(RewriteError::DigestConflict {
            line: 1,
            values_digest,
            bundle_digest,
            ..
        }) => {
            assert_eq!((values_digest, bundle_digest), (digest('f'), digest('1')));
        }
        other => panic!("{other:?}"),
    }
    let wrong_map = format!("image:\n  registry: registry.permit.io\n  repository: agent-security/worker\n  tag: 1.4.0\n  digest: {}\n", digest('e'));
    assert!(matches!(
        rewrite(&wrong_map, Path::new("v.yaml"), &opts),
        Err(RewriteError::DigestConflict { line: 5, .. })
    ));
    // Without --pin-digests the same digest is only carried along.
    let out = rewrite(
        &wrong,
        Path::new("v.yaml"),
        &options("harbor.example.com/mcp", permit(), false),
    )
    .unwrap();
    assert_eq!(
        out.text,
        format!(
            "image: harbor.example.com/mcp/agent-security/gateway:1.4.0@{}\n",
            digest('f')
        )
    );
}

#[test]
fn invalid_yaml_names_the_line() {
    let text = "a: 1\nb: [unclosed\nc: 2\n";
    let err = rewrite(text, Path::new("v.yaml"), &options("h.io", vec![], false)).unwrap_err();
    assert!(matches!(err, RewriteError::Parse { .. }), "{err:?}");
    assert!(err.to_string().starts_with("v.yaml:"), "{err}");
}

/// Helm accepts a flow collection whose closing bracket sits at its parent's indentation, with
/// comments inside; rewriting does too, changes only the image scalars and reports their lines.
#[test]
fn flow_closed_at_parent_indentation() {
    let text = "extraEnv: {\n  # \"CUSTOM_ENV_VAR\": \"VALUE\"\n}\nimage: quay.io/app/api:1.0\nlist: [\n  'quay.io/app/web:2.0', # web\n\n]\nlast: {\n}\n";
    let out = rewrite(text, Path::new("v.yaml"), &options("h.io/m", vec![], false)).unwrap();
    assert_eq!(out.text, text.replace("quay.io/app/", "h.io/m/app/"));
    let at: Vec<(usize, usize)> = out.edits.iter().map(|e| (e.line, e.column)).collect();
    assert_eq!(at, [(4, 8), (6, 3)]);
    // An error elsewhere is still reported where it is.
    let err = rewrite(
        "a: {\n}\nb: [unclosed\n",
        Path::new("v.yaml"),
        &options("h.io", vec![], false),
    )
    .unwrap_err();
    assert!(
        matches!(err, RewriteError::Parse { line, .. } if line > 2),
        "{err}"
    );
}

/// Coverage lists each image with its line, and reports what the bundle lacks.
#[test]
fn coverage() {
    let text = "\
global:
  imageRegistry: \"\"
gateway:
  image: registry.permit.io/agent-security/gateway:1.4.0
platform:
  image:
    repository: REGISTRY/agent-security/platform
    tag: \"1.4.0\"
worker:
  image:
    registry: registry.permit.io
    repository: agent-security/worker
    tag: \"1.3.9\"
redis:
  image: redis:7.2
sidecar:
  image: registry.permit.io/agent-security/gateway
";
    let uses = find_images(text, Path::new("values.yaml")).unwrap();
    let refs: Vec<(usize, String)> = uses
        .iter()
        .map(|u| (u.line, u.reference.to_string()))
        .collect();
    assert_eq!(
        refs,
        [
            (
                4,
                "registry.permit.io/agent-security/gateway:1.4.0".to_string()
            ),
            (7, "REGISTRY/agent-security/platform:1.4.0".to_string()),
            (
                12,
                "registry.permit.io/agent-security/worker:1.3.9".to_string()
            ),
            (15, "docker.io/library/redis:7.2".to_string()),
            (17, "registry.permit.io/agent-security/gateway".to_string()),
        ]
    );
    let cov = check_coverage(&uses, &permit());
    assert!(!cov.is_complete());
    let found: Vec<(usize, bool)> = cov
        .found
        .iter()
        .map(|c| (c.image_use.line, c.exact))
        .collect();
    assert_eq!(found, [(4, true), (7, true), (17, false)]);
    let missing: Vec<(usize, &MissingReason)> = cov
        .missing
        .iter()
        .map(|m| (m.image_use.line, &m.reason))
        .collect();
    assert_eq!(
        missing,
        [
            (
                12,
                &MissingReason::TagNotInBundle {
                    available: vec!["1.4.0".to_string()]
                }
            ),
            (15, &MissingReason::NotInBundle),
        ]
    );
    let message = cov.missing[1].to_string();
    assert!(
        message.starts_with("values.yaml:15:10: docker.io/library/redis:7.2"),
        "{message}"
    );
    assert!(message.contains("not in the bundle"), "{message}");
}

/// Bitnami's `global.imageRegistry` decides where its image maps pull from.
#[test]
fn coverage_global_registry() {
    let text = "global:\n  imageRegistry: quay.io\nimage:\n  registry: docker.io\n  repository: bitnami/nginx\n  tag: \"1.27\"\n";
    let uses = find_images(text, Path::new("v.yaml")).unwrap();
    assert_eq!(uses.len(), 1);
    assert_eq!(uses[0].reference.to_string(), "quay.io/bitnami/nginx:1.27");
    assert_eq!(
        uses[0].raw,
        "{registry: docker.io, repository: bitnami/nginx, tag: 1.27}"
    );
}

#[test]
fn digest_coverage() {
    let text = format!("a:\n  image: registry.permit.io/agent-security/gateway@{}\nb:\n  image: registry.permit.io/agent-security/gateway@{}\n", digest('1'), digest('9'));
    let cov = check_coverage(&find_images(&text, Path::new("v.yaml")).unwrap(), &permit());
    assert_eq!(cov.found.len(), 1);
    assert_eq!(cov.missing[0].reason, MissingReason::DigestNotInBundle);
}

/// A large values file is rewritten in one piece exactly as each of its parts is on its own:
/// size changes nothing, every reference is found and every edit is located.
#[test]
fn large_file_is_rewritten_like_its_parts() {
    let service = |i: usize| {
        format!(
            "svc{i}:\n  # service {i}\n  image: registry.permit.io/agent-security/gateway:1.4.0 # gw\n  sidecar:\n    image:\n      registry: registry.permit.io\n      repository: agent-security/worker\n      tag: \"1.4.0\"\n  replicas: {i}\n"
        )
    };
    let opts = options("harbor.example.com/mcp", permit(), true);
    let text: String = (0..5000).map(service).collect();
    let out = rewrite(&text, Path::new("big.yaml"), &opts).unwrap();
    assert_eq!(out.edits.len(), 15000);
    let mut text_of_parts = String::new();
    let mut lines_of_parts = Vec::new();
    for i in 0..5000 {
        let part = rewrite(&service(i), Path::new("part.yaml"), &opts).unwrap();
        text_of_parts.push_str(&part.text);
        lines_of_parts.extend(part.edits.iter().map(|e| e.line + 9 * i));
    }
    assert!(
        out.text == text_of_parts,
        "the large file is not rewritten like its parts"
    );
    let lines: Vec<usize> = out.edits.iter().map(|e| e.line).collect();
    assert!(
        lines == lines_of_parts,
        "edits are not where their parts put them"
    );
}

// ---------------------------------------------------------------------------------------------
// Property: every byte outside the rewritten scalars is unchanged.

/// A piece of a generated values file.
#[derive(Debug, Clone)]
enum Piece {
    Comment {
        indent: usize,
        text: String,
    },
    Blank {
        spaces: usize,
    },
    Plain {
        value: String,
        comment: Option<String>,
    },
    Quoted {
        value: String,
        comment: Option<String>,
    },
    Image {
        key: &'static str,
        image: usize,
        quote: usize,
        gap: usize,
        trail: String,
        comment: Option<String>,
        indent: usize,
    },
    Map {
        quote: usize,
        indent: usize,
        comment: Option<String>,
    },
    /// `{registry, image, tag}`, ingress-nginx style.
    RegistryImageMap {
        quote: usize,
        indent: usize,
        comment: Option<String>,
    },
    /// An image map written as a flow mapping over several lines, with comments, closed at the
    /// indentation of its key.
    FlowMap {
        quote: usize,
        indent: usize,
        comment: Option<String>,
    },
    /// Lenient indentation: a tab after `key:`, and a flow sequence of images whose entry line
    /// starts with a tab.
    Tabs {
        quote: usize,
        comment: Option<String>,
    },
}

/// Images the generator writes, what each becomes with target `harbor.example.com/mcp`, and the
/// digest `--pin-digests` adds (from [`permit`]).
const IMAGES: &[(&str, &str, Option<char>)] = &[
    (
        "registry.permit.io/agent-security/gateway:1.4.0",
        "harbor.example.com/mcp/agent-security/gateway:1.4.0",
        Some('1'),
    ),
    (
        "REGISTRY/agent-security/platform:1.4.0",
        "harbor.example.com/mcp/agent-security/platform:1.4.0",
        Some('2'),
    ),
    (
        "registry.permit.io/agent-security/worker",
        "harbor.example.com/mcp/agent-security/worker",
        None,
    ),
    (
        "quay.io/prometheus/prometheus:v2.53.0",
        "quay.io/prometheus/prometheus:v2.53.0",
        None,
    ),
    ("REGISTRY", "harbor.example.com/mcp", None),
];

fn comment() -> impl Strategy<Value = Option<String>> {
    prop::option::of("[ -~é✓]{0,16}")
}

fn piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        (0usize..4, "[ -~é✓]{0,24}").prop_map(|(indent, text)| Piece::Comment { indent, text }),
        (0usize..3).prop_map(|spaces| Piece::Blank { spaces }),
        ("[a-z][a-z0-9]{0,8}", comment())
            .prop_map(|(value, comment)| Piece::Plain { value, comment }),
        ("[a-z #:/.@-]{0,12}", comment())
            .prop_map(|(value, comment)| Piece::Quoted { value, comment }),
        (
            prop::sample::select(vec!["image", "initImage", "sidecarImage", "note"]),
            0..IMAGES.len(),
            0usize..3,
            1usize..4,
            "[ \t]{0,2}",
            comment(),
            1usize..5,
        )
            .prop_map(
                |(key, image, quote, gap, trail, comment, indent)| Piece::Image {
                    key,
                    image,
                    quote,
                    gap,
                    trail,
                    comment,
                    indent
                }
            ),
        (0usize..3, 1usize..5, comment()).prop_map(|(quote, indent, comment)| Piece::Map {
            quote,
            indent,
            comment
        }),
        (0usize..3, 1usize..5, comment()).prop_map(|(quote, indent, comment)| {
            Piece::RegistryImageMap {
                quote,
                indent,
                comment,
            }
        }),
        (0usize..3, 1usize..5, comment()).prop_map(|(quote, indent, comment)| Piece::FlowMap {
            quote,
            indent,
            comment
        }),
        (0usize..3, comment()).prop_map(|(quote, comment)| Piece::Tabs { quote, comment }),
    ]
}

/// Builds the input and the expected output side by side; returns them with the number of
/// scalars that must change. With `flag`, the file starts with a Bitnami
/// `global.security.allowInsecureImages: false`, which becomes `true` when an image changes.
fn build(
    pieces: &[Piece],
    crlf: bool,
    final_eol: bool,
    pin: bool,
    flag: bool,
) -> (String, String, usize) {
    let eol = if crlf { "\r\n" } else { "\n" };
    let (mut input, mut expected, mut changes) = (String::new(), String::new(), 0);
    let both = |input: &mut String, expected: &mut String, s: &str| {
        input.push_str(s);
        expected.push_str(s);
    };
    let quoted = |q: usize, s: &str| match q {
        1 => format!("'{s}'"),
        2 => format!("\"{s}\""),
        _ => s.to_string(),
    };
    let tail = |c: &Option<String>| c.as_ref().map(|c| format!(" #{c}")).unwrap_or_default();
    for (i, p) in pieces.iter().enumerate() {
        match p {
            Piece::Comment { indent, text } => both(
                &mut input,
                &mut expected,
                &format!("{}#{text}{eol}", " ".repeat(*indent)),
            ),
            Piece::Blank { spaces } => both(
                &mut input,
                &mut expected,
                &format!("{}{eol}", " ".repeat(*spaces)),
            ),
            Piece::Plain { value, comment } => both(
                &mut input,
                &mut expected,
                &format!("k{i}: {value}{}{eol}", tail(comment)),
            ),
            Piece::Quoted { value, comment } => both(
                &mut input,
                &mut expected,
                &format!("q{i}: \"{value}\"{}{eol}", tail(comment)),
            ),
            Piece::Image {
                key,
                image,
                quote,
                gap,
                trail,
                comment,
                indent,
            } => {
                let (old, new, pinned) = IMAGES[*image];
                let mut new = new.to_string();
                // Outside an image key, only a tagged reference (or the placeholder) is an image.
                if *key == "note" && !old.contains(':') && old != "REGISTRY" {
                    new = old.to_string();
                }
                if let (true, Some(d)) = (pin, pinned) {
                    new = format!("{new}@{}", digest(d));
                }
                // A plain `REGISTRY/...` starting a flow indicator never happens; all are safe.
                let head = format!(
                    "s{i}:{eol}{}{key}:{}",
                    " ".repeat(*indent),
                    " ".repeat(*gap)
                );
                let rest = format!("{trail}{}{eol}", tail(comment));
                both(&mut input, &mut expected, &head);
                input.push_str(&quoted(*quote, old));
                expected.push_str(&quoted(*quote, &new));
                both(&mut input, &mut expected, &rest);
                if old != new {
                    changes += 1;
                }
            }
            Piece::Map {
                quote,
                indent,
                comment,
            }
            | Piece::RegistryImageMap {
                quote,
                indent,
                comment,
            } => {
                // Only the registry changes: `repository` (Bitnami style) or `image`
                // (ingress-nginx style) is the path below it.
                let (top, name_key, name, pinned) = match p {
                    Piece::Map { .. } => ("m", "repository", "agent-security/gateway", '1'),
                    _ => ("r", "image", "agent-security/worker", '3'),
                };
                let ind = " ".repeat(*indent);
                let c = tail(comment);
                both(
                    &mut input,
                    &mut expected,
                    &format!("{top}{i}:{eol}{ind}image:{eol}{ind}{ind}registry: "),
                );
                input.push_str(&quoted(*quote, "registry.permit.io"));
                expected.push_str(&quoted(*quote, "harbor.example.com/mcp"));
                both(
                    &mut input,
                    &mut expected,
                    &format!(
                        "{c}{eol}{ind}{ind}{name_key}: {}{c}{eol}{ind}{ind}tag: {}{c}{eol}",
                        quoted(*quote, name),
                        quoted(*quote, "1.4.0")
                    ),
                );
                changes += 1;
                if pin {
                    // The digest goes on a new line after `tag`, quoted like the tag.
                    expected.push_str(&format!(
                        "{ind}{ind}digest: {}{eol}",
                        quoted(*quote, &digest(pinned))
                    ));
                    changes += 1;
                }
            }
            Piece::FlowMap {
                quote,
                indent,
                comment,
            } => {
                let ind = " ".repeat(*indent);
                let c = tail(comment);
                both(
                    &mut input,
                    &mut expected,
                    &format!("f{i}:{eol}{ind}image: {{{c}{eol}{ind}{ind}# the gateway{eol}{ind}{ind}registry: "),
                );
                input.push_str(&quoted(*quote, "registry.permit.io"));
                expected.push_str(&quoted(*quote, "harbor.example.com/mcp"));
                both(
                    &mut input,
                    &mut expected,
                    &format!(
                        ",{c}{eol}{ind}{ind}repository: {},{eol}{ind}{ind}tag: {},{eol}{ind}{ind}digest: \"",
                        quoted(*quote, "agent-security/gateway"),
                        quoted(*quote, "1.4.0")
                    ),
                );
                changes += 1;
                if pin {
                    expected.push_str(&digest('1'));
                    changes += 1;
                }
                both(&mut input, &mut expected, &format!("\"{eol}{ind}}}{eol}"));
            }
            Piece::Tabs { quote, comment } => {
                let c = tail(comment);
                both(
                    &mut input,
                    &mut expected,
                    &format!("t{i}:\tplain{c}{eol}u{i}:{eol}  images: [{c}{eol}\t"),
                );
                let old = "REGISTRY/agent-security/platform:1.4.0";
                let mut new = "harbor.example.com/mcp/agent-security/platform:1.4.0".to_string();
                if pin {
                    new = format!("{new}@{}", digest('2'));
                }
                input.push_str(&quoted(*quote, old));
                expected.push_str(&quoted(*quote, &new));
                both(&mut input, &mut expected, &format!(",{c}{eol}  ]{eol}"));
                changes += 1;
            }
        }
    }
    if flag {
        let head = format!("global:{eol}  security:{eol}    allowInsecureImages: ");
        input.insert_str(0, &format!("{head}false{eol}"));
        if changes > 0 {
            expected.insert_str(0, &format!("{head}true{eol}"));
            changes += 1;
        } else {
            expected.insert_str(0, &format!("{head}false{eol}"));
        }
    }
    if !final_eol && input.ends_with(eol) {
        input.truncate(input.len() - eol.len());
        expected.truncate(expected.len() - eol.len());
    }
    (input, expected, changes)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn untouched_bytes_survive(
        pieces in prop::collection::vec(piece(), 0..24),
        crlf in any::<bool>(),
        final_eol in any::<bool>(),
        pin in any::<bool>(),
        flag in any::<bool>(),
    ) {
        let (input, expected, changes) = build(&pieces, crlf, final_eol, pin, flag);
        let opts = options("harbor.example.com/mcp", permit(), pin);
        let out = rewrite(&input, Path::new("p.yaml"), &opts).map_err(|e| TestCaseError::fail(format!("{e}\n{input}")))?;
        prop_assert_eq!(&out.text, &expected);
        prop_assert_eq!(out.edits.len(), changes);
        let again = rewrite(&out.text, Path::new("p.yaml"), &opts).unwrap();
        prop_assert!(again.edits.is_empty(), "not idempotent: {:?}", again.edits);
    }
}

/// A plain scalar whose new value would not read back as the same string is double-quoted; any
/// other scalar keeps its style.
#[test]
fn requotes_only_when_needed() {
    let opts = options("[::1]:5000/mirror", vec![], false);
    let out = rewrite(
        "image: nginx:1.27 # web\nalt: 'nginx:1.27'\ninitImage: busybox\n",
        Path::new("v.yaml"),
        &opts,
    )
    .unwrap();
    assert_eq!(
        out.text,
        "image: \"[::1]:5000/mirror/library/nginx:1.27\" # web\nalt: 'nginx:1.27'\ninitImage: \"[::1]:5000/mirror/library/busybox\"\n"
    );
    // Rewriting again changes nothing: the values already point into the target.
    assert_eq!(
        rewrite(&out.text, Path::new("v.yaml"), &opts).unwrap().text,
        out.text
    );
}

/// The edits name their place in the document and their line.
#[test]
fn edits_are_located() {
    let text =
        "a:\n  images:\n    - x.io/a/b:1\n    - repository: REGISTRY/c/d\n      tag: \"2\"\n";
    let out = rewrite(text, Path::new("v.yaml"), &options("h.io/p", vec![], false)).unwrap();
    let got: Vec<(usize, usize, &str, &str, &str)> = out
        .edits
        .iter()
        .map(|e| {
            (
                e.line,
                e.column,
                e.path.as_str(),
                e.before.as_str(),
                e.after.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (3, 7, "a.images[0]", "x.io/a/b:1", "h.io/p/a/b:1"),
            (
                4,
                19,
                "a.images[1].repository",
                "REGISTRY/c/d",
                "h.io/p/c/d"
            ),
        ]
    );
}

/// `ferry images check` on the golden inputs, with each case's bundle: what is missing.
#[test]
fn coverage_of_goldens() {
    let cases: &[(&str, &[&str])] = &[
        ("seed-placeholder", &[]),
        ("bitnami", &[]),
        (
            "digest-strings",
            &["registry.permit.io/agent-security/legacy:0.9"],
        ),
        (
            "bundle-filter",
            &[
                "quay.io/prometheus/prometheus:v2.53.0",
                "docker.io/library/redis:7.2",
            ],
        ),
        ("global-image-registry", &["quay.io/acme/ctl:v1"]),
        ("image-lists", &["quay.io/prometheus/node-exporter:v1.8.2"]),
    ];
    for (case, want) in cases {
        let dir = case_dir().join(case);
        let args: Args = serde_json::from_slice(&fs::read(dir.join("args.json")).unwrap()).unwrap();
        let images: Vec<ImageEntry> = args.images.iter().map(|s| known(s)).collect();
        let text = fs::read_to_string(dir.join("input.yaml")).unwrap();
        let uses = find_images(&text, Path::new("values.yaml")).unwrap();
        assert!(!uses.is_empty(), "{case}");
        let cov = check_coverage(&uses, &images);
        let missing: Vec<String> = cov
            .missing
            .iter()
            .map(|m| m.image_use.reference.to_string())
            .collect();
        assert_eq!(missing, *want, "{case}");
        assert_eq!(cov.found.len() + cov.missing.len(), uses.len(), "{case}");
    }
}

/// Valid-looking YAML: nested mappings of random image-related keys, values, comments and line
/// endings.
fn yamlish() -> impl Strategy<Value = String> {
    let line = (
        0u8..4,
        prop::sample::select(vec![
            "image",
            "registry",
            "repository",
            "tag",
            "digest",
            "imageRegistry",
            "global",
            "images",
            "x",
            "\"image\"",
        ]),
        prop::sample::select(vec![
            "",
            "reg.io/a/b:1",
            "'reg.io/a/b:1'",
            "\"REGISTRY/a:1\"",
            "REGISTRY",
            "&a reg.io/a:1",
            "*a",
            "{repository: registry.permit.io/agent-security/gateway, tag: 1.4.0}",
            "[registry.permit.io/agent-security/worker:1.4.0, b]",
            "1.4.0",
            "\"1.4.0\"",
            "~",
            "registry.permit.io/agent-security/gateway:1.4.0",
            "registry.permit.io",
            "'registry.permit.io'",
            "agent-security/platform",
            "REGISTRY/agent-security/platform",
            "!!str docker.io",
            "\"a\\x62\"",
        ]),
        prop::sample::select(vec!["", "", " # c", " #é✓", "\t# t"]),
        prop::sample::select(vec!["\n", "\n", "\r\n"]),
    );
    prop::collection::vec(line, 0..20).prop_map(|lines| {
        // 0: a key that opens a nested map; 1: go up a level first; otherwise a key and value.
        let mut out = String::new();
        let mut depth = 0usize;
        let mut open = false;
        for (op, key, value, comment, eol) in lines {
            if op == 1 && !open {
                depth = depth.saturating_sub(1);
            }
            let indent = "  ".repeat(depth);
            if op == 0 && depth < 4 {
                out.push_str(&format!("{indent}{key}:{comment}{eol}"));
                depth += 1;
                open = true;
            } else {
                out.push_str(&format!("{indent}{key}: {value}{comment}{eol}"));
                open = false;
            }
        }
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Arbitrary YAML-ish text never makes the rewriter or the coverage check panic; what it
    /// accepts it rewrites into text that still parses, and then leaves alone.
    #[test]
    fn never_panics(text in prop_oneof![
        yamlish(),
        "(image|registry|repository|tag|digest|REGISTRY|reg\\.io/a:1|: |\n|\r\n|  |- |#|'|\"|&a |\\*a|\\{|\\}|\\[|\\]|, |\\||>|é|\t|~|<<){0,40}",
    ]) {
        let opts = options("harbor.example.com/mcp", permit(), true);
        let _ = find_images(&text, Path::new("f.yaml"));
        if let Ok(out) = rewrite(&text, Path::new("f.yaml"), &opts) {
            if out.edits.is_empty() {
                prop_assert_eq!(&out.text, &text);
            }
            match rewrite(&out.text, Path::new("f.yaml"), &opts) {
                Ok(again) => prop_assert!(again.edits.is_empty(), "not idempotent: {:?}\n{}", again.edits, out.text),
                Err(e) => prop_assert!(false, "output no longer accepted: {}\n{}", e, out.text),
            }
        }
    }
}

/// A `{registry, image}` map names `registry/image:tag`, or its `repository` when that is set;
/// an `image` with a tag of its own beside a `registry` is a whole reference.
#[test]
fn registry_image_map_coverage() {
    let text = "a:\n  image:\n    registry: registry.k8s.io\n    image: ingress-nginx/controller\n    tag: v1.11.2\n\
                b:\n  image:\n    registry: registry.k8s.io\n    image: defaultbackend-amd64\n    repository: quay.io/acme/backend\n    tag: \"1.5\"\n\
                c:\n  registry: docker.io\n  image: nginx:1.27\n";
    let uses = find_images(text, Path::new("v.yaml")).unwrap();
    let got: Vec<(String, String)> = uses
        .iter()
        .map(|u| (u.path.clone(), u.reference.to_string()))
        .collect();
    assert_eq!(
        got,
        [
            (
                "a.image".to_string(),
                "registry.k8s.io/ingress-nginx/controller:v1.11.2".to_string()
            ),
            (
                "b.image".to_string(),
                "quay.io/acme/backend:1.5".to_string()
            ),
            (
                "c.image".to_string(),
                "docker.io/library/nginx:1.27".to_string()
            ),
        ]
    );
    let out = rewrite(text, Path::new("v.yaml"), &options("h.io/m", vec![], false)).unwrap();
    assert_eq!(
        out.text,
        "a:\n  image:\n    registry: h.io/m\n    image: ingress-nginx/controller\n    tag: v1.11.2\n\
         b:\n  image:\n    registry: h.io/m\n    image: defaultbackend-amd64\n    repository: h.io/m/acme/backend\n    tag: \"1.5\"\n\
         c:\n  registry: docker.io\n  image: h.io/m/library/nginx:1.27\n"
    );
}

/// Image maps whose `registry` and name are null in each of YAML's spellings (nothing after
/// the colon, `~`, `null`, `""`, `''`) are found, and filled from given template defaults in
/// their own style, a trailing comment kept; a map without a default is listed with why, and
/// `repository: null` is never read as an image named `null`.
#[test]
fn null_image_maps_are_filled_from_template_defaults() {
    use ferry::values::{null_maps, rewrite_chart, ChartFacts, DefaultImage, TemplateDefault};
    let text =
        "a:\n  image:\n    registry:  # empty: the chart's default\n    repository:\n    tag:\n\
b:\n  image:\n    registry: ~\n    repository: null\n\
c:\n  image: {registry: \"\", image: ''}\n\
d:\n  image:\n    registry: null\n    repository: null\n";
    let file = Path::new("values.yaml");
    let maps = null_maps(text, file).unwrap();
    let found: Vec<(&str, &str, bool)> = maps
        .iter()
        .map(|m| (m.path.as_str(), m.name_key, m.keys.is_some()))
        .collect();
    assert_eq!(
        found,
        [
            ("a.image", "repository", true),
            ("b.image", "repository", true),
            ("c.image", "image", true),
            ("d.image", "repository", true),
        ]
    );
    let default = |path: &str, image: &str| TemplateDefault {
        path: path.to_string(),
        found: Ok(DefaultImage {
            image: ImageRef::parse(image).unwrap(),
            location: "c/templates/x.yaml:3".into(),
            digest_rendered: false,
        }),
    };
    let defaults = [
        default("a.image", "docker.io/library/proxy:v3.4.1"),
        default("b.image", "ghcr.io/acme/agent:1.8"),
        default("c.image", "quay.io/acme/relay:2"),
        TemplateDefault {
            path: "d.image".into(),
            found: Err("feeds no image".into()),
        },
    ];
    let facts = ChartFacts {
        app_version: Some("v3.4.1"),
        defaults: Some(&defaults),
    };
    let opts = options("mirror.example:5000/team", Vec::new(), false);
    let out = rewrite_chart(text, file, facts, &opts).unwrap();
    assert_eq!(
        out.text,
        "a:\n  image:\n    registry: mirror.example:5000/team  # empty: the chart's default\n    \
repository: library/proxy\n    tag:\n\
b:\n  image:\n    registry: mirror.example:5000/team\n    repository: acme/agent\n\
c:\n  image: {registry: \"mirror.example:5000/team\", image: 'acme/relay'}\n\
d:\n  image:\n    registry: null\n    repository: null\n"
    );
    let noted: Vec<&str> = out
        .edits
        .iter()
        .filter(|e| e.note.is_some())
        .map(|e| e.path.as_str())
        .collect();
    assert_eq!(
        noted,
        ["a.image.registry", "b.image.registry", "c.image.registry"]
    );
    assert_eq!(out.unmoved.len(), 1);
    assert_eq!(
        (out.unmoved[0].line, out.unmoved[0].path.as_str()),
        (14, "d.image")
    );
    assert_eq!(out.unmoved[0].reason, "feeds no image");
    // Without the chart, nothing is edited and every map is listed.
    let alone = rewrite(text, file, &opts).unwrap();
    assert_eq!(alone.text, text);
    assert_eq!(alone.unmoved.len(), 4);
}

/// In a chart folder, `ferry rewrite` renders the chart with the values it wrote and names
/// every image that still comes from elsewhere (a test hook's hard-coded image), with its
/// template line; the values file alone cannot say so and says nothing.
#[test]
fn rewrite_names_images_that_stay_on_their_registry() {
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/charts/umbrella-images");
    let out_dir = tempfile::tempdir().unwrap();
    let out = crate::harness::ferry()
        .args([
            "rewrite",
            "--registry",
            "harbor.example.com/mirror",
            "--json",
            "-o",
        ])
        .arg(out_dir.path().join("v.yaml"))
        .arg(chart.join("values.yaml"))
        .assert()
        .success();
    let doc: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let stays = doc.to_string();
    assert!(
        stays.contains("docker.io/library/busybox:1.36.1")
            && stays.contains("umbrella-images/templates/tests/test-api.yaml:12"),
        "{stays}"
    );
    // Only that one: every other rendered image is under the mirror.
    assert_eq!(stays.matches("still renders").count(), 1, "{stays}");
}
