//! `ferry inspect`: the manifest of a bundle, read from its first entry only.

use crate::bundle::archive::{Limits, MemberReader};
use crate::bundle::manifest::{Manifest, MANIFEST_NAME, MAX_MANIFEST_BYTES};
use crate::bundle::verify::{find_root, VerifyError};
use std::fs::File;
use std::io::Read;
use std::path::Path;

/// Reads the manifest of a bundle file (first entry only) or of an extracted folder.
pub fn read_manifest(input: &Path) -> Result<(Manifest, Vec<u8>), VerifyError> {
    let bytes = if input.is_dir() {
        let root = find_root(input)?;
        let p = root.join(MANIFEST_NAME);
        std::fs::read(&p).map_err(|source| VerifyError::Open { path: p, source })?
    } else {
        let f = File::open(input).map_err(|source| VerifyError::Open {
            path: input.to_path_buf(),
            source,
        })?;
        let mut ar = tar::Archive::new(MemberReader::new(f, Limits::default()));
        let not_bundle = |reason: String| VerifyError::NotABundle {
            path: input.to_path_buf(),
            reason,
        };
        let mut entries = ar.entries().map_err(|e| not_bundle(e.to_string()))?;
        let first = entries
            .next()
            .ok_or_else(|| not_bundle("it holds no entries".into()))?
            .map_err(|e| not_bundle(e.to_string()))?;
        let path = first.path_bytes().into_owned();
        let path = String::from_utf8_lossy(&path).into_owned();
        if !path.ends_with(&format!("/{MANIFEST_NAME}")) || path.matches('/').count() != 1 {
            return Err(not_bundle(format!(
                "the first entry is `{path}`, not `NAME-VERSION/{MANIFEST_NAME}`"
            )));
        }
        if first.size() > MAX_MANIFEST_BYTES {
            return Err(not_bundle(format!(
                "ferry.json is {} bytes, over the limit",
                first.size()
            )));
        }
        let mut out = Vec::new();
        first
            .take(MAX_MANIFEST_BYTES)
            .read_to_end(&mut out)
            .map_err(|e| not_bundle(e.to_string()))?;
        out
    };
    Ok((Manifest::parse(&bytes)?, bytes))
}

/// The inspect summary.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub created: &'a str,
    pub ferry_version: &'a str,
    pub images: &'a [crate::bundle::manifest::ImageEntry],
    pub charts: &'a [crate::bundle::manifest::ChartEntry],
    pub egress: &'a [crate::bundle::manifest::Destination],
    pub file_count: usize,
    pub total_size: u64,
}

impl<'a> Summary<'a> {
    pub fn of(m: &'a Manifest) -> Self {
        Summary {
            name: &m.name,
            version: &m.version,
            created: &m.created,
            ferry_version: &m.ferry_version,
            images: &m.images,
            charts: &m.charts,
            egress: &m.egress,
            file_count: m.files.len(),
            total_size: m.total_size(),
        }
    }
}
