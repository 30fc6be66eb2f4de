//! `ferry extract`: verifies while writing into a temporary folder inside the target, and
//! renames the bundle folder into place only when every check passed.

use crate::bundle::manifest::{FileEntry, Manifest, MANIFEST_NAME, SIGNATURE_NAME};
use crate::bundle::verify::{self, EntryPlace, Evidence, Sink, VerifyError, VerifyOptions};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Inputs of `extract`.
pub struct ExtractOptions<'a> {
    /// The bundle file (`input`) and how it is verified while it is extracted.
    pub verify: VerifyOptions<'a>,
    /// The folder that receives `NAME-VERSION/`; created when missing.
    pub dir: PathBuf,
}

/// What was extracted.
#[derive(Debug, serde::Serialize)]
pub struct Extracted {
    pub path: PathBuf,
    pub evidence: Evidence,
}

/// Writes verified files under a private temporary root.
struct TempTree {
    tmp: PathBuf,
    root: Option<PathBuf>,
}

impl Sink for TempTree {
    fn start(
        &mut self,
        manifest: &Manifest,
        manifest_bytes: &[u8],
        signature: Option<&[u8]>,
        head_mtime: u64,
    ) -> io::Result<()> {
        let root = self.tmp.join(manifest.root());
        fs::create_dir(&root)?;
        write_new(&root.join(MANIFEST_NAME), manifest_bytes, head_mtime)?;
        if let Some(sig) = signature {
            write_new(&root.join(SIGNATURE_NAME), sig, head_mtime)?;
        }
        self.root = Some(root);
        Ok(())
    }

    fn open(&mut self, entry: &FileEntry, _place: EntryPlace) -> io::Result<Box<dyn Write + '_>> {
        // Paths are SafePaths listed in the manifest: relative, no `..`. Nothing but
        // regular files and folders is ever created here, so no link can redirect a write.
        let path = entry.path.under(self.root.as_ref().expect("started"));
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        Ok(Box::new(BufWriter::with_capacity(256 * 1024, f)))
    }

    fn close(&mut self, entry: &FileEntry, mtime: u64) -> io::Result<()> {
        let path = entry.path.under(self.root.as_ref().expect("started"));
        let f = File::options().write(true).open(&path)?;
        f.set_permissions(fs::Permissions::from_mode(entry.mode.bits()))?;
        f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime))?;
        Ok(())
    }
}

/// Writes a head file as tar would: mode 0644 whatever the umask, the entry's mtime.
fn write_new(path: &Path, data: &[u8], mtime: u64) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.set_permissions(fs::Permissions::from_mode(0o644))?;
    f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime))
}

/// Extracts a bundle. On any failure nothing is left behind.
pub fn extract(opts: &ExtractOptions) -> Result<Extracted, VerifyError> {
    let file = File::open(&opts.verify.input).map_err(|source| VerifyError::Open {
        path: opts.verify.input.clone(),
        source,
    })?;
    // Only the target itself is created (like `mkdir`, not `mkdir -p`), so that a failure
    // can remove exactly what was made.
    let created_dir = !opts.dir.exists();
    if created_dir {
        fs::create_dir(&opts.dir).map_err(|source| VerifyError::Open {
            path: opts.dir.clone(),
            source,
        })?;
    }
    let cleanup_dir = |result: Result<Extracted, VerifyError>| {
        if result.is_err() && created_dir {
            let _ = fs::remove_dir(&opts.dir);
        }
        result
    };
    let tmp = match tempfile::Builder::new()
        .prefix(".ferry-extract-")
        .tempdir_in(&opts.dir)
    {
        Ok(t) => t,
        Err(source) => {
            return cleanup_dir(Err(VerifyError::Open {
                path: opts.dir.clone(),
                source,
            }))
        }
    };
    let mut tree = TempTree {
        tmp: tmp.path().to_path_buf(),
        root: None,
    };
    let result = verify::stream(file, &opts.verify, Some(&mut tree)).and_then(|evidence| {
        let root = tree.root.take().expect("a verified bundle has a head");
        let dest = opts.dir.join(root.file_name().expect("named"));
        if dest.exists() {
            return Err(VerifyError::Io {
                path: dest.clone(),
                source: io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "already exists: remove it or extract elsewhere",
                ),
            });
        }
        fs::rename(&root, &dest).map_err(|source| VerifyError::Io {
            path: dest.clone(),
            source,
        })?;
        Ok(Extracted {
            path: dest,
            evidence,
        })
    });
    drop(tmp);
    cleanup_dir(result)
}
