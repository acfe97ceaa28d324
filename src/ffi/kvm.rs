// SPDX-License-Identifier: GPL-2.0

//! KVM's side of a reprogram: the vPMC being reprogrammed, its vCPU, and
//! the host PMU that KVM asks a backend to describe.  `struct kvm_pmc` stays
//! opaque: the shim copies what the model needs in and out of it.
//!
//! A vCPU may hold one value of the backend's for as long as it lives
//! (`pmu->backend_priv`); its type `S` is the backend's, and the seam only
//! boxes, lends and gives it back.

use core::marker::PhantomData;
use core::mem::MaybeUninit;
use core::ptr::NonNull;

use kernel::alloc::{flags::GFP_KERNEL, KBox};
use kernel::error::{to_result, Result};

use super::bindings;
use super::perf::{Attr, Backing, DetachedEvent, Event};
use crate::model::{EventAttr, EventInfo, PmcConfig, PmcKind, PmcState};

/// What a reprogram needs to know of a vPMC, copied out of KVM: the model's
/// [`PmcConfig`] and [`PmcState`], written in place ([`Pmc::from_raw`]).
pub(crate) use bindings::vpmu_pmc_snapshot as PmcSnapshot;

// The shim writes the model's config and state where the model reads them:
// their layouts must be the shim's, field by field.
const _: () = {
    use bindings::{vpmu_pmc_config as C, vpmu_pmc_state as S};
    use core::mem::{align_of, offset_of, size_of};

    assert!(size_of::<PmcConfig>() == size_of::<C>());
    assert!(align_of::<PmcConfig>() == align_of::<C>());
    assert!(offset_of!(PmcConfig, eventsel) == offset_of!(C, eventsel));
    assert!(offset_of!(PmcConfig, mask) == offset_of!(C, mask));
    assert!(offset_of!(PmcConfig, raw_event_mask) == offset_of!(C, raw_event_mask));
    assert!(offset_of!(PmcConfig, kind) == offset_of!(C, kind));
    assert!(size_of::<PmcKind>() == 2 && align_of::<PmcKind>() == 1);
    assert!(offset_of!(PmcConfig, fixed_ctrl) == offset_of!(C, fixed_ctrl));
    assert!(offset_of!(PmcConfig, globally_enabled) == offset_of!(C, globally_enabled));
    assert!(offset_of!(PmcConfig, filter_allows) == offset_of!(C, filter_allows));
    assert!(offset_of!(PmcConfig, pebs_enabled) == offset_of!(C, pebs_enabled));
    assert!(offset_of!(PmcConfig, host_tsx) == offset_of!(C, host_tsx));

    assert!(size_of::<PmcState>() == size_of::<S>());
    assert!(align_of::<PmcState>() == align_of::<S>());
    assert!(offset_of!(PmcState, counter) == offset_of!(S, counter));
    assert!(offset_of!(PmcState, emulated_counter) == offset_of!(S, emulated_counter));
    assert!(offset_of!(PmcState, current_config) == offset_of!(S, current_config));
    assert!(offset_of!(PmcState, is_paused) == offset_of!(S, is_paused));
    assert!(offset_of!(PmcState, intr) == offset_of!(S, intr));
    assert!(offset_of!(PmcState, event) == offset_of!(S, event));
    assert!(size_of::<Option<EventInfo>>() == 2 && align_of::<Option<EventInfo>>() == 1);
};

/// What backs a vPMC after a reprogram, as KVM's `kvm_pmu_reprogram`
/// tracepoint spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Decision {
    Idle = bindings::vpmu_decision_VPMU_DECISION_IDLE as u8,
    Resume = bindings::vpmu_decision_VPMU_DECISION_RESUME as u8,
    Adopt = bindings::vpmu_decision_VPMU_DECISION_ADOPT as u8,
    AdoptPaused = bindings::vpmu_decision_VPMU_DECISION_ADOPT_PAUSED as u8,
    Create = bindings::vpmu_decision_VPMU_DECISION_CREATE as u8,
    CreateFailed = bindings::vpmu_decision_VPMU_DECISION_CREATE_FAILED as u8,
}

