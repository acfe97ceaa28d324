// SPDX-License-Identifier: GPL-2.0

//! Reprogram policies: given a paused vPMC, what to do with its host event.
//!
//! The decision is a pure function of the vPMC's configuration and state;
//! [`reprogram`](fn@crate::model::reprogram) carries it out.  What the
//! `cache` policy decides beyond it (what to keep, where to adopt from, the
//! bound, ageing, KVM's lazy cleanup) is in [`cache`](crate::model::cache).

use super::counter::sample_period;
use super::pmc::{EventAttr, PmcConfig, PmcState};

/// How a reprogram treats the host event the vPMC already has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Release and create on every reprogram of a counter that may count,
    /// as KVM did before commit a6da0d77 ("KVM: x86/vPMU: Reuse perf_event
    /// to avoid unnecessary pmc_reprogram_counter").  Unlike that code it
    /// keeps a disabled counter's paused event until the next reprogram, as
    /// 6.12 does: KVM reports emulated overflows through the event a counter
    /// holds, so releasing it earlier would change what the guest sees.
    Legacy,
    /// KVM 6.12: resume the paused event when the config is unchanged, perf
    /// accepts the new period and the PEBS state matches; else recreate.
    Reuse,
    /// `Reuse`, and when the config changes the paused event is not
    /// released but kept in a bounded per-vCPU set under its
    /// [`KeptKey`](super::pmc::KeptKey); a vPMC that is then programmed
    /// with a kept config adopts that event (or takes it from a counter the
    /// guest disabled), re-targeted and with its period recalculated,
    /// instead of creating one.  See [`cache`](super::cache).
    Cache,
}

impl Policy {
    /// Every policy.
    pub const ALL: [Policy; 3] = [Policy::Legacy, Policy::Reuse, Policy::Cache];
}

/// Why a reprogram did not resume the existing event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectReason {
    /// The vPMC has no host event (first use, or released).
    NoEvent,
    /// The guest programmed a different config.
    ConfigChanged,
    /// PEBS was enabled or disabled for this counter.
    PebsChanged,
    /// perf refused the new sample period.
    PeriodRejected,
    /// The `legacy` policy never resumes.
    Legacy,
}

impl RejectReason {
    /// Every value, in a fixed order.
    pub const ALL: [RejectReason; 5] = [
        RejectReason::NoEvent,
        RejectReason::ConfigChanged,
        RejectReason::PebsChanged,
        RejectReason::PeriodRejected,
        RejectReason::Legacy,
    ];
}

/// What a reprogram does with the host event of a paused vPMC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// The counter may not count: leave the event paused (KVM releases it
    /// lazily if the guest stops using the counter).
    Idle,
    /// Same config: set the new period (sampling events only) and enable.
    /// If perf refuses the period, replace the event with a new one for the
    /// config ([`PmcConfig::event_attr`]).
    Resume {
        /// The new sample period; `None` for a counting event.
        period: Option<u64>,
    },
    /// Release the event, if any, and create one with `attr`.
    Recreate {
        /// The new event.
        attr: EventAttr,
        /// Why the old event was not resumed.
        reason: RejectReason,
    },
}

/// Decides what a reprogram of a paused vPMC does under `policy`.
///
/// `state` is the vPMC after `pmc_pause_counter()`: its counter includes
/// everything counted so far.  `Cache` decides as `Reuse`; what differs is
/// how [`reprogram`](fn@crate::model::reprogram) carries out a `Recreate`.
#[inline(always)]
pub fn plan(policy: Policy, cfg: &PmcConfig, state: &PmcState) -> Action {
    if !cfg.allowed() {
        return Action::Idle;
    }

    // The new event's attributes are computed only when one is created:
    // most reprograms of a counting guest resume.
    let recreate = |reason| Action::Recreate {
        attr: cfg.event_attr(state.counter),
        reason,
    };
    let event = match (policy, state.event) {
        (Policy::Legacy, Some(_)) => return recreate(RejectReason::Legacy),
        (_, None) => return recreate(RejectReason::NoEvent),
        (Policy::Reuse | Policy::Cache, Some(event)) => event,
    };

    if state.current_config != cfg.config() {
        return recreate(RejectReason::ConfigChanged);
    }
    if event.precise != cfg.pebs_enabled {
        return recreate(RejectReason::PebsChanged);
    }
    Action::Resume {
        period: if event.sampling {
            Some(sample_period(state.counter, cfg.mask))
        } else {
            None
        },
    }
}
