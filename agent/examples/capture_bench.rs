//! Micro-benchmark of the capture path in isolation: the frame walk over a synthetic stack of
//! managed and runtime frames, with the verdict table as a busy process would have it.
//!
//!   cargo run --release -p leakscope-agent --example capture_bench [FRAMES] [KNOWN_ADDRESSES]
//!
//! Prints nanoseconds per walk and per frame, measured as this thread's CPU time (so other load
//! on the machine does not count).

use leakscope_agent::capture::frame_walk::{Walk, walk};
use leakscope_agent::capture::verdicts::{Shape, Verdict, Verdicts};

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[inline(never)]
fn bench(frames: usize, known: usize) {
    let verdicts = Verdicts::new(16);
    // Addresses spread like code: runtime ones first, then managed ones 4 KiB apart.
    let runtime: Vec<usize> = (0..6).map(|i| 0x7f00_0000_0000 + i * 0x1234).collect();
    let managed: Vec<usize> = (0..known).map(|i| 0x7e00_0000_0000 + i * 4096 + 0x3f).collect();
    for &a in &runtime {
        verdicts.insert(a, Verdict::Runtime(Shape::Framed));
    }
    for &a in &managed {
        verdicts.insert(a, Verdict::Managed(Shape::Framed));
    }
    let foreign = 0x7d00_0000_0000;
    verdicts.insert(foreign, Verdict::Foreign);
    // The stack: 6 runtime records, `frames` managed ones, then the runtime's thread start
    // whose caller is libc. Each record is [saved rbp, return address] plus 4 words of locals.
    let words = 6 * (6 + frames + 2);
    let mut buffer = [0usize; 6 * 300];
    assert!(words <= buffer.len());
    let base = buffer.as_ptr() as usize;
    let returns: Vec<usize> = runtime
        .iter()
        .copied()
        .chain((0..frames).map(|i| managed[(i * 7919) % known]))
        .chain([runtime[0], foreign])
        .collect();
    for (i, &ret) in returns.iter().enumerate() {
        let at = i * 6;
        buffer[at] = if i + 1 < returns.len() { base + (at + 6) * 8 } else { 0 };
        buffer[at + 1] = ret;
    }
    let mut out = Walk::new();
    walk(&verdicts, base, 256, &mut out);
    assert!(out.complete && out.len == frames, "synthetic stack not walked: {} of {frames}", out.len);
    let rounds = 200_000;
    let t0 = thread_cpu_ns();
    for _ in 0..rounds {
        walk(&verdicts, std::hint::black_box(base), 256, &mut out);
    }
    let ns = (thread_cpu_ns() - t0) as f64 / rounds as f64;
    std::hint::black_box(&buffer);
    println!(
        "{frames} managed frames (+8 runtime/foreign), {known} known addresses: {ns:.0} ns per walk, {:.1} ns per frame",
        ns / (frames + 8) as f64
    );
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let frames = args.first().copied().unwrap_or(40);
    let known = args.get(1).copied().unwrap_or(2000);
    bench(frames, known);
}
