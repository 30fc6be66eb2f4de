//! SBOMs of a bundle, from its manifest alone: a CycloneDX 1.6 BOM and an SPDX 2.3 document
//! listing every image (a container, with its digest, platforms and attached artifacts),
//! every chart (name, version, digest), and every other file (scripts, values, extra
//! files) with its sha256. Deterministic: the same manifest gives the same bytes.

use crate::bundle::manifest::{FileEntry, ImageEntry, Manifest};
use crate::oci::digest::Digest;
use crate::oci::referrers::sbom_format_name;
use serde_json::{json, Value};

/// A CycloneDX 1.6 JSON BOM of the bundle whose manifest bytes hash to `manifest_digest`.
pub fn cyclonedx(m: &Manifest, manifest_digest: &Digest) -> Value {
    let mut components = Vec::new();
    for (i, img) in m.images.iter().enumerate() {
        components.push(cdx_image(i, img));
    }
    for (i, c) in m.charts.iter().enumerate() {
        let mut comp = json!({
            "type": "application",
            "bom-ref": format!("chart-{i}"),
            "name": c.name,
            "version": c.version,
            "description": format!("Helm chart at {}", c.path),
            "properties": [{"name": "ferry:path", "value": c.path.as_str()}],
        });
        if let Some(f) = m.files.iter().find(|f| f.path == c.path) {
            comp["hashes"] = json!([{"alg": "SHA-256", "content": f.digest.hex()}]);
        }
        if let Some(app) = &c.app_version {
            comp["properties"]
                .as_array_mut()
                .expect("an array")
                .push(json!({"name": "ferry:appVersion", "value": app}));
        }
        components.push(comp);
    }
    for (i, f) in other_files(m).enumerate() {
        components.push(json!({
            "type": "file",
            "bom-ref": format!("file-{i}"),
            "name": f.path.as_str(),
            "hashes": [{"alg": "SHA-256", "content": f.digest.hex()}],
            "properties": [
                {"name": "ferry:size", "value": f.size.to_string()},
                {"name": "ferry:mode", "value": format!("{:04o}", f.mode.bits())},
            ],
        }));
    }
    let refs: Vec<Value> = components.iter().map(|c| c["bom-ref"].clone()).collect();
    json!({
        "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": format!("urn:uuid:{}", uuid_from(manifest_digest)),
        "version": 1,
        "metadata": {
            "timestamp": m.created,
            "tools": {"components": [{"type": "application", "name": "ferry", "version": m.ferry_version}]},
            "component": {
                "type": "application",
                "bom-ref": "bundle",
                "name": m.name,
                "version": m.version,
                "description": "ferry air-gap bundle; the hash is the sha256 of its ferry.json",
                "hashes": [{"alg": "SHA-256", "content": manifest_digest.hex()}],
            },
        },
        "components": components,
        "dependencies": [{"ref": "bundle", "dependsOn": refs}],
    })
}

fn cdx_image(i: usize, img: &ImageEntry) -> Value {
    let mut props = vec![json!({"name": "ferry:reference", "value": img.reference})];
    props.extend(
        img.platforms
            .iter()
            .map(|p| json!({"name": "ferry:platform", "value": p})),
    );
    props.push(json!({"name": "ferry:mediaType", "value": img.media_type}));
    if let Some(s) = &img.source_digest {
        props.push(json!({"name": "ferry:sourceDigest", "value": s.to_string()}));
    }
    for r in &img.referrers {
        let kind = serde_json::to_value(r.kind).unwrap_or_default();
        let mut value = format!("{} {}", kind.as_str().unwrap_or("other"), r.digest);
        if let Some(f) = &r.sbom_format {
            value.push_str(&format!(" ({})", sbom_format_name(f)));
        }
        props.push(json!({"name": "ferry:referrer", "value": value}));
    }
    json!({
        "type": "container",
        "bom-ref": format!("image-{i}"),
        "name": format!("{}/{}", img.registry, img.repository),
        "version": img.tag.clone().unwrap_or_else(|| img.digest.to_string()),
        "hashes": [{"alg": "SHA-256", "content": img.digest.hex()}],
        "purl": purl(img),
        "properties": props,
    })
}

