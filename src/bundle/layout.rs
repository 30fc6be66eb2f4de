//! Checks the OCI image layout inside a bundle: every reference resolves, nothing dangles.

use crate::bundle::manifest::{blob_hex, Manifest};
use crate::oci::digest::Digest;
use crate::oci::document::{self, Document, MAX_JSON, REF_NAME};
use oci_spec::image::Descriptor;
use std::collections::{BTreeMap, BTreeSet};

/// A broken reference inside `images/`.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("images/index.json is missing but the manifest lists {0} images")]
    NoIndex(usize),
    #[error("{what}: {detail}")]
    Document { what: String, detail: String },
    #[error("image `{reference}`: {detail}")]
    Image { reference: String, detail: String },
    #[error("{from} refers to blob {digest}, which is not in the bundle")]
    Missing { from: String, digest: String },
    #[error("{from} says blob {digest} is {expected} bytes but the bundle's is {found}")]
    Size {
        from: String,
        digest: String,
        expected: u64,
        found: u64,
    },
    #[error("blob {digest} is in the bundle but no image refers to it")]
    Unreferenced { digest: String },
    #[error("{from} ({digest}) is larger than {MAX_JSON} bytes, too large for a manifest")]
    TooLarge { from: String, digest: String },
}

/// What the check saw.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct LayoutSummary {
    pub images: usize,
    pub manifests: usize,
    pub blobs: usize,
}

/// Checks the layout. `json` returns the bytes of small blobs (manifests, indexes) by
/// digest hex, and `index` is `images/index.json`.
pub fn check(
    manifest: &Manifest,
    index: Option<&[u8]>,
    json: &dyn Fn(&str) -> Option<Vec<u8>>,
) -> Result<LayoutSummary, LayoutError> {
    let blobs: BTreeMap<&str, u64> = manifest
        .files
        .iter()
        .filter_map(|f| blob_hex(&f.path).map(|h| (h, f.size)))
        .collect();
    let Some(index) = index else {
        if manifest.images.is_empty() && blobs.is_empty() {
            return Ok(LayoutSummary::default());
        }
        return Err(LayoutError::NoIndex(manifest.images.len()));
    };
    let index = document::read_layout_index(index).map_err(|e| LayoutError::Document {
        what: "images/index.json".into(),
        detail: e.to_string(),
    })?;
    let descs = index.manifests();
    let mut by_name: BTreeMap<&str, &Descriptor> = BTreeMap::new();
    for d in descs {
        let name = document::annotation(d, REF_NAME).unwrap_or("");
        if by_name.insert(name, d).is_some() {
            return Err(LayoutError::Image {
                reference: name.into(),
                detail: "named twice in images/index.json".into(),
            });
        }
    }
    for img in &manifest.images {
        let d = by_name
            .get(img.reference.as_str())
            .ok_or_else(|| LayoutError::Image {
                reference: img.reference.clone(),
                detail: "listed in ferry.json but not in images/index.json".into(),
            })?;
        if d.digest().as_ref() != img.digest.to_string() {
            return Err(LayoutError::Image {
                reference: img.reference.clone(),
                detail: format!(
                    "ferry.json says {} but images/index.json says {}",
                    img.digest,
                    d.digest()
                ),
            });
        }
    }
    // The same image under two tags of one repository shares its artifacts' descriptors.
    let mut referrer_names = BTreeSet::new();
    for img in &manifest.images {
        for r in &img.referrers {
            let name = r.layout_name(img);
            let named = by_name
                .get(name.as_str())
                .and_then(|d| document::digest_of(d));
            if named.as_ref() != Some(&r.digest) {
                return Err(LayoutError::Image {
                    reference: img.reference.clone(),
                    detail: format!(
                        "its referrer {} ({}) is not in images/index.json as `{name}`",
                        r.digest,
                        format!("{:?}", r.kind).to_lowercase()
                    ),
                });
            }
            referrer_names.insert(name);
        }
    }
    let referrers = referrer_names.len();
    if descs.len() != manifest.images.len() + referrers {
        return Err(LayoutError::Image {
            reference: "(index)".into(),
            detail: format!(
                "images/index.json has {} entries but ferry.json lists {} images and {referrers} referrers",
                descs.len(),
                manifest.images.len()
            ),
        });
    }
    let mut walk = Walker {
        blobs: &blobs,
        json,
        reached: BTreeSet::new(),
        manifests: 0,
    };
    for d in descs {
        let name = document::annotation(d, REF_NAME).unwrap_or_default();
        walk.node(d, &format!("image `{name}`"), 0)?;
    }
    if let Some(extra) = blobs.keys().find(|h| !walk.reached.contains(**h)) {
        return Err(LayoutError::Unreferenced {
            digest: format!("sha256:{extra}"),
        });
    }
    Ok(LayoutSummary {
        images: descs.len(),
        manifests: walk.manifests,
        blobs: blobs.len(),
    })
}

struct Walker<'a> {
    blobs: &'a BTreeMap<&'a str, u64>,
    json: &'a dyn Fn(&str) -> Option<Vec<u8>>,
    reached: BTreeSet<String>,
    manifests: usize,
}

impl Walker<'_> {
    fn blob(&mut self, d: &Descriptor, from: &str) -> Result<String, LayoutError> {
        let digest: Digest = document::digest_of(d).ok_or_else(|| LayoutError::Missing {
            from: from.into(),
            digest: d.digest().to_string(),
        })?;
        let hex = digest.hex().to_string();
        let found = *self
            .blobs
            .get(hex.as_str())
            .ok_or_else(|| LayoutError::Missing {
                from: from.into(),
                digest: d.digest().to_string(),
            })?;
        if found != d.size() {
            return Err(LayoutError::Size {
                from: from.into(),
                digest: d.digest().to_string(),
                expected: d.size(),
                found,
            });
        }
        self.reached.insert(hex.clone());
        Ok(hex)
    }

    fn node(&mut self, d: &Descriptor, from: &str, depth: u32) -> Result<(), LayoutError> {
        let hex = self.blob(d, from)?;
        if depth > 4 {
            return Err(LayoutError::Image {
                reference: from.into(),
                detail: "indexes nested deeper than 4 levels".into(),
            });
        }
        let bytes = (self.json)(&hex).ok_or_else(|| LayoutError::TooLarge {
            from: from.into(),
            digest: d.digest().to_string(),
        })?;
        let here = format!("manifest {}", d.digest());
        let (_, doc) = Document::parse(&bytes, Some(d.media_type().as_ref())).map_err(|e| {
            LayoutError::Document {
                what: here.clone(),
                detail: e.to_string(),
            }
        })?;
        self.manifests += 1;
        match doc {
            Document::Index(index) => {
                for child in index.manifests() {
                    self.node(child, &here, depth + 1)?;
                }
            }
            Document::Manifest(manifest) => {
                self.blob(manifest.config(), &here)?;
                for layer in manifest.layers() {
                    // A non-distributable layer may be left out (runtimes fetch it from its
                    // URLs); when it is there, it is checked like any other.
                    let absent = document::digest_of(layer)
                        .is_some_and(|d| !self.blobs.contains_key(d.hex()));
                    if absent && document::is_non_distributable(layer) {
                        continue;
                    }
                    self.blob(layer, &here)?;
                }
            }
        }
        Ok(())
    }
}
