//! The capture directory, through [`crate::files`]: a private directory (created 0700 when
//! missing; refused when it is a link, someone else's, or writable by others, since snapshots
//! hold what the worker's heap holds), and snapshot files that are new names in it (0600,
//! written whole or not at all, never through a link, never over an earlier snapshot).

use crate::error::CliResult;
use crate::files::Dir;
use std::path::{Path, PathBuf};

pub struct CaptureDir(Dir);

impl CaptureDir {
    pub fn open(path: &Path) -> CliResult<CaptureDir> {
        Dir::private(path).map(CaptureDir).map_err(|e| {
            e.to_cli("--capture:")
                .with_code(2)
                .hint("snapshots hold what the worker's heap holds: keep them in a directory of your own")
        })
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// Writes `STEM.EXT`, or `STEM-2.EXT`, … when that name is taken by anything.
    pub fn write_new(&self, stem: &str, ext: &str, data: &[u8]) -> Result<PathBuf, String> {
        let mut last = format!("{stem}.{ext} and 98 more names are taken");
        for n in 1..100 {
            let name = if n == 1 { format!("{stem}.{ext}") } else { format!("{stem}-{n}.{ext}") };
            if self.0.has_file(&name) {
                continue;
            }
            match self.0.write_file(&name, data) {
                Ok(p) => return Ok(p),
                // Something other than a file is there (a planted link): the next name.
                Err(e) if e.is_refusal() => last = e.to_string(),
                Err(e) => return Err(e.to_string()),
            }
        }
        Err(last)
    }
}
