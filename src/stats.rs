// SPDX-License-Identifier: GPL-2.0

//! Statistics of every reprogram, read and reset through debugfs
//! (`/sys/kernel/debug/kvm_vpmu/`).

use core::ffi::{c_char, CStr};
use core::sync::atomic::{AtomicU64, Ordering};

use crate::model::{Outcome, RejectReason, Report};

/// One counter in debugfs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Stat {
    Reprograms,
    Creates,
    Resumes,
    Releases,
    Idle,
    CreateFailures,
    EmulatedOverflows,
    RejectNoEvent,
    RejectConfigChanged,
    RejectPebsChanged,
    RejectPeriodRejected,
    RejectLegacy,
    InjectedFailures,
    Stashes,
    Adoptions,
    Evictions,
}

const NR_STATS: usize = 16;

const NAMES: [&CStr; NR_STATS] = [
    c"reprograms",
    c"creates",
    c"resumes",
    c"releases",
    c"idle",
    c"create_failures",
    c"emulated_overflows",
    c"reject_no_event",
    c"reject_config_changed",
    c"reject_pebs_changed",
    c"reject_period_rejected",
    c"reject_legacy",
    c"injected_failures",
    c"kept",
    c"adopted",
    c"evicted",
];

static COUNTS: [AtomicU64; NR_STATS] = [const { AtomicU64::new(0) }; NR_STATS];

impl Stat {
    fn reject(reason: RejectReason) -> Stat {
        match reason {
            RejectReason::NoEvent => Stat::RejectNoEvent,
            RejectReason::ConfigChanged => Stat::RejectConfigChanged,
            RejectReason::PebsChanged => Stat::RejectPebsChanged,
            RejectReason::PeriodRejected => Stat::RejectPeriodRejected,
            RejectReason::Legacy => Stat::RejectLegacy,
        }
    }

    pub(crate) fn add(self) {
        self.add_n(1);
    }

    pub(crate) fn add_n(self, n: u64) {
        COUNTS[self as usize].fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn get(self) -> u64 {
        COUNTS[self as usize].load(Ordering::Relaxed)
    }
}

/// Counts one reprogram and what it did.  Releases are counted where they
/// happen, by the hosts' `release()`.
pub(crate) fn record(result: &Result<Report, (i32, RejectReason)>) {
    Stat::Reprograms.add();
    match result {
        Ok(report) => {
            if report.emulated_overflow {
                Stat::EmulatedOverflows.add();
            }
            match report.outcome {
                Outcome::Idle => Stat::Idle.add(),
                Outcome::Resumed => {
                    Stat::Resumes.add();
                    if report.adopted {
                        Stat::Adoptions.add();
                    }
                }
                Outcome::Created(reason) => {
                    Stat::Creates.add();
                    Stat::reject(reason).add();
                }
            }
        }
        Err((_, reason)) => {
            Stat::CreateFailures.add();
            Stat::reject(*reason).add();
        }
    }
}

/// Resets every counter.
pub(crate) fn clear_all() {
    for c in &COUNTS {
        c.store(0, Ordering::Relaxed);
    }
}

#[no_mangle]
extern "C" fn kvm_vpmu_nr_stats() -> u32 {
    NR_STATS as u32
}

#[no_mangle]
extern "C" fn kvm_vpmu_stat_name(stat: u32) -> *const c_char {
    NAMES
        .get(stat as usize)
        .map_or(core::ptr::null(), |n| n.as_ptr())
}

#[no_mangle]
extern "C" fn kvm_vpmu_stat_read(stat: u32) -> u64 {
    COUNTS
        .get(stat as usize)
        .map_or(0, |c| c.load(Ordering::Relaxed))
}

#[no_mangle]
extern "C" fn kvm_vpmu_stat_clear(stat: u32) {
    if let Some(c) = COUNTS.get(stat as usize) {
        c.store(0, Ordering::Relaxed);
    }
}

/// Fault injection: when non-zero, every Nth create of a guest event fails
/// with -ENOMEM before reaching perf.
static FAIL_CREATE_EVERY: AtomicU64 = AtomicU64::new(0);
static CREATE_ATTEMPTS: AtomicU64 = AtomicU64::new(0);

/// Whether this create is one that fault injection fails.
pub(crate) fn inject_create_failure() -> bool {
    let every = FAIL_CREATE_EVERY.load(Ordering::Relaxed);
    if every == 0 {
        return false;
    }
    let n = CREATE_ATTEMPTS.fetch_add(1, Ordering::Relaxed) + 1;
    if n % every != 0 {
        return false;
    }
    Stat::InjectedFailures.add();
    true
}

#[no_mangle]
extern "C" fn kvm_vpmu_fail_create_every_get() -> u64 {
    FAIL_CREATE_EVERY.load(Ordering::Relaxed)
}

#[no_mangle]
extern "C" fn kvm_vpmu_fail_create_every_set(every: u64) {
    CREATE_ATTEMPTS.store(0, Ordering::Relaxed);
    FAIL_CREATE_EVERY.store(every, Ordering::Relaxed);
}
