//! Hostile archives: each bundle is refused by `ferry extract` with exit 1 and a clear
//! message, nothing is written outside the target, and nothing is left behind; hostile image
//! archives given to `ferry build` and `ferry load` are refused as bad input (exit 2).

use crate::harness::{build_fixture, ferry};
use ferry::bundle::manifest::{FileEntry, Manifest, Mode, FORMAT_VERSION};
use ferry::bundle::safepath::SafePath;
use ferry::oci::digest::Digest;
use std::io::Write;

const ROOT: &str = "evil-1";

/// A raw tar header with any name bytes, type and link target.
fn header(name: &[u8], kind: u8, size: u64, link: &[u8]) -> [u8; 512] {
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o644);
    h.set_size(size);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::new(kind));
    let u = h.as_ustar_mut().unwrap();
    u.name[..name.len()].copy_from_slice(name);
    u.linkname[..link.len()].copy_from_slice(link);
    h.set_cksum();
    *h.as_bytes()
}

fn entry(out: &mut Vec<u8>, name: &[u8], kind: u8, data: &[u8], link: &[u8]) {
    out.extend_from_slice(&header(name, kind, data.len() as u64, link));
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

/// A manifest listing `files` (path relative to the root, content).
fn manifest(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut listed: Vec<FileEntry> = files
        .iter()
        .map(|(p, d)| FileEntry {
            path: SafePath::new(p).unwrap(),
            size: d.len() as u64,
            mode: Mode::Regular,
            digest: Digest::of(d),
        })
        .collect();
    listed.sort_by(|a, b| a.path.cmp(&b.path));
    listed.dedup_by(|a, b| a.path == b.path);
    Manifest {
        format_version: FORMAT_VERSION,
        name: "evil".into(),
        version: "1".into(),
        created: "1970-01-01T00:00:00Z".into(),
        ferry_version: "0".into(),
        files: listed,
        images: vec![],
        charts: vec![],
        egress: vec![],
    }
    .to_bytes()
}

/// A canonical single-member gzip of a tar that starts with a valid manifest.
fn bundle(listed: &[(&str, &[u8])], body: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut tar = Vec::new();
    entry(
        &mut tar,
        format!("{ROOT}/ferry.json").as_bytes(),
        b'0',
        &manifest(listed),
        b"",
    );
    body(&mut tar);
    tar.extend_from_slice(&[0u8; 1024]);
    gzip(&tar)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), flate2::Compression::new(6));
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn pax(key: &str, value: &str) -> Vec<u8> {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while len.to_string().len() + body.len() != len {
        len += 1;
    }
    format!("{len}{body}").into_bytes()
}

/// Extracts `bytes` into a fresh target beside a sentinel folder and checks the refusal.
fn refused(case: &str, bytes: &[u8], want: &str, extra_args: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let sentinel = tmp.path().join("sentinel");
    std::fs::create_dir(&sentinel).unwrap();
    std::fs::write(sentinel.join("keep.txt"), b"keep").unwrap();
    let bundle = tmp.path().join("hostile.tar.gz");
    std::fs::write(&bundle, bytes).unwrap();
    let target = tmp.path().join("target");
    let out = ferry()
        .arg("extract")
        .args(extra_args)
        .arg(&bundle)
        .arg("-C")
        .arg(&target)
        .assert()
        .code(1)
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(want),
        "{case}: expected `{want}` in: {stderr}"
    );
    assert!(!target.exists(), "{case}: the target was left behind");
    let mut left: Vec<String> = walkdir::WalkDir::new(tmp.path())
        .min_depth(1)
        .into_iter()
        .map(|e| {
            e.unwrap()
                .path()
                .strip_prefix(tmp.path())
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["hostile.tar.gz", "sentinel", "sentinel/keep.txt"],
        "{case}: something was written outside the target"
    );
    // The bundle folder also verifies as refused.
    ferry()
        .arg("verify")
        .args(extra_args)
        .arg(&bundle)
        .assert()
        .code(1);
}

