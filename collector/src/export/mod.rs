//! Exports to formats other tools read.

pub mod pprof;

use crate::analysis::Thresholds;
use crate::error::{CliError, CliResult};
use crate::protocol::Source;
use crate::sites;
use crate::store::Store;
use std::path::Path;

/// Writes the pprof profile of every site in `store` (managed and native) to `path`; returns
/// how many samples it holds.
pub fn write_pprof(path: &Path, store: &Store, moment: pprof::Moment) -> CliResult<usize> {
    let th = Thresholds::default();
    let mut rows = sites::ranked(store, Source::Agent, &th, None);
    rows.extend(sites::ranked(store, Source::Shim, &th, None));
    let profile = pprof::build(&rows, moment);
    let bytes = pprof::encode_gzipped(&profile)
        .map_err(|e| CliError::io("cannot compress the pprof profile".to_string(), e))?;
    std::fs::write(path, bytes).map_err(|e| CliError::io(format!("cannot write {}", path.display()), e))?;
    Ok(profile.sample.len())
}
