//! Signing through the command line: `keygen`, `build --key`, `sign`
//! and `verify`/`extract --key`, with openssl as the independent verifier, fail-closed
//! refusals with exit 1, wrong passwords with exit 2, and secrets kept out of every output.

use crate::harness::{build_fixture, ferry, fixture, require, run, sha256_hex};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use flate2::{Compression, GzBuilder};
use std::fs;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use tempfile::TempDir;

/// The password of the `ferry keygen` key: distinctive, so a leak is found by a grep.
const PASSWORD: &str = "Pw-ferry-signcli-Qz8#vK2!mT5";
/// A wrong password, just as distinctive.
const WRONG_PASSWORD: &str = "Wrong-ferry-signcli-Hx3$rN7";
/// SOURCE_DATE_EPOCH of the main signed bundle.
const EPOCH: u64 = 1_700_000_000;
/// SOURCE_DATE_EPOCH of a second signed bundle, whose signature must not fit the first.
const OTHER_EPOCH: u64 = 1_700_000_100;

// ---------------------------------------------------------------------------------------------
// fixtures, each made once

fn s(path: &Path) -> &str {
    path.to_str().expect("utf-8 test path")
}

fn spec() -> PathBuf {
    fixture().join("ferry.yaml")
}

/// A key pair: the private key and its public key.
struct Keys {
    _dir: TempDir,
    key: PathBuf,
    public: PathBuf,
}

/// The `ferry keygen` pair (cosign format, encrypted with PASSWORD).
fn keys() -> &'static Keys {
    static K: OnceLock<Keys> = OnceLock::new();
    K.get_or_init(|| {
        require("openssl", "openssl");
        let dir = TempDir::new().unwrap();
        let prefix = dir.path().join("vendor");
        ferry()
            .env("COSIGN_PASSWORD", PASSWORD)
            .args(["keygen", "--output-key-prefix", s(&prefix)])
            .assert()
            .success();
        Keys {
            key: dir.path().join("vendor.key"),
            public: dir.path().join("vendor.pub"),
            _dir: dir,
        }
    })
}

/// An unencrypted PKCS#8 P-256 pair made by openssl, knowing nothing of ferry.
fn openssl_keys() -> &'static Keys {
    static K: OnceLock<Keys> = OnceLock::new();
    K.get_or_init(|| {
        require("openssl", "openssl");
        let dir = TempDir::new().unwrap();
        let key = dir.path().join("o.key");
        let public = dir.path().join("o.pub");
        run(Command::new("openssl").args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            s(&key),
        ]));
        run(Command::new("openssl").args(["pkey", "-in", s(&key), "-pubout", "-out", s(&public)]));
        Keys {
            _dir: dir,
            key,
            public,
        }
    })
}

/// A bundle kept in its own temp folder.
struct Bundle {
    _dir: TempDir,
    path: PathBuf,
}

/// `ferry build --key` of the fixture with SOURCE_DATE_EPOCH=`epoch`.
fn build_signed(epoch: u64) -> Bundle {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("signed.tar.gz");
    ferry()
        .env("COSIGN_PASSWORD", PASSWORD)
        .env("SOURCE_DATE_EPOCH", epoch.to_string())
        .args(["build", "-f", s(&spec()), "-o", s(&path), "--key"])
        .arg(&keys().key)
        .assert()
        .success();
    Bundle { _dir: dir, path }
}

/// The fixture built and signed by `ferry build --key` (never modified: tests copy it).
fn signed() -> &'static Path {
    static B: OnceLock<Bundle> = OnceLock::new();
    &B.get_or_init(|| build_signed(EPOCH)).path
}

/// The fixture built and signed at another time: the same content, another manifest.
fn signed_other() -> &'static Path {
    static B: OnceLock<Bundle> = OnceLock::new();
    &B.get_or_init(|| build_signed(OTHER_EPOCH)).path
}

/// The fixture built without a key.
fn unsigned() -> &'static Path {
    static B: OnceLock<Bundle> = OnceLock::new();
    &B.get_or_init(|| {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("unsigned.tar.gz");
        let report = build_fixture(&path, EPOCH);
        assert!(!report.signed);
        Bundle { _dir: dir, path }
    })
    .path
}

/// Copies a bundle into `dir` so that a test may change it.
fn copy_to(bundle: &Path, dir: &Path) -> PathBuf {
    let to = dir.join(bundle.file_name().unwrap());
    fs::copy(bundle, &to).unwrap();
    to
}

