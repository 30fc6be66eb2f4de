//! Artifacts attached to an image: cosign's tag scheme (`sha256-HEX.sig|.att|.sbom` in the
//! image's repository), OCI 1.1 referrers (manifests whose `subject` is the image) and the
//! referrers tag schema (`sha256-HEX`, an index of them, for registries without the
//! referrers API); and what each artifact is, read from its manifest.

use crate::oci::digest::Digest;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The media type of a cosign simple-signing payload layer.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation that holds a cosign signature (base64).
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The layer annotation that holds a keyless signature's certificate (PEM).
pub const CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
/// The layer annotation cosign gives an attestation's predicate type.
pub const PREDICATE_TYPE_ANNOTATION: &str = "predicateType";
/// The media type of an OCI empty descriptor's blob (`{}`), the config of OCI artifacts.
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// What an attached artifact is.
#[derive(
    Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq, PartialOrd, Ord,
)]
#[serde(rename_all = "lowercase")]
pub enum ReferrerKind {
    /// A signature (cosign's simple signing, or another signature artifact).
    Signature,
    /// An attestation (an in-toto statement, usually in a DSSE envelope).
    Attestation,
    /// A software bill of materials (SPDX, CycloneDX).
    Sbom,
    /// Anything else attached to the image.
    Other,
}

impl ReferrerKind {
    /// cosign's tag suffix for this kind, if cosign attaches it by tag.
    pub fn cosign_suffix(self) -> Option<&'static str> {
        match self {
            ReferrerKind::Signature => Some("sig"),
            ReferrerKind::Attestation => Some("att"),
            ReferrerKind::Sbom => Some("sbom"),
            ReferrerKind::Other => None,
        }
    }

    /// The kinds cosign attaches by tag.
    pub const COSIGN: [ReferrerKind; 3] = [
        ReferrerKind::Signature,
        ReferrerKind::Attestation,
        ReferrerKind::Sbom,
    ];
}

/// cosign's tag for an artifact of `kind` attached to the image `digest`:
/// `sha256-HEX.sig`, `.att` or `.sbom`.
pub fn cosign_tag(digest: &Digest, kind: ReferrerKind) -> Option<String> {
    kind.cosign_suffix()
        .map(|s| format!("{}.{s}", fallback_tag(digest)))
}

/// The referrers tag schema's tag for the image `digest`: `sha256-HEX`.
pub fn fallback_tag(digest: &Digest) -> String {
    format!("sha256-{}", digest.hex())
}

/// The kind and image digest a cosign tag names (`sha256-HEX.sig` …), if it is one.
pub fn parse_cosign_tag(tag: &str) -> Option<(Digest, ReferrerKind)> {
    let (digest, suffix) = tag.strip_prefix("sha256-")?.split_once('.')?;
    let kind = ReferrerKind::COSIGN
        .into_iter()
        .find(|k| k.cosign_suffix() == Some(suffix))?;
    Some((format!("sha256:{digest}").parse().ok()?, kind))
}

/// What an artifact's manifest says about it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Described {
    /// `artifactType`, else the config's media type when it is not an image config or empty.
    pub artifact_type: Option<String>,
    /// The `subject` it is attached to, if any.
    pub subject: Option<Digest>,
    /// Predicate types of attestations (layer annotations).
    pub predicate_types: Vec<String>,
    /// The media type of an SBOM's document.
    pub sbom_format: Option<String>,
    /// How many signatures (layers with a cosign signature annotation) it holds.
    pub signatures: usize,
    /// Whether a signature layer carries a certificate (a keyless signature).
    pub keyless: bool,
    /// Layer media types, in order.
    pub layer_types: Vec<String>,
}

/// Reads an artifact manifest's JSON for what it is. Never fails on unknown members: the
/// artifact is carried whatever it says.
pub fn describe(bytes: &[u8]) -> Result<Described, String> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let str_at = |p: &str| v.pointer(p).and_then(|x| x.as_str()).map(str::to_string);
    let mut d = Described {
        artifact_type: str_at("/artifactType").or_else(|| {
            str_at("/config/mediaType").filter(|m| {
                m != OCI_EMPTY && m != crate::oci::document::OCI_CONFIG && !m.contains("docker")
            })
        }),
        subject: str_at("/subject/digest").and_then(|s| s.parse().ok()),
        ..Described::default()
    };
    for layer in v
        .get("layers")
        .and_then(|l| l.as_array())
        .into_iter()
        .flatten()
    {
        let mt = layer
            .get("mediaType")
            .and_then(|m| m.as_str())
            .unwrap_or_default();
        d.layer_types.push(mt.to_string());
        let ann = |k: &str| layer.pointer(&format!("/annotations/{}", k.replace('/', "~1")));
        if ann(SIGNATURE_ANNOTATION).is_some() {
            d.signatures += 1;
        }
        if ann(CERTIFICATE_ANNOTATION).is_some() {
            d.keyless = true;
        }
        for key in [PREDICATE_TYPE_ANNOTATION, "in-toto.io/predicate-type"] {
            if let Some(p) = ann(key).and_then(|p| p.as_str()) {
                if !d.predicate_types.iter().any(|x| x == p) {
                    d.predicate_types.push(p.to_string());
                }
            }
        }
        if d.sbom_format.is_none() && is_sbom_type(mt) {
            d.sbom_format = Some(mt.to_string());
        }
    }
    if d.sbom_format.is_none() {
        d.sbom_format = d.artifact_type.clone().filter(|t| is_sbom_type(t));
    }
    Ok(d)
}

