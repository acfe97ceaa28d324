// SPDX-License-Identifier: GPL-2.0

//! The executor: carries out the model's reprogram of a vPMC on KVM's
//! `struct kvm_pmc` and real perf events.

use core::ffi::c_int;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, Ordering};

use kernel::prelude::*;

use crate::bindings;
use crate::kept;
use crate::model::{
    self, CacheKey, EventAttr, EventInfo, PmcConfig, PmcHost, PmcKind, PmcState, Policy,
};
use crate::perf::{perf_attr, Backing, EventRef, PerfEvent};
use crate::stats::{self, Stat};

/// The host side of a vPMC inside KVM.
///
/// # Invariants
///
/// `pmc` is a vPMC of a vCPU whose `vcpu->mutex` is held by the current
/// task for as long as this value exists, so KVM changes none of its state
/// concurrently except the bits it updates atomically.
struct KvmPmc {
    pmc: NonNull<bindings::kvm_pmc>,
    backing: Backing,
}

impl KvmPmc {
    /// The vPMC's current event.
    fn event(&self) -> Option<EventRef> {
        // SAFETY: by the type invariant `pmc` is valid.
        let event = unsafe { bindings::vpmu_pmc_perf_event(self.pmc.as_ptr()) };
        // SAFETY: KVM keeps the event alive until it is released through
        // this vPMC, which only this task can do while it holds the vCPU.
        NonNull::new(event).map(|e| unsafe { EventRef::from_raw(e) })
    }
}

impl KvmPmc {
    /// The vCPU, as the key of its kept events.
    fn vcpu(&self) -> usize {
        // SAFETY: by the type invariant `pmc` is valid.
        unsafe { bindings::vpmu_pmc_vcpu(self.pmc.as_ptr()) as usize }
    }

    /// How many events the vCPU may keep: the `cache_size` parameter, or
    /// by default twice the vCPU's counters plus one.  KVM reprograms a
    /// rotation's counters in index order and each keeps its old event
    /// before it looks for its new one, so a config moving to a lower
    /// counter is wanted before the higher counter gives its event up: up
    /// to twice the counters can be in flight (measured in the model's
    /// bound sweep, `make bench`).
    fn keep_bound(&self) -> usize {
        // SAFETY: reads an integer parameter.
        match unsafe { bindings::vpmu_param_cache_size() } {
            // SAFETY: by the type invariant `pmc` is valid.
            0 => 2 * unsafe { bindings::vpmu_pmc_nr_counters(self.pmc.as_ptr()) as usize } + 1,
            n => n as usize,
        }
    }
}

impl PmcHost for KvmPmc {
    fn pause(&mut self) -> u64 {
        self.event().map_or(0, EventRef::pause)
    }

    fn read(&mut self) -> u64 {
        self.event().map_or(0, EventRef::read)
    }

    fn set_period(&mut self, period: u64) -> Result<(), model::Errno> {
        match self.event() {
            Some(event) => event.set_period(period).map_err(|e| e.to_errno()),
            None => Err(kernel::error::code::ENOENT.to_errno()),
        }
    }

    fn enable(&mut self) {
        if let Some(event) = self.event() {
            event.enable();
        }
    }

    fn release(&mut self) {
        Stat::Releases.add();
        // SAFETY: by the type invariant `pmc` is valid and ours to change.
        unsafe { bindings::pmc_release_perf_event(self.pmc.as_ptr()) }
    }

    fn create(&mut self, attr: &EventAttr) -> Result<(), model::Errno> {
        if stats::inject_create_failure() {
            return Err(ENOMEM.to_errno());
        }
        let precise = if attr.pebs {
            // SAFETY: by the type invariant `pmc` is valid.
            unsafe { bindings::kvm_pmc_pebs_precise_level(self.pmc.as_ptr()) }
        } else {
            0
        };
        let mut pa = perf_attr(attr, self.backing, precise);
        // SAFETY: `kvm_perf_overflow` is KVM's own handler, in kvm.ko which
        // cannot be unloaded while this module is loaded, and `pmc` lives as
        // long as its vCPU, which releases the event before it goes away.
        let event = unsafe {
            PerfEvent::create(
                &mut pa,
                bindings::kvm_perf_overflow,
                self.pmc.as_ptr().cast(),
            )
        }
        .map_err(|e| e.to_errno())?;
        // SAFETY: `pmc` is valid and has no event (the model released it);
        // KVM owns the event from here on and releases it with the vPMC.
        unsafe { bindings::kvm_pmc_attach_perf_event(self.pmc.as_ptr(), event.into_raw()) };
        Ok(())
    }

