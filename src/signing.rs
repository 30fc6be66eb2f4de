//! Keys and signatures: cosign-compatible key files, ECDSA P-256 / SHA-256 signatures over
//! bytes or streamed files, and fail-closed verification against a set of trusted keys.
//!
//! A signature is the `cosign sign-blob --key` format: the standard base64 text (no line
//! breaks, no trailing newline) of the ASN.1 DER ECDSA P-256 signature over the SHA-256 of the
//! exact bytes signed. `bundle-spec/signing.md` is the normative description.
//!
//! Private keys are read in cosign's encrypted format (`ENCRYPTED SIGSTORE PRIVATE KEY` and the
//! older `ENCRYPTED COSIGN PRIVATE KEY`, scrypt + NaCl secretbox, decrypted by the `sigstore`
//! crate) and as unencrypted PKCS#8 (`PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`) PEM, as openssl
//! writes them. Public keys are PKIX `PUBLIC KEY` PEM. The ECDSA arithmetic is aws-lc's (the
//! same backend `sigstore` uses), which can sign and verify a SHA-256 computed elsewhere, so a
//! multi-gigabyte file is hashed as it streams and never held in memory.
//!
//! Secrets stay out of every `Debug`, `Display` and error text: [`Password`] and
//! [`SigningKey`] print no key material, and no error carries a password or key bytes.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use aws_lc_rs::digest;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair as _, ParsedPublicKey, ECDSA_P256_SHA256_ASN1,
    ECDSA_P256_SHA256_ASN1_SIGNING,
};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use sigstore::crypto::signing_key::{
    ecdsa::{ec::EcdsaKeys, EllipticCurve},
    kdf, KeyPair as _, COSIGN_PRIVATE_KEY_PEM_LABEL, SIGSTORE_PRIVATE_KEY_PEM_LABEL,
};
use zeroize::Zeroizing;

/// The environment variable cosign reads a key password from; ferry reads the same one.
pub const PASSWORD_ENV: &str = "COSIGN_PASSWORD";

/// Key files larger than this are refused before parsing: a PEM key is well under 1 KiB.
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// A DER ECDSA P-256 signature is at most 72 bytes; its base64 text at most 96 characters.
/// Anything much larger is refused before decoding.
const MAX_SIGNATURE_TEXT_BYTES: usize = 1024;

/// Read buffer for hashing streams.
const HASH_BUFFER_BYTES: usize = 1 << 20;

/// PEM label of unencrypted PKCS#8 private keys (`openssl genpkey`).
const PKCS8_LABEL: &str = "PRIVATE KEY";
/// PEM label of unencrypted SEC1 EC private keys (`openssl ecparam -genkey`, `openssl ec`).
const SEC1_LABEL: &str = "EC PRIVATE KEY";
/// PEM label of PKIX public keys.
const PUBLIC_KEY_LABEL: &str = "PUBLIC KEY";

