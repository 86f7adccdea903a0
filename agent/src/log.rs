//! The agent's log: a file, never the host's stdout or stderr.
//!
//! With `LEAKSCOPE_LOG` unset, warnings and errors still go somewhere a user can find them:
//! `$TMPDIR/leakscope-agent.<pid>.log`, created only when the first line is written. Either
//! path is opened through [`crate::files`]: a symlink, FIFO, device or someone else's file there
//! is refused (the log stays off, and the pipeline tells the collector why).

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

use parking_lot::Mutex;

use crate::config::Config;

struct LazyFile {
    path: PathBuf,
    state: Mutex<Option<Option<File>>>,
}

/// Why the log file could not be used, once known.
static PROBLEM: Mutex<Option<String>> = Mutex::new(None);

/// Why the agent has no log file, if it found the path unusable.
pub fn problem() -> Option<String> {
    PROBLEM.lock().clone()
}

impl LazyFile {
    fn write_all(&self, bytes: &[u8]) {
        let mut state = self.state.lock();
        let file = state.get_or_insert_with(|| match crate::files::open_append(&self.path) {
            Ok(f) => Some(f),
            Err(e) => {
                *PROBLEM.lock() = Some(format!("no log file: {e}"));
                None
            }
        });
        if let Some(f) = file {
            // A failed log write has nowhere else to go; the host must not notice.
            let _ = f.write_all(bytes);
        }
    }
}

struct Writer(&'static LazyFile);

impl Write for Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write_all(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The log file's path for this process.
pub fn path(config: &Config) -> PathBuf {
    config
        .log_file
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("leakscope-agent.{}.log", std::process::id())))
}

/// Replaces the standard panic hook (which prints to stderr) with one that writes to the log.
/// Idempotent; called before anything else the agent does, so even a panic while reading the
/// settings stays off the host's stderr (before the log exists it is dropped here, and the
/// guard that catches it records why the agent turned off).
pub fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            tracing::error!("panic: {info}");
        }));
    });
}

/// Installs the log (and the panic hook, if not yet).
pub fn install(config: &Config) {
    install_panic_hook();
    let file: &'static LazyFile = Box::leak(Box::new(LazyFile { path: path(config), state: Mutex::new(None) }));
    let _ = tracing_subscriber::fmt()
        .with_writer(move || Writer(file))
        .with_max_level(config.log_level)
        .with_thread_names(true)
        .try_init();
}
