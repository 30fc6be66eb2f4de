//! The head of a bundle: `ferry.json`, then optionally `ferry.json.sig`, the first entries
//! of every bundle. Every reader of a bundle file reads them through this module (verify,
//! extract and load stream on; inspect stops after the manifest; signing reads the head
//! member alone). Re-signing replaces the head member and copies every later byte
//! unchanged.

use crate::bundle::archive::{
    EntryError, LimitExceeded, Limits, MemberReader, TarEntries, TarGzWriter, TarPolicy,
};
use crate::bundle::build::{temp_file_beside, write_head};
use crate::bundle::manifest::{Manifest, MANIFEST_NAME, MAX_MANIFEST_BYTES, SIGNATURE_NAME};
use crate::bundle::verify::{entry_error, VerifyError};
use crate::error_chain::error_chain;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Largest `ferry.json.sig`.
pub const MAX_SIGNATURE_BYTES: u64 = 64 * 1024;

/// The first entry of a bundle, `NAME-VERSION/ferry.json`, checked and parsed.
#[derive(Debug)]
pub struct ManifestEntry {
    /// `NAME-VERSION`, which the manifest's name and version agree with.
    pub root: String,
    pub manifest: Manifest,
    pub bytes: Vec<u8>,
    /// Modification time of the entry.
    pub mtime: u64,
}

/// The head entries of a bundle.
#[derive(Debug)]
pub struct HeadEntries {
    pub manifest: ManifestEntry,
    pub signature: Option<Vec<u8>>,
}

/// Reads the first entry, which must be a regular file named `NAME-VERSION/ferry.json` of
/// at most 64 MiB holding a valid manifest whose name and version make `NAME-VERSION`.
/// `input` names the bundle in messages.
pub fn read_manifest_entry<R: Read>(
    input: &Path,
    entries: &mut TarEntries<'_, R>,
) -> Result<ManifestEntry, VerifyError> {
    let not_bundle = |reason: String| VerifyError::NotABundle {
        path: input.to_path_buf(),
        reason,
    };
    let first = match entries.next_entry() {
        Ok(Some(e)) => e,
        Ok(None) => return Err(not_bundle("it holds no entries".into())),
        Err(EntryError::Read(e)) => {
            return Err(match e.kind() {
                io::ErrorKind::InvalidData
                | io::ErrorKind::UnexpectedEof
                | io::ErrorKind::Other => not_bundle(format!(
                    "reading the first entry (NAME-VERSION/{MANIFEST_NAME}): {}",
                    error_chain(&e)
                )),
                _ => VerifyError::Corrupt {
                    location: "the first entry (ferry.json)".into(),
                    detail: error_chain(&e),
                },
            })
        }
        // Anything but a regular file named `ROOT/ferry.json` is not a bundle's first entry.
        Err(e @ EntryError::UnsafePath { .. }) => {
            return Err(not_bundle(format!(
                "its first entry is not `NAME-VERSION/{MANIFEST_NAME}`: {e}"
            )))
        }
        Err(EntryError::NotRegular { entry, kind }) if !is_manifest_name(&entry) => {
            return Err(not_bundle(format!(
                "the first entry is `{entry}` ({kind}), not `NAME-VERSION/{MANIFEST_NAME}`"
            )))
        }
        Err(e) => return Err(entry_error(e, "the first entry (ferry.json)")),
    };
    let name = first.name.to_string();
    if !is_manifest_name(&name) {
        return Err(not_bundle(format!(
            "the first entry is `{name}`, not `NAME-VERSION/{MANIFEST_NAME}`"
        )));
    }
    let root = name
        .split_once('/')
        .map_or("", |(root, _)| root)
        .to_string();
    let mtime = first.entry.header().mtime().unwrap_or(0);
    let bytes = read_small(first.entry, &name, MAX_MANIFEST_BYTES)?;
    let manifest = Manifest::parse(&bytes)?;
    if manifest.root() != root {
        return Err(VerifyError::WrongRoot {
            entry: name,
            root: manifest.root(),
        });
    }
    Ok(ManifestEntry {
        root,
        manifest,
        bytes,
        mtime,
    })
}

/// Whether an entry name is `ROOT/ferry.json`: two components, the second `ferry.json`.
pub(crate) fn is_manifest_name(name: &str) -> bool {
    matches!(name.split_once('/'), Some((root, MANIFEST_NAME)) if !root.is_empty())
}

/// Reads the entry after the manifest when it is `NAME-VERSION/ferry.json.sig` (at most
/// 64 KiB); any other entry is put back for the caller.
pub fn read_signature_entry<R: Read>(
    root: &str,
    entries: &mut TarEntries<'_, R>,
) -> Result<Option<Vec<u8>>, VerifyError> {
    let after = format!("after `{root}/{MANIFEST_NAME}`");
    let Some(next) = entries.next_entry().map_err(|e| entry_error(e, &after))? else {
        return Ok(None);
    };
    let name = next.name.to_string();
    if name != format!("{root}/{SIGNATURE_NAME}") {
        entries.unread(next);
        return Ok(None);
    }
    read_small(next.entry, &name, MAX_SIGNATURE_BYTES).map(Some)
}

/// Reads both head entries: the manifest, and the signature when it follows.
pub fn read_entries<R: Read>(
    input: &Path,
    entries: &mut TarEntries<'_, R>,
) -> Result<HeadEntries, VerifyError> {
    let manifest = read_manifest_entry(input, entries)?;
    let signature = read_signature_entry(&manifest.root, entries)?;
    Ok(HeadEntries {
        manifest,
        signature,
    })
}

/// Reads a whole small entry, refusing one over `limit` bytes.
pub(crate) fn read_small<R: Read>(
    mut e: tar::Entry<'_, R>,
    name: &str,
    limit: u64,
) -> Result<Vec<u8>, VerifyError> {
    LimitExceeded::check(|| format!("size of `{name}`"), limit, e.size(), "")?;
    let mut out = Vec::with_capacity(e.size() as usize);
    e.read_to_end(&mut out)
        .map_err(|err| VerifyError::Corrupt {
            location: name.to_string(),
            detail: error_chain(&err),
        })?;
    if out.len() as u64 != e.size() {
        return Err(VerifyError::Corrupt {
            location: name.to_string(),
            detail: "truncated".into(),
        });
    }
    Ok(out)
}

/// The decoded head member of a bundle file.
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

/// Reads and checks the head member of a bundle file alone: it must be a gzip member of
/// its own holding exactly the head entries.
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
    let mut archive = tar::Archive::new(&head[..]);
    let mut entries = TarEntries::new(&mut archive, TarPolicy::bundle(Limits::default()))
        .map_err(|e| entry_error(e, "the head member"))?;
    let HeadEntries {
        manifest,
        signature,
    } = read_entries(path, &mut entries)?;
    if let Some(extra) = entries
        .next_entry()
        .map_err(|e| entry_error(e, "the head member"))?
    {
        return Err(not_bundle(format!(
            "its head member holds `{}`; only ferry.json and ferry.json.sig belong there",
            extra.name
        )));
    }
    Ok(Head {
        root: manifest.root,
        manifest: manifest.manifest,
        manifest_bytes: manifest.bytes,
        signature,
        mtime: manifest.mtime,
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
    let tmp = temp_file_beside(bundle, ".ferry-sign-").map_err(|(dir, e)| io_err(&dir)(e))?;
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
