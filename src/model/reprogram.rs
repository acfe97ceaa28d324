// SPDX-License-Identifier: GPL-2.0

//! One reprogram of one vPMC (`reprogram_counter()`), carried out through
//! [`PmcHost`]: pause, decide, then resume, recreate or release.
//!
//! The sequence is the same for every policy and every host; only
//! [`plan`]'s answer differs by policy, and only [`PmcHost`] differs between
//! the kernel (real perf) and the host tests (simulated perf).

use super::counter;
use super::policy::{plan, Action, EventAttr, PmcConfig, Policy, RejectReason};
use super::Errno;

/// What the vPMC knows of its host event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventInfo {
    /// `is_sampling_event()`: created with a non-zero sample period.
    pub sampling: bool,
    /// Created as a PEBS (precise) event.
    pub precise: bool,
}

impl EventInfo {
    /// The event info of an event created with `attr`.
    pub const fn of(attr: &EventAttr) -> Self {
        EventInfo {
            sampling: attr.sample_period != 0,
            precise: attr.pebs,
        }
    }
}

/// The mutable part of `struct kvm_pmc` that a reprogram reads and writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PmcState {
    /// `pmc->counter`: the guest count not held by the event.
    pub counter: u64,
    /// `pmc->emulated_counter`: counts KVM emulated since the last pause.
    pub emulated_counter: u64,
    /// `pmc->current_config`: the config the event was created for.
    pub current_config: u64,
    /// `pmc->is_paused`: the event is paused.
    pub is_paused: bool,
    /// `pmc->intr`: overflows raise a guest PMI.
    pub intr: bool,
    /// `Some` while `pmc->perf_event` is set.
    pub event: Option<EventInfo>,
}

/// The host side of one vPMC: its perf_event and KVM's overflow bookkeeping.
///
/// Every method acts on the event the vPMC holds; the caller only calls
/// `pause`, `read`, `set_period`, `enable` and `release` while one exists.
pub trait PmcHost {
    /// `perf_event_pause(event, true)`: stop counting, return and reset the count.
    fn pause(&mut self) -> u64;
    /// The running event's count (`perf_event_read_value()`).
    fn read(&mut self) -> u64;
    /// `perf_event_period()`.
    fn set_period(&mut self, period: u64) -> Result<(), Errno>;
    /// `perf_event_enable()`.
    fn enable(&mut self);
    /// `perf_event_release_kernel()`.
    fn release(&mut self);
    /// `perf_event_create_kernel_counter()` with KVM's overflow handler.
    fn create(&mut self, attr: &EventAttr) -> Result<(), Errno>;
    /// `__kvm_perf_overflow(pmc, false)`: an emulated count wrapped the
    /// counter; set its GLOBAL_STATUS bit and, if `pmc->intr`, request a PMI.
    /// Called while the paused old event (if any) is still attached.
    fn emulate_overflow(&mut self);
}

/// What a reprogram did, for the statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Not allowed to count; the event (if any) stays paused.
    Idle,
    /// The existing event was resumed.
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
}

/// Pauses the vPMC and folds perf's and KVM's counts into its counter
/// (`pmc_pause_counter()`).  Returns whether emulated counts wrapped it.
pub fn pause<H: PmcHost>(cfg: &PmcConfig, st: &mut PmcState, host: &mut H) -> bool {
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
pub fn release<H: PmcHost>(st: &mut PmcState, host: &mut H) {
    if st.event.take().is_some() {
        host.release();
        st.current_config = 0;
    }
}

fn create<H: PmcHost>(
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
/// On failure the event could not be created: the vPMC is left without one
/// and the caller asks KVM to retry on the next PMU refresh.  The error
/// carries why the old event was not resumed.
pub fn reprogram<H: PmcHost>(
    policy: Policy,
    cfg: &PmcConfig,
    st: &mut PmcState,
    host: &mut H,
) -> Result<Report, (Errno, RejectReason)> {
    let wrapped = pause(cfg, st, host);
    let report = |outcome| Report {
        outcome,
        emulated_overflow: wrapped,
    };

    match plan(policy, cfg, st) {
        // A counter that may not count does not report emulated overflows.
        Action::Idle => Ok(Report {
            outcome: Outcome::Idle,
            emulated_overflow: false,
        }),
        Action::Resume { period, fallback } => {
            // Reported against the old event, before it may be replaced.
            if wrapped {
                host.emulate_overflow();
            }
            if period.map_or(Ok(()), |p| host.set_period(p)).is_err() {
                create(st, host, &fallback, RejectReason::PeriodRejected)?;
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
            create(st, host, &attr, reason)?;
            Ok(report(Outcome::Created(reason)))
        }
    }
}
