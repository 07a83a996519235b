//! Where the time goes: wall-clock totals per op and phase, collected when enabled.
//!
//! The tape times every forward and backward it runs under the op's name; callers time
//! their own phases (data, optimiser) with `time`. Nothing here prints: the caller reads
//! the totals with `snapshot` and reports them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static ENABLED: AtomicBool = AtomicBool::new(false);
static TOTALS: Mutex<Vec<(&'static str, Duration, u64)>> = Mutex::new(Vec::new());

/// Starts (or stops) collecting. Off by default: then `time` costs one atomic load.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

pub fn is_enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

fn record(name: &'static str, elapsed: Duration) {
    let mut totals = TOTALS.lock().unwrap_or_else(|e| e.into_inner());
    match totals.iter_mut().find(|(n, _, _)| *n == name) {
        Some(entry) => {
            entry.1 += elapsed;
            entry.2 += 1;
        }
        None => totals.push((name, elapsed, 1)),
    }
}

/// Runs `f`, adding its wall time to `name` when profiling is on.
pub fn time<T>(name: &'static str, f: impl FnOnce() -> T) -> T {
    if !is_enabled() {
        return f();
    }
    let started = Instant::now();
    let out = f();
    record(name, started.elapsed());
    out
}

/// The totals so far, as (name, total time, calls), largest first.
pub fn snapshot() -> Vec<(&'static str, Duration, u64)> {
    let mut totals = TOTALS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    totals.sort_by_key(|t| std::cmp::Reverse(t.1));
    totals
}

/// Forgets the totals.
pub fn reset() {
    TOTALS.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_are_collected_only_when_enabled() {
        reset();
        time("off", || ());
        set_enabled(true);
        time("on", || std::thread::sleep(Duration::from_millis(2)));
        time("on", || ());
        set_enabled(false);
        let totals = snapshot();
        assert!(totals.iter().all(|t| t.0 != "off"));
        let on = totals.iter().find(|t| t.0 == "on").unwrap();
        assert_eq!(on.2, 2);
        assert!(on.1 >= Duration::from_millis(2));
    }
}
