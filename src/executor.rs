// SPDX-License-Identifier: GPL-2.0

//! The executor: carries out the model's decisions on KVM's `struct kvm_pmc`,
//! its vCPU and real perf events, and reports what perf did.  It decides
//! nothing: every choice of every policy is in `crate::model`.

use core::mem::MaybeUninit;

use kernel::error::code::{ENOENT, ENOMEM};

use crate::ffi::kvm;
use crate::ffi::perf::{Backing, DetachedEvent, Event};
use crate::ffi::{self};
use crate::kept::{KVecSlots, VcpuKept, VcpuState};
use crate::model::{
    self, cache, DetachedEvents, EventAttr, PmcConfig, PmcHost, PmcKind, PmcState, Policy, VcpuHost,
};
use crate::stats;

/// A vPMC of a vCPU whose backend state is kvm_vpmu's.
pub(crate) type Pmc<'a> = kvm::Pmc<'a, VcpuState>;
/// A vCPU whose backend state is kvm_vpmu's.
pub(crate) type Vcpu<'a> = kvm::Vcpu<'a, VcpuState>;
/// A vCPU being destroyed, whose backend state is kvm_vpmu's.
pub(crate) type VcpuDestroyed = kvm::VcpuDestroyed<VcpuState>;

/// The vCPU's set, given a new one first if `create`.
fn kept_set(vcpu: Vcpu<'_>, create: bool) -> Option<&mut VcpuKept> {
    let state = if create {
        vcpu.into_state_or_new(VcpuState::new).ok()
    } else {
        vcpu.into_state()
    };
    state.map(|state| &mut state.kept)
}

/// Brings the host-wide count of kept events up to date with the vCPU's set.
fn recount(vcpu: Vcpu<'_>) {
    if let Some(state) = vcpu.into_state() {
        state.recount();
    }
}

fn next_pmc(
    mut vcpu: Vcpu<'_>,
    idx: &mut u32,
    paused_only: bool,
) -> Option<(PmcConfig, PmcState, bool)> {
    let mut snap = MaybeUninit::uninit();
    let (pmc, cfg, state) = vcpu.next_pmc(idx, paused_only, &mut snap)?;
    Some((*cfg, *state, pmc.in_use()))
}

fn detach_from(mut vcpu: Vcpu<'_>, kind: PmcKind) -> Option<DetachedEvent> {
    let mut snap = MaybeUninit::uninit();
    vcpu.pmc(kind.idx(), &mut snap)?.0.detach_event()
}

/// The host side of a vPMC inside KVM, and of its vCPU.
struct KvmHost<'a> {
    pmc: Pmc<'a>,
    backing: Backing,
}

impl DetachedEvents for KvmHost<'_> {
    type Event = DetachedEvent;

    fn release_detached(&mut self, event: DetachedEvent) {
        // Dropping it releases it through its vCPU.
        drop(event);
    }
}

impl PmcHost for KvmHost<'_> {
    #[inline]
    fn pause(&mut self) -> u64 {
        self.pmc.pause_event()
    }

    fn read(&mut self) -> u64 {
        self.pmc.event().map_or(0, Event::read)
    }

    #[inline]
    fn set_period(&mut self, period: u64) -> Result<(), model::Errno> {
        let event = self.pmc.event().ok_or_else(|| ENOENT.to_errno())?;
        event.set_period(period).map_err(|e| e.to_errno())
    }

    #[inline]
    fn enable(&mut self) {
        self.pmc.enable_event();
    }

    #[inline]
    fn release(&mut self) {
        self.pmc.release_event();
    }

    #[inline]
    fn create(&mut self, attr: &EventAttr) -> Result<(), model::Errno> {
        if ffi::should_fail_create() {
            return Err(ENOMEM.to_errno());
        }
        self.pmc
            .create_event(attr, self.backing)
            .map_err(|e| e.to_errno())
    }

    fn emulate_overflow(&mut self) {
        self.pmc.emulate_overflow();
    }

    fn detach(&mut self) -> Option<DetachedEvent> {
        self.pmc.detach_event()
    }

    fn attach(&mut self, event: DetachedEvent) {
        // An event of another vCPU cannot come from this vCPU's set; were
        // it to, it is released and the model finds no event to enable.
        self.pmc.adopt_event(event);
    }
}

