// SPDX-License-Identifier: GPL-2.0

//! KVM's side of a reprogram: the vPMC being reprogrammed, its vCPU, and
//! the host PMU that KVM asks a backend to describe.  `struct kvm_pmc` stays
//! opaque: the shim copies what the model needs in and out of it.

use core::marker::PhantomData;
use core::ptr::NonNull;

use kernel::alloc::{flags::GFP_KERNEL, KBox};
use kernel::error::{to_result, Result};

use super::bindings;
use super::perf::{Attr, Backing, DetachedEvent, Event};
use crate::kept::VcpuKept;
use crate::model::EventAttr;

/// What a reprogram needs to know of a vPMC, copied out of KVM.
pub(crate) use bindings::vpmu_pmc_snapshot as PmcSnapshot;
/// What a reprogram changed in a vPMC, copied back into KVM.
pub(crate) use bindings::vpmu_pmc_update as PmcUpdate;

/// A vPMC being reprogrammed.
///
/// # Invariants
///
/// `pmc` is a vPMC of the vCPU `vcpu`, whose `vcpu->mutex` the current task
/// holds for `'a`, so KVM changes none of the vPMC's state concurrently
/// except the bits it updates atomically.
pub(crate) struct Pmc<'a> {
    pmc: NonNull<bindings::kvm_pmc>,
    vcpu: NonNull<bindings::kvm_vcpu>,
    _vcpu_locked: PhantomData<&'a mut bindings::kvm_pmc>,
}

impl<'a> Pmc<'a> {
    /// `None` for NULL, or for a vPMC without a vCPU, which KVM never
    /// hands over: the caller then fails the reprogram (`-EINVAL`).
    ///
    /// # Safety
    ///
    /// `pmc` must be NULL or a vPMC of a vCPU whose `vcpu->mutex` the current
    /// task holds for `'a`.
    pub(crate) unsafe fn from_raw(pmc: *mut bindings::kvm_pmc) -> Option<Self> {
        let pmc = NonNull::new(pmc)?;
        // SAFETY: a valid vPMC (the caller); reads `pmc->vcpu`.
        let vcpu = NonNull::new(unsafe { bindings::vpmu_pmc_vcpu(pmc.as_ptr()) })?;
        // INVARIANT: the vPMC's own vCPU, locked as the caller guarantees.
        Some(Pmc {
            pmc,
            vcpu,
            _vcpu_locked: PhantomData,
        })
    }

    fn as_ptr(&self) -> *mut bindings::kvm_pmc {
        self.pmc.as_ptr()
    }

    fn vcpu_ptr(&self) -> NonNull<bindings::kvm_vcpu> {
        self.vcpu
    }

    #[inline]
    pub(crate) fn snapshot(&self) -> PmcSnapshot {
        let mut snap = PmcSnapshot::default();
        // SAFETY: the vPMC is valid and ours to read (type invariant); `snap`
        // is valid for writes.
        unsafe { bindings::vpmu_pmc_snapshot(self.as_ptr(), &mut snap) };
        snap
    }

    /// `kvm_pmc_event_filter_allows()`: the VM's PMU event filter lets the
    /// vPMC's event count.
    #[inline]
    pub(crate) fn event_filter_allows(&self) -> bool {
        // SAFETY: the vPMC is valid and ours to read (type invariant).
        unsafe { bindings::kvm_pmc_event_filter_allows(self.as_ptr()) }
    }

    #[inline]
    pub(crate) fn update(&mut self, update: &PmcUpdate) {
        // SAFETY: the vPMC is valid and ours to change (type invariant).
        unsafe { bindings::vpmu_pmc_update(self.as_ptr(), update) }
    }

    /// The vPMC's host event, borrowed for as long as the vPMC is.
    #[inline]
    pub(crate) fn event(&self) -> Option<&Event> {
        // SAFETY: the vPMC is valid (type invariant).
        let event = unsafe { bindings::vpmu_pmc_perf_event(self.as_ptr()) };
        // SAFETY: KVM keeps the event until it is released through this
        // vPMC, which takes `&mut self`.
        NonNull::new(event).map(|e| unsafe { Event::from_raw(e) })
    }

    /// Counters of the vCPU: general purpose and fixed.
    pub(crate) fn nr_counters(&self) -> usize {
        // SAFETY: the vPMC is valid (type invariant).
        unsafe { bindings::vpmu_pmc_nr_counters(self.as_ptr()) as usize }
    }