/// `tar -xzf BUNDLE -C DIR/NAME`; returns the bundle folder inside (NAME-VERSION/).
fn untar(bundle: &Path, dir: &Path, name: &str) -> PathBuf {
    require("tar", "tar");
    let into = dir.join(name);
    fs::create_dir_all(&into).unwrap();
    run(Command::new("tar")
        .arg("-xzf")
        .arg(bundle)
        .arg("-C")
        .arg(&into));
    let roots: Vec<PathBuf> = fs::read_dir(&into)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(roots.len(), 1, "one bundle folder in {}", into.display());
    roots.into_iter().next().unwrap()
}

// ---------------------------------------------------------------------------------------------
// openssl, the independent verifier

/// `openssl dgst -sha256 -verify PUB -signature DER DATA` with the base64 signature file
/// decoded to DER here; true when openssl prints "Verified OK".
fn openssl_verifies(public: &Path, sig_b64_file: &Path, data: &Path) -> bool {
    let text = fs::read(sig_b64_file).unwrap();
    let der = BASE64
        .decode(text.trim_ascii())
        .unwrap_or_else(|e| panic!("{} is not base64: {e}", sig_b64_file.display()));
    // Outside the bundle folder: an extra file there would fail ferry's own verification.
    let tmp = TempDir::new().unwrap();
    let der_path = tmp.path().join("sig.der");
    fs::write(&der_path, der).unwrap();
    let out = Command::new("openssl")
        .args(["dgst", "-sha256", "-verify", s(public), "-signature"])
        .arg(&der_path)
        .arg(data)
        .output()
        .expect("openssl runs");
    out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Verified OK")
}

/// sha256 of the DER public key, as openssl computes it.
fn openssl_fingerprint(public: &Path) -> String {
    let der =
        run(Command::new("openssl").args(["pkey", "-pubin", "-in", s(public), "-outform", "DER"]));
    format!("sha256:{}", sha256_hex(&der))
}

// ---------------------------------------------------------------------------------------------
// the gzip members of a bundle, read without ferry

/// The decompressed head member (a tar fragment) and the offset where the body starts.
fn split_head(bundle: &[u8]) -> (Vec<u8>, usize) {
    let mut gz = flate2::bufread::GzDecoder::new(bundle);
    let mut head = Vec::new();
    gz.read_to_end(&mut head).expect("the head member decodes");
    let rest = gz.into_inner();
    (head, bundle.len() - rest.len())
}

/// One gzip member with the header ferry writes (mtime 0, OS 255, level 6).
fn member(data: &[u8]) -> Vec<u8> {
    let mut gz = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), Compression::new(6));
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

/// Where each entry's data starts in a tar stream, by name (the stream may lack end blocks).
fn data_offsets(tar_bytes: &[u8]) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    let mut ar = tar::Archive::new(tar_bytes);
    for e in ar.entries().unwrap() {
        let Ok(e) = e else { break };
        let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        out.push((name, e.raw_file_position() as usize, e.size() as usize));
    }
    out
}

/// The data offset and size of the entry whose name ends with `suffix`.
fn entry_at(tar_bytes: &[u8], suffix: &str) -> (usize, usize) {
    data_offsets(tar_bytes)
        .into_iter()
        .find(|(n, _, _)| n.ends_with(suffix))
        .map(|(_, o, l)| (o, l))
        .unwrap_or_else(|| panic!("no entry ending in {suffix}"))
}

/// Rewrites the head member of a bundle file through `edit` on its tar bytes; the body is
/// kept byte for byte.
fn edit_head(bundle: &Path, edit: impl FnOnce(&mut Vec<u8>)) {
    let bytes = fs::read(bundle).unwrap();
    let (mut head, body) = split_head(&bytes);
    edit(&mut head);
    let mut out = member(&head);
    out.extend_from_slice(&bytes[body..]);
    fs::write(bundle, out).unwrap();
}

/// Rewrites the body of a bundle file (all members after the head) as one member, through
/// `edit` on its tar bytes; the head is kept byte for byte.
fn edit_body(bundle: &Path, edit: impl FnOnce(&mut Vec<u8>)) {
    let bytes = fs::read(bundle).unwrap();
    let (_, body) = split_head(&bytes);
    let mut tar_bytes = Vec::new();
    flate2::read::MultiGzDecoder::new(&bytes[body..])
        .read_to_end(&mut tar_bytes)
        .unwrap();
    edit(&mut tar_bytes);
    let mut out = bytes[..body].to_vec();
    out.extend_from_slice(&member(&tar_bytes));
    fs::write(bundle, out).unwrap();
}

/// The byte offset of the last seconds digit of `"created"` in manifest bytes: flipping its
/// low bit keeps the JSON and the timestamp valid, so only the signature can catch it.
fn created_digit(manifest: &[u8]) -> usize {
    let text = std::str::from_utf8(manifest).unwrap();
    let start = text.find("\"created\": \"").expect("created field") + "\"created\": \"".len();
    let z = start + text[start..].find('Z').expect("UTC timestamp");
    z - 1
}

