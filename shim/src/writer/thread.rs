//! The writer's thread and its entry points: starting it (a raw pthread with every signal
//! blocked), its tick loop, the final flush from the exiting thread, and the one-off notice
//! when tracking is off.

use core::ffi::c_void;
use std::sync::Mutex;

use super::records::{bye_line, cmdline, hello_line, status_line};
use super::{Sink, Writer};
use crate::config::Config;
use crate::{state, sys, tls};

/// How long a tick may spend sending before the connection is dropped.
const SEND_DEADLINE_MS: u64 = 2000;
/// The same, for the final flush on the exiting thread.
const EXIT_DEADLINE_MS: u64 = 300;
/// How long the exiting thread waits for the writer to finish a tick.
const EXIT_LOCK_WAIT_MS: u64 = 1000;

static WRITER: Mutex<Option<Writer>> = Mutex::new(None);
/// How to turn tracking off when this thread fails, given at start.
static TURN_OFF: std::sync::OnceLock<fn(&str)> = std::sync::OnceLock::new();

extern "C" fn writer_main(_: *mut c_void) -> *mut c_void {
    tls::with(|t| t.set_busy_forever());
    // SAFETY: PR_SET_NAME with a NUL-terminated name of <= 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"leakscope-shim".as_ptr()) };
    debug!("writer thread running");
    if !tls::fast_path_consistent() {
        warn!("static TLS offset differs between threads; using the generic TLS access");
    }
    let mut interval;
    loop {
        let t0 = sys::monotonic_ms();
        let r = std::panic::catch_unwind(|| {
            let mut g = match WRITER.lock() {
                Ok(g) => g,
                Err(_) => return None,
            };
            let w = g.as_mut()?;
            if w.done {
                return None;
            }
            match state::state() {
                // The constructor flips to ENABLED right after starting us.
                state::INIT => return Some(5),
                state::ENABLED => w.tick(SEND_DEADLINE_MS, false),
                _ => return None, // off, forked, stopped: this thread is done
            }
            Some(w.cfg.interval_ms)
        });
        debug!("tick took {} ms", sys::monotonic_ms().saturating_sub(t0));
        match r {
            Ok(Some(ms)) => interval = ms,
            Ok(None) => return core::ptr::null_mut(),
            Err(_) => {
                let msg = "internal error in the shim's writer thread; native tracking off";
                if let Some(turn_off) = TURN_OFF.get() {
                    turn_off(msg);
                }
                error!("{msg}");
                // Best effort: tell the collector, then say goodbye.
                let mut g = WRITER.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Some(w) = g.as_mut() {
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        let deadline = sys::monotonic_ms() + SEND_DEADLINE_MS;
                        let l = status_line(w.pid, "error", msg);
                        let _ = w.sink.send(l.as_bytes(), deadline);
                        w.bye("native tracking off", SEND_DEADLINE_MS);
                    }));
                }
                return core::ptr::null_mut();
            }
        }
        sys::sleep_ms(interval);
    }
}

/// Installs the writer state and starts its thread (signals blocked).
/// `turn_off` is how the thread turns tracking off if it fails (`lifecycle::go_off`: the writer
/// does not reach up to the module that started it).
pub(crate) fn start(
    cfg: Config,
    warnings: Vec<String>,
    sink: Sink,
    table_bytes: usize,
    turn_off: fn(&str),
) -> Result<(), String> {
    let _ = TURN_OFF.set(turn_off);
    let tables = crate::tables::tables().ok_or("tables missing")?;
    let w = Writer::new(cfg, warnings, sink, tables, table_bytes);
    match WRITER.lock() {
        Ok(mut g) => *g = Some(w),
        Err(_) => return Err("writer lock poisoned".to_string()),
    }
    // SAFETY: sigset/pthread calls with valid out-pointers; the new thread
    // inherits the all-blocked mask, then ours is restored.
    unsafe {
        let mut all: libc::sigset_t = core::mem::zeroed();
        let mut old: libc::sigset_t = core::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let mut th: libc::pthread_t = 0;
        let r = libc::pthread_create(&mut th, core::ptr::null(), writer_main, core::ptr::null_mut());
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, core::ptr::null_mut());
        if r != 0 {
            return Err(std::io::Error::from_raw_os_error(r).to_string());
        }
        libc::pthread_detach(th);
    }
    Ok(())
}

/// The exit path: waits (bounded) for the writer to finish its tick, then
/// writes a last `native` record and `bye` from the exiting thread.
pub(crate) fn final_flush(reason: &str) {
    let give_up = sys::monotonic_ms() + EXIT_LOCK_WAIT_MS;
    loop {
        match WRITER.try_lock() {
            Ok(mut g) => {
                if let Some(w) = g.as_mut() {
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        w.tick(EXIT_DEADLINE_MS, true);
                        w.bye(reason, EXIT_DEADLINE_MS);
                    }));
                    if r.is_err() {
                        error!("internal error during the final flush");
                    }
                    info!("final report written ({reason})");
                }
                return;
            }
            Err(std::sync::TryLockError::Poisoned(_)) => return,
            Err(std::sync::TryLockError::WouldBlock) => {
                if sys::monotonic_ms() >= give_up {
                    warn!("writer busy at {reason}; final report skipped");
                    return;
                }
                sys::sleep_ms(1);
            }
        }
    }
}

/// Tracking is off but an output is configured: tell the collector once
/// (hello with `"native":"off"`, statuses, bye), so the report can say why.
pub(crate) fn announce_off(cfg: &Config, warnings: &[String], level: &str, reason: &str) {
    if cfg.socket.is_none() && cfg.output.is_none() {
        return;
    }
    let Ok(mut sink) = Sink::open(cfg) else {
        return;
    };
    let deadline = sys::monotonic_ms() + 200;
    if sink.ensure().is_err() {
        return;
    }
    let pid = state::pid();
    // The hello's reason is the bare cause; readers add "native tracking off" themselves.
    let cause = reason.strip_prefix("native tracking off: ").unwrap_or(reason);
    let mut lines = vec![hello_line(cfg, pid, &cmdline(), 0, false, cause)];
    lines.extend(warnings.iter().map(|w| status_line(pid, "warn", w)));
    lines.push(status_line(pid, level, reason));
    lines.push(bye_line(pid, "native tracking off"));
    for l in lines {
        if !sink.send(l.as_bytes(), deadline) {
            break;
        }
    }
    if let Some(fd) = sink.fd.take() {
        fd.close();
    }
}
