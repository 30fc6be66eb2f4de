//! `ferry.lock`: what every registry input of a spec resolved to (image digests, chart
//! digests) and where it came from, so that `ferry build --locked` insists on the same.

use crate::oci::digest::Digest;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The lock file's name, beside the spec.
pub const LOCK_NAME: &str = "ferry.lock";

/// The version of the lock format this ferry writes and reads.
pub const LOCK_VERSION: u32 = 1;

/// A `ferry.lock`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Lock {
    pub lock_version: u32,
    #[serde(default)]
    pub images: Vec<LockedImage>,
    #[serde(default)]
    pub charts: Vec<LockedChart>,
}

/// One image of the spec, as resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LockedImage {
    /// The reference the bundle records.
    #[serde(rename = "ref")]
    pub reference: String,
    /// Where it was pulled from: `docker://HOST/PATH:TAG`.
    pub source: String,
    /// The digest the source gave (the upstream index, for a filtered image).
    pub digest: Digest,
    /// Platforms kept of an index; empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
}

/// One chart of the spec fetched from a registry or chart repository, as resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LockedChart {
    /// Where it was fetched from (`oci://…` or the repository URL with name and version).
    pub source: String,
    pub name: String,
    pub version: String,
    /// The sha256 of the packaged chart.
    pub digest: Digest,
}

/// Why a lock cannot be used, or why the spec no longer resolves to it.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{path}: {message}; run `ferry build` without --locked to update the lock")]
    Differs { path: PathBuf, message: String },
}

impl Lock {
    /// The lock beside a spec.
    pub fn path_for(spec: &Path) -> PathBuf {
        match spec.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.join(LOCK_NAME),
            _ => PathBuf::from(LOCK_NAME),
        }
    }

    /// Reads a lock file.
    pub fn read(path: &Path) -> Result<Lock, LockError> {
        let read_err = |message: String| LockError::Read {
            path: path.to_path_buf(),
            message,
        };
        let bytes = std::fs::read(path).map_err(|e| {
            read_err(if e.kind() == std::io::ErrorKind::NotFound {
                "no lock file; build once without --locked to write it".into()
            } else {
                e.to_string()
            })
        })?;
        let lock: Lock = serde_json::from_slice(&bytes).map_err(|e| read_err(e.to_string()))?;
        if lock.lock_version != LOCK_VERSION {
            return Err(read_err(format!(
                "lock version {} is not the version {LOCK_VERSION} this ferry reads",
                lock.lock_version
            )));
        }
        Ok(lock)
    }

    /// The lock as written: pretty JSON, entries in spec order, a final newline.
    pub fn to_text(&self) -> String {
        let mut out = serde_json::to_string_pretty(self).expect("a lock serialises");
        out.push('\n');
        out
    }

    /// Whether the lock pins anything (a spec with local inputs only has nothing to lock).
    pub fn is_empty(&self) -> bool {
        self.images.is_empty() && self.charts.is_empty()
    }

    /// Checks one resolved image against this (the old) lock.
    pub fn check_image(&self, path: &Path, new: &LockedImage) -> Result<(), LockError> {
        let differs = |message: String| LockError::Differs {
            path: path.to_path_buf(),
            message,
        };
        let Some(old) = self.images.iter().find(|i| i.reference == new.reference) else {
            return Err(differs(format!(
                "image `{}` is not in the lock",
                new.reference
            )));
        };
        if old.source != new.source || old.platforms != new.platforms {
            return Err(differs(format!(
                "image `{}`: the lock has it from {} {:?}, the spec now from {} {:?}",
                new.reference, old.source, old.platforms, new.source, new.platforms
            )));
        }
        if old.digest != new.digest {
            return Err(differs(format!(
                "image `{}`: the lock pins {} but {} now resolves to {} (the tag moved)",
                new.reference, old.digest, new.source, new.digest
            )));
        }
        Ok(())
    }

    /// Checks one resolved chart against this (the old) lock.
    pub fn check_chart(&self, path: &Path, new: &LockedChart) -> Result<(), LockError> {
        let differs = |message: String| LockError::Differs {
            path: path.to_path_buf(),
            message,
        };
        match self.charts.iter().find(|c| c.source == new.source) {
            None => Err(differs(format!("chart {} is not in the lock", new.source))),
            Some(old) if old != new => Err(differs(format!(
                "chart {}: the lock pins {} {} ({}) but it is now {} {} ({})",
                new.source, old.name, old.version, old.digest, new.name, new.version, new.digest
            ))),
            Some(_) => Ok(()),
        }
    }

    /// Checks that the lock lists nothing the spec no longer has.
    pub fn check_complete(&self, path: &Path, new: &Lock) -> Result<(), LockError> {
        let differs = |message: String| LockError::Differs {
            path: path.to_path_buf(),
            message,
        };
        if let Some(gone) = self
            .images
            .iter()
            .find(|o| !new.images.iter().any(|n| n.reference == o.reference))
        {
            return Err(differs(format!(
                "the lock lists image `{}`, which the spec no longer has",
                gone.reference
            )));
        }
        if let Some(gone) = self
            .charts
            .iter()
            .find(|o| !new.charts.iter().any(|n| n.source == o.source))
        {
            return Err(differs(format!(
                "the lock lists chart {}, which the spec no longer has",
                gone.source
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(tag: &str, hex: char) -> LockedImage {
        LockedImage {
            reference: format!("r.example/a:{tag}"),
            source: format!("docker://r.example/a:{tag}"),
            digest: format!("sha256:{}", hex.to_string().repeat(64))
                .parse()
                .unwrap(),
            platforms: vec![],
        }
    }

    #[test]
    fn a_moved_tag_is_named() {
        let lock = Lock {
            lock_version: LOCK_VERSION,
            images: vec![image("1", 'a')],
            charts: vec![],
        };
        let p = Path::new("ferry.lock");
        lock.check_image(p, &image("1", 'a')).unwrap();
        let err = lock
            .check_image(p, &image("1", 'b'))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("r.example/a:1") && err.contains("moved"),
            "{err}"
        );
        let err = lock
            .check_image(p, &image("2", 'a'))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not in the lock"), "{err}");
        let round: Lock = serde_json::from_str(&lock.to_text()).unwrap();
        assert_eq!(round, lock);
    }
}
