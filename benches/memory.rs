//! Heap bytes held per open cascade, per buffered event and per tombstone by the window/terminate
//! state (`CascadeTracker`), measured exactly with a counting global allocator (no timing, no
//! RSS noise). `scripts/soak` and `scripts/bench` quote the figures in BENCHMARKS.md.
//!
//! Run: `cargo bench --bench memory` (prints a table; takes about a second).
//!
//! Method: K cascades are opened (one original tweet each, with the course message length 0 and
//! the embedded windows 600/1200 s, t_end 1800 s), then each receives E − 1 retweets before its
//! first window; live heap bytes are read before and after. Bytes per open cascade = the E = 1
//! figure / K (the map entry, the timers, the first event's vector); bytes per buffered event =
//! the slope between E = 1 and E = 65 (amortised `Vec` growth included). Terminated: the same
//! cascades terminated, tombstones kept (TTL 1 day), open state freed — what remains per cascade
//! is its tombstone and expiry entry plus the open map's capacity (a `HashMap` does not shrink;
//! in a long stream that capacity is bounded by the peak of open cascades). K = 100,000, so hash-map
//! growth steps are amortised as in a long stream (a map at a power-of-two boundary can hold up
//! to 2× more; the figure is an average over the sizes of one doubling).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use tweetoscope::dataflow::window::tracker::{CascadeTracker, TrackerOutput, TrackerSettings};
use tweetoscope::records::{EventKind, TweetEvent};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

fn settings() -> TrackerSettings {
    TrackerSettings::new(vec![600, 1200], 1800, 10, 10, 86_400).expect("valid settings")
}

fn event(cascade: u64, time: u64, kind: EventKind) -> TweetEvent {
    TweetEvent { cascade, time, seq: 0, magnitude: 100.0, kind, msg: String::new() }
}

/// Opens `k` cascades with `e` events each (all before the first window); returns the live
/// heap bytes the tracker holds (the output vector is dropped before measuring).
fn open_state(k: u64, e: u64) -> (isize, CascadeTracker) {
    let before = live();
    let mut tracker = CascadeTracker::new(settings());
    let mut out: Vec<(u64, TrackerOutput)> = Vec::new();
    for c in 0..k {
        tracker.on_event(event(c + 1, (c % 500) + 1, EventKind::Tweet), &mut out);
    }
    for j in 1..e {
        for c in 0..k {
            tracker.on_event(event(c + 1, 501 + j, EventKind::Retweet), &mut out);
        }
    }
    assert!(out.is_empty());
    drop(out);
    (live() - before, tracker)
}

fn main() {
    // criterion-style arguments (e.g. `--bench`) are ignored.
    let k: u64 = 100_000;
    let (one, tracker) = open_state(k, 1);
    drop(tracker);
    let e = 65;
    let (many, mut tracker) = open_state(k, e);
    let per_cascade = one as f64 / k as f64;
    let per_event = (many - one) as f64 / (k * (e - 1)) as f64;
    // Terminate them all (windows fire first: their events are dropped, partials emitted).
    let mut out = Vec::new();
    let before_term = live();
    tracker.fire_before(600 + 1800 + 600, &mut out);
    let n_out = out.len();
    drop(out);
    assert_eq!(tracker.open_cascades(), 0);
    assert_eq!(tracker.tombstones(), k as usize);
    let after_term = live();
    let base = before_term - many;
    let per_tombstone = (after_term - base) as f64 / k as f64;
    println!("CascadeTracker heap (counting allocator), {k} cascades, windows 600/1200 s, t_end 1800 s:");
    println!("  per open cascade (original tweet only, timers included): {per_cascade:.0} B");
    println!("  per buffered event (slope from 1 to {e} events per cascade): {per_event:.1} B");
    println!("  per terminated cascade remembered (tombstone + expiry entry, plus the open map's capacity, which does not shrink): {per_tombstone:.0} B");
    println!(
        "  ({n_out} outputs emitted while terminating; example: {k} open cascades × 160 events ≈ {:.0} MiB)",
        (k as f64 * (per_cascade + 159.0 * per_event)) / 1048576.0
    );
    println!(
        "  size_of::<TweetEvent>() = {} B (the replay timeline holds one per input event)",
        std::mem::size_of::<TweetEvent>()
    );
}