impl VcpuHost for KvmHost<'_> {
    type Slots = KVecSlots<DetachedEvent>;

    fn kept_set(&mut self, create: bool) -> Option<&mut VcpuKept> {
        let state = if create {
            self.pmc.state_or_new(VcpuState::new).ok()
        } else {
            self.pmc.state()
        };
        state.map(|state| &mut state.kept)
    }

    #[inline]
    fn give_kept_set(&mut self) {
        if self.pmc.state().is_none() {
            let _ = self.kept_set(true);
        }
    }

    fn nr_counters(&self) -> usize {
        self.pmc.nr_counters()
    }

    fn cache_size(&self) -> usize {
        ffi::cache_size()
    }

    fn next_pmc(
        &mut self,
        idx: &mut u32,
        paused_only: bool,
    ) -> Option<(PmcConfig, PmcState, bool)> {
        next_pmc(self.pmc.vcpu(), idx, paused_only)
    }

    fn detach_from(&mut self, kind: PmcKind) -> Option<DetachedEvent> {
        detach_from(self.pmc.vcpu(), kind)
    }
}

/// Reprograms `pmc`, which held `cfg` and `state` when KVM handed it over
/// (`cfg.filter_allows` not looked up yet), under `policy`; returns 0 or
/// the errno of a failed create.
#[inline(always)]
pub(crate) fn reprogram(
    pmc: Pmc<'_>,
    cfg: &mut PmcConfig,
    state: &mut PmcState,
    policy: Policy,
    backing: Backing,
) -> i32 {
    // As in KVM's pmc_event_is_allowed(), the filter is looked up only for a
    // counter enabled locally and globally: only then does it decide.
    cfg.filter_allows = cfg.globally_enabled && cfg.locally_enabled() && pmc.event_filter_allows();
    let mut host = KvmHost { pmc, backing };

    let result = model::reprogram(policy, cfg, state, &mut host);
    stats::record(&mut host.pmc.stats(), &result);
    let (decision, refusal, kept) = stats::trace_record(&result);
    // Only a reprogram under cache that tried to keep or adopt changed the
    // set, or one whose create failed after a keep.
    if result
        .as_ref()
        .map_or(policy == Policy::Cache, |r| r.kept_set_touched)
    {
        if let Some(state) = host.pmc.state() {
            state.recount();
        }
    }

    host.pmc.update(state, decision, refusal, kept);
    match result {
        Ok(_) => 0,
        Err((errno, _)) => errno,
    }
}

/// A vCPU in KVM's lazy cleanup.
struct KvmVcpu<'a>(Vcpu<'a>);

impl DetachedEvents for KvmVcpu<'_> {
    type Event = DetachedEvent;

    fn release_detached(&mut self, event: DetachedEvent) {
        drop(event);
    }
}

impl VcpuHost for KvmVcpu<'_> {
    type Slots = KVecSlots<DetachedEvent>;

    fn kept_set(&mut self, create: bool) -> Option<&mut VcpuKept> {
        kept_set(self.0.reborrow(), create)
    }

    fn nr_counters(&self) -> usize {
        self.0.nr_counters()
    }

    fn cache_size(&self) -> usize {
        ffi::cache_size()
    }

    fn next_pmc(
        &mut self,
        idx: &mut u32,
        paused_only: bool,
    ) -> Option<(PmcConfig, PmcState, bool)> {
        next_pmc(self.0.reborrow(), idx, paused_only)
    }

    fn detach_from(&mut self, kind: PmcKind) -> Option<DetachedEvent> {
        detach_from(self.0.reborrow(), kind)
    }
}

/// KVM's lazy cleanup of a vCPU with kept events, at its first entry after
/// it was scheduled in ([`cache::cleanup`]).
pub(crate) fn vcpu_cleanup(vcpu: Vcpu<'_>, policy: Policy) {
    let mut vcpu = KvmVcpu(vcpu);
    let done = cache::cleanup(policy, &mut vcpu, ffi::current_run_time_ns());
    recount(vcpu.0.reborrow());
    stats::record_cleanup(&mut vcpu.0.stats(), &done);
}

/// The vCPU is being destroyed: what it keeps is released, and the set
/// freed ([`cache::destroy`]).
pub(crate) fn vcpu_destroy(vcpu: VcpuDestroyed) {
    if let Some(mut state) = vcpu.take_state() {
        cache::destroy(&mut state.kept, drop);
        // Dropping the state frees the set and uncounts its events.
    }
}