/// Everything that can go wrong with keys and signatures.
///
/// No variant carries a password or private key bytes; messages name the file and the next
/// step instead. [`SigningError::exit_code`] maps each variant to ferry's exit codes.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    /// The password does not decrypt the private key (or the encrypted key was altered).
    #[error(
        "wrong password for private key {key_path}: it does not decrypt the key (or the key \
         file was altered); set {PASSWORD_ENV} to the password the key was created with"
    )]
    WrongPassword {
        /// The encrypted key file.
        key_path: PathBuf,
    },

    /// No key in the trusted set produced this signature.
    #[error(
        "signature of {which} does not match: tried {tried} trusted key(s) ({fingerprints}); \
         the data was changed after signing, or it was signed with a different key"
    )]
    BadSignature {
        /// What the signature covers, e.g. `ferry.json` or `bundle.tar.gz`.
        which: String,
        /// How many keys were tried.
        tried: usize,
        /// `path (sha256:fingerprint)` of each key tried, comma-separated.
        fingerprints: String,
    },

    /// The signature text is not a well-formed base64 DER ECDSA signature.
    #[error("malformed signature of {which}: {reason}; expected base64 of a DER ECDSA P-256 signature (`cosign sign-blob` format)")]
    MalformedSignature {
        /// What the signature covers.
        which: String,
        /// What is wrong with it: empty, not base64, not DER, too long.
        reason: String,
    },

    /// The key file holds something ferry does not sign or verify with.
    #[error("unsupported key {path}: found `{found_header}`; {hint}")]
    UnsupportedKey {
        /// The key file.
        path: PathBuf,
        /// The PEM label found (or a short description of the content).
        found_header: String,
        /// What to do instead.
        hint: String,
    },

    /// The key file has the right label but its content does not parse.
    #[error("malformed key {path}: {reason}")]
    MalformedKey {
        /// The key file.
        path: PathBuf,
        /// What failed (never the key bytes).
        reason: String,
    },

    /// Verification was asked for with no trusted key at all.
    #[error("no public key given to verify {which}; pass one or more `--key PUB.pub`")]
    NoKeys {
        /// What was to be verified.
        which: String,
    },

    /// A signature is required (a key was given, or `--require-signature`) but there is none.
    #[error(
        "{which} is not signed, but a signature is required ({why}); the signature entry is \
         missing or was stripped: obtain a signed bundle from the vendor"
    )]
    MissingSignature {
        /// What should have been signed.
        which: String,
        /// Why a signature is required: `--key given` or `--require-signature`.
        why: &'static str,
    },

    /// `--require-signature` without any key: the signature could not be checked.
    #[error(
        "{which} is signed, but --require-signature needs at least one `--key PUB.pub` to check \
         the signature against"
    )]
    RequireSignatureWithoutKey {
        /// What was to be verified.
        which: String,
    },

    /// An encrypted key needs a password and none can be obtained.
    #[error(
        "no password for {purpose}: set {PASSWORD_ENV} (it may be empty) or run on a terminal \
         to be prompted"
    )]
    NoPassword {
        /// What the password was needed for, e.g. `private key k.key`.
        purpose: String,
    },

    /// The two passwords typed at the keygen prompt differ.
    #[error("the two passwords typed do not match; run keygen again")]
    PasswordMismatch,

    /// `keygen` refuses to overwrite an existing key file.
    #[error("{path} already exists; refusing to overwrite a key (choose another --output-key-prefix or move the file away)")]
    KeyExists {
        /// The existing file.
        path: PathBuf,
    },

    /// Reading or writing a file failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done: `reading`, `writing`, `hashing`, …
        action: &'static str,
        /// The file (or a description such as `<stream>`).
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },

    /// The cryptographic backend failed where it should not (key generation, signing).
    #[error("{operation} failed inside the crypto library; this is a bug or a broken environment")]
    Crypto {
        /// What was being done.
        operation: &'static str,
    },
}

impl SigningError {
    /// ferry's exit code for this error: 1 for a verification finding (the signature does not
    /// check out), 2 for a usage or environment problem (wrong password, unusable key, I/O).
    pub fn exit_code(&self) -> i32 {
        match self {
            SigningError::BadSignature { .. }
            | SigningError::MalformedSignature { .. }
            | SigningError::MissingSignature { .. } => 1,
            _ => 2,
        }
    }
}

type Result<T, E = SigningError> = std::result::Result<T, E>;

/// A key password. Its bytes are wiped when dropped and never printed.
#[derive(Clone)]
pub struct Password(Zeroizing<Vec<u8>>);

impl Password {
    /// Wraps a password.
    pub fn new(password: impl Into<Vec<u8>>) -> Self {
        Password(Zeroizing::new(password.into()))
    }

    /// The password bytes, for handing to the key decryption.
    fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl From<&str> for Password {
    fn from(s: &str) -> Self {
        Password::new(s.as_bytes())
    }
}

impl From<String> for Password {
    fn from(s: String) -> Self {
        Password::new(s.into_bytes())
    }
}

/// Where a password comes from.
#[derive(Debug, Clone)]
pub enum PasswordSource {
    /// The `COSIGN_PASSWORD` environment variable (an empty value is an empty password).
    Env,
    /// A value the caller already has.
    Value(Password),
    /// Ask on the controlling terminal: twice for keygen, once for signing.
    Prompt,
}

impl PasswordSource {
    /// `Env` when `COSIGN_PASSWORD` is set, otherwise `Prompt`: what the CLI uses.
    pub fn from_environment() -> Self {
        if std::env::var_os(PASSWORD_ENV).is_some() {
            PasswordSource::Env
        } else {
            PasswordSource::Prompt
        }
    }

