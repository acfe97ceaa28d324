// SPDX-License-Identifier: GPL-2.0

//! What a reprogram is counted as, and where the counts go: the vCPU's
//! statistics in KVM ([`VcpuStats`], read through KVM's stats fd and
//! debugfs), or a self-test case's own ([`Local`]).  What a reprogram
//! decided also goes to KVM's `kvm_pmu_reprogram` tracepoint
//! ([`trace_record`]).

use crate::ffi::kvm::{Decision, Refusal, VcpuStat, VcpuStats};
use crate::model::{AdoptedFrom, Cleanup, Outcome, RejectReason, Report};

/// What a reprogram or a cleanup did, one count each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stat {
    /// A reprogram of a vPMC.
    Reprograms,
    /// A host event created.
    Creates,
    /// An event resumed, the vPMC's own or adopted.
    Resumes,
    /// An event released.
    Releases,
    /// A reprogram of a counter not allowed to count (event left paused).
    Idle,
    /// A create that failed.
    CreateFailures,
    /// An emulated count that wrapped a counter.
    EmulatedOverflows,
    /// Not resumed: the vPMC had no event.
    RejectNoEvent,
    /// Not resumed: the guest changed the config.
    RejectConfigChanged,
    /// Not resumed: the PEBS state changed.
    RejectPebsChanged,
    /// Not resumed: perf refused the new period.
    RejectPeriodRefused,
    /// Not resumed: the `legacy` policy.
    RejectLegacy,
    /// `cache`: an event kept instead of released, by a reprogram or by
    /// KVM's lazy cleanup.
    Kept,
    /// `cache`: a kept event adopted by a vPMC.
    Adopted,
    /// `cache`: a paused event taken straight from another counter of the
    /// vCPU that would not have resumed it.
    AdoptedFromDisabled,
    /// `cache`: a kept event released by the bound, or one no slot could
    /// be had for.
    Evicted,
    /// `cache`: a kept event released because the vCPU ran a second
    /// without using its PMU.
    ReleasedIdle,
}

impl Stat {
    const COUNT: usize = Stat::ReleasedIdle as usize + 1;

    fn reject(reason: RejectReason) -> Stat {
        match reason {
            RejectReason::NoEvent => Stat::RejectNoEvent,
            RejectReason::ConfigChanged => Stat::RejectConfigChanged,
            RejectReason::PebsChanged => Stat::RejectPebsChanged,
            RejectReason::PeriodRejected => Stat::RejectPeriodRefused,
            RejectReason::Legacy => Stat::RejectLegacy,
        }
    }
}

/// Where counts go.
pub(crate) trait Counts {
    /// Adds `n` to `stat`.
    fn add(&mut self, stat: Stat, n: u64);
}

/// The vCPU's statistics in KVM.  KVM counts reprograms, creates, adoptions
/// and releases itself, in the helpers the executor calls, so that they
/// mean the same with and without this backend; the outcomes and reasons
/// that are not statistics of KVM's are in the tracepoint.
impl Counts for VcpuStats<'_> {
    #[inline]
    fn add(&mut self, stat: Stat, n: u64) {
        let stat = match stat {
            Stat::Resumes => VcpuStat::EventResumes,
            Stat::CreateFailures => VcpuStat::EventCreateFailures,
            Stat::Kept => VcpuStat::EventsKept,
            Stat::Evicted => VcpuStat::EventsEvicted,
            Stat::Reprograms
            | Stat::Creates
            | Stat::Releases
            | Stat::Adopted
            | Stat::AdoptedFromDisabled
            | Stat::ReleasedIdle
            | Stat::Idle
            | Stat::EmulatedOverflows
            | Stat::RejectNoEvent
            | Stat::RejectConfigChanged
            | Stat::RejectPebsChanged
            | Stat::RejectPeriodRefused
            | Stat::RejectLegacy => return,
        };
        VcpuStats::add(self, stat, n);
    }
}

/// Counts of one user, apart from any vCPU's (a self-test case).
pub(crate) struct Local([u64; Stat::COUNT]);

impl Local {
    pub(crate) const fn new() -> Self {
        Local([0; Stat::COUNT])
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

/// Counts what the backend did in KVM's lazy cleanup of a vCPU.
pub(crate) fn record_cleanup(counts: &mut impl Counts, done: &Cleanup) {
    counts.add(Stat::ReleasedIdle, u64::from(done.released_idle));
    counts.add(Stat::Kept, u64::from(done.kept));
    counts.add(Stat::Evicted, u64::from(done.evicted + done.dropped));
}

fn refusal(reason: RejectReason) -> Refusal {
    match reason {
        RejectReason::NoEvent => Refusal::NoEvent,
        RejectReason::ConfigChanged => Refusal::ConfigChanged,
        RejectReason::PebsChanged => Refusal::PebsChanged,
        RejectReason::PeriodRejected => Refusal::PeriodRefused,
        RejectReason::Legacy => Refusal::Policy,
    }
}

/// The `kvm_pmu_reprogram` tracepoint's record of a reprogram: what backs
/// the vPMC now, why its paused event was not resumed, and whether the
/// event it held before was kept.
#[inline]
pub(crate) fn trace_record(
    result: &Result<Report, (i32, RejectReason)>,
) -> (Decision, Refusal, bool) {
    match result {
        Ok(report) => {
            let (decision, refused) = match report.outcome {
                Outcome::Idle => (Decision::Idle, Refusal::None),
                Outcome::Resumed => match report.adopted {
                    None => (Decision::Resume, Refusal::None),
                    Some(AdoptedFrom::Set) => (Decision::Adopt, Refusal::None),
                    Some(AdoptedFrom::DisabledPmc) => (Decision::AdoptPaused, Refusal::None),
                },
                Outcome::Created(reason) => (Decision::Create, refusal(reason)),
            };
            (decision, refused, report.kept)
        }
        // A failed create does not report whether the event before was
        // kept (nor does `record()` count it).
        Err((_, reason)) => (Decision::CreateFailed, refusal(*reason), false),
    }
}