fn flip_file_bit(path: &Path, index: usize) {
    let mut b = fs::read(path).unwrap();
    b[index] ^= 0x01;
    fs::write(path, b).unwrap();
}

/// Flips the last bit of the DER signature (inside `s`) and writes it back as base64: the
/// signature stays well-formed, so only the cryptographic check can refuse it.
fn flip_signature_bit(sig_text: &[u8]) -> Vec<u8> {
    let mut der = BASE64.decode(sig_text.trim_ascii()).unwrap();
    let last = der.len() - 1;
    der[last] ^= 0x01;
    BASE64.encode(der).into_bytes()
}

// ---------------------------------------------------------------------------------------------
// running ferry

/// Runs `ferry ARGS` with COSIGN_PASSWORD = `password` (or unset) and returns its output.
fn ferry_out(args: &[&str], password: Option<&str>) -> Output {
    let mut cmd = ferry();
    cmd.args(args);
    match password {
        Some(p) => cmd.env("COSIGN_PASSWORD", p),
        None => cmd.env_remove("COSIGN_PASSWORD"),
    };
    cmd.output().expect("ferry runs")
}

fn text(out: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `ferry verify PATH --key K...` with extra flags.
fn verify(path: &Path, keys: &[&Path], extra: &[&str]) -> Output {
    let mut args = vec!["verify", s(path)];
    for k in keys {
        args.extend(["--key", s(k)]);
    }
    args.extend(extra);
    ferry_out(&args, None)
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} should pass, got {:?}\n{}",
        out.status.code(),
        text(out)
    );
}

/// Asserts exit 1 and that stderr says each of `needles`.
fn assert_refused(out: &Output, what: &str, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what}: expected exit 1 (a finding)\n{}",
        text(out)
    );
    for n in needles {
        assert!(
            stderr.contains(n),
            "{what}: the message should say `{n}`\n{}",
            text(out)
        );
    }
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("AUTHENTIC"),
        "{what}: a refused bundle is never called authentic\n{}",
        text(out)
    );
}

// ---------------------------------------------------------------------------------------------
// 1. keygen → build --key → tar -xzf → openssl verifies ferry.json; ferry verifies both forms

