//! The `tidegate` binary with a census of its heap: the same command line, the same allocator
//! (jemalloc), wrapped in a counter of live allocations by requested size. Every second it
//! writes the census to the file named by `HEAP_CENSUS` (default `heap-census.txt`): live bytes
//! requested, live bytes jemalloc actually handed out (its size classes), and one line per
//! requested size with its live count. Two censuses, before and after opening N idle
//! WebSockets, give the heap an idle WebSocket holds, by allocation size
//! (`benches/README.md`, "Where an idle WebSocket's bytes go").
//!
//! With `HEAP_CENSUS_TRACE=SIZE` the first 3 allocations of exactly SIZE bytes made after
//! start-up also print a backtrace to stderr: which code asked for that size.
//!
//! ```sh
//! cargo build --release -p tidegate-proxy --example heap_census
//! HEAP_CENSUS=/tmp/census.txt target/release/examples/heap_census proxy --listen 127.0.0.1:8080 ...
//! ```

// A global allocator is `unsafe` by its trait's contract; this measurement tool is the only
// place in the workspace that needs one of its own.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use clap::Parser;
use tikv_jemallocator::Jemalloc;

/// Requested sizes counted one by one; larger ones share the last bucket.
const EXACT: usize = 8192;
/// Backtraces printed for the traced size.
const TRACES: usize = 3;

static LIVE: [AtomicI64; EXACT + 1] = [const { AtomicI64::new(0) }; EXACT + 1];
static REQUESTED: AtomicI64 = AtomicI64::new(0);
static USABLE: AtomicI64 = AtomicI64::new(0);
static TRACE_SIZE: AtomicUsize = AtomicUsize::new(0);
static TRACED: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Set while a backtrace is taken, so its own allocations are not traced.
    static TRACING: Cell<bool> = const { Cell::new(false) };
}

struct Census;

impl Census {
    fn counted(size: usize, usable: usize, sign: i64) {
        let bucket = size.min(EXACT);
        LIVE[bucket].fetch_add(sign, Ordering::Relaxed);
        REQUESTED.fetch_add(sign * size as i64, Ordering::Relaxed);
        USABLE.fetch_add(sign * usable as i64, Ordering::Relaxed);
        if sign > 0 && size == TRACE_SIZE.load(Ordering::Relaxed) {
            trace(size);
        }
    }
}

fn trace(size: usize) {
    if TRACING.with(Cell::get) || TRACED.fetch_add(1, Ordering::Relaxed) >= TRACES {
        return;
    }
    TRACING.with(|t| t.set(true));
    let backtrace = std::backtrace::Backtrace::force_capture();
    eprintln!("heap_census: allocation of {size} bytes at\n{backtrace}");
    TRACING.with(|t| t.set(false));
}

unsafe impl GlobalAlloc for Census {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is; the caller upholds `alloc`'s contract.
        let ptr = unsafe { Jemalloc.alloc(layout) };
        if !ptr.is_null() {
            // SAFETY: `ptr` was just returned by jemalloc.
            Self::counted(
                layout.size(),
                unsafe { tikv_jemallocator::usable_size(ptr) },
                1,
            );
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` is live and came from jemalloc (every allocation goes through here).
        Self::counted(
            layout.size(),
            unsafe { tikv_jemallocator::usable_size(ptr) },
            -1,
        );
        // SAFETY: forwarded as is.
        unsafe { Jemalloc.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        let ptr = unsafe { Jemalloc.alloc_zeroed(layout) };
        if !ptr.is_null() {
            // SAFETY: `ptr` was just returned by jemalloc.
            Self::counted(
                layout.size(),
                unsafe { tikv_jemallocator::usable_size(ptr) },
                1,
            );
        }
        ptr
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` is live and came from jemalloc.
        let old_usable = unsafe { tikv_jemallocator::usable_size(ptr) };
        // SAFETY: forwarded as is.
        let new = unsafe { Jemalloc.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            Self::counted(layout.size(), old_usable, -1);
            // SAFETY: `new` was just returned by jemalloc.
            Self::counted(new_size, unsafe { tikv_jemallocator::usable_size(new) }, 1);
        }
        new
    }
}

#[global_allocator]
static ALLOC: Census = Census;

/// The census as text: totals, then `size count` for every size with live allocations.
fn census() -> String {
    let mut out = String::new();
    let _ = writeln!(out, "requested {}", REQUESTED.load(Ordering::Relaxed));
    let _ = writeln!(out, "usable {}", USABLE.load(Ordering::Relaxed));
    for (size, live) in LIVE.iter().enumerate() {
        let live = live.load(Ordering::Relaxed);
        if live != 0 {
            let _ = writeln!(out, "{size} {live}");
        }
    }
    out
}

fn main() -> std::process::ExitCode {
    let path = std::env::var("HEAP_CENSUS").unwrap_or_else(|_| "heap-census.txt".into());
    if let Some(size) = std::env::var("HEAP_CENSUS_TRACE")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        TRACE_SIZE.store(size, Ordering::Relaxed);
    }
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_secs(1));
            let tmp = format!("{path}.tmp");
            if std::fs::write(&tmp, census()).is_ok() {
                let _ = std::fs::rename(&tmp, &path);
            }
        }
    });
    tidegate_proxy::cli::run(tidegate_proxy::cli::Cli::parse())
}
