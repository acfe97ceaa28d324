// SPDX-License-Identifier: GPL-2.0

//! Reprogram policies: given a paused vPMC, what to do with its host event.
//!
//! The decision is a pure function of the vPMC's configuration and state;
//! [`reprogram`](fn@crate::model::reprogram) carries it out.

use super::arch::{
    PmcKind, EVENTSEL_ENABLE, EVENTSEL_INT, EVENTSEL_OS, EVENTSEL_USR, FIXED_OS, FIXED_PMI,
    FIXED_USR, HSW_IN_TX_CHECKPOINTED,
};
use super::counter::sample_period;
use super::reprogram::PmcState;

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
    /// released but kept in a bounded per-vCPU set under its [`KeptKey`]
    /// ([`PmcHost::keep`](super::reprogram::PmcHost::keep)); a vPMC that
    /// is then programmed with a kept config adopts that event, re-targeted
    /// and with its period recalculated, instead of creating one
    /// ([`PmcHost::adopt`](super::reprogram::PmcHost::adopt)).
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

/// What KVM knows about one vPMC when it reprograms it: the guest's
/// programming and the gates in front of it.  Read-only for the decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PmcConfig {
    /// Which counter.
    pub kind: PmcKind,
    /// `pmc->eventsel`; for fixed counters KVM's architectural encoding.
    pub eventsel: u64,
    /// The counter's IA32_FIXED_CTR_CTRL field; 0 for GP counters.
    pub fixed_ctrl: u8,
    /// `pmc_bitmask()`.
    pub mask: u64,
    /// `pmu->raw_event_mask`.
    pub raw_event_mask: u64,
    /// The counter's bit in GLOBAL_CTRL (always set without GLOBAL_CTRL).
    pub globally_enabled: bool,
    /// The VM's PMU event filter lets this event count.
    pub filter_allows: bool,
    /// The counter's bit in IA32_PEBS_ENABLE.
    pub pebs_enabled: bool,
    /// The host has HLE or RTM, where IN_TX_CHECKPOINTED needs period 0.
    pub host_tsx: bool,
}

impl PmcConfig {
    /// `pmc_speculative_in_use()`: the guest enabled the counter locally.
    pub const fn locally_enabled(&self) -> bool {
        match self.kind {
            PmcKind::Gp(_) => self.eventsel & EVENTSEL_ENABLE != 0,
            PmcKind::Fixed(_) => self.fixed_ctrl & (FIXED_OS | FIXED_USR) != 0,
        }
    }

    /// `pmc_event_is_allowed()`: the counter may count on the host.
    pub const fn allowed(&self) -> bool {
        self.globally_enabled && self.locally_enabled() && self.filter_allows
    }

    /// The config KVM compares to decide reuse (`pmc->current_config`):
    /// the whole event select of a GP counter, the 4-bit field of a fixed one.
    pub const fn config(&self) -> u64 {
        match self.kind {
            PmcKind::Gp(_) => self.eventsel,
            PmcKind::Fixed(_) => self.fixed_ctrl as u64,
        }
    }

    /// The [`KeptKey`] of the event this config is served by.
    pub const fn kept_key(&self) -> KeptKey {
        KeptKey::new(self.kind, self.config(), self.pebs_enabled)
    }

    /// The event select with a fixed counter's field folded in, as
    /// `reprogram_counter()` builds it.
    const fn effective_eventsel(&self) -> u64 {
        let mut sel = self.eventsel;
        if let PmcKind::Fixed(_) = self.kind {
            if self.fixed_ctrl & FIXED_OS != 0 {
                sel |= EVENTSEL_OS;
            }
            if self.fixed_ctrl & FIXED_USR != 0 {
                sel |= EVENTSEL_USR;
            }
            if self.fixed_ctrl & FIXED_PMI != 0 {
                sel |= EVENTSEL_INT;
            }
        }
        sel
    }

