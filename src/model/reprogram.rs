// SPDX-License-Identifier: GPL-2.0

//! One reprogram of one vPMC (`reprogram_counter()`), carried out through
//! [`PmcHost`]: pause, decide, then resume, recreate or release.
//!
//! The sequence is the same for every policy and every host; only
//! [`plan`]'s answer differs by policy, and only the host ([`PmcHost`],
//! [`VcpuHost`]) differs between the kernel (real perf) and the host tests
//! (simulated perf).  Under [`Policy::Cache`] a `Recreate` first keeps the
//! old event and looks for one of the new config ([`cache::keep`],
//! [`cache::adopt`]).

use super::cache::{self, AdoptedFrom, Adoption};
use super::counter;
use super::host::{Errno, PmcHost, VcpuHost};
use super::pmc::{EventAttr, EventInfo, PmcConfig, PmcState};
use super::policy::{plan, Action, Policy, RejectReason};

/// What a reprogram did, for the statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Not allowed to count; the event (if any) stays paused.
    Idle,
    /// An existing event was resumed: the vPMC's own, or under
    /// [`Policy::Cache`] an adopted one ([`Report::adopted`]).
    Resumed,
    /// A new event was created (after releasing the old one, if any).
    Created(RejectReason),
}

/// The result of [`reprogram`]: what happened, and whether an emulated
/// overflow was delivered on the way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    /// What happened to the event.
    pub outcome: Outcome,
    /// An emulated count wrapped the counter and was reported.
    pub emulated_overflow: bool,
    /// [`Policy::Cache`]: the vPMC's old event went into the vCPU's set
    /// instead of being released.
    pub kept: bool,
    /// [`Policy::Cache`]: kept events released to make room.
    pub evicted: u32,
    /// [`Policy::Cache`]: the old event was released after all: no set, or
    /// no slot in it.
    pub dropped: bool,
    /// [`Policy::Cache`]: the outcome is [`Outcome::Resumed`] and the event
    /// now serving the vPMC was adopted, not created, from there.  An
    /// adopted event whose new period perf refused is released and replaced
    /// (outcome `Created(PeriodRejected)`, `adopted` `None`).
    pub adopted: Option<AdoptedFrom>,
    /// [`Policy::Cache`]: the vCPU's kept set may have changed (a keep, an
    /// eviction or an adoption was tried).
    pub kept_set_touched: bool,
}

/// Pauses the vPMC and folds perf's and KVM's counts into its counter
/// (`pmc_pause_counter()`).  Returns whether emulated counts wrapped it.
#[inline]
pub fn pause<H: PmcHost + ?Sized>(cfg: &PmcConfig, st: &mut PmcState, host: &mut H) -> bool {
    let delta = if st.event.is_some() && !st.is_paused {
        host.pause()
    } else {
        0
    };
    let (counter, wrapped) = counter::pause(st.counter, delta, st.emulated_counter, cfg.mask);
    st.counter = counter;
    st.emulated_counter = 0;
    st.is_paused = true;
    wrapped
}

/// Releases the vPMC's event, if any (`pmc_release_perf_event()`).
#[inline]
pub fn release<H: PmcHost + ?Sized>(st: &mut PmcState, host: &mut H) {
    if st.event.take().is_some() {
        host.release();
        st.current_config = 0;
    }
}

#[inline]
fn create<H: PmcHost + ?Sized>(
    st: &mut PmcState,
    host: &mut H,
    attr: &EventAttr,
    reason: RejectReason,
) -> Result<(), (Errno, RejectReason)> {
    release(st, host);
    // Recorded before creating: on failure KVM retries with the same config.
    st.current_config = attr.current_config;
    host.create(attr).map_err(|e| (e, reason))?;
    st.event = Some(EventInfo::of(attr));
    st.is_paused = false;
    st.intr = attr.intr;
    Ok(())
}

/// Reprograms one vPMC under `policy`, as KVM's `reprogram_counter()` does
/// for `Policy::Reuse`.
///
/// Under `Policy::Cache` the vCPU is given a kept set at its first
/// reprogram, and when [`plan`] says `Recreate`: the emulated overflow is
/// reported against the old event as always; then the old event, if any,
/// is kept ([`cache::keep`]) and an event of the new config is adopted
/// ([`cache::adopt`]) in place of a create.  An unchanged config resumes as
/// under `Reuse`.
///
/// On failure the event could not be created: the vPMC is left without one
/// and the caller asks KVM to retry on the next PMU refresh.  The error
/// carries why the old event was not resumed.
#[inline(always)]
pub fn reprogram<H: PmcHost + VcpuHost>(
    policy: Policy,
    cfg: &PmcConfig,
    st: &mut PmcState,
    host: &mut H,
) -> Result<Report, (Errno, RejectReason)> {
    let wrapped = pause(cfg, st, host);
    let report = |outcome| Report {
        outcome,
        emulated_overflow: wrapped,
        kept: false,
        evicted: 0,
        dropped: false,
        adopted: None,
        kept_set_touched: false,
    };

    // KVM tells the backend of its lazy cleanup only for a vCPU with a set:
    // under `Cache` a vCPU gets one at its first reprogram that does not
    // resume (a counter is first created, or disabled), or the cleanup would
    // release the paused events of counters left disabled for a time slice.
    // Without memory for it the vCPU goes on without one, as under `Reuse`.
    let give_set = |host: &mut H| {
        if policy == Policy::Cache {
            host.give_kept_set();
        }
    };
    match plan(policy, cfg, st) {
        // A counter that may not count does not report emulated overflows.
        Action::Idle => {
            give_set(host);
            Ok(Report {
                emulated_overflow: false,
                ..report(Outcome::Idle)
            })
        }
        Action::Resume { period } => {
            // Reported against the old event, before it may be replaced.
            if wrapped {
                host.emulate_overflow();
            }
            if period.map_or(Ok(()), |p| host.set_period(p)).is_err() {
                let attr = cfg.event_attr(st.counter);
                create(st, host, &attr, RejectReason::PeriodRejected)?;
                return Ok(report(Outcome::Created(RejectReason::PeriodRejected)));
            }
            host.enable();
            st.is_paused = false;
            Ok(report(Outcome::Resumed))
        }
        Action::Recreate { attr, reason } => {
            if wrapped {
                host.emulate_overflow();
            }
            if policy != Policy::Cache {
                create(st, host, &attr, reason)?;
                return Ok(report(Outcome::Created(reason)));
            }
            give_set(host);
            let kept = cache::keep(cfg, st, host);
            let done = |outcome, adopted| Report {
                kept: kept.kept,
                evicted: kept.evicted,
                dropped: kept.dropped,
                adopted,
                kept_set_touched: true,
                ..report(outcome)
            };
            match cache::adopt(cfg, st, host, &attr) {
                Adoption::Running(from) => Ok(done(Outcome::Resumed, Some(from))),
                Adoption::PeriodRefused => {
                    create(st, host, &attr, RejectReason::PeriodRejected)?;
                    Ok(done(Outcome::Created(RejectReason::PeriodRejected), None))
                }
                Adoption::None => {
                    create(st, host, &attr, reason)?;
                    Ok(done(Outcome::Created(reason), None))
                }
            }
        }
    }
}