/// Why a vPMC's paused event was not resumed, as the tracepoint spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Refusal {
    None = bindings::vpmu_refusal_VPMU_REFUSAL_NONE as u8,
    NoEvent = bindings::vpmu_refusal_VPMU_REFUSAL_NO_EVENT as u8,
    ConfigChanged = bindings::vpmu_refusal_VPMU_REFUSAL_CONFIG_CHANGED as u8,
    PebsChanged = bindings::vpmu_refusal_VPMU_REFUSAL_PEBS_CHANGED as u8,
    PeriodRefused = bindings::vpmu_refusal_VPMU_REFUSAL_PERIOD_REFUSED as u8,
    Policy = bindings::vpmu_refusal_VPMU_REFUSAL_POLICY as u8,
}

/// The vCPU statistics in KVM's `struct kvm_vcpu_stat` that the backend
/// counts; KVM counts the others (reprograms, creates, adoptions, releases)
/// in the helpers the backend calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VcpuStat {
    /// `pmu_event_create_failures`.
    EventCreateFailures,
    /// `pmu_event_resumes`.
    EventResumes,
    /// `pmu_events_kept`.
    EventsKept,
    /// `pmu_events_evicted`.
    EventsEvicted,
}

/// A vCPU's PMU statistics in KVM, for as long as its mutex is held.
///
/// # Invariants
///
/// `stat` points to the vCPU's `vcpu->stat.pmu_reprograms` and the counters
/// after it, which live for `'a` and which only the holder of the vCPU's
/// mutex writes.  KVM's stats readers read them concurrently, as they read
/// every vCPU statistic: each is written with one volatile store.
pub(crate) struct VcpuStats<'a> {
    stat: NonNull<bindings::vpmu_vcpu_stat>,
    _locked: PhantomData<&'a mut bindings::vpmu_vcpu_stat>,
}

impl VcpuStats<'_> {
    /// Adds `n` to `stat`.
    #[inline]
    pub(crate) fn add(&mut self, stat: VcpuStat, n: u64) {
        let s = self.stat.as_ptr();
        // SAFETY: `s` is valid, and no other task writes it (type
        // invariant); only a field's address is taken, no reference.
        let field = unsafe {
            match stat {
                VcpuStat::EventCreateFailures => {
                    core::ptr::addr_of_mut!((*s).event_create_failures)
                }
                VcpuStat::EventResumes => core::ptr::addr_of_mut!((*s).event_resumes),
                VcpuStat::EventsKept => core::ptr::addr_of_mut!((*s).events_kept),
                VcpuStat::EventsEvicted => core::ptr::addr_of_mut!((*s).events_evicted),
            }
        };
        // SAFETY: as above; KVM's readers see the old or the new value, as
        // for its own counters.
        unsafe { field.write_volatile(field.read_volatile().wrapping_add(n)) };
    }
}

/// A vPMC of a vCPU whose backend state is an `S`.
///
/// # Invariants
///
/// `pmc` is a vPMC of the vCPU `vcpu`, whose `vcpu->mutex` the current
/// task holds for `'a`, so KVM changes none of the vPMC's state
/// concurrently except the bits it updates atomically.  The vCPU's
/// `backend_priv` is NULL or a `KBox<S>` given to it by
/// [`Vcpu::into_state_or_new`], and `state` is that pointer.  `event` is
/// `pmc->perf_event` and `paused` whether that event is paused: only this
/// value changes them while it lives, and no other `Pmc` of the same vPMC is
/// handed out meanwhile (the [`Vcpu`] it lends skips it).
pub(crate) struct Pmc<'a, S> {
    pmc: NonNull<bindings::kvm_pmc>,
    vcpu: NonNull<bindings::kvm_vcpu>,
    event: Option<NonNull<bindings::perf_event>>,
    paused: bool,
    state: *mut S,
    stat: NonNull<bindings::vpmu_vcpu_stat>,
    _vcpu_locked: PhantomData<(&'a mut bindings::kvm_pmc, &'a mut S)>,
}

