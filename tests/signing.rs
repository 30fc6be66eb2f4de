//! Keys and signatures: cosign/openssl key formats, signatures that openssl verifies
//! independently, fail-closed refusals, and secrets that never leak into messages.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ferry::oci::digest::{hash_reader, Digest};
use ferry::signing::{
    check_head_signature, keygen, keygen_paths, verify, verify_digest, verify_file, verify_reader,
    HeadSignature, KeyFormat, Password, SigningError, SigningKey, VerifyingKey,
};
use sha2::{Digest as _, Sha256};
use tempfile::TempDir;

const PASSWORD: &str = "correct-horse-battery-staple-7f3a";
const DATA: &[u8] = br#"{"format":1,"name":"acme","version":"1.2.3"}"#;

// ---------------------------------------------------------------------------------------------
// helpers

/// Runs openssl with `args`; panics with the install command when openssl is missing.
fn openssl(args: &[&str]) -> std::process::Output {
    match Command::new("openssl").args(args).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("openssl is needed by the signing tests: apt-get install -y openssl")
        }
        Err(e) => panic!("running openssl {args:?}: {e}"),
    }
}

fn openssl_ok(args: &[&str]) {
    let out = openssl(args);
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `openssl genpkey` key of `curve` as PKCS#8 PEM, and its public key as PKIX PEM.
fn openssl_keypair(dir: &Path, name: &str, curve: &str) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub"));
    openssl_ok(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        &format!("ec_paramgen_curve:{curve}"),
        "-out",
        p(&key),
    ]);
    openssl_ok(&["pkey", "-in", p(&key), "-pubout", "-out", p(&public)]);
    (key, public)
}

/// Does openssl, knowing nothing of ferry, accept `sig_b64` over the file `data` with `public`?
fn openssl_verifies(public: &Path, data: &Path, sig_b64: &str) -> bool {
    let dir = TempDir::new().unwrap();
    let der = dir.path().join("sig.der");
    fs::write(&der, BASE64.decode(sig_b64).unwrap()).unwrap();
    let out = openssl(&[
        "dgst",
        "-sha256",
        "-verify",
        p(public),
        "-signature",
        p(&der),
        p(data),
    ]);
    out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Verified OK")
}

fn no_password() -> Result<Password, SigningError> {
    panic!("the password callback must not be called for an unencrypted key")
}

fn right_password() -> Result<Password, SigningError> {
    Ok(Password::from(PASSWORD))
}

/// One `ferry keygen` pair shared by the tests (scrypt makes keygen take a moment).
struct Generated {
    _dir: TempDir,
    key: PathBuf,
    public: PathBuf,
}

fn generated() -> &'static Generated {
    static KEYS: OnceLock<Generated> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = TempDir::new().unwrap();
        let (key, public) = keygen(&dir.path().join("vendor"), &Password::from(PASSWORD)).unwrap();
        Generated {
            _dir: dir,
            key,
            public,
        }
    })
}

/// The generated key, decrypted once (each decryption runs scrypt).
fn generated_signing_key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::load(&generated().key, right_password).unwrap())
}

fn flip_bit(bytes: &[u8], index: usize) -> Vec<u8> {
    let mut v = bytes.to_vec();
    v[index] ^= 0x01;
    v
}

// ---------------------------------------------------------------------------------------------
// keygen and the cosign key format

