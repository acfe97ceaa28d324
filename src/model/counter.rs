// SPDX-License-Identifier: GPL-2.0

//! Counter arithmetic of KVM 6.12 (`get_sample_period()`, `pmc_pause_counter()`,
//! `pmc_read_counter()`, `pmc_write_counter()`), on plain integers.

/// The perf sample period that makes the host event overflow exactly when the
/// guest counter, now at `counter`, wraps: `-counter` within the counter width,
/// and a full lap when the counter is 0.
pub const fn sample_period(counter: u64, mask: u64) -> u64 {
    let period = counter.wrapping_neg() & mask;
    if period == 0 {
        mask.wrapping_add(1)
    } else {
        period
    }
}

/// The guest counter after a pause: `counter` plus what the host event
/// counted (`perf_delta`) plus what KVM counted in emulation (`emulated`).
///
/// Returns the new counter and whether the emulated part alone made it wrap.
/// An overflow inside `perf_delta` is not reported: perf raised (or will
/// raise) that PMI itself.
pub const fn pause(counter: u64, perf_delta: u64, emulated: u64, mask: u64) -> (u64, bool) {
    let prev = counter.wrapping_add(perf_delta) & mask;
    let new = prev.wrapping_add(emulated) & mask;
    (new, new < prev)
}

/// What a guest read of the counter returns (`pmc_read_counter()`):
/// `perf_live` is the running event's count, 0 when paused or absent.
pub const fn read(counter: u64, emulated: u64, perf_live: u64, mask: u64) -> u64 {
    counter.wrapping_add(emulated).wrapping_add(perf_live) & mask
}

/// The stored counter after the guest writes `val` (`pmc_write_counter()`):
/// stored relative to the live perf count, so the event need not be reset.
/// Pending emulated counts are dropped: a WRMSR is not a read-modify-write.
pub const fn write(counter: u64, perf_live: u64, val: u64, mask: u64) -> u64 {
    let current = read(counter, 0, perf_live, mask);
    counter.wrapping_add(val.wrapping_sub(current)) & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    const M48: u64 = (1 << 48) - 1;
    const M32: u64 = (1 << 32) - 1;

    #[test]
    fn period_is_distance_to_wrap() {
        assert_eq!(sample_period(M48 - 9, M48), 10);
        assert_eq!(sample_period(1, M32), M32);
        assert_eq!(sample_period(M32, M32), 1);
    }

    #[test]
    fn period_of_zero_counter_is_full_lap() {
        assert_eq!(sample_period(0, M48), 1 << 48);
        assert_eq!(sample_period(1 << 48, M48), 1 << 48);
        assert_eq!(
            sample_period(0, u64::MAX),
            0,
            "64-bit counters have no lap in a u64"
        );
    }

    #[test]
    fn pause_accumulates_and_masks() {
        assert_eq!(pause(5, 10, 1, M48), (16, false));
        assert_eq!(
            pause(M48, 1, 0, M48),
            (0, false),
            "perf overflow is perf's to report"
        );
        assert_eq!(
            pause(M48 - 1, 1, 1, M48),
            (0, true),
            "emulated wrap is KVM's to report"
        );
        assert_eq!(pause(M48, 0, 3, M48), (2, true));
    }

    #[test]
    fn write_is_relative_to_live_count() {
        let stored = write(100, 40, 7, M48);
        assert_eq!(read(stored, 0, 40, M48), 7);
        assert_eq!(read(stored, 0, 45, M48), 12);
        assert_eq!(write(3, 0, M32, M32), M32);
        assert_eq!(
            write(0, 5, 2, M32),
            M32 - 2,
            "stored value is offset by the live count"
        );
    }
}