    /// The password to encrypt a new key with; a prompt asks twice and the answers must match.
    pub fn password_for_keygen(self, key_path: &Path) -> Result<Password> {
        let purpose = format!("new private key {}", key_path.display());
        match self {
            PasswordSource::Prompt => {
                let first = prompt(
                    &format!("Enter password for private key {}: ", key_path.display()),
                    &purpose,
                )?;
                let second = prompt("Enter password for private key again: ", &purpose)?;
                if first.bytes() != second.bytes() {
                    return Err(SigningError::PasswordMismatch);
                }
                Ok(first)
            }
            other => other.resolve_non_interactive(&purpose),
        }
    }

    /// The password to decrypt an existing key with; a prompt asks once.
    pub fn password_for_signing(self, key_path: &Path) -> Result<Password> {
        let purpose = format!("private key {}", key_path.display());
        match self {
            PasswordSource::Prompt => prompt(
                &format!("Enter password for private key {}: ", key_path.display()),
                &purpose,
            ),
            other => other.resolve_non_interactive(&purpose),
        }
    }

    fn resolve_non_interactive(self, purpose: &str) -> Result<Password> {
        match self {
            PasswordSource::Value(p) => Ok(p),
            PasswordSource::Env => match std::env::var_os(PASSWORD_ENV) {
                Some(v) => Ok(Password::new(v.into_encoded_bytes())),
                None => Err(SigningError::NoPassword {
                    purpose: purpose.to_owned(),
                }),
            },
            PasswordSource::Prompt => unreachable!("prompting is handled by the caller"),
        }
    }
}

/// Reads a password from the controlling terminal without echo. Fails with `NoPassword`
/// when there is no terminal (CI, cron, a pipe with no tty).
fn prompt(text: &str, purpose: &str) -> Result<Password> {
    match rpassword::prompt_password(text) {
        Ok(p) => Ok(Password::from(p)),
        Err(_) => Err(SigningError::NoPassword {
            purpose: purpose.to_owned(),
        }),
    }
}

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

fn io_error(action: &'static str, path: &Path, source: io::Error) -> SigningError {
    SigningError::Io {
        action,
        path: path.to_owned(),
        source,
    }
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

/// The SHA-256 of some content, computed here or by a caller that hashed while writing.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Sha256Digest([u8; 32]);

impl Sha256Digest {
    /// Wraps a digest the caller computed (e.g. while writing the bundle).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Sha256Digest(bytes)
    }

    /// Hashes bytes in memory.
    pub fn of_bytes(data: &[u8]) -> Self {
        Sha256Digest(Sha256::digest(data).into())
    }

    /// Hashes a stream to its end in 1 MiB reads; returns the digest and the byte count.
    pub fn of_reader(mut reader: impl Read) -> io::Result<(Self, u64)> {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; HASH_BUFFER_BYTES];
        let mut total = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            hasher.update(&buf[..n]);
            total += n as u64;
        }
        Ok((Sha256Digest(hasher.finalize().into()), total))
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    fn to_aws(self) -> digest::Digest {
        digest::Digest::import_less_safe(&self.0, &digest::SHA256)
            .expect("a SHA-256 digest is 32 bytes")
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.to_hex())
    }
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
    pair: EcdsaKeyPair,
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

    /// Signs `data`: base64 of the DER ECDSA P-256 signature over SHA-256(`data`).
    pub fn sign(&self, data: &[u8]) -> Result<String> {
        let sig = self
            .pair
            .sign(&SystemRandom::new(), data)
            .map_err(|_| SigningError::Crypto {
                operation: "signing",
            })?;
        Ok(BASE64.encode(sig.as_ref()))
    }

    /// Signs content whose SHA-256 the caller already has; the same signature [`Self::sign`]
    /// would give for that content.
    pub fn sign_digest(&self, digest: &Sha256Digest) -> Result<String> {
        let sig = self
            .pair
            .sign_digest(&digest.to_aws())
            .map_err(|_| SigningError::Crypto {
                operation: "signing",
            })?;
        Ok(BASE64.encode(sig.as_ref()))
    }

    /// Signs everything `reader` yields, hashing it as it streams (constant memory).
    pub fn sign_reader(&self, reader: impl Read) -> Result<String> {
        let (digest, _) = Sha256Digest::of_reader(reader)
            .map_err(|e| io_error("hashing", Path::new("<stream>"), e))?;
        self.sign_digest(&digest)
    }

    /// Signs a whole file (the detached `BUNDLE.sig`), streaming it.
    pub fn sign_file(&self, path: &Path) -> Result<String> {
        let f = File::open(path).map_err(|e| io_error("opening", path, e))?;
        let (digest, _) = Sha256Digest::of_reader(f).map_err(|e| io_error("hashing", path, e))?;
        self.sign_digest(&digest)
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
    key: ParsedPublicKey,
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

/// Verifies `signature_b64` over `data` against every key in `keys`; returns the first key that
/// matches. Fails closed: no keys, an empty or malformed signature, or no match is an error.
/// `which` names the signed thing in messages (`ferry.json`, the bundle file name).
pub fn verify<'k>(
    keys: &'k [VerifyingKey],
    which: &str,
    data: &[u8],
    signature_b64: &[u8],
) -> Result<&'k VerifyingKey> {
    verify_digest(keys, which, &Sha256Digest::of_bytes(data), signature_b64)
}