#[test]
fn keygen_writes_cosign_key_0600_and_pkix_public_key() {
    let g = generated();
    assert_eq!(g.key.extension().unwrap(), "key");
    assert_eq!(g.public.extension().unwrap(), "pub");
    let mode = fs::metadata(&g.key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "private key mode is {mode:o}");

    let key_text = fs::read_to_string(&g.key).unwrap();
    assert!(key_text.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"));
    let pub_text = fs::read_to_string(&g.public).unwrap();
    assert!(pub_text.starts_with("-----BEGIN PUBLIC KEY-----\n"));

    // openssl reads the public key as a P-256 key.
    let out = openssl(&["pkey", "-pubin", "-in", p(&g.public), "-noout", "-text"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("prime256v1") || text.contains("P-256"),
        "{text}"
    );

    // The signing key's public half is exactly the .pub file.
    let key = generated_signing_key();
    assert_eq!(key.format(), KeyFormat::EncryptedSigstore);
    assert_eq!(key.public_key_pem().trim(), pub_text.trim());
}

#[test]
fn keygen_key_round_trips_and_openssl_verifies_its_signature() {
    let g = generated();
    let key = generated_signing_key();
    let sig = key.sign(DATA).unwrap();

    let dir = TempDir::new().unwrap();
    let data = dir.path().join("ferry.json");
    fs::write(&data, DATA).unwrap();
    assert!(openssl_verifies(&g.public, &data, &sig));

    let keys = [VerifyingKey::load(&g.public).unwrap()];
    let matched = verify(&keys, "ferry.json", DATA, sig.as_bytes()).unwrap();
    assert_eq!(matched.path(), g.public);
    // The signature is one line of standard base64 with no newline (cosign's format).
    assert!(!sig.contains('\n') && !sig.is_empty());
}

#[test]
fn keygen_refuses_to_overwrite() {
    let dir = TempDir::new().unwrap();
    let prefix = dir.path().join("k");
    fs::write(dir.path().join("k.pub"), "keep me").unwrap();
    let err = keygen(&prefix, &Password::from(PASSWORD)).unwrap_err();
    assert!(
        matches!(err, SigningError::KeyExists { ref path } if path.ends_with("k.pub")),
        "{err}"
    );
    assert_eq!(
        fs::read_to_string(dir.path().join("k.pub")).unwrap(),
        "keep me"
    );
    assert!(
        !dir.path().join("k.key").exists(),
        "no half pair is left behind"
    );

    let err = keygen_paths(&prefix).unwrap_err();
    assert!(matches!(err, SigningError::KeyExists { .. }), "{err}");
    let (k, p) = keygen_paths(&dir.path().join("release.v2")).unwrap();
    assert_eq!(k, dir.path().join("release.v2.key"));
    assert_eq!(p, dir.path().join("release.v2.pub"));

    let err = keygen(
        &generated().key.with_extension(""),
        &Password::from(PASSWORD),
    )
    .unwrap_err();
    assert!(matches!(err, SigningError::KeyExists { .. }), "{err}");
    assert_eq!(err.exit_code(), 2);
}

#[test]
fn wrong_password_is_a_clear_error_with_exit_2() {
    let g = generated();
    for wrong in ["", "correct-horse-battery-staple-7f3b"] {
        let err = SigningKey::load(&g.key, || Ok(Password::from(wrong))).unwrap_err();
        match &err {
            SigningError::WrongPassword { key_path } => assert_eq!(key_path, &g.key),
            other => panic!("expected WrongPassword, got {other:?}"),
        }
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("COSIGN_PASSWORD"), "{err}");
    }
}

#[test]
fn password_callback_error_is_passed_through() {
    let err = SigningKey::load(&generated().key, || {
        Err(SigningError::NoPassword {
            purpose: "test".into(),
        })
    })
    .unwrap_err();
    assert!(matches!(err, SigningError::NoPassword { .. }), "{err}");
    assert_eq!(err.exit_code(), 2);
}

#[test]
fn older_encrypted_cosign_private_key_label_is_accepted() {
    // Older cosign wrote the same scrypt + secretbox envelope under another PEM label.
    let dir = TempDir::new().unwrap();
    let text = fs::read_to_string(&generated().key).unwrap();
    let old = text.replace(
        "ENCRYPTED SIGSTORE PRIVATE KEY",
        "ENCRYPTED COSIGN PRIVATE KEY",
    );
    assert_ne!(old, text);
    let path = dir.path().join("cosign.key");
    fs::write(&path, old).unwrap();

    let key = SigningKey::load(&path, right_password).unwrap();
    assert_eq!(key.format(), KeyFormat::EncryptedCosign);
    let sig = key.sign(DATA).unwrap();
    let keys = [VerifyingKey::load(&generated().public).unwrap()];
    verify(&keys, "ferry.json", DATA, sig.as_bytes()).unwrap();

    let err = SigningKey::load(&path, || Ok(Password::from("nope"))).unwrap_err();
    assert!(matches!(err, SigningError::WrongPassword { .. }), "{err}");
}

/// `testdata/signing/NAME`.
fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/signing")
        .join(name)
}