impl<'a, S> Pmc<'a, S> {
    /// `None` for NULL, or for a vPMC without a vCPU, which KVM never
    /// hands over: the caller then fails the reprogram (`-EINVAL`).
    /// Also returns what KVM holds in the vPMC now, in the model's terms,
    /// written into `snap`; the event filter is not looked up
    /// (`filter_allows` is false).
    ///
    /// # Safety
    ///
    /// `pmc` must be NULL or a vPMC of a vCPU whose `vcpu->mutex` the current
    /// task holds for `'a`, and whose `backend_priv` is NULL or a `KBox<S>`
    /// given to it through this type or [`Vcpu`] with the same `S`.
    #[inline(always)]
    pub(crate) unsafe fn from_raw<'s>(
        pmc: *mut bindings::kvm_pmc,
        snap: &'s mut MaybeUninit<PmcSnapshot>,
    ) -> Option<(Self, &'s mut PmcConfig, &'s mut PmcState)> {
        let pmc = NonNull::new(pmc)?;
        let s = snap.as_mut_ptr();
        // SAFETY: a valid vPMC, ours to read (the caller); `s` is valid for
        // writes.
        unsafe { bindings::vpmu_pmc_snapshot(pmc.as_ptr(), s) };
        // SAFETY: vpmu_pmc_snapshot() wrote these fields; read through the
        // pointer, as the Rust fields are not written yet.
        let (vcpu, event, backend_priv, stat, idx, sampling, precise) = unsafe {
            (
                (*s).vcpu,
                (*s).event,
                (*s).backend_priv,
                (*s).stat,
                (*s).idx,
                (*s).sampling,
                (*s).precise,
            )
        };
        let vcpu = NonNull::new(vcpu)?;
        let stat = NonNull::new(stat)?;
        let event = NonNull::new(event);
        // SAFETY: in `*s`; the layouts are `PmcConfig`'s and `PmcState`'s
        // (checked at build time above).
        let (cfg, state): (*mut PmcConfig, *mut PmcState) = unsafe {
            (
                core::ptr::addr_of_mut!((*s).cfg).cast(),
                core::ptr::addr_of_mut!((*s).state).cast(),
            )
        };
        // SAFETY: the fields the shim leaves to Rust, written through
        // pointers: no reference to the partly written values is made.
        unsafe {
            core::ptr::addr_of_mut!((*cfg).kind).write(PmcKind::from_idx(idx));
            core::ptr::addr_of_mut!((*cfg).filter_allows).write(false);
            core::ptr::addr_of_mut!((*state).event)
                .write(event.map(|_| EventInfo { sampling, precise }));
        }
        // SAFETY: every field is written now, each with a valid value (C
        // stores a `bool` as 0 or 1), and `snap` is borrowed for `'s`.
        let (cfg, state) = unsafe { (&mut *cfg, &mut *state) };
        // INVARIANT: the vPMC's own vCPU, locked, with backend state of type
        // `S`, as the caller guarantees; its event as KVM holds it.
        let pmc = Pmc {
            pmc,
            vcpu,
            event,
            paused: state.is_paused,
            state: backend_priv.cast(),
            stat,
            _vcpu_locked: PhantomData,
        };
        Some((pmc, cfg, state))
    }

    fn as_ptr(&self) -> *mut bindings::kvm_pmc {
        self.pmc.as_ptr()
    }

    fn vcpu_ptr(&self) -> NonNull<bindings::kvm_vcpu> {
        self.vcpu
    }

    /// `kvm_pmc_event_filter_allows()`: the VM's PMU event filter lets the
    /// vPMC's event count.
    #[inline]
    pub(crate) fn event_filter_allows(&self) -> bool {
        // SAFETY: the vPMC is valid and ours to read (type invariant).
        unsafe { bindings::kvm_pmc_event_filter_allows(self.as_ptr()) }
    }

    /// Writes `state` back into the vPMC and records what the reprogram
    /// decided in KVM's `kvm_pmu_reprogram` tracepoint.
    #[inline]
    pub(crate) fn update(
        &mut self,
        state: &PmcState,
        decision: Decision,
        refusal: Refusal,
        kept: bool,
    ) {
        let state: *const bindings::vpmu_pmc_state = core::ptr::from_ref(state).cast();
        // SAFETY: the vPMC is valid and ours to change (type invariant);
        // `state` has the shim's layout (checked at build time above).
        unsafe {
            bindings::vpmu_pmc_update(self.as_ptr(), state, decision as u8, refusal as u8, kept)
        }
    }

    /// The vPMC's host event, borrowed for as long as the vPMC is.
    #[inline]
    pub(crate) fn event(&self) -> Option<&Event> {
        // SAFETY: `pmc->perf_event` (type invariant), which KVM keeps until
        // it is released or detached through this value, which takes
        // `&mut self`.
        self.event.map(|e| unsafe { Event::from_raw(e) })
    }

    /// `perf_event_pause()` of the vPMC's event, if any: stops it, returns
    /// and resets its count.
    #[inline]
    pub(crate) fn pause_event(&mut self) -> u64 {
        let count = self.event().map_or(0, Event::pause);
        self.paused = true;
        count
    }

    /// `perf_event_enable()` of the vPMC's event, if any.
    #[inline]
    pub(crate) fn enable_event(&mut self) {
        if let Some(event) = self.event() {
            event.enable();
            self.paused = false;
        }
    }

    /// Counters of the vCPU: general purpose and fixed.
    pub(crate) fn nr_counters(&self) -> usize {
        // SAFETY: the vCPU is valid (type invariant).
        unsafe { bindings::vpmu_vcpu_nr_counters(self.vcpu.as_ptr()) as usize }
    }

    /// The guest accessed the vPMC in the time slice that ended.
    pub(crate) fn in_use(&self) -> bool {
        // SAFETY: the vPMC is valid and ours to read (type invariant).
        unsafe { bindings::vpmu_pmc_in_use(self.as_ptr()) }
    }

    /// The vCPU's PMU statistics.
    #[inline]
    pub(crate) fn stats(&mut self) -> VcpuStats<'_> {
        // INVARIANT: the vCPU's, whose mutex is held for `'a` (type
        // invariant).
        VcpuStats {
            stat: self.stat,
            _locked: PhantomData,
        }
    }

    /// The vCPU's backend state, if it has one.
    #[inline]
    pub(crate) fn state(&mut self) -> Option<&mut S> {
        // SAFETY: NULL or the vCPU's live `KBox<S>` (type invariant), which
        // only the holder of the vCPU's mutex reaches, here through `self`.
        unsafe { self.state.as_mut() }
    }

    /// The vCPU's backend state, giving it `new()` first if it has none.
    pub(crate) fn state_or_new(&mut self, new: impl FnOnce() -> S) -> Result<&mut S> {
        if self.state.is_null() {
            let state: *mut S = self.vcpu().into_state_or_new(new)?;
            // INVARIANT: the vCPU's box (given to it just now, unless a
            // borrowed `Vcpu` had given it one).
            self.state = state;
        }
        // SAFETY: as in `state()`; not NULL (above).
        Ok(unsafe { &mut *self.state })
    }

    /// `kvm_pmc_release_perf_event()`.
    #[inline]
    pub(crate) fn release_event(&mut self) {
        // SAFETY: the vPMC is valid and ours to change (type invariant).
        unsafe { bindings::kvm_pmc_release_perf_event(self.as_ptr()) };
        // INVARIANT: KVM released it and cleared `pmc->perf_event`.
        self.event = None;
    }

    /// Creates the vPMC's event with KVM's overflow handler and attaches it;
    /// the vPMC must have none.
    #[inline]
    pub(crate) fn create_event(&mut self, attr: &EventAttr, backing: Backing) -> Result {
        let precise = if attr.pebs {
            // SAFETY: the vPMC is valid (type invariant).
            unsafe { bindings::kvm_pmc_pebs_precise_level(self.as_ptr()) }
        } else {
            0
        };
        let pa = Attr::new(attr, backing, precise);
        // SAFETY: `kvm_perf_overflow` is in kvm.ko, which cannot be unloaded
        // while this module is loaded, and the vPMC lives as long as its
        // vCPU, which releases the event before it goes away.
        let event = unsafe { pa.create(Some(bindings::kvm_perf_overflow), self.as_ptr().cast()) }?;
        // SAFETY: the vPMC has no event (caller) and is ours to change; KVM
        // owns the event from here on and releases it with the vPMC.
        unsafe { bindings::kvm_pmc_attach_perf_event(self.as_ptr(), event.as_ptr()) };
        // INVARIANT: attached, and perf created it enabled.
        self.event = Some(event);
        self.paused = false;
        Ok(())
    }

    /// `kvm_pmc_emulate_overflow()`: an emulated count wrapped the counter.
    pub(crate) fn emulate_overflow(&mut self) {
        // SAFETY: the vPMC is valid and ours to change (type invariant).
        unsafe { bindings::kvm_pmc_emulate_overflow(self.as_ptr()) }
    }

    /// Takes the vPMC's paused event away without releasing it; `None` if
    /// it has none, or a running one.
    pub(crate) fn detach_event(&mut self) -> Option<DetachedEvent> {
        if self.event.is_none() || !self.paused {
            return None;
        }
        // SAFETY: the vPMC is valid and ours to change (type invariant).
        let event = NonNull::new(unsafe { bindings::kvm_pmc_detach_perf_event(self.as_ptr()) })?;
        // INVARIANT: KVM cleared `pmc->perf_event`.
        self.event = None;
        // SAFETY: just detached from a vPMC of this vCPU, whose mutex is
        // held (type invariant); it is paused (checked above).
        Some(unsafe { DetachedEvent::new(event, self.vcpu_ptr()) })
    }

    /// Gives the vPMC, which has no event, a paused event detached from a
    /// vPMC of the same vCPU; its overflows now reach this vPMC.  An event
    /// of another vCPU is released instead and `false` returned.
    pub(crate) fn adopt_event(&mut self, event: DetachedEvent) -> bool {
        let (event_ptr, vcpu) = event.into_raw();
        if vcpu != self.vcpu_ptr() {
            // SAFETY: rebuilt from what `into_raw` gave up; dropping it
            // releases it through its own vCPU.
            drop(unsafe { DetachedEvent::new(event_ptr, vcpu) });
            return false;
        }
        // SAFETY: paused, detached from a vPMC of this vCPU, whose mutex is
        // held (type invariants), so no overflow is in flight while KVM
        // re-targets it; KVM owns it from here on.
        unsafe { bindings::kvm_pmc_adopt_perf_event(self.as_ptr(), event_ptr.as_ptr()) };
        // INVARIANT: attached, still paused.
        self.event = Some(event_ptr);
        self.paused = true;
        true
    }

    /// The vPMC's vCPU, borrowed from the vPMC; it hands out the vCPU's
    /// other vPMCs only.
    pub(crate) fn vcpu(&mut self) -> Vcpu<'_, S> {
        // INVARIANT: the vPMC's vCPU, whose mutex is held for `'a` and whose
        // backend state is an `S` (type invariant); it skips this vPMC.
        Vcpu {
            vcpu: self.vcpu,
            skip: Some(self.pmc),
            _locked: PhantomData,
        }
    }
}