#[test]
fn hostile_corpus_is_refused() {
    let sentinel_abs = std::env::temp_dir().join("ferry-sentinel-never-written");
    let abs = format!("{}/evil.txt", sentinel_abs.display());
    let ok: &[u8] = b"fine\n";
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "absolute path",
            bundle(&[("a.txt", ok)], |t| {
                entry(t, abs.as_bytes(), b'0', b"x", b"")
            }),
            "absolute",
        ),
        (
            "dot-dot escape",
            bundle(&[("a.txt", ok)], |t| {
                entry(
                    t,
                    format!("{ROOT}/../../escape.txt").as_bytes(),
                    b'0',
                    b"x",
                    b"",
                )
            }),
            "`..`",
        ),
        (
            "symlink escape then write through it",
            bundle(&[("link/evil.txt", b"x")], |t| {
                entry(
                    t,
                    format!("{ROOT}/link").as_bytes(),
                    b'2',
                    b"",
                    sentinel_abs.display().to_string().as_bytes(),
                );
                entry(
                    t,
                    format!("{ROOT}/link/evil.txt").as_bytes(),
                    b'0',
                    b"x",
                    b"",
                );
            }),
            "symbolic link",
        ),
        (
            "hard-link escape",
            bundle(&[("a.txt", ok)], |t| {
                entry(
                    t,
                    format!("{ROOT}/hl").as_bytes(),
                    b'1',
                    b"",
                    b"../../../etc/passwd",
                )
            }),
            "hard link",
        ),
        (
            "device node",
            bundle(&[("a.txt", ok)], |t| {
                entry(t, format!("{ROOT}/dev").as_bytes(), b'3', b"", b"")
            }),
            "character device",
        ),
        (
            "FIFO",
            bundle(&[("a.txt", ok)], |t| {
                entry(t, format!("{ROOT}/fifo").as_bytes(), b'6', b"", b"")
            }),
            "FIFO",
        ),
        (
            "duplicate entry",
            bundle(&[("a.txt", ok)], |t| {
                entry(t, format!("{ROOT}/a.txt").as_bytes(), b'0', ok, b"");
                entry(t, format!("{ROOT}/a.txt").as_bytes(), b'0', ok, b"");
            }),
            "appears twice",
        ),
        (
            "unlisted entry",
            bundle(&[("a.txt", ok)], |t| {
                entry(t, format!("{ROOT}/b.txt").as_bytes(), b'0', ok, b"")
            }),
            "not listed",
        ),
        (
            "non-UTF-8 name",
            bundle(&[("a.txt", ok)], |t| {
                entry(
                    t,
                    format!("{ROOT}/\u{0}")
                        .as_bytes()
                        .iter()
                        .map(|b| if *b == 0 { 0xff } else { *b })
                        .collect::<Vec<u8>>()
                        .as_slice(),
                    b'0',
                    b"x",
                    b"",
                )
            }),
            "UTF-8",
        ),
        (
            "PAX path override",
            bundle(&[("innocent.txt", b"x")], |t| {
                let rec = pax("path", "../../pax-escape.txt");
                entry(t, b"PaxHeader", b'x', &rec, b"");
                entry(
                    t,
                    format!("{ROOT}/innocent.txt").as_bytes(),
                    b'0',
                    b"x",
                    b"",
                );
            }),
            "`..`",
        ),
        (
            "size mismatch",
            bundle(&[("a.txt", ok)], |t| {
                entry(
                    t,
                    format!("{ROOT}/a.txt").as_bytes(),
                    b'0',
                    b"longer than listed\n",
                    b"",
                )
            }),
            "size is",
        ),
    ];
    for (case, bytes, want) in cases {
        refused(case, &bytes, want, &[]);
    }
    assert!(
        !sentinel_abs.exists(),
        "the absolute-path sentinel was written"
    );
}

