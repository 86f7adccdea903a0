//! The shim's start and end: the ELF constructor's initialisation (read the environment, check
//! the shim comes first, open the output, map the tables, start the writer, arm the fast route),
//! the fork handler, the final flush, and turning tracking off for good.
//!
//! It sits above everything it starts; the hooks call into it (constructor, destructor, `_exit`),
//! and the writer reaches [`go_off`] only through the function it is given at start.
//!
//! ```text
//!  BOOT ──constructor──► INIT ──ok──► ENABLED ──exit/_exit flush──► STOPPED
//!   (count only)        (count only)   │  (count + sample + mmaps + writer)
//!                          │           ├──fork (child side)──► CHILD (pass-through)
//!                          └──► OFF ◄──┘ writer panic
//!                         (pass-through: disabled, not first, no output, ...)
//! ```

use core::sync::atomic::{AtomicBool, Ordering};

use crate::config::{self, Config};
use crate::live::LiveTable;
use crate::log;
use crate::mmaps::MmapTable;
use crate::stack_table::StackTable;
use crate::state::{self, CHILD, ENABLED, STOPPED};
use crate::tables::{self, Tables};
use crate::{fast, real, sys, tls, writer};

static SHUTTING_DOWN: AtomicBool = AtomicBool::new(false);

/// Turns tracking off for good (pass-through) and says so once.
pub(crate) fn go_off(reason: &str) {
    fast::disarm();
    state::turn_off(reason);
}

/// Stage 2 initialisation, run from the ELF constructor with the process
/// environment. Runs once; on any failure the shim degrades to pass-through.
///
/// # Safety
/// `envp` must be the NULL-terminated environment the loader passes to
/// `.init_array` functions (or null).
pub(crate) unsafe fn init(envp: *const *const libc::c_char) {
    if !state::begin_init() {
        return;
    }
    tls::with(|t| {
        let Some(_busy) = t.enter() else { return };
        // First of all (our copy of std only): a panic is logged, never printed on the host's
        // stderr, and the one below is caught.
        std::panic::set_hook(Box::new(|info| error!("panic: {info}")));
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            // SAFETY: forwarded contract.
            let envp_lookup = |k: &str| unsafe { config::env_lookup(envp, k) };
            let (cfg, warnings) = config::from_lookup(envp_lookup);
            init_inner(cfg, warnings)
        }));
        if outcome.is_err() {
            go_off("internal error during initialisation; native tracking off");
            error!("internal error during initialisation; native tracking off");
        }
    });
}

/// Opens `LEAKSCOPE_LOG` (see [`sys::open_private_append`]). Why it could not be opened is
/// returned, for the collector: there is no log to say it in, and never the host's stderr.
fn open_log(cfg: &Config) -> Option<String> {
    let path = cfg.log.as_deref()?;
    match sys::open_private_append("LEAKSCOPE_LOG", path) {
        // The log descriptor is kept for the life of the process.
        Ok(f) => {
            log::set_fd(f.get().unwrap_or(-1), cfg.log_level);
            None
        }
        Err(e) => Some(format!("no log file: {e}")),
    }
}

/// Checks that `malloc` and `free` as the process sees them are ours (the
/// shim is preloaded and comes first in the symbol lookup order).
fn check_first() -> Result<(), String> {
    let me = sys::own_path();
    for name in [c"malloc", c"free", c"calloc", c"realloc"] {
        // SAFETY: valid NUL-terminated symbol name; RTLD_DEFAULT searches the
        // global scope in lookup order.
        let sym = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
        let owner = sys::object_of(sym).unwrap_or_else(|| "an unknown object".to_string());
        if sym.is_null() || owner != me {
            return Err(format!(
                "{} resolves to {owner}, not to the shim ({me}): the shim must be loaded with LD_PRELOAD and come first in the lookup order",
                name.to_string_lossy()
            ));
        }
    }
    Ok(())
}

