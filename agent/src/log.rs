//! The agent's log: a file, never the host's stdout or stderr.
//!
//! With `LEAKSCOPE_LOG` unset, warnings and errors still go somewhere a user can find them:
//! `$TMPDIR/leakscope-agent.<pid>.log`, created only when the first line is written.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

use parking_lot::Mutex;

use crate::config::Config;

struct LazyFile {
    path: PathBuf,
    state: Mutex<Option<Option<File>>>,
}

impl LazyFile {
    fn write_all(&self, bytes: &[u8]) {
        let mut state = self.state.lock();
        let file = state.get_or_insert_with(|| {
            OpenOptions::new().create(true).append(true).open(&self.path).ok()
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
    config.log_file.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("leakscope-agent.{}.log", std::process::id()))
    })
}

/// Installs the log and a panic hook that writes panics there instead of to stderr.
pub fn install(config: &Config) {
    let file: &'static LazyFile =
        Box::leak(Box::new(LazyFile { path: path(config), state: Mutex::new(None) }));
    let _ = tracing_subscriber::fmt()
        .with_writer(move || Writer(file))
        .with_max_level(config.log_level)
        .with_thread_names(true)
        .try_init();
    std::panic::set_hook(Box::new(|info| {
        tracing::error!("panic: {info}");
    }));
}
