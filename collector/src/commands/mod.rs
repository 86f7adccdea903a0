//! One module per subcommand.

pub mod attach;
pub mod demo;
pub mod diff;
pub mod env;
pub mod listen;
pub mod ps;
pub mod report;
pub mod run;
pub mod snapshot;
pub mod soak;
pub mod tail;

use crate::cli::{Cli, Command};
use crate::error::CliResult;

/// Runs a parsed command line; returns the exit code.
pub use crate::terminal::{print_stderr, print_stdout};

pub fn dispatch(cli: Cli) -> CliResult<i32> {
    match cli.command {
        Command::Run(a) => run::run(a),
        Command::Env(a) => env::env(a),
        Command::Listen(a) => listen::listen(a),
        Command::Tail(a) => tail::tail(a),
        Command::Soak(a) => soak::soak(a),
        Command::Report(a) => report::report(a),
        Command::Demo(a) => demo::demo(a),
        Command::Ps(a) => ps::ps(a),
        Command::Attach(a) => attach::attach(a),
        Command::Detach(a) => attach::detach(a),
        Command::Snapshot(a) => snapshot::snapshot(a),
        Command::Diff(a) => diff::diff(a),
    }
}