#[test]
fn built_signature_verifies_with_openssl_and_with_ferry_in_both_forms() {
    let k = keys();
    let key_pem = fs::read_to_string(&k.key).unwrap();
    assert!(key_pem.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"));
    assert!(fs::read_to_string(&k.public)
        .unwrap()
        .starts_with("-----BEGIN PUBLIC KEY-----"));

    let dir = TempDir::new().unwrap();
    let root = untar(signed(), dir.path(), "x");
    let manifest = root.join("ferry.json");
    let sig = root.join("ferry.json.sig");
    assert!(
        openssl_verifies(&k.public, &sig, &manifest),
        "openssl must accept ferry.json.sig over ferry.json"
    );
    // And openssl refuses the same signature over other data: the check above means something.
    let other = dir.path().join("other.json");
    let mut changed = fs::read(&manifest).unwrap();
    changed.push(b'\n');
    fs::write(&other, changed).unwrap();
    assert!(!openssl_verifies(&k.public, &sig, &other));

    let fingerprint = openssl_fingerprint(&k.public);
    for (form, path) in [("tar.gz", signed()), ("directory", root.as_path())] {
        let out = verify(path, &[&k.public], &[]);
        assert_ok(&out, &format!("verify --key of the {form}"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("AUTHENTIC"), "{form}: {stdout}");
        assert!(stdout.contains(&fingerprint), "{form}: {stdout}");

        let out = verify(path, &[&openssl_keys().public, &k.public], &["--json"]);
        assert_ok(&out, &format!("verify --key --json of the {form}"));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let ev = &doc["evidence"];
        assert_eq!(ev["form"], form);
        assert_eq!(ev["signaturePresent"], true);
        assert_eq!(ev["headCheck"]["authenticity"], "verified");
        assert_eq!(
            ev["headCheck"]["key"]["path"],
            s(&k.public),
            "{form}: --json names the key that verified (the second of two)"
        );
        assert_eq!(ev["headCheck"]["key"]["fingerprint"], fingerprint.as_str());
        let verdict = doc["authenticity"].as_str().unwrap();
        assert!(
            verdict.starts_with("verified: ") && verdict.contains(&fingerprint),
            "{verdict}"
        );
    }

    // Without a key the output says in plain words that authenticity was not checked.
    let out = verify(signed(), &[], &[]);
    assert_ok(&out, "verify without --key");
    assert!(String::from_utf8_lossy(&out.stdout).contains("authenticity NOT checked"));
    let out = verify(signed(), &[], &["--json"]);
    assert_ok(&out, "verify --json without --key");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(doc["authenticity"]
        .as_str()
        .unwrap()
        .starts_with("not checked"));
    assert_eq!(doc["evidence"]["headCheck"]["authenticity"], "not_checked");
}

// ---------------------------------------------------------------------------------------------
// 2. sign --detached: openssl verifies the whole file; ferry verify --signature too

#[test]
fn detached_signature_of_the_whole_file_verifies_with_openssl_and_ferry() {
    let k = keys();
    let dir = TempDir::new().unwrap();
    let bundle = copy_to(signed(), dir.path());
    let out = ferry_out(
        &["sign", s(&bundle), "--key", s(&k.key), "--detached"],
        Some(PASSWORD),
    );
    assert_ok(&out, "sign --detached");
    let fingerprint = openssl_fingerprint(&k.public);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&fingerprint),
        "sign names the key as verify does: {}",
        text(&out)
    );
    let sig = PathBuf::from(format!("{}.sig", bundle.display()));
    assert!(sig.is_file(), "--detached writes BUNDLE.sig");
    assert!(
        openssl_verifies(&k.public, &sig, &bundle),
        "openssl must accept BUNDLE.sig over the whole file"
    );

    let out = verify(&bundle, &[&k.public], &["--signature", s(&sig)]);
    assert_ok(&out, "verify --signature");
    assert!(String::from_utf8_lossy(&out.stdout).contains("detached signature"));
    let out = verify(&bundle, &[&k.public], &["--signature", s(&sig), "--json"]);
    assert_ok(&out, "verify --signature --json");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["detachedSignature"]["signature"], s(&sig));
    assert_eq!(
        doc["detachedSignature"]["key"]["fingerprint"],
        fingerprint.as_str()
    );

    // The detached signature of this file does not fit another one.
    let out = verify(signed_other(), &[&k.public], &["--signature", s(&sig)]);
    assert_refused(
        &out,
        "a detached signature of another file",
        &["does not match"],
    );
}

// ---------------------------------------------------------------------------------------------
// 3. a key made by openssl signs, and ferry verifies with its public key

#[test]
fn openssl_generated_key_signs_and_ferry_verifies() {
    let o = openssl_keys();
    let dir = TempDir::new().unwrap();
    let bundle = copy_to(unsigned(), dir.path());
    // An unencrypted PKCS#8 key needs no password.
    let out = ferry_out(&["sign", s(&bundle), "--key", s(&o.key)], None);
    assert_ok(&out, "sign with an openssl key");

    assert_ok(&verify(&bundle, &[&o.public], &[]), "verify --key o.pub");
    let root = untar(&bundle, dir.path(), "x");
    assert!(openssl_verifies(
        &o.public,
        &root.join("ferry.json.sig"),
        &root.join("ferry.json")
    ));
    assert_ok(
        &verify(&root, &[&o.public], &[]),
        "verify --key o.pub of the folder",
    );
    assert_refused(
        &verify(&bundle, &[&keys().public], &[]),
        "an openssl-signed bundle checked with the keygen key",
        &["does not match"],
    );
}

// ---------------------------------------------------------------------------------------------
// 4. re-signing rewrites the head only

#[test]
fn resigning_copies_the_body_byte_for_byte_and_still_verifies() {
    let o = openssl_keys();
    let dir = TempDir::new().unwrap();
    let bundle = copy_to(signed(), dir.path());
    let before = fs::read(&bundle).unwrap();
    let (head_before, body_before) = split_head(&before);

    let out = ferry_out(&["sign", s(&bundle), "--key", s(&o.key)], None);
    assert_ok(&out, "re-sign with another key");
    let after = fs::read(&bundle).unwrap();
    let (head_after, body_after) = split_head(&after);

    assert_ne!(
        head_before, head_after,
        "the head carries the new signature"
    );
    let (m0, n0) = entry_at(&head_before, "/ferry.json");
    let (m1, n1) = entry_at(&head_after, "/ferry.json");
    assert_eq!(
        head_before[m0..m0 + n0],
        head_after[m1..m1 + n1],
        "the manifest itself is unchanged"
    );
    assert!(
        before[body_before..] == after[body_after..],
        "the {} body bytes after the head member must be identical",
        before.len() - body_before
    );
    assert!(
        after.len() - body_after > 100_000,
        "the body is the bulk of the file"
    );

    assert_ok(&verify(&bundle, &[&o.public], &[]), "the re-signed bundle");
    assert_refused(
        &verify(&bundle, &[&keys().public], &[]),
        "the old key after re-signing",
        &["does not match"],
    );
    // Signing again with the original key restores a bundle the original key verifies.
    let out = ferry_out(
        &["sign", s(&bundle), "--key", s(&keys().key)],
        Some(PASSWORD),
    );
    assert_ok(&out, "re-sign with the original key");
    let again = fs::read(&bundle).unwrap();
    let (_, body_again) = split_head(&again);
    assert!(before[body_before..] == again[body_again..]);
    assert_ok(&verify(&bundle, &[&keys().public], &[]), "re-signed again");
}