fn init_inner(cfg: Config, mut warnings: Vec<String>) {
    warnings.extend(open_log(&cfg));
    for w in &warnings {
        warn!("{w}");
    }
    if !cfg.enabled {
        let r = "native tracking disabled by LEAKSCOPE_NATIVE=0";
        go_off(r);
        info!("{r}");
        writer::announce_off(&cfg, &warnings, "info", r);
        return;
    }
    if let Err(r) = check_first() {
        go_off(&r);
        error!("native tracking off: {r}");
        writer::announce_off(&cfg, &warnings, "error", &format!("native tracking off: {r}"));
        return;
    }
    // Preloaded: our TLS is static, hooks may skip __tls_get_addr.
    tls::enable_fast_path();
    if cfg.socket.is_none() && cfg.output.is_none() {
        let r = "native tracking off: neither LEAKSCOPE_SOCKET nor LEAKSCOPE_OUTPUT is set";
        go_off(r);
        warn!("{r}");
        return;
    }
    let sink = match writer::Sink::open(&cfg) {
        Ok(s) => s,
        Err(e) => {
            // The output is the only way to the collector: the log (if any) is all that can
            // hear this. Nothing goes to the host's stderr.
            let r = format!("native tracking off: {e}");
            go_off(&r);
            error!("{r}");
            return;
        }
    };
    let tables = match make_tables(&cfg) {
        Some(t) => t,
        None => {
            let r = "native tracking off: could not map the shim's tables";
            go_off(r);
            error!("{r}");
            return;
        }
    };
    real::resolve_optional();
    // Before the writer starts: it reports the counters only when they count every call.
    crate::counters::set_exact(cfg.exact_totals);
    let table_bytes = tables.live.mapped_bytes()
        + tables.stacks.mapped_bytes()
        + tables.mmaps.as_ref().map_or(0, |m| m.mapped_bytes());
    tables::install(tables);
    if let Err(e) = writer::start(cfg.clone(), warnings, sink, table_bytes, go_off) {
        let r = format!("native tracking off: cannot start the writer thread: {e}");
        go_off(&r);
        error!("{r}");
        return;
    }
    // SAFETY: registering a plain extern "C" handler.
    unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
    state::enable("active");
    fast::arm();
    info!(
        "native tracking on ({}; sampling mean {} bytes, interval {} ms, up to {} live samples)",
        sys::own_path(),
        cfg.mean_bytes,
        cfg.interval_ms,
        cfg.max_tracked
    );
}

fn make_tables(cfg: &Config) -> Option<Tables> {
    Some(Tables {
        live: LiveTable::new(cfg.max_tracked)?,
        stacks: StackTable::new(16384)?,
        mmaps: if cfg.track_mmap { Some(MmapTable::new(16384)?) } else { None },
        mean_bytes: cfg.mean_bytes,
        max_depth: cfg.max_depth,
    })
}

/// `pthread_atfork` child handler: the child has no writer thread and may
/// have inherited held locks, so it goes pass-through. A program the child
/// execs loads the shim afresh (LD_PRELOAD is inherited) with its own hello.
extern "C" fn after_fork_in_child() {
    if state::state() == ENABLED {
        fast::disarm();
        state::set(CHILD);
        info!("forked child: native tracking off in this process (programs it execs are tracked afresh)");
    }
}

/// Final flush at exit (ELF destructor) or `_exit`: one last `native` record
/// and a `bye`, bounded in time; then pass-through.
pub(crate) fn shutdown(reason: &str) {
    if state::state() != ENABLED || !state::same_process() {
        return;
    }
    if SHUTTING_DOWN.swap(true, Ordering::AcqRel) {
        return;
    }
    // Exiting from a signal handler that interrupted this thread inside the
    // shim (it may hold a table lock): no flush, just stop.
    let inside_shim = tls::with(|t| {
        let busy = t.is_busy();
        t.set_busy_forever();
        busy
    });
    fast::disarm();
    if !inside_shim {
        writer::final_flush(reason);
    }
    state::set(STOPPED);
}
