// SPDX-License-Identifier: GPL-2.0

//! Statistics of every reprogram, read and reset through debugfs
//! (`/sys/kernel/debug/kvm_vpmu/`), and the same counts kept apart for a
//! self-test case ([`Local`]), which must not see or disturb a live VM's.

use core::ffi::CStr;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::model::{AdoptedFrom, Cleanup, Outcome, RejectReason, Report};

/// Defines [`Stat`] and its debugfs names from one list.
macro_rules! stats {
    ($($(#[$doc:meta])* $stat:ident => $name:literal,)*) => {
        /// One counter in debugfs.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub(crate) enum Stat {
            $($(#[$doc])* $stat,)*
        }

        impl Stat {
            /// Every counter, in the order of their debugfs files.
            pub(crate) const ALL: &'static [Stat] = &[$(Stat::$stat,)*];

            /// The name of its debugfs file.
            pub(crate) const fn name(self) -> &'static CStr {
                match self {
                    $(Stat::$stat => $name,)*
                }
            }
        }
    };
}

stats! {
    /// Reprograms the backend performed.
    Reprograms => c"reprograms",
    /// Host events created.
    Creates => c"creates",
    /// Events resumed, the vPMC's own or adopted.
    Resumes => c"resumes",
    /// Events released by a reprogram.
    Releases => c"releases",
    /// Reprograms of counters not allowed to count (event left paused).
    Idle => c"idle",
    /// Creates that failed.
    CreateFailures => c"create_failures",
    /// Emulated counts that wrapped a counter.
    EmulatedOverflows => c"emulated_overflows",
    /// Not resumed: the vPMC had no event.
    RejectNoEvent => c"reject_no_event",
    /// Not resumed: the guest changed the config.
    RejectConfigChanged => c"reject_config_changed",
    /// Not resumed: the PEBS state changed.
    RejectPebsChanged => c"reject_pebs_changed",
    /// Not resumed: perf refused the new period.
    RejectPeriodRejected => c"reject_period_rejected",
    /// Not resumed: the `legacy` policy.
    RejectLegacy => c"reject_legacy",
    /// Creates failed by fault injection (`fail_create/`).
    InjectedFailures => c"injected_failures",
    /// `cache`: events kept instead of released, by a reprogram or by KVM's
    /// lazy cleanup.
    Kept => c"kept",
    /// `cache`: kept events adopted by a vPMC.
    Adopted => c"adopted",
    /// `cache`: paused events that a vPMC took straight from another
    /// counter of its vCPU that would not have resumed them.
    AdoptedFromDisabled => c"adopted_from_disabled",
    /// `cache`: kept events released by the bound (least recently kept), or
    /// events that no slot could be had for.
    Evicted => c"evicted",
    /// `cache`: kept events released because the vCPU ran a second without
    /// using its PMU.
    ReleasedIdle => c"released_idle",
    /// Events that KVM's lazy cleanup released itself after the backend's
    /// callback, counted for vCPUs with kept-event state: under `cache`,
    /// the unused counters' events that were not kept.
    CleanupReleases => c"cleanup_releases",
}

static COUNTS: [AtomicU64; Stat::ALL.len()] = [const { AtomicU64::new(0) }; Stat::ALL.len()];

// `Stat::ALL` lists the variants in declaration order, so a variant's value
// indexes both it and `COUNTS`.
const _: () = {
    let mut i = 0;
    while i < Stat::ALL.len() {
        assert!(Stat::ALL[i] as usize == i);
        i += 1;
    }
};

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

    /// The counter of debugfs file number `index` (the C shim's files, 6.12).
    #[cfg(not(VPMU_KVER_GE_6_18))]
    pub(crate) fn from_index(index: usize) -> Option<Stat> {
        Stat::ALL.get(index).copied()
    }

    #[inline]
    pub(crate) fn add(self) {
        self.add_n(1);
    }

    #[inline]
    pub(crate) fn add_n(self, n: u64) {
        COUNTS[self as usize].fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn get(self) -> u64 {
        COUNTS[self as usize].load(Ordering::Relaxed)
    }

    pub(crate) fn clear(self) {
        COUNTS[self as usize].store(0, Ordering::Relaxed);
    }
}

/// Where counts go.
pub(crate) trait Counts {
    /// Adds `n` to `stat`.
    fn add(&mut self, stat: Stat, n: u64);
}

/// The module-wide statistics, in debugfs.
pub(crate) struct Global;

impl Counts for Global {
    #[inline]
    fn add(&mut self, stat: Stat, n: u64) {
        stat.add_n(n);
    }
}

/// Counts of one user, apart from the module's (a self-test case).
pub(crate) struct Local([u64; Stat::ALL.len()]);

impl Local {
    pub(crate) const fn new() -> Self {
        Local([0; Stat::ALL.len()])
    }

    pub(crate) fn get(&self, stat: Stat) -> u64 {
        self.0[stat as usize]
    }
}

impl Default for Local {
    fn default() -> Self {
        Local::new()
    }
}

impl Counts for Local {
    fn add(&mut self, stat: Stat, n: u64) {
        self.0[stat as usize] += n;
    }
}

/// Counts one reprogram and what it did.  Releases are counted where they
/// happen, by the hosts' `release()`.
#[inline]
pub(crate) fn record(counts: &mut impl Counts, result: &Result<Report, (i32, RejectReason)>) {
    counts.add(Stat::Reprograms, 1);
    match result {
        Ok(report) => {
            if report.emulated_overflow {
                counts.add(Stat::EmulatedOverflows, 1);
            }
            if report.kept {
                counts.add(Stat::Kept, 1);
            }
            if report.evicted > 0 || report.dropped {
                let n = report.evicted + u32::from(report.dropped);
                counts.add(Stat::Evicted, u64::from(n));
            }
            match report.outcome {
                Outcome::Idle => counts.add(Stat::Idle, 1),
                Outcome::Resumed => {
                    counts.add(Stat::Resumes, 1);
                    match report.adopted {
                        Some(AdoptedFrom::Set) => counts.add(Stat::Adopted, 1),
                        Some(AdoptedFrom::DisabledPmc) => counts.add(Stat::AdoptedFromDisabled, 1),
                        None => {}
                    }
                }
                Outcome::Created(reason) => {
                    counts.add(Stat::Creates, 1);
                    counts.add(Stat::reject(reason), 1);
                }
            }
        }
        Err((_, reason)) => {
            counts.add(Stat::CreateFailures, 1);
            counts.add(Stat::reject(*reason), 1);
        }
    }
}

/// Counts what the backend did in KVM's lazy cleanup of a vCPU, and the
/// events KVM releases itself after it (`released_by_kvm`).
pub(crate) fn record_cleanup(counts: &mut impl Counts, done: &Cleanup, released_by_kvm: u32) {
    counts.add(Stat::ReleasedIdle, u64::from(done.released_idle));
    counts.add(Stat::Kept, u64::from(done.kept));
    counts.add(Stat::Evicted, u64::from(done.evicted + done.dropped));
    counts.add(Stat::CleanupReleases, u64::from(released_by_kvm));
}

/// Resets every counter (debugfs `clear` on 7.3; 6.12's shim clears each).
#[cfg(VPMU_KVER_GE_6_18)]
pub(crate) fn clear_all() {
    for stat in Stat::ALL {
        stat.clear();
    }
}
