//! Where things are: the agent and shim libraries, default socket and output paths, the cache
//! directory, executables on PATH.

use crate::error::CliError;
use crate::files::{Dir, FileError};
use std::path::{Path, PathBuf};

pub const AGENT_FILE: &str = "libleakscope_agent.so";
pub const SHIM_FILE: &str = "libleakscope_shim.so";
/// The agent's COM class id (CORECLR_PROFILER).
pub const AGENT_CLSID: &str = "{E3F826A5-7C38-4392-A672-1BB85AF76D18}";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Library {
    Agent,
    Shim,
}

impl Library {
    pub fn file_name(self) -> &'static str {
        match self {
            Library::Agent => AGENT_FILE,
            Library::Shim => SHIM_FILE,
        }
    }
    fn env_var(self) -> &'static str {
        match self {
            Library::Agent => "LEAKSCOPE_AGENT",
            Library::Shim => "LEAKSCOPE_SHIM",
        }
    }
    fn flag(self) -> &'static str {
        match self {
            Library::Agent => "--agent",
            Library::Shim => "--shim",
        }
    }
}

/// A library that could not be found, with every place that was tried.
#[derive(Debug, Clone)]
pub struct NotFound {
    pub library: Library,
    pub looked: Vec<String>,
}

impl NotFound {
    pub fn summary(&self) -> String {
        format!("{} not found (looked at: {})", self.library.file_name(), self.looked.join(", "))
    }

    pub fn into_error(self) -> CliError {
        let what = match self.library {
            Library::Agent => "the leakscope agent",
            Library::Shim => "the leakscope shim",
        };
        let mut err = CliError::usage(format!("cannot find {what} ({})", self.library.file_name()));
        for place in &self.looked {
            err = err.hint(format!("looked at {place}"));
        }
        err.hint("build it from the leakscope repository with `cargo build --release`; it lands in target/release/ next to the leakscope binary")
            .hint(format!(
                "or say where it is: {} PATH, or {}=PATH",
                self.library.flag(),
                self.library.env_var()
            ))
    }
}

/// Finds a library: the flag, else $LEAKSCOPE_AGENT / $LEAKSCOPE_SHIM, else next to the
/// running executable, else in ../lib relative to it. An explicit flag or variable that
/// points nowhere is an error rather than silently falling back.
pub fn find_library(library: Library, flag: Option<&Path>) -> Result<PathBuf, NotFound> {
    if let Some(p) = flag {
        return existing_file(p)
            .ok_or_else(|| NotFound { library, looked: vec![format!("{} (from {})", p.display(), library.flag())] });
    }
    if let Some(p) = std::env::var_os(library.env_var()).filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        return existing_file(&p).ok_or_else(|| NotFound {
            library,
            looked: vec![format!("{} (from ${})", p.display(), library.env_var())],
        });
    }
    let mut looked = Vec::new();
    if let Some(dir) = exe_dir() {
        for candidate in [dir.join(library.file_name()), dir.join("..").join("lib").join(library.file_name())] {
            if let Some(found) = existing_file(&candidate) {
                return Ok(found);
            }
            looked.push(normalize(&candidate).display().to_string());
        }
    } else {
        looked.push("the directory of the leakscope executable (unknown)".to_string());
    }
    Err(NotFound { library, looked })
}

fn existing_file(p: &Path) -> Option<PathBuf> {
    let abs = std::fs::canonicalize(p).ok()?;
    abs.is_file().then_some(abs)
}

fn exe_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let exe = std::fs::canonicalize(&exe).unwrap_or(exe);
    exe.parent().map(Path::to_path_buf)
}

/// `a/b/../c` → `a/c` without touching the filesystem (for messages).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

pub fn uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// `leakscope listen`'s and `env`'s default socket: `$XDG_RUNTIME_DIR/leakscope/leakscope.sock`,
/// else `$TMPDIR/leakscope-$UID/leakscope.sock` (see [`crate::owner_only`]).
pub fn default_listen_socket() -> PathBuf {
    crate::owner_only::default_socket()
}

/// `$XDG_CACHE_HOME/leakscope`, else `~/.cache/leakscope`, else `/tmp/leakscope-cache-$UID`.
pub fn cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).filter(|p| p.is_absolute()) {
        return p.join("leakscope");
    }
    if let Some(home) = std::env::var_os("HOME").map(PathBuf::from).filter(|p| p.is_absolute()) {
        return home.join(".cache").join("leakscope");
    }
    PathBuf::from(format!("/tmp/leakscope-cache-{}", uid()))
}

