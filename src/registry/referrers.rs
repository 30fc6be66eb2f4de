//! Artifacts attached to images, in both directions: the OCI 1.1 referrers API
//! (`GET /v2/REPO/referrers/DIGEST`) and, for registries without it (the Debian distribution
//! 2.8 registry among them), the referrers tag schema: an index under the tag `sha256-HEX`
//! that lists the image's referrers, which a pusher keeps up to date itself.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::auth::Access;
use super::push::{
    self, BlobSource, ImageToPush, PushError, PushOptions, PushProgress, PushReport,
};
use super::{RegistryClient, RegistryError};
use crate::oci::digest::Digest;
use crate::oci::document::{Document, MAX_JSON, OCI_INDEX};
use crate::oci::referrers::fallback_tag;

/// One referrer to make findable at the target: the artifact manifest (already pushed by
/// digest) and the image it refers to.
#[derive(Debug, Clone)]
pub struct ReferrerToIndex {
    /// The target repository.
    pub repo: String,
    /// The image digest (the artifact's `subject`).
    pub subject: Digest,
    /// The artifact manifest's digest, media type and size.
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    /// Its `artifactType`, listed in the index as the referrers API lists it.
    pub artifact_type: Option<String>,
}

/// One attached artifact to push: the push itself (into its image's repository, under its
/// cosign tag or by digest), and for an OCI referrer how it is made findable.
#[derive(Debug, Clone)]
pub struct ReferrerPush {
    pub push: ImageToPush,
    pub index: Option<ReferrerToIndex>,
}

/// What pushing the artifacts did.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferrersReport {
    /// The push of the artifacts' blobs and manifests.
    pub push: PushReport,
    /// How each OCI referrer was made findable: its digest and the way.
    pub indexed: Vec<(Digest, Indexed)>,
}

/// Pushes attached artifacts after their images: blobs, then each manifest with its
/// original bytes (a cosign artifact under its tag), then each OCI referrer listed through
/// the referrers API or, without one, in its image's `sha256-HEX` index.
pub fn push_referrers(
    opts: &PushOptions,
    source: Arc<dyn BlobSource>,
    referrers: &[ReferrerPush],
    progress: Arc<dyn PushProgress>,
) -> Result<ReferrersReport, PushError> {
    if referrers.is_empty() {
        return Ok(ReferrersReport::default());
    }
    let pushes: Vec<ImageToPush> = referrers.iter().map(|r| r.push.clone()).collect();
    let report = push::push(opts, source, &pushes, progress)?;
    let mut indexed = Vec::new();
    if opts.dry_run {
        return Ok(ReferrersReport {
            push: report,
            indexed,
        });
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(PushError::Runtime)?;
    let client = RegistryClient::new(opts.registry.clone())?;
    for r in referrers.iter().filter_map(|r| r.index.as_ref()) {
        let how = rt.block_on(client.index_referrer(r))?;
        indexed.push((r.digest.clone(), how));
    }
    Ok(ReferrersReport {
        push: report,
        indexed,
    })
}

/// How a referrer became findable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Indexed {
    /// The registry lists it through its referrers API.
    ReferrersApi,
    /// Listed in the `sha256-HEX` index of the referrers tag schema.
    TagSchema,
    /// Already listed in the `sha256-HEX` index.
    AlreadyListed,
}