    /// The host event that serves this vPMC with its counter at `counter`
    /// (`pmc_reprogram_counter()`).
    pub const fn event_attr(&self, counter: u64) -> EventAttr {
        let sel = self.effective_eventsel();
        let raw = sel & self.raw_event_mask;
        let period = if raw & HSW_IN_TX_CHECKPOINTED != 0 && self.host_tsx {
            // IN_TX_CHECKPOINTED counters cannot sample on TSX hosts.
            0
        } else {
            sample_period(counter, self.mask)
        };
        EventAttr {
            config: raw,
            exclude_user: sel & EVENTSEL_USR == 0,
            exclude_kernel: sel & EVENTSEL_OS == 0,
            sample_period: period,
            pebs: self.pebs_enabled,
            intr: sel & EVENTSEL_INT != 0 || self.pebs_enabled,
            current_config: self.config(),
        }
    }
}

/// Identifies a host event for [`Policy::Cache`]: two vPMCs of one vCPU
/// whose configs have equal keys are served by identical perf events, up to
/// the sample period (which the adopting vPMC recalculates).
///
/// For a GP counter the whole event select determines the event, given the
/// vCPU's `raw_event_mask` and the host's TSX, which do not change while it
/// runs; GP counters of one vCPU share their width, so any GP counter can
/// adopt another's event.  For fixed counter `n` the 4-bit control field
/// determines it, and only fixed counter `n` can adopt it.  The PEBS state
/// is part of the key: a precise event never serves a non-PEBS counter, and
/// only serves the GP counter it was made for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeptKey {
    /// `Some(n)` for fixed counter `n`, `None` for any GP counter.
    pub fixed: Option<u8>,
    /// `Some(n)` for a PEBS event of GP counter `n`: KVM asks perf for a
    /// precise level that depends on the counter (`pmc->idx` 0 on CPUs with
    /// PDist), so a PEBS event only serves the counter it was made for.
    pub pebs_gp: Option<u8>,
    /// `pmc->current_config`: the event select of a GP counter, the 4-bit
    /// field of a fixed one.
    pub config: u64,
    /// A PEBS (precise) event.
    pub pebs: bool,
}

impl KeptKey {
    /// The key of an event for a counter of `kind` created for `config`
    /// (as [`PmcConfig::config`] returns it), precise if `pebs`.
    pub const fn new(kind: PmcKind, config: u64, pebs: bool) -> Self {
        KeptKey {
            fixed: match kind {
                PmcKind::Gp(_) => None,
                PmcKind::Fixed(n) => Some(n),
            },
            pebs_gp: match kind {
                PmcKind::Gp(n) if pebs => Some(n),
                _ => None,
            },
            config,
            pebs,
        }
    }

    /// The key of the event the vPMC `kind` holds, if any: it was created
    /// for `state.current_config` (the old event select of a GP counter,
    /// the old field of a fixed one), precise as `state.event` says.
    pub const fn held(kind: PmcKind, state: &PmcState) -> Option<Self> {
        match state.event {
            Some(event) => Some(KeptKey::new(kind, state.current_config, event.precise)),
            None => None,
        }
    }
}

/// The `perf_event_attr` of a host event in the terms the model decides on.
/// The executor adds what never varies (`pinned`, `exclude_host`,
/// `exclude_idle`) and the host's PEBS precision level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventAttr {
    /// `attr.config` for `PERF_TYPE_RAW`.
    pub config: u64,
    /// Do not count in user mode.
    pub exclude_user: bool,
    /// Do not count in kernel mode.
    pub exclude_kernel: bool,
    /// 0 for a counting event.
    pub sample_period: u64,
    /// Request a PEBS (precise) event.
    pub pebs: bool,
    /// `pmc->intr`: overflows raise a guest PMI.
    pub intr: bool,
    /// `pmc->current_config` once the event exists.
    pub current_config: u64,
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
#[inline]
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
