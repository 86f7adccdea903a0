//! leakscope collector: the CLI that launches or listens to .NET workers running the leakscope
//! agent (managed survivors) and shim (native survivors), keeps the time series, finds the
//! call sites whose surviving memory keeps growing, and renders live views and reports.
//!
//! Data flow: producer lines (socket or file) → [`ingest`] (bounded line splitting) →
//! [`protocol`] (tolerant parsing) → [`store`] (per-producer state and bounded series) →
//! [`analysis`] (robust growth verdicts) → [`live`] (terminal view) and [`report`] (files).

pub mod analysis;
pub mod budget;
pub mod capture_rules;
pub mod cli;
pub mod commands;
pub mod diagnostics_ipc;
pub mod error;
pub mod export;
pub mod files;
pub mod ingest;
pub mod launch;
pub mod live;
pub mod locate;
pub mod metrics;
pub mod owner_only;
pub mod path_growth;
pub mod protocol;
pub mod report;
pub mod retention_asker;
pub mod retention_view;
pub mod session;
pub mod session_info;
pub mod shell;
pub mod signals;
pub mod sites;
pub mod snapshot_file;
pub mod soak;
pub mod store;

pub mod target_libc;
pub mod target_root;
pub mod terminal;
pub mod units;
pub mod untrusted;

/// Parses the command line, runs the command and returns the process exit code.
pub fn main_entry() -> i32 {
    use clap::Parser;
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        Err(err) => {
            // clap exits 2 on usage errors and 0 for --help/--version.
            let _ = err.print();
            return cli::clap_exit_code(&err);
        }
    };
    match commands::dispatch(args) {
        Ok(code) => code,
        Err(err) => {
            err.print();
            err.exit_code
        }
    }
}