// ---------------------------------------------------------------------------------------------
// 5. refusals

#[test]
fn wrong_key_is_refused() {
    let dir = TempDir::new().unwrap();
    let root = untar(signed(), dir.path(), "x");
    for path in [signed(), root.as_path()] {
        assert_refused(
            &verify(path, &[&openssl_keys().public], &[]),
            "wrong key",
            &["ferry.json", "does not match"],
        );
    }
}

#[test]
fn flipped_bit_in_the_manifest_is_refused() {
    let k = keys();
    let dir = TempDir::new().unwrap();
    let root = untar(signed(), dir.path(), "x");
    let manifest = root.join("ferry.json");
    flip_file_bit(&manifest, created_digit(&fs::read(&manifest).unwrap()));
    assert_refused(
        &verify(&root, &[&k.public], &[]),
        "flipped manifest bit (folder)",
        &["ferry.json", "does not match"],
    );

    // The same in the .tar.gz: a new head member with the flipped manifest.
    let bundle = copy_to(signed(), dir.path());
    edit_head(&bundle, |head| {
        let (at, len) = entry_at(head, "/ferry.json");
        let i = at + created_digit(&head[at..at + len]);
        head[i] ^= 0x01;
    });
    assert_refused(
        &verify(&bundle, &[&k.public], &[]),
        "flipped manifest bit (tar.gz)",
        &["ferry.json", "does not match"],
    );
}

#[test]
fn flipped_bit_in_the_signature_is_refused() {
    let k = keys();
    let dir = TempDir::new().unwrap();
    let root = untar(signed(), dir.path(), "x");
    let sig = root.join("ferry.json.sig");
    fs::write(&sig, flip_signature_bit(&fs::read(&sig).unwrap())).unwrap();
    assert_refused(
        &verify(&root, &[&k.public], &[]),
        "flipped signature bit (folder)",
        &["signature of ferry.json", "does not match"],
    );

    let bundle = copy_to(signed(), dir.path());
    edit_head(&bundle, |head| {
        let (at, len) = entry_at(head, "/ferry.json.sig");
        let flipped = flip_signature_bit(&head[at..at + len]);
        assert_eq!(flipped.len(), len, "same length, same tar header");
        head[at..at + len].copy_from_slice(&flipped);
    });
    assert_refused(
        &verify(&bundle, &[&k.public], &[]),
        "flipped signature bit (tar.gz)",
        &["signature of ferry.json", "does not match"],
    );
}

#[test]
fn flipped_bit_in_an_entry_is_refused() {
    let k = keys();
    let dir = TempDir::new().unwrap();
    let root = untar(signed(), dir.path(), "x");
    flip_file_bit(&root.join("README.md"), 100);
    assert_refused(
        &verify(&root, &[&k.public], &[]),
        "flipped entry bit (folder)",
        &["README.md", "sha256"],
    );

    let bundle = copy_to(signed(), dir.path());
    edit_body(&bundle, |tar_bytes| {
        let (at, _) = entry_at(tar_bytes, "/README.md");
        tar_bytes[at + 100] ^= 0x01;
    });
    assert_refused(
        &verify(&bundle, &[&k.public], &[]),
        "flipped entry bit (tar.gz)",
        &["README.md", "sha256"],
    );
    // An image blob deep in the body too.
    let bundle = copy_to(signed(), &dir.path().join("x"));
    let mut blob = String::new();
    edit_body(&bundle, |tar_bytes| {
        let (name, at, len) = data_offsets(tar_bytes)
            .into_iter()
            .filter(|(n, _, _)| n.contains("/blobs/sha256/"))
            .max_by_key(|(_, _, l)| *l)
            .expect("an image blob");
        tar_bytes[at + len / 2] ^= 0x01;
        blob = name.rsplit('/').next().unwrap().to_owned();
    });
    assert_refused(
        &verify(&bundle, &[&k.public], &[]),
        "flipped blob bit (tar.gz)",
        &[&blob],
    );
}