/// A vCPU in one of KVM's backend callbacks, whose backend state is an `S`.
///
/// # Invariants
///
/// `vcpu` is a vCPU whose `vcpu->mutex` the current task holds for `'a`;
/// its `backend_priv` is NULL or a `KBox<S>` given to it by
/// [`Vcpu::into_state_or_new`].  It never hands out the vPMC `skip`, which a
/// [`Pmc`] it was borrowed from holds.
pub(crate) struct Vcpu<'a, S> {
    vcpu: NonNull<bindings::kvm_vcpu>,
    skip: Option<NonNull<bindings::kvm_pmc>>,
    _locked: PhantomData<(&'a mut bindings::kvm_vcpu, &'a mut S)>,
}

impl<'a, S> Vcpu<'a, S> {
    /// # Safety
    ///
    /// `vcpu` must be NULL or a vCPU whose `vcpu->mutex` the current task
    /// holds for `'a`, and whose `backend_priv` is NULL or a `KBox<S>` given
    /// to it through this type or [`Pmc`] with the same `S`.
    pub(crate) unsafe fn from_raw(vcpu: *mut bindings::kvm_vcpu) -> Option<Self> {
        // INVARIANT: guaranteed by the caller; no vPMC of it is held.
        NonNull::new(vcpu).map(|vcpu| Vcpu {
            vcpu,
            skip: None,
            _locked: PhantomData,
        })
    }