/// [`verify`] for content whose SHA-256 the caller already computed.
pub fn verify_digest<'k>(
    keys: &'k [VerifyingKey],
    which: &str,
    digest: &Sha256Digest,
    signature_b64: &[u8],
) -> Result<&'k VerifyingKey> {
    if keys.is_empty() {
        return Err(SigningError::NoKeys {
            which: which.to_owned(),
        });
    }
    let der = decode_signature(which, signature_b64)?;
    let digest = digest.to_aws();
    keys.iter()
        .find(|k| k.key.verify_digest_sig(&digest, &der).is_ok())
        .ok_or_else(|| SigningError::BadSignature {
            which: which.to_owned(),
            tried: keys.len(),
            fingerprints: keys
                .iter()
                .map(|k| format!("{} (sha256:{})", k.path.display(), k.fingerprint))
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// [`verify`] for everything `reader` yields, hashed as it streams.
pub fn verify_reader<'k>(
    keys: &'k [VerifyingKey],
    which: &str,
    reader: impl Read,
    signature_b64: &[u8],
) -> Result<&'k VerifyingKey> {
    // Check the cheap things first so a bad signature fails before a long read.
    if keys.is_empty() {
        return Err(SigningError::NoKeys {
            which: which.to_owned(),
        });
    }
    decode_signature(which, signature_b64)?;
    let (digest, _) =
        Sha256Digest::of_reader(reader).map_err(|e| io_error("hashing", Path::new(which), e))?;
    verify_digest(keys, which, &digest, signature_b64)
}

/// [`verify`] for a whole file (the detached `BUNDLE.sig` case), streamed.
pub fn verify_file<'k>(
    keys: &'k [VerifyingKey],
    path: &Path,
    signature_b64: &[u8],
) -> Result<&'k VerifyingKey> {
    let f = File::open(path).map_err(|e| io_error("opening", path, e))?;
    verify_reader(keys, &path.display().to_string(), f, signature_b64)
}

/// What the signature check of a bundle's head concluded (when it did not fail).
#[derive(Debug, serde::Serialize)]
#[serde(tag = "authenticity", rename_all = "snake_case")]
pub enum HeadSignature<'k> {
    /// The signature verified with `key`.
    Verified {
        /// The trusted key that matched.
        key: &'k VerifyingKey,
    },
    /// No key was given and no signature was required: integrity only. Say so in plain words.
    NotChecked {
        /// Whether the bundle carries a signature that was left unchecked.
        signature_present: bool,
    },
}

/// The trust rules for a bundle's manifest signature (`bundle-spec/signing.md`):
///
/// | keys | `require` | signature | result |
/// |---|---|---|---|
/// | ≥ 1 | any | present | [`verify`]: `Verified` or `BadSignature`/`MalformedSignature` (exit 1) |
/// | ≥ 1 | any | absent | `MissingSignature` (exit 1) |
/// | none | yes | absent | `MissingSignature` (exit 1) |
/// | none | yes | present | `RequireSignatureWithoutKey` (exit 2) |
/// | none | no | any | `NotChecked` |
pub fn check_head_signature<'k>(
    keys: &'k [VerifyingKey],
    require_signature: bool,
    which: &str,
    data: &[u8],
    signature_b64: Option<&[u8]>,
) -> Result<HeadSignature<'k>> {
    match (keys.is_empty(), signature_b64) {
        (false, Some(sig)) => {
            verify(keys, which, data, sig).map(|key| HeadSignature::Verified { key })
        }
        (false, None) => Err(SigningError::MissingSignature {
            which: which.to_owned(),
            why: "--key given",
        }),
        (true, None) if require_signature => Err(SigningError::MissingSignature {
            which: which.to_owned(),
            why: "--require-signature",
        }),
        (true, Some(_)) if require_signature => Err(SigningError::RequireSignatureWithoutKey {
            which: which.to_owned(),
        }),
        (true, sig) => Ok(HeadSignature::NotChecked {
            signature_present: sig.is_some(),
        }),
    }
}