#[test]
fn signature_copied_from_another_bundle_is_refused() {
    let k = keys();
    let dir = TempDir::new().unwrap();
    let a = untar(signed(), dir.path(), "a");
    let b = untar(signed_other(), dir.path(), "b");
    assert_ne!(
        fs::read(a.join("ferry.json")).unwrap(),
        fs::read(b.join("ferry.json")).unwrap(),
        "the two manifests differ (created)"
    );
    // Each verifies on its own...
    assert_ok(&verify(&a, &[&k.public], &[]), "bundle a");
    assert_ok(&verify(&b, &[&k.public], &[]), "bundle b");
    // ...but not with the other's signature.
    let sig_a = fs::read(a.join("ferry.json.sig")).unwrap();
    let sig_b = fs::read(b.join("ferry.json.sig")).unwrap();
    fs::write(a.join("ferry.json.sig"), &sig_b).unwrap();
    fs::write(b.join("ferry.json.sig"), &sig_a).unwrap();
    for root in [&a, &b] {
        assert_refused(
            &verify(root, &[&k.public], &[]),
            "swapped signature",
            &["signature of ferry.json", "does not match"],
        );
    }
}

#[test]
fn truncated_and_empty_signatures_are_refused() {
    let k = keys();
    let dir = TempDir::new().unwrap();
    let root = untar(signed(), dir.path(), "x");
    let sig = root.join("ferry.json.sig");
    let full = fs::read(&sig).unwrap();
    let cases: [(&str, &[u8], &str); 4] = [
        (
            "half",
            &full[..full.len() / 2],
            "malformed signature of ferry.json",
        ),
        (
            "one character short",
            &full[..full.len() - 1],
            "malformed signature of ferry.json",
        ),
        ("empty", b"", "the signature is empty"),
        ("blank line", b"\n", "the signature is empty"),
    ];
    for (what, content, says) in cases {
        fs::write(&sig, content).unwrap();
        assert_refused(
            &verify(&root, &[&k.public], &[]),
            &format!("{what} signature"),
            &[says],
        );
    }

    // The .tar.gz form: a half signature entry in a rebuilt head.
    let bundle = copy_to(signed(), dir.path());
    edit_head(&bundle, |head| {
        let (at, len) = entry_at(head, "/ferry.json.sig");
        let truncated = BASE64.encode(&BASE64.decode(&head[at..at + len]).unwrap()[..40]);
        let padded = format!("{truncated:<len$}");
        head[at..at + len].copy_from_slice(padded.as_bytes());
    });
    assert_refused(
        &verify(&bundle, &[&k.public], &[]),
        "truncated DER signature (tar.gz)",
        &["malformed signature of ferry.json"],
    );
}

#[test]
fn unsigned_bundle_is_refused_when_a_signature_is_required() {
    let dir = TempDir::new().unwrap();
    let root = untar(unsigned(), dir.path(), "x");
    assert!(!root.join("ferry.json.sig").exists());
    for path in [unsigned(), root.as_path()] {
        assert_refused(
            &verify(path, &[], &["--require-signature"]),
            "unsigned under --require-signature",
            &["not signed", "--require-signature"],
        );
        assert_refused(
            &verify(path, &[&keys().public], &[]),
            "unsigned under --key",
            &["not signed", "--key"],
        );
        assert_ok(&verify(path, &[], &[]), "unsigned, integrity only");
    }
}

#[test]
fn stripped_signature_entry_is_refused() {
    let k = keys();
    let dir = TempDir::new().unwrap();
    let root = untar(signed(), dir.path(), "x");
    fs::remove_file(root.join("ferry.json.sig")).unwrap();
    assert_refused(
        &verify(&root, &[&k.public], &[]),
        "stripped signature (folder)",
        &["not signed", "stripped"],
    );

    // The .tar.gz form: the head cut after the ferry.json entry.
    let bundle = copy_to(signed(), dir.path());
    edit_head(&bundle, |head| {
        let (at, len) = entry_at(head, "/ferry.json");
        head.truncate(at + len.div_ceil(512) * 512);
    });
    assert_refused(
        &verify(&bundle, &[&k.public], &[]),
        "stripped signature (tar.gz)",
        &["not signed", "stripped"],
    );
    assert_refused(
        &verify(&bundle, &[], &["--require-signature"]),
        "stripped signature under --require-signature (tar.gz)",
        &["not signed"],
    );
}

