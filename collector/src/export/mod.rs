//! Exports to formats other tools read.

pub mod pprof;

use crate::analysis::Thresholds;
use crate::files::{self, FileError};
use crate::protocol::Source;
use crate::sites;
use crate::store::Store;
use std::path::{Path, PathBuf};

/// Writes the pprof profile of every site in `store` (managed and native) to `path`, whole or
/// not at all, owner-only; returns where and how many samples it holds.
pub fn write_pprof(path: &Path, store: &Store, moment: pprof::Moment) -> Result<(PathBuf, usize), FileError> {
    let th = Thresholds::default();
    let mut rows = sites::ranked(store, Source::Agent, &th, None);
    rows.extend(sites::ranked(store, Source::Shim, &th, None));
    let profile = pprof::build(&rows, moment);
    // Compressing into memory cannot fail short of allocation failure, which aborts anyway.
    let bytes = pprof::encode_gzipped(&profile).expect("gzip into a Vec");
    let written = files::write_named_file(path, &bytes)?;
    Ok((written, profile.sample.len()))
}
