//! The shim's life cycle: an atomic state machine that hooks read with one
//! relaxed load and never wait on.
//!
//! ```text
//!  BOOT ──constructor──► INIT ──ok──► ENABLED ──exit/_exit flush──► STOPPED
//!   (count only)        (count only)   │  (count + sample + mmaps + writer)
//!                          │           ├──fork (child side)──► CHILD (pass-through)
//!                          └──► OFF ◄──┘ writer panic
//!                         (pass-through: disabled, not first, no output, ...)
//! ```
//!
//! Counting needs no initialisation (static counter pool), so it runs from the
//! very first malloc, before the constructor; totals are exact from the start.

use core::ffi::c_void;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;

use crate::config::{self, Config};
use crate::live::LiveTable;
use crate::log;
use crate::mmaps::MmapTable;
use crate::stack_table::StackTable;
use crate::{sys, tls, writer};

pub(crate) const BOOT: u8 = 0;
pub(crate) const INIT: u8 = 1;
pub(crate) const ENABLED: u8 = 2;
/// First of the pass-through states.
pub(crate) const OFF: u8 = 3;
pub(crate) const CHILD: u8 = 4;
pub(crate) const STOPPED: u8 = 5;

pub(crate) static STATE: AtomicU8 = AtomicU8::new(BOOT);
static PID: AtomicI32 = AtomicI32::new(0);
static START_MS: AtomicU64 = AtomicU64::new(0);
static START_UNIX_MS: AtomicU64 = AtomicU64::new(0);
static SHUTTING_DOWN: AtomicBool = AtomicBool::new(false);
/// Writer tick counter, stamped on samples (for ages).
pub(crate) static TICK: AtomicU32 = AtomicU32::new(0);
static REASON: Mutex<String> = Mutex::new(String::new());

/// The preallocated structures the hook slow paths write into.
pub(crate) struct Tables {
    pub(crate) live: LiveTable,
    pub(crate) stacks: StackTable,
    pub(crate) mmaps: Option<MmapTable>,
    pub(crate) mean_bytes: u64,
    pub(crate) max_depth: usize,
}

static TABLES: AtomicPtr<Tables> = AtomicPtr::new(core::ptr::null_mut());

#[inline(always)]
pub(crate) fn state() -> u8 {
    STATE.load(Ordering::Relaxed)
}

#[inline(always)]
pub(crate) fn tables() -> Option<&'static Tables> {
    let p = TABLES.load(Ordering::Acquire);
    if p.is_null() {
        return None;
    }
    // SAFETY: set once from a leaked Box before ENABLED; never freed.
    Some(unsafe { &*p })
}

pub(crate) fn pid() -> i32 {
    PID.load(Ordering::Relaxed)
}

/// False in a child created by fork/vfork/clone (the pid changed).
pub(crate) fn same_process() -> bool {
    sys::getpid() == pid()
}

pub(crate) fn start_ms() -> u64 {
    START_MS.load(Ordering::Relaxed)
}

pub(crate) fn start_unix_ms() -> u64 {
    START_UNIX_MS.load(Ordering::Relaxed)
}

/// Why native tracking is on or off, one sentence.
pub(crate) fn reason() -> String {
    match REASON.lock() {
        Ok(r) => r.clone(),
        Err(p) => p.into_inner().clone(),
    }
}

fn set_reason(s: &str) {
    let mut r = match REASON.lock() {
        Ok(r) => r,
        Err(p) => p.into_inner(),
    };
    r.clear();
    r.push_str(s);
}

/// Turns tracking off for good (pass-through) and says so once.
pub(crate) fn go_off(reason: &str) {
    crate::fast::disarm();
    STATE.store(OFF, Ordering::Release);
    set_reason(reason);
}

/// Stage 2 initialisation, run from the ELF constructor with the process
/// environment. Runs once; on any failure the shim degrades to pass-through.
///
/// # Safety
/// `envp` must be the NULL-terminated environment the loader passes to
/// `.init_array` functions (or null).
pub(crate) unsafe fn init(envp: *const *const libc::c_char) {
    if STATE.compare_exchange(BOOT, INIT, Ordering::AcqRel, Ordering::Relaxed).is_err() {
        return;
    }
    PID.store(sys::getpid(), Ordering::Relaxed);
    START_MS.store(sys::monotonic_ms(), Ordering::Relaxed);
    START_UNIX_MS.store(sys::unix_ms(), Ordering::Relaxed);
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

/// Path of the object that contains `addr` (dladdr).
fn object_of(addr: *const c_void) -> Option<String> {
    // SAFETY: an all-zero Dl_info is a valid value of the plain C struct.
    let mut info: libc::Dl_info = unsafe { core::mem::zeroed() };
    // SAFETY: `info` is a valid out-pointer; dladdr only reads loader state.
    if unsafe { libc::dladdr(addr, &mut info) } == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dli_fname is a NUL-terminated string owned by the loader.
    Some(unsafe { core::ffi::CStr::from_ptr(info.dli_fname) }.to_string_lossy().into_owned())
}

/// This library's own path (looked up once: `dladdr` takes the loader lock).
pub(crate) fn own_path() -> String {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| object_of(own_path as *const c_void).unwrap_or_else(|| "libleakscope_shim.so".to_string()))
        .clone()
}

/// Checks that `malloc` and `free` as the process sees them are ours (the
/// shim is preloaded and comes first in the symbol lookup order).
fn check_first() -> Result<(), String> {
    let me = own_path();
    for name in [c"malloc", c"free", c"calloc", c"realloc"] {
        // SAFETY: valid NUL-terminated symbol name; RTLD_DEFAULT searches the
        // global scope in lookup order.
        let sym = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
        let owner = object_of(sym).unwrap_or_else(|| "an unknown object".to_string());
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
    crate::hooks::resolve_optional();
    let table_bytes = tables.live.mapped_bytes()
        + tables.stacks.mapped_bytes()
        + tables.mmaps.as_ref().map_or(0, |m| m.mapped_bytes());
    TABLES.store(Box::into_raw(Box::new(tables)), Ordering::Release);
    if let Err(e) = writer::start(cfg.clone(), warnings, sink, table_bytes) {
        let r = format!("native tracking off: cannot start the writer thread: {e}");
        go_off(&r);
        error!("{r}");
        return;
    }
    // SAFETY: registering a plain extern "C" handler.
    unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
    set_reason("active");
    STATE.store(ENABLED, Ordering::Release);
    if let Some(tables) = self::tables() {
        crate::fast::arm(tables);
    }
    info!(
        "native tracking on ({}; sampling mean {} bytes, interval {} ms, up to {} live samples)",
        own_path(),
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
    if STATE.load(Ordering::Relaxed) == ENABLED {
        crate::fast::disarm();
        STATE.store(CHILD, Ordering::Release);
        info!("forked child: native tracking off in this process (programs it execs are tracked afresh)");
    }
}

/// Final flush at exit (ELF destructor) or `_exit`: one last `native` record
/// and a `bye`, bounded in time; then pass-through.
pub(crate) fn shutdown(reason: &str) {
    if STATE.load(Ordering::Acquire) != ENABLED || !same_process() {
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
    crate::fast::disarm();
    if !inside_shim {
        writer::final_flush(reason);
    }
    STATE.store(STOPPED, Ordering::Release);
}