#[test]
fn wrong_password_is_a_clear_error_with_exit_2_and_changes_nothing() {
    let k = keys();
    let dir = TempDir::new().unwrap();
    let bundle = copy_to(signed(), dir.path());
    let before = fs::read(&bundle).unwrap();
    let out = ferry_out(
        &["sign", s(&bundle), "--key", s(&k.key), "--detached"],
        Some(WRONG_PASSWORD),
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("wrong password"), "{stderr}");
    assert!(stderr.contains(s(&k.key)), "names the key file: {stderr}");
    assert_eq!(
        fs::read(&bundle).unwrap(),
        before,
        "the bundle is untouched"
    );
    assert!(!Path::new(&format!("{}.sig", bundle.display())).exists());

    let built = dir.path().join("built.tar.gz");
    let out = ferry_out(
        &[
            "build",
            "-f",
            s(&spec()),
            "-o",
            s(&built),
            "--key",
            s(&k.key),
        ],
        Some(WRONG_PASSWORD),
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong password"));
    assert!(
        !built.exists(),
        "no bundle is written with a key that cannot sign"
    );
}

#[test]
fn extract_with_the_wrong_key_writes_nothing() {
    let dir = TempDir::new().unwrap();
    let target = dir.path().join("out");
    let out = ferry_out(
        &[
            "extract",
            s(signed()),
            "-C",
            s(&target),
            "--key",
            s(&openssl_keys().public),
        ],
        None,
    );
    assert_refused(&out, "extract --key WRONG", &["does not match"]);
    assert!(
        !target.exists(),
        "extract must not even create {}",
        target.display()
    );

    let out = ferry_out(
        &[
            "extract",
            s(unsigned()),
            "-C",
            s(&target),
            "--require-signature",
        ],
        None,
    );
    assert_refused(
        &out,
        "extract --require-signature of an unsigned bundle",
        &["not signed"],
    );
    assert!(!target.exists());

    let out = ferry_out(
        &[
            "extract",
            s(signed()),
            "-C",
            s(&target),
            "--key",
            s(&keys().public),
        ],
        None,
    );
    assert_ok(&out, "extract --key RIGHT");
    assert!(target.join("agent-security-1.4.0/ferry.json.sig").is_file());
}

/// The whole tar record (header and padded data) of the entry ending in `suffix`.
fn record(tar_bytes: &[u8], suffix: &str) -> Vec<u8> {
    let (at, len) = entry_at(tar_bytes, suffix);
    tar_bytes[at - 512..at + len.div_ceil(512) * 512].to_vec()
}

#[test]
fn signature_or_manifest_outside_the_head_is_refused() {
    let k = keys();
    let dir = TempDir::new().unwrap();
    let original = fs::read(signed()).unwrap();
    let (head, _) = split_head(&original);
    let sig_record = record(&head, "/ferry.json.sig");
    let mut manifest_record = record(&head, "/ferry.json");
    let (at, len) = entry_at(&manifest_record, "/ferry.json");
    let i = at + created_digit(&manifest_record[at..at + len]);
    manifest_record[i] ^= 0x01;

    // The signature moved behind the last file: only the entry right after ferry.json is the
    // signature, so the bundle reads as unsigned (and the moved entry as a duplicate).
    // (Moving it to the start of the next member is fine: readers do not check where
    // members are cut, bundle-format.md section 4, and it is still the second entry.)
    let moved = copy_to(signed(), dir.path());
    edit_head(&moved, |head| {
        let (at, len) = entry_at(head, "/ferry.json");
        head.truncate(at + len.div_ceil(512) * 512);
    });
    edit_body(&moved, |body| {
        let (_, at, len) = data_offsets(body).pop().expect("entries in the body");
        let end = at + len.div_ceil(512) * 512;
        body.splice(end..end, sig_record.iter().copied());
    });
    assert_refused(
        &verify(&moved, &[&k.public], &[]),
        "signature moved behind the last file",
        &["not signed"],
    );
    assert_refused(
        &verify(&moved, &[], &[]),
        "signature moved behind the last file, no key",
        &["ferry.json.sig", "twice"],
    );

    // A second, different ferry.json in the body (`tar -xzf` would let it win).
    fs::create_dir(dir.path().join("d")).unwrap();
    let doubled = copy_to(signed(), &dir.path().join("d"));
    edit_body(&doubled, |body| {
        body.splice(0..0, manifest_record.iter().copied());
    });
    let out = verify(&doubled, &[&k.public], &[]);
    assert_refused(&out, "a second ferry.json in the body", &["ferry.json"]);
}

#[test]
fn folders_are_refused_where_a_bundle_file_is_needed() {
    let k = keys();
    let dir = TempDir::new().unwrap();
    let root = untar(signed(), dir.path(), "x");
    let before = crate::harness::tree(&root);
    let out = ferry_out(&["sign", s(&root), "--key", s(&k.key)], Some(PASSWORD));
    assert_eq!(
        out.status.code(),
        Some(2),
        "sign FOLDER is a usage error\n{}",
        text(&out)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("is a folder"));
    assert!(
        crate::harness::tree(&root) == before,
        "the folder is untouched"
    );

    let sig = dir.path().join("b.sig");
    fs::write(&sig, fs::read(root.join("ferry.json.sig")).unwrap()).unwrap();
    let out = verify(&root, &[&k.public], &["--signature", s(&sig)]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is a folder"));
}

// ---------------------------------------------------------------------------------------------
// 6. secrets

#[test]
fn password_and_private_key_never_appear_in_any_output() {
    let dir = TempDir::new().unwrap();
    let d = dir.path();
    let mut outputs: Vec<(String, Output)> = Vec::new();
    let mut record = |what: &str, out: Output| outputs.push((what.to_owned(), out));

    let prefix = d.join("leak");
    record(
        "keygen",
        ferry_out(
            &["keygen", "--output-key-prefix", s(&prefix)],
            Some(PASSWORD),
        ),
    );
    let key = d.join("leak.key");
    let public = d.join("leak.pub");
    let prefix2 = d.join("leak2");
    record(
        "keygen --json",
        ferry_out(
            &["--json", "keygen", "--output-key-prefix", s(&prefix2)],
            Some(PASSWORD),
        ),
    );
    let built = d.join("b.tar.gz");
    let spec = spec();
    for json in [false, true] {
        let mut args = vec!["build", "-f", s(&spec), "-o", s(&built), "--key", s(&key)];
        if json {
            args.push("--json");
        }
        record("build --key", ferry_out(&args, Some(PASSWORD)));
        record(
            "build --key, wrong password",
            ferry_out(&args, Some(WRONG_PASSWORD)),
        );
    }
    for json in [false, true] {
        let mut args = vec!["sign", s(&built), "--key", s(&key), "--detached"];
        if json {
            args.push("--json");
        }
        record("sign", ferry_out(&args, Some(PASSWORD)));
        record(
            "sign, wrong password",
            ferry_out(&args, Some(WRONG_PASSWORD)),
        );
        let o = openssl_keys();
        let args: Vec<&str> = args
            .iter()
            .map(|a| if *a == s(&key) { s(&o.key) } else { a })
            .collect();
        record(
            "sign with the openssl key",
            ferry_out(&args, Some(PASSWORD)),
        );
    }
    let sig = format!("{}.sig", built.display());
    for json in [false, true] {
        let mut args = vec![
            "verify",
            s(&built),
            "--key",
            s(&openssl_keys().public),
            "--key",
            s(&public),
            "--signature",
            &sig,
        ];
        if json {
            args.push("--json");
        }
        record("verify", ferry_out(&args, Some(PASSWORD)));
    }
    // A private key given where a public one belongs must not be echoed either.
    record(
        "verify --key PRIVATE",
        ferry_out(&["verify", s(&built), "--key", s(&key)], Some(PASSWORD)),
    );
    record(
        "verify --key PRIVATE --json",
        ferry_out(
            &["--json", "verify", s(&built), "--key", s(&key)],
            Some(PASSWORD),
        ),
    );

    // The runs did what they should, so their outputs are worth grepping.
    let codes: Vec<(String, Option<i32>)> = outputs
        .iter()
        .map(|(w, o)| (w.clone(), o.status.code()))
        .collect();
    for (what, code) in &codes {
        let want = if what.contains("wrong password") || what.contains("PRIVATE") {
            2
        } else {
            0
        };
        assert_eq!(*code, Some(want), "{what}: {codes:?}");
    }

    let mut secrets: Vec<String> = vec![PASSWORD.into(), WRONG_PASSWORD.into()];
    for pem in [&key, &d.join("leak2.key"), &openssl_keys().key] {
        let body: Vec<String> = fs::read_to_string(pem)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with("-----") && !l.trim().is_empty())
            .map(str::to_owned)
            .collect();
        assert!(body.len() >= 2, "{} has a PEM body", pem.display());
        secrets.extend(body);
    }
    for (what, out) in &outputs {
        for stream in [&out.stdout, &out.stderr] {
            let t = String::from_utf8_lossy(stream);
            for secret in &secrets {
                // Short last lines of a PEM body are too short to be evidence of a leak.
                if secret.len() >= 16 {
                    assert!(!t.contains(secret.as_str()), "{what} printed a secret: {t}");
                }
                assert!(
                    !t.contains(PASSWORD) && !t.contains(WRONG_PASSWORD),
                    "{what} printed a password"
                );
            }
        }
    }
}