#[test]
fn bombs_are_refused() {
    // 1000:1 gzip bomb: 64 MiB of zeros listed with its true digest.
    let zeros = vec![0u8; 64 << 20];
    let gz = bundle(&[("zeros.bin", &zeros)], |t| {
        entry(t, format!("{ROOT}/zeros.bin").as_bytes(), b'0', &zeros, b"")
    });
    assert!(
        zeros.len() / gz.len() > 900,
        "not a 1000:1 bomb: {} -> {}",
        zeros.len(),
        gz.len()
    );
    refused("gzip bomb", &gz, "decompression bomb", &[]);

    // Entry-count bomb: more entries than the limit.
    let names: Vec<String> = (0..600).map(|i| format!("f{i:04}")).collect();
    let listed: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b""[..])).collect();
    let gz = bundle(&listed, |t| {
        for n in &names {
            entry(t, format!("{ROOT}/{n}").as_bytes(), b'0', b"", b"");
        }
    });
    refused(
        "entry-count bomb",
        &gz,
        "number of entries exceeds the limit",
        &["--max-entries", "500"],
    );
    // An oversized single file is refused from the manifest, before any data is read.
    refused(
        "oversized file",
        &gz_with_big_listing(),
        "size of `big.bin` exceeds the limit",
        &["--max-file-size", "1000"],
    );
}

fn gz_with_big_listing() -> Vec<u8> {
    let big = vec![7u8; 4096];
    bundle(&[("big.bin", &big)], |t| {
        entry(t, format!("{ROOT}/big.bin").as_bytes(), b'0', &big, b"")
    })
}

#[test]
fn truncated_and_trailing_garbage_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good.tar.gz");
    build_fixture(&good, 0);
    let bytes = std::fs::read(&good).unwrap();
    refused(
        "truncated gzip",
        &bytes[..bytes.len() / 2],
        "agent-security-1.4.0/",
        &[],
    );
    refused(
        "truncated trailer",
        &bytes[..bytes.len() - 3],
        "agent-security-1.4.0/",
        &[],
    );
    let mut trailing = bytes.clone();
    trailing.extend_from_slice(b"GARBAGE AFTER THE BUNDLE");
    refused("trailing garbage", &trailing, "after the last entry", &[]);
    let mut zero_tail = bytes.clone();
    zero_tail.extend_from_slice(&gzip(b"sneaky extra member"));
    refused(
        "trailing gzip member",
        &zero_tail,
        "after the last entry",
        &[],
    );
}

#[test]
fn existing_destination_is_not_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("b.tar.gz");
    build_fixture(&bundle, 0);
    let target = tmp.path().join("t");
    std::fs::create_dir_all(target.join("agent-security-1.4.0")).unwrap();
    std::fs::write(target.join("agent-security-1.4.0/mine.txt"), b"mine").unwrap();
    ferry()
        .arg("extract")
        .arg(&bundle)
        .arg("-C")
        .arg(&target)
        .assert()
        .code(1);
    assert_eq!(
        std::fs::read(target.join("agent-security-1.4.0/mine.txt")).unwrap(),
        b"mine"
    );
    let names: Vec<_> = std::fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "temporary folder left behind: {names:?}");
}

#[test]
fn a_manifest_listing_an_unsafe_path_is_a_finding_for_every_reader() {
    let ok: &[u8] = b"fine\n";
    let text = String::from_utf8(manifest(&[("a.txt", ok)]))
        .unwrap()
        .replace("\"a.txt\"", "\"../a.txt\"");
    assert!(text.contains("\"../a.txt\""));
    // A head member of its own, as a writer makes it, then the body.
    let mut head = Vec::new();
    entry(
        &mut head,
        format!("{ROOT}/ferry.json").as_bytes(),
        b'0',
        text.as_bytes(),
        b"",
    );
    let mut body = Vec::new();
    entry(&mut body, format!("{ROOT}/a.txt").as_bytes(), b'0', ok, b"");
    body.extend_from_slice(&[0u8; 1024]);
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("unsafe.tar.gz");
    std::fs::write(&bundle, [gzip(&head), gzip(&body)].concat()).unwrap();
    let b = bundle.to_str().unwrap();
    let target = tmp.path().join("target");
    let commands: [&[&str]; 4] = [
        &["verify", b],
        &["extract", b, "-C", target.to_str().unwrap()],
        &["inspect", b],
        &["load", "--dry-run", b, "--registry", "127.0.0.1:9"],
    ];
    for args in commands {
        let out = ferry().args(args).assert().code(1).get_output().clone();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("../a.txt"), "{args:?}: {stderr}");
    }
    assert!(!target.exists());
}

