// SPDX-License-Identifier: GPL-2.0

//! One vPMC as a reprogram sees it: what the guest programmed
//! ([`PmcConfig`]), what KVM's `struct kvm_pmc` holds ([`PmcState`]), the
//! host event it asks perf for ([`EventAttr`]) and the key under which the
//! `cache` policy keeps such an event ([`KeptKey`]).

use super::arch::{
    PmcKind, EVENTSEL_ENABLE, EVENTSEL_INT, EVENTSEL_OS, EVENTSEL_USR, FIXED_OS, FIXED_PMI,
    FIXED_USR, HSW_IN_TX_CHECKPOINTED,
};
use super::counter::sample_period;

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
///
/// `#[repr(C)]`, as [`PmcConfig`]: the kernel's shim writes it in place.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
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

/// What KVM knows about one vPMC when it reprograms it: the guest's
/// programming and the gates in front of it.  Read-only for the decision.
///
/// `#[repr(C)]`: the kernel's shim writes it in place, where the model
/// reads it, instead of a copy of KVM's state being copied again (the
/// kernel checks at build time that the shim's layout is this one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct PmcConfig {
    /// `pmc->eventsel`; for fixed counters KVM's architectural encoding.
    pub eventsel: u64,
    /// `pmc_bitmask()`.
    pub mask: u64,
    /// `pmu->raw_event_mask`.
    pub raw_event_mask: u64,
    /// Which counter.
    pub kind: PmcKind,
    /// The counter's IA32_FIXED_CTR_CTRL field; 0 for GP counters.
    pub fixed_ctrl: u8,
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
    #[inline]
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

/// Identifies a host event for [`Policy::Cache`](super::policy::Policy::Cache):
/// two vPMCs of one vCPU whose configs have equal keys are served by identical
/// perf events, up to the sample period (which the adopting vPMC recalculates).
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
