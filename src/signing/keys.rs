//! Key files: `keygen` (a cosign-format encrypted P-256 key pair), private keys read from
//! cosign's encrypted PEM or openssl's PKCS#8 and SEC1 PEM, and PKIX public keys.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair as _, ParsedPublicKey, ECDSA_P256_SHA256_ASN1,
    ECDSA_P256_SHA256_ASN1_SIGNING,
};
use sha2::{Digest as _, Sha256};
use sigstore::crypto::signing_key::{
    ecdsa::{ec::EcdsaKeys, EllipticCurve},
    kdf, KeyPair as _, COSIGN_PRIVATE_KEY_PEM_LABEL, SIGSTORE_PRIVATE_KEY_PEM_LABEL,
};
use zeroize::Zeroizing;

use super::{io_error, Password, Result, SigningError};

/// Key files larger than this are refused before parsing: a PEM key is well under 1 KiB.
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// PEM label of unencrypted PKCS#8 private keys (`openssl genpkey`).
const PKCS8_LABEL: &str = "PRIVATE KEY";
/// PEM label of unencrypted SEC1 EC private keys (`openssl ecparam -genkey`, `openssl ec`).
const SEC1_LABEL: &str = "EC PRIVATE KEY";
/// PEM label of PKIX public keys.
const PUBLIC_KEY_LABEL: &str = "PUBLIC KEY";

/// Writes a new ECDSA P-256 key pair: `PREFIX.key`, the private key encrypted with `password`
/// in cosign's format (`ENCRYPTED SIGSTORE PRIVATE KEY`, file mode 0600), and `PREFIX.pub`,
/// the PKIX public key PEM. Refuses to overwrite either file. Returns `(key, pub)` paths.
pub fn keygen(prefix: &Path, password: &Password) -> Result<(PathBuf, PathBuf)> {
    let (key_path, pub_path) = keygen_paths(prefix)?;
    let keys = EcdsaKeys::new(EllipticCurve::P256).map_err(|_| SigningError::Crypto {
        operation: "generating a P-256 key",
    })?;
    let private_pem = keys
        .private_key_to_encrypted_pem(password.bytes())
        .map_err(|_| SigningError::Crypto {
            operation: "encrypting the private key",
        })?;
    let public_der = keys.public_key_to_der().map_err(|_| SigningError::Crypto {
        operation: "encoding the public key",
    })?;
    // The PEM library writes CRLF; cosign and openssl write LF. Re-wrap both files with LF.
    let private_pem = {
        let block = pem::parse(private_pem.as_bytes()).map_err(|_| SigningError::Crypto {
            operation: "encoding the private key",
        })?;
        Zeroizing::new(pem_lf(&block))
    };
    let public_pem = pem_lf(&pem::Pem::new(PUBLIC_KEY_LABEL, public_der));

    write_new(&key_path, private_pem.as_bytes(), 0o600)?;
    if let Err(e) = write_new(&pub_path, public_pem.as_bytes(), 0o644) {
        // Leave no half pair behind.
        let _ = fs::remove_file(&key_path);
        return Err(e);
    }
    Ok((key_path, pub_path))
}

/// The `(PREFIX.key, PREFIX.pub)` paths keygen would write, or `KeyExists` if either exists.
/// The CLI calls this before prompting, so nobody types a password twice for nothing.
pub fn keygen_paths(prefix: &Path) -> Result<(PathBuf, PathBuf)> {
    let key_path = with_suffix(prefix, "key");
    let pub_path = with_suffix(prefix, "pub");
    for p in [&key_path, &pub_path] {
        // symlink_metadata: a dangling symlink also counts as existing.
        if p.symlink_metadata().is_ok() {
            return Err(SigningError::KeyExists { path: p.clone() });
        }
    }
    Ok((key_path, pub_path))
}

/// PEM text with LF line endings and 64-column lines, as cosign and openssl write it.
fn pem_lf(block: &pem::Pem) -> String {
    pem::encode_config(
        block,
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// `PREFIX` + `.` + `ext`, keeping any dots already in the prefix (`release.v2` → `release.v2.key`).
fn with_suffix(prefix: &Path, ext: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

/// Creates `path` (failing if it exists) with `mode` and writes `bytes` to it.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = opts.open(path).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            SigningError::KeyExists {
                path: path.to_owned(),
            }
        } else {
            io_error("creating", path, e)
        }
    })?;
    #[cfg(unix)]
    {
        // The umask may have cleared bits of `mode`; set it exactly.
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| io_error("setting the mode of", path, e))?;
    }
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| io_error("writing", path, e))
}

/// Reads a small key file, refusing anything that cannot be a PEM key.
fn read_key_file(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    let f = File::open(path).map_err(|e| io_error("opening key", path, e))?;
    let mut buf = Zeroizing::new(Vec::new());
    f.take(MAX_KEY_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| io_error("reading key", path, e))?;
    if buf.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(SigningError::MalformedKey {
            path: path.to_owned(),
            reason: format!("larger than {MAX_KEY_FILE_BYTES} bytes; a PEM key is under 1 KiB"),
        });
    }
    Ok(buf)
}