#[test]
fn keys_written_by_cosign_load_sign_and_verify_with_openssl() {
    // (file, password, format it must be read as)
    let cases = [
        (
            "cosign-generated-empty-password.key",
            "",
            KeyFormat::EncryptedSigstore,
        ),
        (
            "encrypted-cosign-label-password-123.key",
            "123",
            KeyFormat::EncryptedCosign,
        ),
    ];
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("ferry.json");
    fs::write(&data, DATA).unwrap();
    for (file, password, format) in cases {
        let path = testdata(file);
        let key = SigningKey::load(&path, || Ok(Password::from(password))).unwrap();
        assert_eq!(key.format(), format, "{file}");
        let public = dir.path().join(format!("{file}.pub"));
        fs::write(&public, key.public_key_pem()).unwrap();
        let sig = key.sign(DATA).unwrap();
        assert!(openssl_verifies(&public, &data, &sig), "{file}");
        let keys = [VerifyingKey::load(&public).unwrap()];
        verify(&keys, "ferry.json", DATA, sig.as_bytes()).unwrap();

        let err = SigningKey::load(&path, || Ok(Password::from("wrong"))).unwrap_err();
        assert!(
            matches!(err, SigningError::WrongPassword { .. }),
            "{file}: {err:?}"
        );
    }
}

#[test]
fn encrypted_non_p256_key_is_refused_after_decryption() {
    let path = testdata("ed25519-encrypted-password-123.key");
    let err = SigningKey::load(&path, || Ok(Password::from("123"))).unwrap_err();
    match &err {
        SigningError::UnsupportedKey {
            found_header, hint, ..
        } => {
            assert_eq!(found_header, "ENCRYPTED SIGSTORE PRIVATE KEY");
            assert!(hint.contains("P-256"), "{hint}");
        }
        other => panic!("expected UnsupportedKey, got {other:?}"),
    }
}

