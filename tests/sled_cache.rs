//! sled's page cache keeps no more than `cache_capacity` of what a scan
//! reads (plus a bounded amount in flight), so `store.cache_mb` bounds
//! what reading every account costs; and opening a store does not cost
//! the 21.5 MB of metrics buckets sled allocates although `no_metrics`
//! records nothing. Upstream sled 0.34.7 buffers 64 page accesses per LRU
//! shard before it evicts anything and kept whole scans resident; lull
//! builds against the copy in `vendor/sled` (see its PATCHED.md). This
//! test fails with either of upstream's behaviours.
//!
//! Alone in its test binary: it counts the live heap of the whole process
//! through a counting allocator, so no other test may allocate beside it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counter only adds and subtracts the sizes asked for.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is System's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: the caller's contract is System's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live_mib() -> f64 {
    LIVE.load(Ordering::Relaxed) as f64 / (1024.0 * 1024.0)
}

const VALUES: u32 = 48_000;
const VALUE_BYTES: usize = 1_000;
const CACHE_BYTES: u64 = 1 << 20;

fn open(path: &std::path::Path) -> sled::Db {
    sled::Config::new()
        .path(path)
        .cache_capacity(CACHE_BYTES)
        .open()
        .expect("opening a sled store in a temporary directory")
}

#[test]
fn sled_opens_small_and_a_scan_keeps_no_more_than_the_cache_allows() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("db");
    {
        let before = live_mib();
        let db = open(&path);
        let opened = live_mib() - before;
        eprintln!("opening a new store: +{opened:.1} MiB of heap");
        // sled's first open in a process also makes its metrics.
        assert!(
            opened < 12.0,
            "opening a new store took {opened:.1} MiB of heap"
        );
        let tree = db.open_tree("activity").expect("a tree");
        for i in 0..VALUES {
            // Values that differ, as series do (no page is all zeros).
            let value: Vec<u8> = (0..VALUE_BYTES)
                .map(|j| (i as usize * 31 + j) as u8)
                .collect();
            tree.insert(i.to_be_bytes(), value).expect("an insert");
        }
        db.flush().expect("a flush");
    }
    // Reopened, nothing of the tree is resident; read it all.
    let db = open(&path);
    let tree = db.open_tree("activity").expect("the tree again");
    let before = live_mib();
    let mut read = 0usize;
    for kv in tree.iter() {
        let (k, v) = kv.expect("a stored pair");
        read += k.len() + v.len();
    }
    let after = live_mib();
    let read_mib = read as f64 / (1024.0 * 1024.0);
    let kept = after - before;
    eprintln!("read {read_mib:.1} MiB; live heap {before:.1} → {after:.1} MiB (+{kept:.1})");
    assert!(read_mib > 40.0, "the scan read {read_mib:.1} MiB");
    // Upstream keeps nearly all of it (its LRU never sees these pages);
    // the patched cache keeps its capacity plus at most one page in
    // flight per shard (256 leaves of ~16 KB).
    assert!(
        kept < 12.0,
        "a scan of {read_mib:.1} MiB with a {} MiB cache kept {kept:.1} MiB of heap",
        CACHE_BYTES >> 20
    );
}
