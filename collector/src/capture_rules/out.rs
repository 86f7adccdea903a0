//! The capture directory: created owner-only (0700) when missing, refused when it is a link or
//! not a directory; snapshot files are new files (0600, never through a link, never replacing
//! anything), written whole to a temporary name first so a full disk leaves none rather than half.

use crate::error::{CliError, CliResult};
use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct CaptureDir {
    path: PathBuf,
}

impl CaptureDir {
    pub fn open(path: &Path) -> CliResult<CaptureDir> {
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(CliError::usage(format!("--capture {}: is a symbolic link", path.display()))
                    .hint("name the directory itself: snapshots are never written through a link"));
            }
            Ok(m) if !m.is_dir() => {
                return Err(CliError::usage(format!("--capture {}: exists and is not a directory", path.display())));
            }
            Ok(m) if m.uid() != crate::owner_only::euid() => {
                return Err(CliError::usage(format!(
                    "--capture {}: belongs to uid {}, not to you",
                    path.display(),
                    m.uid()
                ))
                .hint("snapshots hold what the worker's heap holds: keep them in a directory of your own"));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(path)
                    .map_err(|e| CliError::io(format!("cannot create the capture directory {}", path.display()), e))?;
                // The last component only is ours to make private; `recursive` made any parents
                // with the same mode, and a race that put a link there is caught here.
                let m = std::fs::symlink_metadata(path)
                    .map_err(|e| CliError::io(format!("cannot read {}", path.display()), e))?;
                if !m.is_dir() || m.file_type().is_symlink() {
                    return Err(CliError::usage(format!("--capture {}: replaced while being created", path.display())));
                }
            }
            Err(e) => return Err(CliError::io(format!("cannot use the capture directory {}", path.display()), e)),
        }
        Ok(CaptureDir { path: path.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `STEM.EXT` (or `STEM-2.EXT`, … when taken) and returns its path.
    pub fn write_new(&self, stem: &str, ext: &str, data: &[u8]) -> std::io::Result<PathBuf> {
        let tmp = self.path.join(format!(".{stem}.{ext}.{}.tmp", std::process::id()));
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        let written = f.write_all(data).and_then(|_| f.sync_all());
        drop(f);
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        for n in 1..1000 {
            let name = if n == 1 { format!("{stem}.{ext}") } else { format!("{stem}-{n}.{ext}") };
            let target = self.path.join(name);
            // A hard link never replaces an existing name (a rename would).
            match std::fs::hard_link(&tmp, &target) {
                Ok(()) => {
                    let _ = std::fs::remove_file(&tmp);
                    return Ok(target);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(e);
                }
            }
        }
        let _ = std::fs::remove_file(&tmp);
        Err(std::io::Error::new(std::io::ErrorKind::AlreadyExists, "too many snapshots with this name"))
    }
}