    fn emulate_overflow(&mut self) {
        // SAFETY: by the type invariant `pmc` is valid.
        unsafe { bindings::kvm_pmc_emulate_overflow(self.pmc.as_ptr()) }
    }

    fn stash(&mut self, key: CacheKey) {
        // SAFETY: by the type invariant `pmc` is valid and ours to change.
        let event = unsafe { bindings::kvm_pmc_detach_perf_event(self.pmc.as_ptr()) };
        let Some(event) = NonNull::new(event) else {
            return;
        };
        let (mut sampling, mut precise) = (false, false);
        // SAFETY: `event` is live; we just took it from the vPMC.
        unsafe { bindings::vpmu_event_info(event.as_ptr(), &mut sampling, &mut precise) };
        // SAFETY: detached from the vPMC, the event is ours alone to release.
        let event = unsafe { PerfEvent::from_raw(event) };
        let info = EventInfo { sampling, precise };
        kept::keep(self.vcpu(), key, info, event, self.keep_bound());
    }

    fn adopt(&mut self, key: CacheKey) -> Option<EventInfo> {
        let (event, info) = kept::take(self.vcpu(), key)?;
        let event = event.into_raw();
        // Re-targeting a kept event is sound because it is paused:
        // `reprogram()` stashes only events it has just paused, and
        // perf_event_pause() returns once the event is stopped on its CPU
        // (hrtimer cancelled, counter removed), so no overflow handler runs
        // or is pending, and none can start before the model enables the
        // event again.
        //
        // SAFETY: the event is paused (above), so nothing reads its overflow
        // context now; the new context, a vPMC of the vCPU the event was
        // kept for, outlives it: vCPU destruction releases kept events first.
        unsafe { bindings::vpmu_event_retarget(event, self.pmc.as_ptr()) };
        // SAFETY: the model calls `adopt` only while the vPMC holds no event;
        // KVM owns the event from here on and releases it with the vPMC.
        unsafe { bindings::kvm_pmc_attach_perf_event(self.pmc.as_ptr(), event) };
        Some(info)
    }
}

/// The model's view of a snapshot.
fn from_snapshot(s: &bindings::vpmu_pmc_snapshot, host_tsx: bool) -> (PmcConfig, PmcState) {
    let kind = if s.is_fixed {
        PmcKind::Fixed((s.idx - model::arch::FIXED_PMC_BASE_IDX) as u8)
    } else {
        PmcKind::Gp(s.idx as u8)
    };
    let cfg = PmcConfig {
        kind,
        eventsel: s.eventsel,
        fixed_ctrl: s.fixed_ctrl,
        mask: s.mask,
        raw_event_mask: s.raw_event_mask,
        globally_enabled: s.globally_enabled,
        filter_allows: s.filter_allows,
        pebs_enabled: s.pebs_enabled,
        host_tsx,
    };
    let state = PmcState {
        counter: s.counter,
        emulated_counter: s.emulated_counter,
        current_config: s.current_config,
        is_paused: s.is_paused,
        intr: s.intr,
        event: s.has_event.then_some(EventInfo {
            sampling: s.sampling,
            precise: s.precise,
        }),
    };
    (cfg, state)
}

/// Set once at load: guest counters are backed by task-clock events because
/// the host has no PMU and the `soft` parameter asked for it.
static SOFT: AtomicBool = AtomicBool::new(false);