    /// `kvm_pmc_release_perf_event()`.
    pub(crate) fn release_event(&mut self) {
        // SAFETY: the vPMC is valid and ours to change (type invariant).
        unsafe { bindings::kvm_pmc_release_perf_event(self.as_ptr()) }
    }

    /// Creates the vPMC's event with KVM's overflow handler and attaches it;
    /// the vPMC must have none.
    pub(crate) fn create_event(&mut self, attr: &EventAttr, backing: Backing) -> Result {
        let precise = if attr.pebs {
            // SAFETY: the vPMC is valid (type invariant).
            unsafe { bindings::kvm_pmc_pebs_precise_level(self.as_ptr()) }
        } else {
            0
        };
        let mut pa = Attr::new(attr, backing, precise);
        // SAFETY: `kvm_perf_overflow` is in kvm.ko, which cannot be unloaded
        // while this module is loaded, and the vPMC lives as long as its
        // vCPU, which releases the event before it goes away.
        let event = unsafe { pa.create(Some(bindings::kvm_perf_overflow), self.as_ptr().cast()) }?;
        // SAFETY: the vPMC has no event (caller) and is ours to change; KVM
        // owns the event from here on and releases it with the vPMC.
        unsafe { bindings::kvm_pmc_attach_perf_event(self.as_ptr(), event.as_ptr()) };
        Ok(())
    }

    /// `kvm_pmc_emulate_overflow()`: an emulated count wrapped the counter.
    pub(crate) fn emulate_overflow(&mut self) {
        // SAFETY: the vPMC is valid and ours to change (type invariant).
        unsafe { bindings::kvm_pmc_emulate_overflow(self.as_ptr()) }
    }

    /// Takes the vPMC's event away, paused, without releasing it.
    ///
    /// The caller must have paused it (`perf_event_pause()`).
    pub(crate) fn detach_event(&mut self) -> Option<DetachedEvent> {
        // SAFETY: the vPMC is valid and ours to change (type invariant).
        let event = NonNull::new(unsafe { bindings::kvm_pmc_detach_perf_event(self.as_ptr()) })?;
        // SAFETY: just detached from a vPMC of this vCPU, whose mutex is
        // held (type invariant); it is paused (caller).
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
        true
    }

    /// The vCPU's kept events, if it has any state.
    pub(crate) fn kept(&mut self) -> Option<&mut VcpuKept> {
        self.vcpu().into_kept()
    }

    /// The vPMC's vCPU, borrowed from the vPMC.
    pub(crate) fn vcpu(&mut self) -> Vcpu<'_> {
        // INVARIANT: the vPMC's vCPU, whose mutex is held for `'a` (type
        // invariant); its `backend_priv` is only ever set by this module.
        Vcpu {
            vcpu: self.vcpu,
            _locked: PhantomData,
        }
    }

    /// The vCPU's kept events, giving it an empty set first if it has none.
    pub(crate) fn kept_or_new(&mut self) -> Result<&mut VcpuKept> {
        self.vcpu().into_kept_or_new()
    }
}

/// A vCPU in one of KVM's backend callbacks.
///
/// # Invariants
///
/// `vcpu` is a vCPU whose `vcpu->mutex` the current task holds, or which it
/// is destroying, for `'a`; its `backend_priv` is NULL or a `KBox<VcpuKept>`
/// given to it by [`Vcpu::into_kept_or_new`].
pub(crate) struct Vcpu<'a> {
    vcpu: NonNull<bindings::kvm_vcpu>,
    _locked: PhantomData<&'a mut bindings::kvm_vcpu>,
}

impl<'a> Vcpu<'a> {
    /// # Safety
    ///
    /// `vcpu` must be NULL or a vCPU whose `vcpu->mutex` the current task
    /// holds, or which it is destroying, for `'a`.
    pub(crate) unsafe fn from_raw(vcpu: *mut bindings::kvm_vcpu) -> Option<Self> {
        // INVARIANT: guaranteed by the caller; this module is the only one to
        // set `backend_priv`, always to a `KBox<VcpuKept>`.
        NonNull::new(vcpu).map(|vcpu| Vcpu {
            vcpu,
            _locked: PhantomData,
        })
    }

    /// Whether the guest used any counter in the time slice that ended.
    pub(crate) fn pmu_in_use(&self) -> bool {
        // SAFETY: the vCPU is valid (type invariant).
        unsafe { bindings::vpmu_vcpu_pmu_in_use(self.vcpu.as_ptr()) }
    }

    /// How many events KVM's lazy cleanup releases after the backend's
    /// callback returns: those of the counters the guest neither used in the
    /// time slice that ended nor enabled.
    pub(crate) fn cleanup_releases(&self) -> u32 {
        // SAFETY: the vCPU is valid (type invariant).
        unsafe { bindings::vpmu_vcpu_nr_cleanup_releases(self.vcpu.as_ptr()) }
    }

