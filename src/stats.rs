// SPDX-License-Identifier: GPL-2.0

//! Statistics of every reprogram, read and reset through debugfs
//! (`/sys/kernel/debug/kvm_vpmu/`).

use core::ffi::CStr;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::model::{Outcome, RejectReason, Report};

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
    /// `cache`: events kept instead of released.
    Kept => c"kept",
    /// `cache`: kept events adopted by a vPMC.
    Adopted => c"adopted",
    /// `cache`: paused events that a vPMC took straight from another
    /// counter of its vCPU that the guest had disabled.
    AdoptedFromDisabled => c"adopted_from_disabled",
    /// `cache`: kept events released by the bound (least recently kept).
    Evicted => c"evicted",
    /// `cache`: kept events released because the vCPU stopped using its PMU.
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

/// Counts one reprogram and what it did.  Releases are counted where they
/// happen, by the hosts' `release()`.
///
/// `from_disabled`: an adopted event came straight from a counter the guest
/// had disabled, not from the vCPU's set.
#[inline]
pub(crate) fn record(result: &Result<Report, (i32, RejectReason)>, from_disabled: bool) {
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
                        if from_disabled {
                            Stat::AdoptedFromDisabled.add();
                        } else {
                            Stat::Adopted.add();
                        }
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
    for stat in Stat::ALL {
        stat.clear();
    }
}