/// An SPDX 2.3 JSON document of the bundle whose manifest bytes hash to `manifest_digest`.
pub fn spdx(m: &Manifest, manifest_digest: &Digest) -> Value {
    let mut packages = vec![json!({
        "SPDXID": "SPDXRef-Bundle",
        "name": m.name,
        "versionInfo": m.version,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "checksums": [{"algorithm": "SHA256", "checksumValue": manifest_digest.hex()}],
        "primaryPackagePurpose": "ARCHIVE",
        "comment": "ferry air-gap bundle; the checksum is the sha256 of its ferry.json",
    })];
    let mut contains = Vec::new();
    for (i, img) in m.images.iter().enumerate() {
        let id = format!("SPDXRef-Image-{i}");
        packages.push(json!({
            "SPDXID": id,
            "name": format!("{}/{}", img.registry, img.repository),
            "versionInfo": img.tag.clone().unwrap_or_else(|| img.digest.to_string()),
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "checksums": [{"algorithm": "SHA256", "checksumValue": img.digest.hex()}],
            "primaryPackagePurpose": "CONTAINER",
            "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": purl(img)}],
            "comment": format!("{} ({}); platforms: {}", img.reference, img.media_type, img.platforms.join(", ")),
        }));
        contains.push(id);
    }
    for (i, c) in m.charts.iter().enumerate() {
        let id = format!("SPDXRef-Chart-{i}");
        let mut p = json!({
            "SPDXID": id,
            "name": c.name,
            "versionInfo": c.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "primaryPackagePurpose": "APPLICATION",
            "comment": format!("Helm chart at {}", c.path),
        });
        if let Some(f) = m.files.iter().find(|f| f.path == c.path) {
            p["checksums"] = json!([{"algorithm": "SHA256", "checksumValue": f.digest.hex()}]);
        }
        packages.push(p);
        contains.push(id);
    }
    let mut files = Vec::new();
    for (i, f) in other_files(m).enumerate() {
        let id = format!("SPDXRef-File-{i}");
        files.push(json!({
            "SPDXID": id,
            "fileName": format!("./{}", f.path),
            "checksums": [{"algorithm": "SHA256", "checksumValue": f.digest.hex()}],
        }));
        contains.push(id);
    }
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": "SPDXRef-Bundle",
    })];
    relationships.extend(contains.into_iter().map(|id| {
        json!({"spdxElementId": "SPDXRef-Bundle", "relationshipType": "CONTAINS", "relatedSpdxElement": id})
    }));
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": m.root(),
        "documentNamespace": format!("https://spdx.org/spdxdocs/ferry/{}-{}", m.root(), manifest_digest.hex()),
        "creationInfo": {"created": m.created, "creators": [format!("Tool: ferry-{}", m.ferry_version)]},
        "documentDescribes": ["SPDXRef-Bundle"],
        "packages": packages,
        "files": files,
        "relationships": relationships,
    })
}

/// The files that are neither image blobs nor inside a chart folder or packaged chart.
fn other_files(m: &Manifest) -> impl Iterator<Item = &FileEntry> {
    m.files.iter().filter(|f| {
        !f.path.as_str().starts_with("images/")
            && !m
                .charts
                .iter()
                .any(|c| f.path == c.path || f.path.as_str().starts_with(&format!("{}/", c.path)))
    })
}

/// `pkg:oci/NAME@sha256%3AHEX?repository_url=REGISTRY/REPOSITORY[&tag=TAG]` (purl's oci type).
fn purl(img: &ImageEntry) -> String {
    let name = img.repository.rsplit('/').next().unwrap_or(&img.repository);
    let mut p = format!(
        "pkg:oci/{name}@sha256%3A{}?repository_url={}/{}",
        img.digest.hex(),
        img.registry,
        img.repository
    );
    if let Some(t) = &img.tag {
        p.push_str(&format!("&tag={t}"));
    }
    p
}

/// A version-4-shaped UUID made from a digest, so the same bundle always gets the same
/// serial number.
fn uuid_from(d: &Digest) -> String {
    let h = d.hex();
    let variant = match &h[16..17] {
        "0" | "4" | "8" | "c" => "8",
        "1" | "5" | "9" | "d" => "9",
        "2" | "6" | "a" | "e" => "a",
        _ => "b",
    };
    format!(
        "{}-{}-4{}-{variant}{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_numbers_are_uuids() {
        let u = uuid_from(&Digest::of(b"x"));
        assert_eq!(u.len(), 36);
        let parts: Vec<&str> = u.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'));
        assert!("89ab".contains(&parts[3][..1]));
    }
}
