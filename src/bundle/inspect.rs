//! `ferry inspect`: the manifest of a bundle, read from its first entry only.

use crate::bundle::archive::{Limits, MemberReader, TarEntries, TarPolicy};
use crate::bundle::head::read_manifest_entry;
use crate::bundle::manifest::{Manifest, MANIFEST_NAME};
use crate::bundle::verify::{entry_error, find_root, VerifyError};
use std::fs::File;
use std::path::Path;

/// Reads the manifest of a bundle file (first entry only) or of an extracted folder.
pub fn read_manifest(input: &Path) -> Result<(Manifest, Vec<u8>), VerifyError> {
    if input.is_dir() {
        let root = find_root(input)?;
        let p = root.join(MANIFEST_NAME);
        let bytes = std::fs::read(&p).map_err(|source| VerifyError::Open { path: p, source })?;
        return Ok((Manifest::parse(&bytes)?, bytes));
    }
    let f = File::open(input).map_err(|source| VerifyError::Open {
        path: input.to_path_buf(),
        source,
    })?;
    let limits = Limits::default();
    let mut archive = tar::Archive::new(MemberReader::new(f, limits));
    let mut entries = TarEntries::new(&mut archive, TarPolicy::bundle(limits))
        .map_err(|e| entry_error(e, "start of the bundle"))?;
    let head = read_manifest_entry(input, &mut entries)?;
    Ok((head.manifest, head.bytes))
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
