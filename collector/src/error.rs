//! The one error type the commands return: a message, optional hints that tell the user what to
//! do next (py-spy style), and the exit code.

use std::fmt;

/// Exit code for bad usage or a missing prerequisite (same as clap's usage errors).
pub const EXIT_USAGE: i32 = 2;
/// Exit code for a failure while running.
pub const EXIT_FAILURE: i32 = 1;

#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub hints: Vec<String>,
    pub exit_code: i32,
}

pub type CliResult<T> = Result<T, CliError>;

impl CliError {
    pub fn new(message: impl Into<String>) -> Self {
        CliError { message: message.into(), hints: Vec::new(), exit_code: EXIT_FAILURE }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        CliError { exit_code: EXIT_USAGE, ..CliError::new(message) }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hints.push(hint.into());
        self
    }

    pub fn with_code(mut self, code: i32) -> Self {
        self.exit_code = code;
        self
    }

    /// Wraps an I/O error with what we were doing and, for the common causes, a hint.
    pub fn io(what: impl Into<String>, err: std::io::Error) -> Self {
        let mut e = CliError::new(format!("{}: {}", what.into(), err));
        match err.kind() {
            std::io::ErrorKind::PermissionDenied => {
                e = e.hint("check the permissions of the path, or choose another with --out / --socket");
            }
            std::io::ErrorKind::NotFound => {
                e = e.hint("check that the path exists");
            }
            _ => {}
        }
        e
    }

    pub fn print(&self) {
        eprintln!("leakscope: error: {}", self.message);
        for hint in &self.hints {
            eprintln!("  hint: {hint}");
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        for hint in &self.hints {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}