impl RegistryClient {
    /// `GET /v2/REPO/referrers/DIGEST`: the index of the image's referrers, or `None` when
    /// the registry has no referrers API (it answers 404, which the API never does).
    pub async fn get_referrers(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<Option<Vec<u8>>, RegistryError> {
        let what = format!("referrers of {repo}@{digest}");
        let url = self.url(&format!("v2/{repo}/referrers/{digest}"));
        match self
            .get_limited(&url, &Access::pull(repo), Some(OCI_INDEX), MAX_JSON, &what)
            .await
        {
            Ok((headers, bytes)) => {
                let json = headers
                    .get(reqwest::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|t| t.contains("json"));
                let index =
                    json && matches!(Document::parse(&bytes, None), Ok((_, Document::Index(_))));
                Ok(index.then_some(bytes))
            }
            // 404 is what the API never answers; some registries without it answer 400,
            // 405 or 501 for the unknown route.
            Err(RegistryError::Status {
                status: 400 | 404 | 405 | 501,
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The image's referrers under the referrers tag schema: the `sha256-HEX` index, or
    /// `None` when the tag does not exist.
    pub async fn get_referrers_tag(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<Option<Vec<u8>>, RegistryError> {
        match self.get_manifest(repo, &fallback_tag(digest)).await {
            Ok(m) => Ok(Some(m.bytes)),
            Err(RegistryError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Makes a pushed referrer findable: nothing more when the registry's referrers API lists
    /// it, otherwise by adding it to the `sha256-HEX` index (created when missing; the
    /// descriptors already there are kept).
    pub async fn index_referrer(&self, r: &ReferrerToIndex) -> Result<Indexed, RegistryError> {
        if let Some(bytes) = self.get_referrers(&r.repo, &r.subject).await? {
            if listed(&bytes, &r.digest) {
                return Ok(Indexed::ReferrersApi);
            }
        }
        let existing = self.get_referrers_tag(&r.repo, &r.subject).await?;
        if existing.as_deref().is_some_and(|b| listed(b, &r.digest)) {
            return Ok(Indexed::AlreadyListed);
        }
        let bytes =
            fallback_index(existing.as_deref(), r).map_err(|detail| RegistryError::Protocol {
                method: "GET".into(),
                url: format!(
                    "{}/{}:{}",
                    self.registry(),
                    r.repo,
                    fallback_tag(&r.subject)
                ),
                detail,
            })?;
        let digest = Digest::of(&bytes);
        self.put_manifest(
            &r.repo,
            &fallback_tag(&r.subject),
            OCI_INDEX,
            &bytes,
            &digest,
        )
        .await?;
        Ok(Indexed::TagSchema)
    }
}

/// Whether an index lists `digest` among its manifests.
fn listed(index: &[u8], digest: &Digest) -> bool {
    match Document::parse(index, None) {
        Ok((_, Document::Index(i))) => i
            .manifests()
            .iter()
            .any(|d| d.digest().as_ref() == digest.to_string()),
        _ => false,
    }
}

/// The `sha256-HEX` index with `r` added: the existing one's descriptors kept as they are.
fn fallback_index(existing: Option<&[u8]>, r: &ReferrerToIndex) -> Result<Vec<u8>, String> {
    let mut manifests: Vec<serde_json::Value> = match existing {
        Some(b) => serde_json::from_slice::<serde_json::Value>(b)
            .map_err(|e| format!("the referrers tag's index is not JSON: {e}"))?
            .get("manifests")
            .and_then(|m| m.as_array())
            .cloned()
            .ok_or("the referrers tag holds no index")?,
        None => Vec::new(),
    };
    let mut d = BTreeMap::new();
    d.insert("mediaType", serde_json::json!(r.media_type));
    d.insert("digest", serde_json::json!(r.digest.to_string()));
    d.insert("size", serde_json::json!(r.size));
    if let Some(t) = &r.artifact_type {
        d.insert("artifactType", serde_json::json!(t));
    }
    manifests.push(serde_json::to_value(d).map_err(|e| e.to_string())?);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
    });
    serde_json::to_vec(&index).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fallback_index_keeps_what_was_there() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let r = ReferrerToIndex {
            repo: "team/app".into(),
            subject: Digest::of(b"image"),
            digest: b.clone(),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            size: 9,
            artifact_type: Some("application/spdx+json".into()),
        };
        let first = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{a}","size":3,"annotations":{{"x":"y"}}}}]}}"#
        );
        let out = fallback_index(Some(first.as_bytes()), &r).unwrap();
        assert!(listed(&out, &a) && listed(&out, &b));
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains(r#""annotations":{"x":"y"}"#), "{text}");
        assert!(
            text.contains(r#""artifactType":"application/spdx+json""#),
            "{text}"
        );
        assert!(listed(&fallback_index(None, &r).unwrap(), &b));
    }
}