/// Parses the first PEM block of a key file. The error never quotes the content.
fn parse_pem(path: &Path, bytes: &[u8]) -> Result<pem::Pem> {
    pem::parse(bytes).map_err(|_| SigningError::MalformedKey {
        path: path.to_owned(),
        reason: "not a PEM file (expected a `-----BEGIN … KEY-----` block)".to_owned(),
    })
}

/// Which private-key format a [`SigningKey`] was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    /// `ENCRYPTED SIGSTORE PRIVATE KEY` (cosign ≥ 2.x, `ferry keygen`).
    EncryptedSigstore,
    /// `ENCRYPTED COSIGN PRIVATE KEY` (older cosign).
    EncryptedCosign,
    /// Unencrypted PKCS#8 `PRIVATE KEY` (`openssl genpkey`).
    Pkcs8,
    /// Unencrypted SEC1 `EC PRIVATE KEY` (`openssl ecparam -genkey`).
    Sec1,
}

/// An ECDSA P-256 private key loaded for signing. Prints only its path and fingerprint.
pub struct SigningKey {
    path: PathBuf,
    format: KeyFormat,
    pub(super) pair: EcdsaKeyPair,
    spki_der: Vec<u8>,
    fingerprint: String,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Loads a private key. `password` is called only when the key is encrypted, so an
    /// unencrypted openssl key never prompts.
    pub fn load(
        path: &Path,
        password: impl FnOnce() -> Result<Password, SigningError>,
    ) -> Result<Self> {
        let bytes = read_key_file(path)?;
        let block = parse_pem(path, &bytes)?;
        let unsupported = |hint: &str| SigningError::UnsupportedKey {
            path: path.to_owned(),
            found_header: block.tag().to_owned(),
            hint: hint.to_owned(),
        };
        let (format, pair) =
            match block.tag() {
                tag @ (SIGSTORE_PRIVATE_KEY_PEM_LABEL | COSIGN_PRIVATE_KEY_PEM_LABEL) => {
                    check_envelope(path, block.contents())?;
                    let password = password()?;
                    let der =
                        Zeroizing::new(kdf::decrypt(block.contents(), password.bytes()).map_err(
                            |_| SigningError::WrongPassword {
                                key_path: path.to_owned(),
                            },
                        )?);
                    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &der)
                        .map_err(|_| {
                            unsupported(
                                "the key decrypts but is not an ECDSA P-256 key; ferry signs with \
                             P-256 only (`cosign generate-key-pair` or `ferry keygen`)",
                            )
                        })?;
                    let format = if tag == SIGSTORE_PRIVATE_KEY_PEM_LABEL {
                        KeyFormat::EncryptedSigstore
                    } else {
                        KeyFormat::EncryptedCosign
                    };
                    (format, pair)
                }
                PKCS8_LABEL => {
                    let pair =
                        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, block.contents())
                            .map_err(|_| {
                                unsupported(
                                    "not an ECDSA P-256 key; make one with `openssl genpkey \
                                 -algorithm EC -pkeyopt ec_paramgen_curve:P-256` or `ferry keygen`",
                                )
                            })?;
                    (KeyFormat::Pkcs8, pair)
                }
                SEC1_LABEL => {
                    let pair = EcdsaKeyPair::from_private_key_der(
                        &ECDSA_P256_SHA256_ASN1_SIGNING,
                        block.contents(),
                    )
                    .map_err(|_| {
                        unsupported(
                            "not a P-256 (prime256v1) EC key; ferry signs with ECDSA P-256 only",
                        )
                    })?;
                    (KeyFormat::Sec1, pair)
                }
                "ENCRYPTED PRIVATE KEY" => return Err(unsupported(
                    "PKCS#8 keys encrypted by openssl are not read; decrypt with `openssl pkey \
                     -in KEY -out plain.key`, or convert with `cosign import-key-pair --key KEY`",
                )),
                PUBLIC_KEY_LABEL => {
                    return Err(unsupported(
                        "this is a public key; signing needs the private key (the `.key` file)",
                    ))
                }
                _ => {
                    return Err(unsupported(
                        "expected a cosign private key (`ENCRYPTED SIGSTORE PRIVATE KEY`, \
                     `ENCRYPTED COSIGN PRIVATE KEY`) or an unencrypted P-256 `PRIVATE KEY` / \
                     `EC PRIVATE KEY`",
                    ))
                }
            };
        let spki_der = pair
            .public_key()
            .as_der()
            .map_err(|_| SigningError::Crypto {
                operation: "encoding the public key",
            })?
            .as_ref()
            .to_vec();
        let fingerprint = fingerprint(&spki_der);
        Ok(SigningKey {
            path: path.to_owned(),
            format,
            pair,
            spki_der,
            fingerprint,
        })
    }

    /// The public key as PKIX `PUBLIC KEY` PEM, as `PREFIX.pub` holds it.
    pub fn public_key_pem(&self) -> String {
        pem_lf(&pem::Pem::new(PUBLIC_KEY_LABEL, self.spki_der.clone()))
    }

    /// The matching public key, e.g. to check a signature right after making it.
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey::from_spki(self.path.clone(), &self.spki_der)
            .expect("aws-lc produced the key, so it parses")
    }

    /// The key file this was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Which format the key file was in.
    pub fn format(&self) -> KeyFormat {
        self.format
    }

    /// Hex SHA-256 of the DER public key (SubjectPublicKeyInfo).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