/// Decides the backing of guest counters for this load of the module.
pub(crate) fn init_backing() -> Backing {
    // SAFETY: reads a load-time parameter and the host's PMU capability.
    let soft = unsafe { bindings::vpmu_param_soft() && !bindings::vpmu_host_has_pmu() };
    SOFT.store(soft, Ordering::Relaxed);
    backing()
}

/// How guest counters are backed on this host.
pub(crate) fn backing() -> Backing {
    if SOFT.load(Ordering::Relaxed) {
        Backing::TaskClock
    } else {
        Backing::Hardware
    }
}

#[no_mangle]
extern "C" fn kvm_vpmu_soft_active() -> bool {
    backing() == Backing::TaskClock
}

/// The PMU that soft mode offers KVM: AMD's four legacy counters or an
/// Intel architectural PMU v2 with four GP counters, 48 bits wide.  No fixed
/// counters: KVM maps them to perf's hardware encodings, which a host
/// without a PMU does not have.
const SOFT_GP_COUNTERS: i32 = 4;
const SOFT_COUNTER_WIDTH: i32 = 48;
/// The seven Intel architectural events (CPUID.0AH:EAX[31:24]).
const SOFT_EVENTS_MASK_LEN: i32 = 7;

/// KVM asks for the host PMU because perf has none (patches/0003).
///
/// # Safety
///
/// `cap` must be valid for reads and writes.
#[no_mangle]
unsafe extern "C" fn kvm_vpmu_host_capability(cap: *mut bindings::x86_pmu_capability) {
    if backing() != Backing::TaskClock {
        return;
    }
    // SAFETY: valid for writes, as the caller guarantees.
    let cap = unsafe { &mut *cap };
    cap.version = 2;
    cap.num_counters_gp = SOFT_GP_COUNTERS;
    cap.num_counters_fixed = 0;
    cap.bit_width_gp = SOFT_COUNTER_WIDTH;
    cap.bit_width_fixed = 0;
    cap.events_mask = 0;
    cap.events_mask_len = SOFT_EVENTS_MASK_LEN;
    pr_info!(
        "soft PMU for KVM: {} counters of {} bits counting vCPU run time in ns\n",
        SOFT_GP_COUNTERS,
        SOFT_COUNTER_WIDTH
    );
}

/// The policy the `policy` parameter selects now.
pub(crate) fn current_policy() -> Policy {
    // SAFETY: reads an integer parameter.
    let idx = unsafe { bindings::vpmu_param_policy() };
    Policy::ALL
        .get(idx as usize)
        .copied()
        .unwrap_or(Policy::Reuse)
}

/// Reprograms `pmc` under `policy`; returns 0 or the errno of a failed create.
///
/// # Safety
///
/// `pmc` must be a valid vPMC of a vCPU whose `vcpu->mutex` the current task
/// holds for the duration of the call.
pub(crate) unsafe fn reprogram(
    pmc: NonNull<bindings::kvm_pmc>,
    policy: Policy,
    backing: Backing,
) -> c_int {
    let mut snap = bindings::vpmu_pmc_snapshot::default();
    // SAFETY: `pmc` is valid (caller); `snap` is valid for writes.
    unsafe { bindings::vpmu_pmc_snapshot(pmc.as_ptr(), &mut snap) };
    // SAFETY: reads boot CPU features.
    let host_tsx = unsafe { bindings::vpmu_host_has_tsx() };
    let (cfg, mut state) = from_snapshot(&snap, host_tsx);
    // INVARIANT: the caller holds the vCPU for the lifetime of `host`.
    let mut host = KvmPmc { pmc, backing };

    let result = model::reprogram(policy, &cfg, &mut state, &mut host);
    stats::record(&result);

    let update = bindings::vpmu_pmc_update {
        counter: state.counter,
        current_config: state.current_config,
        is_paused: state.is_paused,
        intr: state.intr,
    };
    // SAFETY: `pmc` is valid (caller); `update` is a valid update.
    unsafe { bindings::vpmu_pmc_update(pmc.as_ptr(), &update) };
    match result {
        Ok(_) => 0,
        Err((errno, _)) => errno,
    }
}