    /// The vCPU, borrowed again for a shorter time.
    pub(crate) fn reborrow(&mut self) -> Vcpu<'_, S> {
        // INVARIANT: the same vCPU, for a lifetime within `'a`.
        Vcpu {
            vcpu: self.vcpu,
            skip: self.skip,
            _locked: PhantomData,
        }
    }

    /// Counters of the vCPU: general purpose and fixed.
    pub(crate) fn nr_counters(&self) -> usize {
        // SAFETY: the vCPU is valid (type invariant).
        unsafe { bindings::vpmu_vcpu_nr_counters(self.vcpu.as_ptr()) as usize }
    }

    /// The vCPU's PMU statistics.
    pub(crate) fn stats(&mut self) -> VcpuStats<'_> {
        // SAFETY: the vCPU is valid (type invariant); the shim returns the
        // address of a field of it, which is not NULL.
        let stat = unsafe { NonNull::new_unchecked(bindings::vpmu_vcpu_stat(self.vcpu.as_ptr())) };
        // INVARIANT: the vCPU's, whose mutex is held for `'a` (type
        // invariant).
        VcpuStats {
            stat,
            _locked: PhantomData,
        }
    }

    /// The next vPMC from index `idx` on, in index order, and what KVM
    /// holds in it (written into `snap`); `idx` moves past it.
    /// With `paused_only`, the next that holds a paused event.
    pub(crate) fn next_pmc<'s>(
        &mut self,
        idx: &mut u32,
        paused_only: bool,
        snap: &'s mut MaybeUninit<PmcSnapshot>,
    ) -> Option<(Pmc<'_, S>, &'s mut PmcConfig, &'s mut PmcState)> {
        loop {
            // SAFETY: the vCPU is valid (type invariant); `idx` is valid for
            // reads and writes.
            let pmc = unsafe { bindings::vpmu_vcpu_next_pmc(self.vcpu.as_ptr(), idx, paused_only) };
            if NonNull::new(pmc) != self.skip || pmc.is_null() {
                // SAFETY: NULL or a vPMC of this vCPU other than `skip`,
                // whose mutex is held while `self` is borrowed and whose
                // backend state is an `S` (type invariant).
                return unsafe { Pmc::from_raw(pmc, snap) };
            }
        }
    }

    /// The vPMC with index `idx` (`pmc->idx`), if the vCPU has it and it is
    /// not the one this vCPU was borrowed from, and what KVM holds in it
    /// (written into `snap`).
    pub(crate) fn pmc<'s>(
        &mut self,
        idx: u32,
        snap: &'s mut MaybeUninit<PmcSnapshot>,
    ) -> Option<(Pmc<'_, S>, &'s mut PmcConfig, &'s mut PmcState)> {
        // SAFETY: the vCPU is valid (type invariant).
        let pmc = unsafe { bindings::vpmu_vcpu_pmc(self.vcpu.as_ptr(), idx) };
        if NonNull::new(pmc) == self.skip {
            return None;
        }
        // SAFETY: as in `next_pmc`.
        unsafe { Pmc::from_raw(pmc, snap) }
    }

    fn priv_ptr(&self) -> *mut S {
        // SAFETY: the vCPU is valid (type invariant).
        unsafe { bindings::vpmu_vcpu_backend_priv(self.vcpu.as_ptr()) }.cast()
    }

    /// The vCPU's backend state, if it has one.
    pub(crate) fn into_state(self) -> Option<&'a mut S> {
        let state = self.priv_ptr();
        // SAFETY: NULL or a live `KBox<S>` (type invariant), which only the
        // holder of the vCPU's mutex reaches.
        unsafe { state.as_mut() }
    }

    /// The vCPU's backend state, giving it `new()` first if it has none.
    /// The state then pins this module until the vCPU is destroyed
    /// ([`VcpuDestroyed::take_state`]).
    pub(crate) fn into_state_or_new(self, new: impl FnOnce() -> S) -> Result<&'a mut S> {
        let state = self.priv_ptr();
        if !state.is_null() {
            // SAFETY: a live `KBox<S>` (type invariant), which only the
            // holder of the vCPU's mutex reaches.
            return Ok(unsafe { &mut *state });
        }
        let state = KBox::into_raw(KBox::new(new(), GFP_KERNEL)?);
        // SAFETY: the vCPU is valid and has no backend state (checked above);
        // KVM calls `vcpu_destroy`, which frees it, before the vCPU goes away.
        let ret = unsafe { bindings::kvm_pmu_set_backend_priv(self.vcpu.as_ptr(), state.cast()) };
        if let Err(e) = to_result(ret) {
            // SAFETY: KVM refused it, so the box is still only ours.
            drop(unsafe { KBox::from_raw(state) });
            return Err(e);
        }
        // SAFETY: just allocated and handed to the vCPU, whose mutex is held.
        Ok(unsafe { &mut *state })
    }
}

