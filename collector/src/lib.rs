//! leakscope collector: the CLI that launches or listens to .NET workers running the leakscope
//! agent (managed survivors) and shim (native survivors), keeps the time series, finds the
//! call sites whose surviving memory keeps growing, and renders live views and reports.
//!
//! Data flow: producer lines (socket or file) → [`ingest`] (bounded line splitting) →
//! [`protocol`] (tolerant parsing) → [`store`] (per-producer state and bounded series) →
//! [`analysis`] (robust growth verdicts; [`soak`] for the soak gate) → [`live`] (terminal view)
//! and [`report`] (files).
//!
//! Imports only point down the groups below (ARCHITECTURE.md draws the layers); [`analysis`] is
//! pure statistics, so it sits at the bottom although the data reach it late.

// Commands: the arguments, one module per subcommand, and what a running session asks or
// captures besides.
pub mod capture_rules;
pub mod cli;
pub mod commands;
pub mod retention_asker;

// A collection session (events in → store, recording, view; reports at the end), and the
// Prometheus exposition of `listen --metrics`.
pub mod metrics;
pub mod session;

// Output: the live view, the reports, pprof.
pub mod export;
pub mod live;
pub mod report;

// Verdicts and views over the store: soak verdicts, ranked sites, retention paths, the
// session's own facts, snapshot files.
pub mod held_verdicts;
pub mod path_growth;
pub mod retention_view;
pub mod session_info;
pub mod sites;
pub mod snapshot_file;
pub mod soak;

// State: per-producer records kept in bounded series under one memory budget.
pub mod budget;
pub mod store;

// Input: producers' connections and lines, and the record format.
pub mod ingest;
pub mod protocol;

// Targets: launching, finding libraries and places, attaching, a target's root and libc.
pub mod attach_places;
pub mod diagnostics_ipc;
pub mod launch;
pub mod locate;
pub mod signals;
pub mod target_libc;
pub mod target_root;

// Foundations: pure statistics, errors, safe files and sockets, units, untrusted text, the
// terminal, shell quoting.
pub mod analysis;
pub mod error;
pub mod files;
pub mod owner_only;
pub mod shell;
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