/// Runs `ferry build` on a spec whose one image comes from `archive`, and `ferry load` on
/// `archive` itself; both must fail with exit 2 and a message naming the archive and what
/// each is expected to say (`want`, or `want_load` for load when it differs).
fn image_archive_refused(
    case: &str,
    archive: &[u8],
    want: &str,
    want_load: Option<&str>,
    load_args: &[&str],
) {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("evil.tar");
    std::fs::write(&path, archive).unwrap();
    let spec = tmp.path().join("ferry.yaml");
    std::fs::write(
        &spec,
        "name: c\nversion: '1'\nimages:\n  - ref: example.com/c/app:1\n    from: docker-archive:evil.tar\n",
    )
    .unwrap();
    let out = tmp.path().join("c.tar.gz");
    let build = ferry()
        .args(["build", "-f"])
        .arg(&spec)
        .arg("-o")
        .arg(&out)
        .assert()
        .code(2)
        .get_output()
        .clone();
    let closed = crate::util::ClosedPort::new();
    let load = ferry()
        .arg("load")
        .arg(&path)
        .args(["--registry", &format!("127.0.0.1:{}", closed.port)])
        .arg("--plain-http")
        .args(load_args)
        .assert()
        .code(2)
        .get_output()
        .clone();
    let wants = [
        ("build", &build, want),
        ("load", &load, want_load.unwrap_or(want)),
    ];
    for (command, output, want) in wants {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("evil.tar") && stderr.contains(want),
            "{case}: {command}: expected `evil.tar` and `{want}` in: {stderr}"
        );
    }
    assert!(!out.exists(), "{case}: a bundle was written");
    // Gzip-compressed (`docker save | gzip`), load reads a decompressed copy and still names
    // the file it was given.
    let gz = tmp.path().join("evil.tar.gz");
    std::fs::write(&gz, gzip(archive)).unwrap();
    let out = ferry()
        .arg("load")
        .arg(&gz)
        .args(["--registry", &format!("127.0.0.1:{}", closed.port)])
        .arg("--plain-http")
        .args(load_args)
        .assert()
        .code(2)
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let want = want_load.unwrap_or(want);
    assert!(
        stderr.contains(&gz.display().to_string()) && stderr.contains(want),
        "{case}: load of the gzip-compressed archive: expected its path and `{want}` in: {stderr}"
    );
}

#[test]
fn hostile_image_archives_are_refused_by_build_and_load() {
    let tar = |build: &dyn Fn(&mut Vec<u8>)| {
        let mut t = Vec::new();
        build(&mut t);
        t.extend_from_slice(&[0u8; 1024]);
        t
    };
    let manifest = br#"[{"Config":"c.json","RepoTags":["example.com/c/app:1"],"Layers":[]}]"#;
    image_archive_refused(
        "a name with `..`",
        &tar(&|t| {
            entry(t, b"manifest.json", b'0', manifest, b"");
            entry(t, b"../c.json", b'0', b"{}", b"");
        }),
        "entry `../c.json`: unsafe path",
        None,
        &[],
    );
    image_archive_refused(
        "manifest.json a symbolic link out of the archive",
        &tar(&|t| entry(t, b"manifest.json", b'2', b"", b"../../etc/passwd")),
        "entry `manifest.json`: a link to `../../etc/passwd`, outside the archive",
        None,
        &[],
    );
    image_archive_refused(
        "manifest.json a symbolic link to an absolute path",
        &tar(&|t| entry(t, b"manifest.json", b'2', b"", b"/etc/passwd")),
        "entry `manifest.json`: a link to the absolute path `/etc/passwd`",
        None,
        &[],
    );
    // An entry-count bomb: load's limit is a flag; build's is fixed and far above this, so
    // build reads the whole archive and finds the config missing.
    let many = tar(&|t| {
        entry(t, b"manifest.json", b'0', manifest, b"");
        for i in 0..50 {
            entry(t, format!("f{i:02}").as_bytes(), b'0', b"", b"");
        }
    });
    image_archive_refused(
        "entry-count bomb",
        &many,
        "image config `c.json` is missing",
        Some("number of entries exceeds the limit of 20 (21); raise it with --max-entries"),
        &["--max-entries", "20"],
    );
}