/// A vCPU that KVM is destroying (`vcpu_destroy`), whose backend state is an
/// `S`.
///
/// # Invariants
///
/// `vcpu` is being destroyed by the current task; its `backend_priv` is a
/// `KBox<S>` given to it by [`Vcpu::into_state_or_new`] that nothing has
/// taken yet, and that KVM clears when the callback returns.
pub(crate) struct VcpuDestroyed<S> {
    vcpu: NonNull<bindings::kvm_vcpu>,
    _state: PhantomData<KBox<S>>,
}

impl<S> VcpuDestroyed<S> {
    /// # Safety
    ///
    /// `vcpu` must be NULL or a vCPU that the current task is destroying in
    /// KVM's `vcpu_destroy` callback, which KVM calls once per vCPU with
    /// backend state, and whose `backend_priv` is a `KBox<S>` given to it
    /// through [`Vcpu`] or [`Pmc`] with the same `S`.
    pub(crate) unsafe fn from_raw(vcpu: *mut bindings::kvm_vcpu) -> Option<Self> {
        // INVARIANT: guaranteed by the caller.
        NonNull::new(vcpu).map(|vcpu| VcpuDestroyed {
            vcpu,
            _state: PhantomData,
        })
    }

    /// Takes the vCPU's backend state; consuming `self`, it can be taken
    /// only once.
    pub(crate) fn take_state(self) -> Option<KBox<S>> {
        // SAFETY: the vCPU is valid (type invariant).
        let state: *mut S = unsafe { bindings::vpmu_vcpu_backend_priv(self.vcpu.as_ptr()) }.cast();
        // SAFETY: a `KBox<S>` given to the vCPU and not taken before (type
        // invariant); `self` is consumed, and KVM clears `backend_priv` when
        // the callback returns, so nothing reads it after this.
        (!state.is_null()).then(|| unsafe { KBox::from_raw(state) })
    }
}