fn is_sbom_type(media_type: &str) -> bool {
    let m = media_type.to_ascii_lowercase();
    m.contains("spdx") || m.contains("cyclonedx") || m.contains("syft")
}

impl Described {
    /// The kind, from cosign's tag suffix when it came by tag, else from its types.
    pub fn kind(&self, by_tag: Option<ReferrerKind>) -> ReferrerKind {
        if let Some(k) = by_tag {
            return k;
        }
        let types: Vec<&str> = self
            .artifact_type
            .iter()
            .map(String::as_str)
            .chain(self.layer_types.iter().map(String::as_str))
            .collect();
        let any = |f: &dyn Fn(&str) -> bool| types.iter().any(|t| f(t));
        if self.signatures > 0 || any(&|t| t.contains("simplesigning") || t.contains(".sig")) {
            ReferrerKind::Signature
        } else if self.sbom_format.is_some() {
            ReferrerKind::Sbom
        } else if !self.predicate_types.is_empty()
            || any(&|t| t.contains("in-toto") || t.contains("dsse"))
        {
            ReferrerKind::Attestation
        } else {
            ReferrerKind::Other
        }
    }
}

/// A friendly name of an SBOM media type: `SPDX (JSON)`, `CycloneDX (JSON)`, or the type.
pub fn sbom_format_name(media_type: &str) -> String {
    let m = media_type.to_ascii_lowercase();
    let family = if m.contains("spdx") {
        "SPDX"
    } else if m.contains("cyclonedx") {
        "CycloneDX"
    } else if m.contains("syft") {
        "Syft"
    } else {
        return media_type.to_string();
    };
    let enc = if m.contains("json") {
        " (JSON)"
    } else if m.contains("xml") {
        " (XML)"
    } else {
        ""
    };
    format!("{family}{enc}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn cosign_tags_round_trip() {
        let d: Digest = format!("sha256:{HEX}").parse().unwrap();
        let tag = cosign_tag(&d, ReferrerKind::Attestation).unwrap();
        assert_eq!(tag, format!("sha256-{HEX}.att"));
        assert_eq!(
            parse_cosign_tag(&tag),
            Some((d.clone(), ReferrerKind::Attestation))
        );
        assert_eq!(parse_cosign_tag(&format!("sha256-{HEX}")), None);
        assert_eq!(parse_cosign_tag(&format!("sha256-{HEX}.txt")), None);
        assert_eq!(parse_cosign_tag("sha256-abc.sig"), None);
        assert_eq!(fallback_tag(&d), format!("sha256-{HEX}"));
    }

    #[test]
    fn artifacts_are_told_apart_by_their_manifests() {
        let sig = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{HEX}","size":1}},"layers":[{{"mediaType":"{SIMPLE_SIGNING}","digest":"sha256:{HEX}","size":1,"annotations":{{"{SIGNATURE_ANNOTATION}":"MEUC"}}}}]}}"#
        );
        let d = describe(sig.as_bytes()).unwrap();
        assert_eq!(d.signatures, 1);
        assert!(!d.keyless);
        let keyless = sig.replace(
            r#""MEUC"}"#,
            &format!(r#""MEUC","{CERTIFICATE_ANNOTATION}":"-----BEGIN CERTIFICATE-----"}}"#),
        );
        assert!(describe(keyless.as_bytes()).unwrap().keyless);
        assert_eq!(d.artifact_type, None);
        assert_eq!(d.kind(None), ReferrerKind::Signature);
        let sbom = format!(
            r#"{{"schemaVersion":2,"artifactType":"application/spdx+json","config":{{"mediaType":"{OCI_EMPTY}","digest":"sha256:{HEX}","size":2}},"layers":[{{"mediaType":"application/spdx+json","digest":"sha256:{HEX}","size":1}}],"subject":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{HEX}","size":9}}}}"#
        );
        let d = describe(sbom.as_bytes()).unwrap();
        assert_eq!(d.kind(None), ReferrerKind::Sbom);
        assert_eq!(d.sbom_format.as_deref(), Some("application/spdx+json"));
        assert_eq!(d.subject.unwrap().hex(), HEX);
        let att = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{HEX}","size":1}},"layers":[{{"mediaType":"application/vnd.dsse.envelope.v1+json","digest":"sha256:{HEX}","size":1,"annotations":{{"predicateType":"https://slsa.dev/provenance/v1"}}}}]}}"#
        );
        let d = describe(att.as_bytes()).unwrap();
        assert_eq!(d.kind(None), ReferrerKind::Attestation);
        assert_eq!(d.predicate_types, ["https://slsa.dev/provenance/v1"]);
        assert_eq!(sbom_format_name("text/spdx+json"), "SPDX (JSON)");
        assert_eq!(
            sbom_format_name("application/vnd.cyclonedx+xml"),
            "CycloneDX (XML)"
        );
    }
}