#[test]
fn damaged_encrypted_key_is_reported_as_malformed_not_as_a_password_problem() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("bad.key");
    let body = BASE64.encode(br#"{"kdf":{"name":"scrypt"}}"#);
    fs::write(
        &path,
        format!("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n{body}\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n"),
    )
    .unwrap();
    let err = SigningKey::load(&path, right_password).unwrap_err();
    assert!(matches!(err, SigningError::MalformedKey { .. }), "{err:?}");

    // A hostile scrypt cost is refused before any key derivation.
    let text = fs::read_to_string(&generated().key).unwrap();
    let block = pem::parse(&text).unwrap();
    let json = String::from_utf8(block.contents().to_vec()).unwrap();
    let costly = json
        .replace(r#""N":32768"#, r#""N":1073741824"#)
        .replace(r#""N":65536"#, r#""N":1073741824"#);
    assert_ne!(costly, json, "no scrypt N found in {json}");
    let costly = pem::encode(&pem::Pem::new(block.tag(), costly.into_bytes()));
    fs::write(&path, costly).unwrap();
    let err = SigningKey::load(&path, || {
        panic!("no password before the envelope is checked")
    })
    .unwrap_err();
    assert!(
        matches!(err, SigningError::UnsupportedKey { .. }),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// openssl keys and the independent verifier

#[test]
fn openssl_pkcs8_key_signs_without_a_password_and_both_sides_verify() {
    let dir = TempDir::new().unwrap();
    let (key_path, public) = openssl_keypair(dir.path(), "vendor", "P-256");
    let key = SigningKey::load(&key_path, no_password).unwrap();
    assert_eq!(key.format(), KeyFormat::Pkcs8);

    let data = dir.path().join("ferry.json");
    fs::write(&data, DATA).unwrap();

    // ferry signs, openssl verifies.
    let sig = key.sign(DATA).unwrap();
    assert!(openssl_verifies(&public, &data, &sig));

    // openssl signs, ferry verifies.
    let der = dir.path().join("openssl.sig.der");
    openssl_ok(&[
        "dgst",
        "-sha256",
        "-sign",
        p(&key_path),
        "-out",
        p(&der),
        p(&data),
    ]);
    let openssl_sig = BASE64.encode(fs::read(&der).unwrap());
    let keys = [VerifyingKey::load(&public).unwrap()];
    verify(&keys, "ferry.json", DATA, openssl_sig.as_bytes()).unwrap();
    verify(&keys, "ferry.json", DATA, sig.as_bytes()).unwrap();
}

#[test]
fn sec1_ec_private_key_is_accepted() {
    let dir = TempDir::new().unwrap();
    let (pkcs8, public) = openssl_keypair(dir.path(), "vendor", "P-256");
    let sec1 = dir.path().join("sec1.pem");
    openssl_ok(&["ec", "-in", p(&pkcs8), "-out", p(&sec1)]);
    assert!(fs::read_to_string(&sec1)
        .unwrap()
        .starts_with("-----BEGIN EC PRIVATE KEY-----"));

    let key = SigningKey::load(&sec1, no_password).unwrap();
    assert_eq!(key.format(), KeyFormat::Sec1);
    let keys = [VerifyingKey::load(&public).unwrap()];
    verify(
        &keys,
        "ferry.json",
        DATA,
        key.sign(DATA).unwrap().as_bytes(),
    )
    .unwrap();
}

#[test]
fn fingerprint_is_sha256_of_the_der_public_key() {
    let g = generated();
    let out = openssl(&["pkey", "-pubin", "-in", p(&g.public), "-outform", "DER"]);
    assert!(out.status.success());
    let expected = hex::encode(Sha256::digest(&out.stdout));
    let vk = VerifyingKey::load(&g.public).unwrap();
    assert_eq!(vk.fingerprint(), expected);
    assert_eq!(generated_signing_key().fingerprint(), expected);
    assert_eq!(
        generated_signing_key().verifying_key().fingerprint(),
        expected
    );
}

#[test]
fn unsupported_keys_are_refused_with_their_header() {
    let dir = TempDir::new().unwrap();
    let (p384_key, p384_pub) = openssl_keypair(dir.path(), "p384", "P-384");
    let garbage = dir.path().join("garbage.key");
    fs::write(&garbage, "this is not a key\n").unwrap();
    let encrypted = dir.path().join("enc.pem");
    openssl_ok(&[
        "pkcs8",
        "-topk8",
        "-in",
        p(&p384_key),
        "-out",
        p(&encrypted),
        "-passout",
        "pass:pw",
    ]);

    // (what, result, expected header)
    let cases: Vec<(&str, SigningError, Option<&str>)> = vec![
        (
            "P-384 private key",
            SigningKey::load(&p384_key, no_password).unwrap_err(),
            Some("PRIVATE KEY"),
        ),
        (
            "P-384 public key",
            VerifyingKey::load(&p384_pub).unwrap_err(),
            Some("PUBLIC KEY"),
        ),
        (
            "public key given for signing",
            SigningKey::load(&generated().public, no_password).unwrap_err(),
            Some("PUBLIC KEY"),
        ),
        (
            "private key given for verifying",
            VerifyingKey::load(&generated().key).unwrap_err(),
            Some("ENCRYPTED SIGSTORE PRIVATE KEY"),
        ),
        (
            "openssl-encrypted PKCS#8",
            SigningKey::load(&encrypted, no_password).unwrap_err(),
            Some("ENCRYPTED PRIVATE KEY"),
        ),
        (
            "not PEM",
            SigningKey::load(&garbage, no_password).unwrap_err(),
            None,
        ),
        (
            "not PEM (public)",
            VerifyingKey::load(&garbage).unwrap_err(),
            None,
        ),
    ];
    for (what, err, header) in cases {
        match (&err, header) {
            (SigningError::UnsupportedKey { found_header, .. }, Some(h)) => {
                assert_eq!(found_header, h, "{what}")
            }
            (SigningError::MalformedKey { .. }, None) => {}
            _ => panic!("{what}: unexpected {err:?}"),
        }
        assert_eq!(err.exit_code(), 2, "{what}");
    }
}

// ---------------------------------------------------------------------------------------------
// streaming: the detached signature of a whole file

#[test]
fn streaming_signature_of_a_whole_file_verifies_with_openssl() {
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("acme-1.2.3.tar.gz");
    // 5 MiB + 17 bytes of varied content, so reads cross buffer boundaries.
    let mut f = fs::File::create(&file).unwrap();
    let mut block = [0u8; 4096];
    let mut x: u32 = 0x1234_5678;
    for _ in 0..1280 {
        for b in block.iter_mut() {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
        f.write_all(&block).unwrap();
    }
    f.write_all(b"seventeen bytes!!").unwrap();
    drop(f);

    let g = generated();
    let key = generated_signing_key();
    let keys = [VerifyingKey::load(&g.public).unwrap()];

    let from_file = key.sign_file(&file).unwrap();
    let from_reader = key.sign_reader(fs::File::open(&file).unwrap()).unwrap();
    let in_memory = key.sign(&fs::read(&file).unwrap()).unwrap();
    let digest = Digest::of(&fs::read(&file).unwrap());
    let from_digest = key.sign_digest(&digest).unwrap();

    for (how, sig) in [
        ("sign_file", &from_file),
        ("sign_reader", &from_reader),
        ("sign", &in_memory),
        ("sign_digest", &from_digest),
    ] {
        assert!(
            openssl_verifies(&g.public, &file, sig),
            "{how}: openssl refused"
        );
        verify_file(&keys, &file, sig.as_bytes()).unwrap();
        verify_reader(
            &keys,
            "bundle",
            fs::File::open(&file).unwrap(),
            sig.as_bytes(),
        )
        .unwrap();
        verify_digest(&keys, "bundle", &digest, sig.as_bytes()).unwrap();
    }

    let (streamed, len) = hash_reader(fs::File::open(&file).unwrap()).unwrap();
    assert_eq!(streamed, digest);
    assert_eq!(len, 5 * 1024 * 1024 + 17);

    // One byte changed in the middle of the file: refused.
    let mut bytes = fs::read(&file).unwrap();
    bytes[3 * 1024 * 1024] ^= 0x80;
    fs::write(&file, &bytes).unwrap();
    let err = verify_file(&keys, &file, from_file.as_bytes()).unwrap_err();
    assert!(matches!(err, SigningError::BadSignature { .. }), "{err}");
    assert!(!openssl_verifies(&g.public, &file, &from_file));
}

// ---------------------------------------------------------------------------------------------
// refusals

#[derive(Debug)]
enum Expect {
    Bad,
    Malformed,
    NoKeys,
}

#[test]
fn refusals_fail_closed() {
    let g = generated();
    let key = generated_signing_key();
    let sig = key.sign(DATA).unwrap();
    let der = BASE64.decode(&sig).unwrap();
    let right = vec![VerifyingKey::load(&g.public).unwrap()];

    let dir = TempDir::new().unwrap();
    let (_, other_pub) = openssl_keypair(dir.path(), "other", "P-256");
    let wrong = vec![VerifyingKey::load(&other_pub).unwrap()];
    let other_sig = SigningKey::load(&dir.path().join("other.pem"), no_password)
        .unwrap()
        .sign(b"another bundle's manifest")
        .unwrap();

    // r starts at byte 4 (or 5 with a leading zero); byte 10 is inside r either way.
    let flipped_r = BASE64.encode(flip_bit(&der, 10));
    let flipped_header = BASE64.encode(flip_bit(&der, 0));
    let truncated_der = BASE64.encode(&der[..der.len() - 1]);
    let truncated_text = sig[..sig.len() / 2].to_owned();
    let extended_der = BASE64.encode([der.clone(), vec![0]].concat());

    type Case<'a> = (&'a str, &'a [VerifyingKey], Vec<u8>, Vec<u8>, Expect);
    let cases: Vec<Case> = vec![
        (
            "wrong key",
            &wrong,
            DATA.to_vec(),
            sig.clone().into(),
            Expect::Bad,
        ),
        (
            "flipped bit in data",
            &right,
            flip_bit(DATA, 5),
            sig.clone().into(),
            Expect::Bad,
        ),
        (
            "one byte appended to data",
            &right,
            [DATA, b" "].concat(),
            sig.clone().into(),
            Expect::Bad,
        ),
        (
            "flipped bit in signature r",
            &right,
            DATA.to_vec(),
            flipped_r.into(),
            Expect::Bad,
        ),
        (
            "signature of other data",
            &right,
            DATA.to_vec(),
            other_sig.into(),
            Expect::Bad,
        ),
        (
            "flipped bit in DER header",
            &right,
            DATA.to_vec(),
            flipped_header.into(),
            Expect::Malformed,
        ),
        (
            "truncated DER",
            &right,
            DATA.to_vec(),
            truncated_der.into(),
            Expect::Malformed,
        ),
        (
            "truncated base64 text",
            &right,
            DATA.to_vec(),
            truncated_text.into(),
            Expect::Malformed,
        ),
        (
            "trailing byte after DER",
            &right,
            DATA.to_vec(),
            extended_der.into(),
            Expect::Malformed,
        ),
        (
            "empty signature",
            &right,
            DATA.to_vec(),
            vec![],
            Expect::Malformed,
        ),
        (
            "whitespace-only signature",
            &right,
            DATA.to_vec(),
            b" \n".to_vec(),
            Expect::Malformed,
        ),
        (
            "not base64",
            &right,
            DATA.to_vec(),
            b"MEUC!!not*base64".to_vec(),
            Expect::Malformed,
        ),
        (
            "raw DER instead of base64",
            &right,
            DATA.to_vec(),
            der.clone(),
            Expect::Malformed,
        ),
        (
            "huge signature",
            &right,
            DATA.to_vec(),
            vec![b'A'; 100_000],
            Expect::Malformed,
        ),
        (
            "no keys at all",
            &[],
            DATA.to_vec(),
            sig.clone().into(),
            Expect::NoKeys,
        ),
    ];
    for (what, keys, data, signature, expect) in cases {
        let err = verify(keys, "ferry.json", &data, &signature)
            .map(|k| k.path().to_owned())
            .expect_err(what);
        let exit = err.exit_code();
        match (&expect, &err) {
            (Expect::Bad, SigningError::BadSignature { which, tried, .. }) => {
                assert_eq!(which, "ferry.json", "{what}");
                assert_eq!(*tried, keys.len(), "{what}");
                assert_eq!(exit, 1, "{what}");
            }
            (Expect::Malformed, SigningError::MalformedSignature { which, .. }) => {
                assert_eq!(which, "ferry.json", "{what}");
                assert_eq!(exit, 1, "{what}");
            }
            (Expect::NoKeys, SigningError::NoKeys { .. }) => assert_eq!(exit, 2, "{what}"),
            _ => panic!("{what}: expected {expect:?}, got {err:?}"),
        }
        assert!(err.to_string().contains("ferry.json"), "{what}: {err}");
    }
}

#[test]
fn trailing_newline_in_signature_file_is_tolerated() {
    let key = generated_signing_key();
    let keys = [key.verifying_key()];
    let sig = format!("{}\n", key.sign(DATA).unwrap());
    verify(&keys, "ferry.json", DATA, sig.as_bytes()).unwrap();
}

#[test]
fn any_of_several_keys_may_match_and_the_matching_one_is_reported() {
    let dir = TempDir::new().unwrap();
    let (_, first) = openssl_keypair(dir.path(), "first", "P-256");
    let (_, third) = openssl_keypair(dir.path(), "third", "P-256");
    let keys = [
        VerifyingKey::load(&first).unwrap(),
        VerifyingKey::load(&generated().public).unwrap(),
        VerifyingKey::load(&third).unwrap(),
    ];
    let sig = generated_signing_key().sign(DATA).unwrap();
    let matched = verify(&keys, "ferry.json", DATA, sig.as_bytes()).unwrap();
    assert!(std::ptr::eq(matched, &keys[1]));
    assert_eq!(matched.path(), generated().public);

    // None matches: the message counts the keys and names each one.
    let err = verify(&keys, "ferry.json", b"tampered", sig.as_bytes()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("tried 3 trusted key(s)"), "{msg}");
    for k in &keys {
        assert!(msg.contains(k.fingerprint()), "{msg}");
    }
}

// ---------------------------------------------------------------------------------------------
// secrets

#[test]
fn secrets_never_appear_in_errors_or_debug_output() {
    let g = generated();
    let dir = TempDir::new().unwrap();
    let (plain_key, _) = openssl_keypair(dir.path(), "plain", "P-256");

    // Every line of both private keys' PEM bodies is secret material.
    let mut secrets: Vec<String> = vec![PASSWORD.to_owned()];
    for path in [&g.key, &plain_key] {
        for line in fs::read_to_string(path).unwrap().lines() {
            if !line.starts_with("-----") && line.len() >= 16 {
                secrets.push(line.to_owned());
            }
        }
    }
    // Also the raw private scalar as openssl prints it, without separators.
    let text = openssl(&["pkey", "-in", p(&plain_key), "-noout", "-text"]).stdout;
    let text = String::from_utf8_lossy(&text);
    let scalar: String = text
        .split("pub:")
        .next()
        .unwrap()
        .lines()
        .skip(2)
        .flat_map(|l| l.trim().split(':').map(str::to_owned).collect::<Vec<_>>())
        .collect();
    assert!(
        scalar.len() >= 60,
        "could not read the private scalar: {text}"
    );
    secrets.push(scalar);

    let key = generated_signing_key();
    let plain = SigningKey::load(&plain_key, no_password).unwrap();
    let sig = key.sign(DATA).unwrap();
    let keys = [VerifyingKey::load(&g.public).unwrap()];
    let mut printed: Vec<String> = vec![
        format!("{key:?}"),
        format!("{plain:?}"),
        format!("{:?}", Password::from(PASSWORD)),
        format!("{:?}", keys),
    ];
    let errors = vec![
        SigningKey::load(&g.key, || Ok(Password::from(&PASSWORD[..10]))).unwrap_err(),
        VerifyingKey::load(&g.key).unwrap_err(),
        VerifyingKey::load(&plain_key).unwrap_err(),
        verify(&keys, "ferry.json", b"other", sig.as_bytes()).unwrap_err(),
        verify(&keys, "ferry.json", DATA, b"").unwrap_err(),
        verify(&keys, "ferry.json", DATA, PASSWORD.as_bytes()).unwrap_err(),
        keygen(&g.key.with_extension(""), &Password::from(PASSWORD)).unwrap_err(),
    ];
    for e in &errors {
        printed.push(e.to_string());
        printed.push(format!("{e:?}"));
    }
    for out in &printed {
        for s in &secrets {
            assert!(!out.contains(s.as_str()), "secret leaked into: {out}");
        }
        assert!(
            !out.contains(&PASSWORD[..10]),
            "password prefix leaked into: {out}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// trust rules for a bundle's head

#[test]
fn head_signature_trust_rules() {
    let key = generated_signing_key();
    let sig = key.sign(DATA).unwrap();
    let keys = [key.verifying_key()];
    let none: [VerifyingKey; 0] = [];
    // One character inside r changed: still well-formed, no longer valid.
    let mut bad = sig.clone().into_bytes();
    bad[10] = if bad[10] == b'A' { b'B' } else { b'A' };
    let bad = String::from_utf8(bad).unwrap();

    // (what, keys, require, signature, expected outcome or error variant, exit code)
    type Case<'a> = (
        &'a str,
        &'a [VerifyingKey],
        bool,
        Option<&'a str>,
        &'a str,
        i32,
    );
    let cases: Vec<Case> = vec![
        ("key + signature", &keys, false, Some(&sig), "verified", 0),
        (
            "key + signature + require",
            &keys,
            true,
            Some(&sig),
            "verified",
            0,
        ),
        (
            "key + bad signature",
            &keys,
            false,
            Some(&bad),
            "BadSignature",
            1,
        ),
        (
            "key + stripped signature",
            &keys,
            false,
            None,
            "MissingSignature",
            1,
        ),
        (
            "require + unsigned",
            &none,
            true,
            None,
            "MissingSignature",
            1,
        ),
        (
            "require + signed, no key",
            &none,
            true,
            Some(&sig),
            "RequireSignatureWithoutKey",
            2,
        ),
        ("no key, signed", &none, false, Some(&sig), "not_checked", 0),
        ("no key, unsigned", &none, false, None, "not_checked", 0),
    ];
    for (what, keys, require, signature, expected, exit) in cases {
        match check_head_signature(
            keys,
            require,
            "ferry.json",
            DATA,
            signature.map(str::as_bytes),
        ) {
            Ok(outcome) => {
                let json = serde_json::to_value(&outcome).unwrap();
                assert_eq!(json["authenticity"], expected, "{what}: {json}");
                assert_eq!(exit, 0, "{what}");
                match outcome {
                    HeadSignature::Verified { key } => {
                        assert_eq!(
                            json["key"]["fingerprint"],
                            format!("sha256:{}", key.fingerprint())
                        )
                    }
                    HeadSignature::NotChecked { signature_present } => {
                        assert_eq!(signature_present, signature.is_some(), "{what}")
                    }
                }
            }
            Err(e) => {
                let variant = format!("{e:?}");
                assert!(variant.starts_with(expected), "{what}: got {variant}");
                assert_eq!(e.exit_code(), exit, "{what}");
            }
        }
    }
}
