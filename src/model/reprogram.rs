// SPDX-License-Identifier: GPL-2.0

//! One reprogram of one vPMC (`reprogram_counter()`), carried out through
//! [`PmcHost`]: pause, decide, then resume, recreate or release.
//!
//! The sequence is the same for every policy and every host; only
//! [`plan`]'s answer differs by policy, and only [`PmcHost`] differs between
//! the kernel (real perf) and the host tests (simulated perf).  Under
//! [`Policy::Cache`] a `Recreate` first keeps the old event in the vCPU's
//! set and looks there for an event of the new config ([`PmcHost::keep`],
//! [`PmcHost::adopt`]).

use super::counter;
use super::policy::{plan, Action, EventAttr, KeptKey, PmcConfig, Policy, RejectReason};
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
/// `pause`, `read`, `set_period`, `enable`, `release` and `keep` while one
/// exists, and `create` and `adopt` while none does.
///
/// Under [`Policy::Cache`] the host also owns its vCPU's set of kept
/// events: paused events that no vPMC holds, each under the [`KeptKey`] it
/// was created for.  The set is the host's to bound (evicting, and
/// releasing, the least recently kept event), to age in KVM's lazy cleanup
/// and to release when the vCPU goes away.  A host without such a set keeps
/// the default [`keep`](PmcHost::keep) and [`adopt`](PmcHost::adopt),
/// which release instead of keeping and never find a kept event: `Cache`
/// then does exactly what `Reuse` does.
///
/// Why moving a kept event to another vPMC is sound: [`reprogram`] only
/// keeps an event it has just paused (`perf_event_pause()`, which stops
/// it and folds its count into the old vPMC's counter), so a kept event
/// counts nothing, has no overflow in flight, and owes the old vPMC
/// nothing.  [`reprogram`] resets its period from the adopting vPMC's
/// counter before enabling it, so its first overflow after adoption is the
/// adopting counter's wrap, and from then on KVM's overflow handler must
/// find the adopting vPMC (the host re-targets the event's overflow context
/// in `adopt`, while the event is still paused).
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

    /// [`Policy::Cache`] only: detach the vPMC's event, which is paused and
    /// was created for `key`, and keep it in the vCPU's set under `key`
    /// instead of releasing it.  The host may release it, or another kept
    /// event, to stay within its bound.  Afterwards the vPMC holds no event.
    ///
    /// The default, for a host without a set, releases the event.
    fn keep(&mut self, key: KeptKey) {
        let _ = key;
        self.release();
    }

    /// [`Policy::Cache`] only, while the vPMC holds no event: if the vCPU's
    /// set keeps an event under `key`, or a counter of the vCPU that the
    /// guest disabled holds one paused, take it from there and attach it
    /// to this vPMC, still paused and with its period unchanged, its
    /// overflows now delivered to this vPMC; return what it is.  `None`
    /// leaves the vPMC without an event.
    ///
    /// The default, for a host without a set, finds nothing.
    fn adopt(&mut self, key: KeptKey) -> Option<EventInfo> {
        let _ = key;
        None
    }
}

/// What a reprogram did, for the statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Not allowed to count; the event (if any) stays paused.
    Idle,
    /// An existing event was resumed: the vPMC's own, or under
    /// [`Policy::Cache`] one adopted from the vCPU's set
    /// ([`Report::adopted`]).
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
    /// [`Policy::Cache`]: the vPMC's old event was handed to the vCPU's set
    /// ([`PmcHost::keep`]) instead of being released here (a host without
    /// a set releases it there).
    pub kept: bool,
    /// [`Policy::Cache`]: the outcome is [`Outcome::Resumed`] and the event
    /// now serving the vPMC was adopted from the vCPU's set
    /// ([`PmcHost::adopt`]), not created.  An adopted event whose new period
    /// perf refused is released and replaced (outcome
    /// `Created(PeriodRejected)`, `adopted` false).
    pub adopted: bool,
}

/// Pauses the vPMC and folds perf's and KVM's counts into its counter
/// (`pmc_pause_counter()`).  Returns whether emulated counts wrapped it.
#[inline]
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
/// Under `Policy::Cache`, when [`plan`] says `Recreate`: the emulated
/// overflow is reported against the old event as always; then the old
/// event, if any, is kept under the key it was created for, and an event
/// kept under the new config's key is adopted (period recalculated from
/// this vPMC's counter, then enabled) in place of a create.  An unchanged
/// config resumes as under `Reuse`.
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
        kept: false,
        adopted: false,
    };

    match plan(policy, cfg, st) {
        // A counter that may not count does not report emulated overflows.
        Action::Idle => Ok(Report {
            emulated_overflow: false,
            ..report(Outcome::Idle)
        }),
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
            let kept = keep(cfg, st, host);
            let done = |outcome, adopted| Report {
                kept,
                adopted,
                ..report(outcome)
            };
            if adopt(cfg, st, host, &attr) {
                return Ok(done(Outcome::Resumed, true));
            }
            if st.event.is_some() {
                // Adopted, but perf refused the new period: replace it.
                create(st, host, &attr, RejectReason::PeriodRejected)?;
                return Ok(done(Outcome::Created(RejectReason::PeriodRejected), false));
            }
            create(st, host, &attr, reason)?;
            Ok(done(Outcome::Created(reason), false))
        }
    }
}

/// `Policy::Cache`: keeps the vPMC's paused event, if any, in the vCPU's
/// set under the key it was created for.  Returns whether it had one.
fn keep<H: PmcHost>(cfg: &PmcConfig, st: &mut PmcState, host: &mut H) -> bool {
    let Some(key) = KeptKey::held(cfg.kind, st) else {
        return false;
    };
    // The event was paused by this reprogram (or earlier) and its count is
    // in `st.counter`: it leaves nothing behind and counts nothing while kept.
    host.keep(key);
    st.event = None;
    st.current_config = 0;
    true
}

/// `Policy::Cache`: adopts a kept event of `attr`'s config, if the set has
/// one, recalculates its period from this vPMC's counter and enables it.
/// Returns whether it now runs; if perf refused the period the vPMC holds
/// the adopted event, paused, for the caller to replace.
fn adopt<H: PmcHost>(cfg: &PmcConfig, st: &mut PmcState, host: &mut H, attr: &EventAttr) -> bool {
    let Some(info) = host.adopt(cfg.kept_key()) else {
        return false;
    };
    st.event = Some(info);
    st.current_config = attr.current_config;
    st.intr = attr.intr;
    // Paused since it was kept: no overflow is in flight, and the period set
    // here makes its next overflow this counter's wrap, as a new event's.
    if info.sampling
        && host
            .set_period(counter::sample_period(st.counter, cfg.mask))
            .is_err()
    {
        return false;
    }
    host.enable();
    st.is_paused = false;
    true
}
