//! The head of a bundle: its first gzip member, holding `ferry.json` and `ferry.json.sig`.
//! Re-signing replaces the head and copies every later byte unchanged.

use crate::bundle::archive::{Limits, MemberReader, TarGzWriter};
use crate::bundle::build::write_head;
use crate::bundle::manifest::{Manifest, MANIFEST_NAME, MAX_MANIFEST_BYTES, SIGNATURE_NAME};
use crate::bundle::safepath::SafePath;
use crate::bundle::verify::VerifyError;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The decoded head of a bundle file.
#[derive(Debug)]
pub struct Head {
    pub root: String,
    pub manifest: Manifest,
    pub manifest_bytes: Vec<u8>,
    pub signature: Option<Vec<u8>>,
    /// Modification time of the head entries.
    pub mtime: u64,
    /// Where the second gzip member starts: everything from here on is the body.
    pub body_offset: u64,
}

/// Reads and checks the head member of a bundle file.
pub fn read(path: &Path) -> Result<Head, VerifyError> {
    let not_bundle = |reason: String| VerifyError::NotABundle {
        path: path.to_path_buf(),
        reason,
    };
    let f = File::open(path).map_err(|source| VerifyError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let mut members = MemberReader::new(f, Limits::default());
    // Read exactly the first member: decode until the reader reports a second member.
    let mut head = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        let n = members
            .read(&mut chunk)
            .map_err(|e| not_bundle(format!("its head member is damaged: {e}")))?;
        if n == 0 || members.members() > 1 {
            // A read never spans two members, so a read from member 2 is all body.
            break;
        }
        head.extend_from_slice(&chunk[..n]);
        if head.len() as u64 > MAX_MANIFEST_BYTES + 128 * 1024 {
            return Err(not_bundle(
                "its head member is larger than a manifest can be".into(),
            ));
        }
    }
    let body_offset = *members.member_offsets().get(1).ok_or_else(|| {
        not_bundle("it has a single gzip member: the head is not separate".into())
    })?;
    parse(&head, body_offset).map_err(not_bundle)
}

/// Splits the decompressed head member into its entries.
fn parse(head: &[u8], body_offset: u64) -> Result<Head, String> {
    let mut ar = tar::Archive::new(head);
    let mut found: Vec<(String, Vec<u8>, u64)> = Vec::new();
    for e in ar.entries().map_err(|e| e.to_string())? {
        let mut e = e.map_err(|e| format!("its head member is damaged: {e}"))?;
        let name = SafePath::from_bytes(&e.path_bytes()).map_err(|e| e.to_string())?;
        let mtime = e.header().mtime().unwrap_or(0);
        let mut data = Vec::new();
        e.read_to_end(&mut data).map_err(|e| e.to_string())?;
        found.push((name.to_string(), data, mtime));
    }
    let mut it = found.into_iter();
    let (first, manifest_bytes, mtime) = it.next().ok_or("its head member holds no entries")?;
    let root = match first.split_once('/') {
        Some((root, MANIFEST_NAME)) => root.to_string(),
        _ => {
            return Err(format!(
                "the first entry is `{first}`, not `NAME-VERSION/{MANIFEST_NAME}`"
            ))
        }
    };
    let signature = match it.next() {
        Some((name, data, _)) if name == format!("{root}/{SIGNATURE_NAME}") => Some(data),
        Some((name, _, _)) => {
            return Err(format!(
                "its head member holds `{name}`; only ferry.json and ferry.json.sig belong there"
            ))
        }
        None => None,
    };
    if let Some((name, _, _)) = it.next() {
        return Err(format!(
            "its head member holds `{name}`; only ferry.json and ferry.json.sig belong there"
        ));
    }
    let manifest = Manifest::parse(&manifest_bytes).map_err(|e| e.to_string())?;
    if manifest.root() != root {
        return Err(format!(
            "ferry.json names the bundle `{}` but its folder is `{root}`",
            manifest.root()
        ));
    }
    Ok(Head {
        root,
        manifest,
        manifest_bytes,
        signature,
        mtime,
        body_offset,
    })
}

/// Why re-signing failed.
#[derive(Debug, thiserror::Error)]
pub enum ResignError {
    #[error(transparent)]
    Head(#[from] VerifyError),
    #[error("signing the manifest failed: {0}")]
    Sign(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// Replaces the head of `bundle` with one carrying `signature` (base64) of its manifest,
/// copying the body byte for byte. The file is replaced atomically.
pub fn resign(
    bundle: &Path,
    sign: &dyn Fn(&[u8]) -> Result<String, String>,
) -> Result<Head, ResignError> {
    let head = read(bundle)?;
    let signature = sign(&head.manifest_bytes).map_err(ResignError::Sign)?;
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ResignError::Io {
            path: path.clone(),
            source,
        }
    };
    // The new head, in memory (it is a few KiB).
    let mut w = TarGzWriter::new(Vec::new(), head.mtime);
    write_head(&mut w, &head.root, &head.manifest_bytes, Some(&signature))
        .map_err(io_err(bundle))?;
    let new_head = w.into_output().map_err(io_err(bundle))?;
    if new_head.len() as u64 == head.body_offset && head.signature.is_some() {
        // Same size (a stored head, the same manifest, a signature of the same padded
        // length): overwrite the head in place with one write; the body is not touched.
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(bundle)
            .map_err(io_err(bundle))?;
        f.write_all_at(&new_head, 0).map_err(io_err(bundle))?;
        return Ok(Head {
            signature: Some(signature.into_bytes()),
            ..head
        });
    }
    let dir = bundle
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".ferry-sign-")
        .tempfile_in(dir)
        .map_err(io_err(dir))?;
    {
        let mut dst = tmp.as_file().try_clone().map_err(io_err(tmp.path()))?;
        dst.write_all(&new_head).map_err(io_err(tmp.path()))?;
        let mut src = File::open(bundle).map_err(io_err(bundle))?;
        src.seek(SeekFrom::Start(head.body_offset))
            .map_err(io_err(bundle))?;
        // std::io::copy uses copy_file_range between files, so the body never passes
        // through user space.
        io::copy(&mut src, &mut dst).map_err(io_err(bundle))?;
    }
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(bundle)
            .map(|m| m.permissions().mode())
            .unwrap_or(0o644);
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode & 0o7777))
            .map_err(io_err(tmp.path()))?;
    }
    tmp.persist(bundle).map_err(|e| ResignError::Io {
        path: bundle.to_path_buf(),
        source: e.error,
    })?;
    Ok(Head {
        signature: Some(signature.into_bytes()),
        ..head
    })
}