/// Decodes signature text to DER and checks it is one DER `SEQUENCE { INTEGER r, INTEGER s }`
/// of P-256 size. Surrounding ASCII whitespace (a trailing newline) is ignored.
fn decode_signature(which: &str, text: &[u8]) -> Result<Vec<u8>> {
    let malformed = |reason: String| SigningError::MalformedSignature {
        which: which.to_owned(),
        reason,
    };
    let text = text.trim_ascii();
    if text.is_empty() {
        return Err(malformed("the signature is empty".to_owned()));
    }
    if text.len() > MAX_SIGNATURE_TEXT_BYTES {
        return Err(malformed(format!(
            "{} bytes is far longer than a P-256 signature (about 96 characters)",
            text.len()
        )));
    }
    let der = BASE64
        .decode(text)
        .map_err(|e| malformed(format!("not valid base64 ({e})")))?;
    check_der_ecdsa_signature(&der)
        .map_err(|why| malformed(format!("not a DER ECDSA signature: {why}")))?;
    Ok(der)
}

/// Strict structural check of a DER ECDSA-Sig-Value for P-256: short-form lengths only,
/// two positive minimally-encoded INTEGERs of at most 33 bytes, nothing trailing.
fn check_der_ecdsa_signature(der: &[u8]) -> std::result::Result<(), &'static str> {
    let body = match der {
        [0x30, len, body @ ..] if usize::from(*len) == body.len() && *len < 0x80 => body,
        [0x30, ..] => return Err("truncated, or its length does not match"),
        _ => return Err("does not start with a DER SEQUENCE"),
    };
    let rest = der_integer(body)?;
    let rest = der_integer(rest)?;
    if !rest.is_empty() {
        return Err("trailing bytes after the two integers");
    }
    Ok(())
}

fn der_integer(input: &[u8]) -> std::result::Result<&[u8], &'static str> {
    let (len, rest) = match input {
        [0x02, len, rest @ ..] if *len < 0x80 => (usize::from(*len), rest),
        [0x02, ..] => return Err("bad INTEGER length"),
        _ => return Err("expected two INTEGERs (r, s)"),
    };
    if len == 0 || len > 33 || rest.len() < len {
        return Err("truncated or oversized INTEGER");
    }
    let int = &rest[..len];
    if int[0] & 0x80 != 0 {
        return Err("negative INTEGER");
    }
    if len > 1 && int[0] == 0 && int[1] & 0x80 == 0 {
        return Err("INTEGER not minimally encoded");
    }
    Ok(&rest[len..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_check_table() {
        // (input, ok)
        let good = {
            let mut v = vec![0x30, 0x44, 0x02, 0x20];
            v.extend([0x11; 32]);
            v.extend([0x02, 0x20]);
            v.extend([0x22; 32]);
            v
        };
        let cases: Vec<(Vec<u8>, bool)> = vec![
            (good.clone(), true),
            (good[..good.len() - 1].to_vec(), false),
            (vec![], false),
            (vec![0x31, 0x00], false),
            ([good.clone(), vec![0]].concat(), false),
            (vec![0x30, 0x06, 0x02, 0x01, 0x80, 0x02, 0x01, 0x01], false),
            (
                vec![0x30, 0x07, 0x02, 0x02, 0x00, 0x01, 0x02, 0x01, 0x01],
                false,
            ),
            (
                vec![0x30, 0x07, 0x02, 0x02, 0x00, 0x80, 0x02, 0x01, 0x01],
                true,
            ),
        ];
        for (input, ok) in cases {
            assert_eq!(
                check_der_ecdsa_signature(&input).is_ok(),
                ok,
                "{input:02x?}"
            );
        }
    }

    #[test]
    fn suffix_keeps_dots() {
        assert_eq!(
            with_suffix(Path::new("out/release.v2"), "key"),
            PathBuf::from("out/release.v2.key")
        );
    }

    #[test]
    fn password_debug_is_redacted() {
        let p = Password::from("hunter2-secret");
        assert!(!format!("{p:?}").contains("hunter2"));
        let s = PasswordSource::Value(p);
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