    /// The next vPMC, from index `idx` on, whose paused event KVM's lazy
    /// cleanup is about to release because the guest did not use the
    /// counter in the time slice that ended; `idx` moves past it.
    pub(crate) fn next_unused_pmc(&mut self, idx: &mut u32) -> Option<Pmc<'_>> {
        self.next_disabled_pmc(idx, true)
    }

    /// The next vPMC, from index `idx` on, that the guest has disabled and
    /// that holds a paused event; `idx` moves past it.
    pub(crate) fn next_idle_pmc(&mut self, idx: &mut u32) -> Option<Pmc<'_>> {
        self.next_disabled_pmc(idx, false)
    }

    fn next_disabled_pmc(&mut self, idx: &mut u32, unused_only: bool) -> Option<Pmc<'_>> {
        // SAFETY: the vCPU is valid (type invariant); `idx` is valid for
        // reads and writes.
        let pmc =
            unsafe { bindings::vpmu_vcpu_next_disabled_pmc(self.vcpu.as_ptr(), idx, unused_only) };
        // SAFETY: a vPMC of this vCPU, whose mutex is held while `self` is
        // borrowed (type invariant).
        unsafe { Pmc::from_raw(pmc) }
    }

    fn priv_ptr(&self) -> *mut VcpuKept {
        // SAFETY: the vCPU is valid (type invariant).
        unsafe { bindings::vpmu_vcpu_backend_priv(self.vcpu.as_ptr()) }.cast()
    }

    /// The vCPU's kept events, if it has any state.
    pub(crate) fn kept(&mut self) -> Option<&mut VcpuKept> {
        let kept = self.priv_ptr();
        // SAFETY: NULL or a live `KBox<VcpuKept>` (type invariant), which only
        // the holder of the vCPU's mutex reaches.
        unsafe { kept.as_mut() }
    }

    /// The vCPU's kept events, if it has any state.
    pub(crate) fn into_kept(self) -> Option<&'a mut VcpuKept> {
        let kept = self.priv_ptr();
        // SAFETY: NULL or a live `KBox<VcpuKept>` (type invariant), which only
        // the holder of the vCPU's mutex reaches.
        unsafe { kept.as_mut() }
    }

    /// The vCPU's kept events, giving it an empty set first if it has none.
    /// The set then pins this module until the vCPU is destroyed.
    pub(crate) fn into_kept_or_new(self) -> Result<&'a mut VcpuKept> {
        let kept = self.priv_ptr();
        if !kept.is_null() {
            // SAFETY: a live `KBox<VcpuKept>` (type invariant), which only
            // the holder of the vCPU's mutex reaches.
            return Ok(unsafe { &mut *kept });
        }
        let kept = KBox::into_raw(KBox::new(VcpuKept::new(), GFP_KERNEL)?);
        // SAFETY: the vCPU is valid and has no backend state (checked above);
        // KVM calls `vcpu_destroy`, which frees it, before the vCPU goes away.
        let ret = unsafe { bindings::kvm_pmu_set_backend_priv(self.vcpu.as_ptr(), kept.cast()) };
        if let Err(e) = to_result(ret) {
            // SAFETY: KVM refused it, so the box is still only ours.
            drop(unsafe { KBox::from_raw(kept) });
            return Err(e);
        }
        // SAFETY: just allocated and handed to the vCPU, whose mutex is held.
        Ok(unsafe { &mut *kept })
    }

    /// Takes the vCPU's state away (`vcpu_destroy`): KVM forgets it next.
    ///
    /// # Safety
    ///
    /// The vCPU must be being destroyed: this is KVM's `vcpu_destroy`
    /// callback, which KVM calls once, and nothing reads the vCPU's
    /// `backend_priv` from now until KVM clears it when the callback
    /// returns.  The box returned owns what the pointer pointed to.
    pub(crate) unsafe fn take_kept(self) -> Option<KBox<VcpuKept>> {
        let kept = self.priv_ptr();
        // SAFETY: NULL or a `KBox<VcpuKept>` given to the vCPU (type
        // invariant), taken once and read by no one after (the caller).
        (!kept.is_null()).then(|| unsafe { KBox::from_raw(kept) })
    }
}

/// The host PMU that KVM asks the backend to describe
/// (`struct x86_pmu_capability`).
#[repr(transparent)]
pub(crate) struct HostPmu(bindings::x86_pmu_capability);

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