/// Opens or creates the output directory: the one asked for, or `./leakscope-<timestamp>`
/// (suffixed if taken); when the current directory is not writable, the same name under the
/// temp dir. Directories it creates are 0700. A requested path that is a symbolic link or not
/// a directory is never written through: the default is used instead, with a note saying why.
/// Returns the directory and, for a fallback, that note.
pub fn create_out_dir(requested: Option<&Path>, prefix: &str) -> Result<(Dir, Option<String>), CliError> {
    let mut refused = None;
    if let Some(dir) = requested {
        match Dir::open_or_create(dir) {
            Ok((d, _)) => return Ok((d, None)),
            Err(e) if e.is_refusal() => refused = Some(e),
            Err(e) => return Err(e.to_cli("cannot use the output directory")),
        }
    }
    let name = format!("{prefix}-{}", crate::units::local_timestamp());
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let (dir, fallback) = match create_unique(&cwd, &name) {
        Ok(d) => (d, None),
        Err(e) => {
            let tmp = std::env::temp_dir();
            let d = create_unique(&tmp, &name).map_err(|e2| e2.to_cli("cannot create an output directory in"))?;
            let note = format!(
                "{} is not writable ({}); writing to {} instead",
                cwd.display(),
                e.problem_text(),
                d.path().display()
            );
            (d, Some(note))
        }
    };
    let note = match (refused, fallback) {
        (Some(e), _) => Some(format!("not writing to --out {e}; writing to {} instead", dir.path().display())),
        (None, f) => f,
    };
    Ok((dir, note))
}

fn create_unique(parent: &Path, name: &str) -> Result<Dir, FileError> {
    for n in 1..100 {
        let candidate = if n == 1 { parent.join(name) } else { parent.join(format!("{name}-{n}")) };
        match Dir::create_new(&candidate) {
            Ok(d) => return Ok(d),
            Err(e) if e.io_kind() == Some(std::io::ErrorKind::AlreadyExists) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(FileError {
        path: parent.join(name),
        problem: crate::files::Problem::Io(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "too many output directories with this name",
        )),
    })
}

/// A private directory (mode 0700) for `run`'s socket, removed with everything in it on drop.
/// Short on purpose: Unix socket paths are limited to 107 bytes.
pub struct PrivateDir {
    pub path: PathBuf,
}

impl PrivateDir {
    pub fn create() -> Result<PrivateDir, CliError> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let base = crate::owner_only::runtime_dir().unwrap_or_else(|| PathBuf::from("/tmp"));
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let path = base.join(format!("leakscope-{}-{nanos:x}", std::process::id()));
        std::fs::DirBuilder::new().mode(0o700).create(&path).map_err(|e| {
            CliError::io(format!("cannot create a private directory for the socket at {}", path.display()), e)
        })?;
        let private = PrivateDir { path };
        // Exactly 0700 whatever the umask (which may have removed the owner's own bits).
        std::fs::set_permissions(&private.path, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| CliError::io(format!("cannot set the mode of {}", private.path.display()), e))?;
        Ok(private)
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Finds an executable on PATH.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false))
}

/// Whether a library at `path` can be named in LD_PRELOAD, which the dynamic loader splits at
/// spaces and colons.
pub fn preloadable(path: &Path) -> bool {
    !path.as_os_str().as_encoded_bytes().iter().any(|b| matches!(b, b' ' | b':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_paths_that_do_not_exist_are_errors_naming_them() {
        let err = find_library(Library::Agent, Some(Path::new("/nonexistent/libx.so"))).unwrap_err();
        assert_eq!(err.looked.len(), 1);
        assert!(err.looked[0].contains("/nonexistent/libx.so"));
        let e = err.into_error();
        assert_eq!(e.exit_code, crate::error::EXIT_USAGE);
        assert!(e.hints.iter().any(|h| h.contains("cargo build --release")));
    }

    #[test]
    fn normalize_folds_parent_components() {
        assert_eq!(normalize(Path::new("/a/b/../lib/x")), PathBuf::from("/a/lib/x"));
    }
}
