//! Key passwords: where they come from (`COSIGN_PASSWORD`, a value, a terminal prompt) and
//! how they are held (zeroised on drop, never printed).

use std::fmt;
use std::path::Path;

use zeroize::Zeroizing;

use super::{Result, SigningError};

/// The environment variable cosign reads a key password from; ferry reads the same one.
pub const PASSWORD_ENV: &str = "COSIGN_PASSWORD";

/// A key password. Its bytes are wiped when dropped and never printed.
#[derive(Clone)]
pub struct Password(Zeroizing<Vec<u8>>);

impl Password {
    /// Wraps a password.
    pub fn new(password: impl Into<Vec<u8>>) -> Self {
        Password(Zeroizing::new(password.into()))
    }

    /// The password bytes, for handing to the key decryption.
    pub(super) fn bytes(&self) -> &[u8] {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_debug_is_redacted() {
        let p = Password::from("hunter2-secret");
        assert!(!format!("{p:?}").contains("hunter2"));
        let s = PasswordSource::Value(p);
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