/// The host PMU that KVM asks the backend to describe
/// (`struct x86_pmu_capability`).
#[cfg(CONFIG_KVM_VPMU_SOFT)]
#[repr(transparent)]
pub(crate) struct HostPmu(bindings::x86_pmu_capability);

#[cfg(CONFIG_KVM_VPMU_SOFT)]
impl HostPmu {
    /// # Safety
    ///
    /// `cap` must be valid for reads and writes for `'a`, and not accessed
    /// otherwise meanwhile.
    pub(crate) unsafe fn from_raw<'a>(cap: *mut bindings::x86_pmu_capability) -> &'a mut HostPmu {
        // SAFETY: `HostPmu` is transparent; the caller guarantees the rest.
        unsafe { &mut *cap.cast() }
    }

    /// Describes an architectural PMU (version 2) with `gp` general purpose
    /// and `fixed` fixed counters, all `width` bits wide, and
    /// `events_mask_len` architectural events, all of them available.
    pub(crate) fn describe(&mut self, gp: i32, fixed: i32, width: i32, events_mask_len: i32) {
        let cap = &mut self.0;
        cap.version = 2;
        cap.num_counters_gp = gp;
        cap.num_counters_fixed = fixed;
        cap.bit_width_gp = width;
        cap.bit_width_fixed = if fixed > 0 { width } else { 0 };
        cap.events_mask = 0;
        cap.events_mask_len = events_mask_len;
    }
}