/// Checks the JSON envelope of a cosign encrypted key before decrypting, so that a damaged or
/// unknown envelope is reported as such and any later decryption failure means the password.
fn check_envelope(path: &Path, contents: &[u8]) -> Result<()> {
    let malformed = |reason: &str| SigningError::MalformedKey {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let v: serde_json::Value = serde_json::from_slice(contents)
        .map_err(|_| malformed("the encrypted key is not the cosign JSON envelope"))?;
    let kdf = v.pointer("/kdf/name").and_then(|n| n.as_str());
    let cipher = v.pointer("/cipher/name").and_then(|n| n.as_str());
    match (kdf, cipher) {
        (Some("scrypt"), Some("nacl/secretbox")) => {}
        (Some(k), Some(c)) => {
            return Err(SigningError::UnsupportedKey {
                path: path.to_owned(),
                found_header: format!("kdf {k}, cipher {c}"),
                hint: "cosign keys use kdf scrypt and cipher nacl/secretbox".to_owned(),
            })
        }
        _ => {
            return Err(malformed(
                "the encrypted key envelope lacks kdf or cipher names",
            ))
        }
    }
    // The scrypt cost cosign uses; anything else is refused before deriving a key (a huge N
    // in a hostile key file would otherwise cost gigabytes of memory).
    let param = |name: &str| {
        v.pointer(&format!("/kdf/params/{name}"))
            .and_then(|n| n.as_u64())
    };
    let cost_ok =
        matches!(param("N"), Some(32768 | 65536)) && param("r") == Some(8) && param("p") == Some(1);
    if !cost_ok {
        return Err(SigningError::UnsupportedKey {
            path: path.to_owned(),
            found_header: "scrypt parameters other than cosign's (N 32768 or 65536, r 8, p 1)"
                .to_owned(),
            hint: "re-encrypt the key with `cosign import-key-pair` or make a new one with \
                   `ferry keygen`"
                .to_owned(),
        });
    }
    if v.get("ciphertext").and_then(|c| c.as_str()).is_none() {
        return Err(malformed("the encrypted key envelope has no ciphertext"));
    }
    Ok(())
}

fn fingerprint(spki_der: &[u8]) -> String {
    hex::encode(Sha256::digest(spki_der))
}

/// A trusted ECDSA P-256 public key.
pub struct VerifyingKey {
    path: PathBuf,
    fingerprint: String,
    pub(super) key: ParsedPublicKey,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("path", &self.path)
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

/// `{"path": "...", "fingerprint": "sha256:..."}`, for `--json` reports of which key matched.
impl serde::Serialize for VerifyingKey {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let mut st = serializer.serialize_struct("VerifyingKey", 2)?;
        st.serialize_field("path", &self.path)?;
        st.serialize_field("fingerprint", &format!("sha256:{}", self.fingerprint))?;
        st.end()
    }
}

impl VerifyingKey {
    /// Loads a PKIX `PUBLIC KEY` PEM file (`cosign.pub`, `ferry keygen`'s `.pub`,
    /// `openssl pkey -pubout`). Only ECDSA P-256 keys are accepted.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = read_key_file(path)?;
        let block = parse_pem(path, &bytes)?;
        match block.tag() {
            PUBLIC_KEY_LABEL => Self::from_spki(path.to_owned(), block.contents()),
            tag => Err(SigningError::UnsupportedKey {
                path: path.to_owned(),
                found_header: tag.to_owned(),
                hint: if tag.contains("PRIVATE KEY") {
                    "this is a private key; verification takes the public key (the `.pub` \
                     file; `openssl pkey -in KEY -pubout` derives it)"
                        .to_owned()
                } else {
                    "expected a PKIX `PUBLIC KEY` PEM file (e.g. cosign.pub)".to_owned()
                },
            }),
        }
    }

    /// A key from DER SubjectPublicKeyInfo; `path` names it in messages.
    fn from_spki(path: PathBuf, spki_der: &[u8]) -> Result<Self> {
        let key = ParsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, spki_der).map_err(|_| {
            SigningError::UnsupportedKey {
                path: path.clone(),
                found_header: PUBLIC_KEY_LABEL.to_owned(),
                hint: "not an ECDSA P-256 public key; ferry signatures are ECDSA P-256 / SHA-256"
                    .to_owned(),
            }
        })?;
        Ok(VerifyingKey {
            fingerprint: fingerprint(spki_der),
            path,
            key,
        })
    }

    /// The file the key was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Hex SHA-256 of the DER public key (SubjectPublicKeyInfo); equals
    /// `openssl pkey -pubin -in PUB -outform DER | sha256sum`.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffix_keeps_dots() {
        assert_eq!(
            with_suffix(Path::new("out/release.v2"), "key"),
            PathBuf::from("out/release.v2.key")
        );
    }
}
