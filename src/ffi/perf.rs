// SPDX-License-Identifier: GPL-2.0

//! perf events: the attributes of a guest counter's host event, borrowed
//! views of live events, and the two kinds of events this module owns.

use core::ffi::c_void;
use core::ops::Deref;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};

use kernel::error::{Error, Result};
use kernel::types::Opaque;

use super::bindings;
use crate::model::EventAttr;

/// How guest counters are backed on the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backing {
    /// Raw hardware events, as KVM creates them.
    Hardware,
    /// Software task-clock sampling events (one count per nanosecond the
    /// task runs), for hosts without a PMU and for the self-test.
    TaskClock,
}

/// The `perf_event_attr` of a host event: the fields it sets, which the
/// shim copies into a `perf_event_attr` when it creates the event.
pub(crate) struct Attr(bindings::vpmu_perf_attr);

impl Attr {
    /// The attributes `pmc_reprogram_counter()` gives the host event for
    /// `attr`; `precise_ip` is the host's PEBS level for PEBS events.
    #[inline]
    pub(crate) fn new(attr: &EventAttr, backing: Backing, precise_ip: u64) -> Self {
        let pa = match backing {
            Backing::Hardware => bindings::vpmu_perf_attr {
                type_: bindings::perf_type_id_PERF_TYPE_RAW,
                config: attr.config,
                sample_period: attr.sample_period,
                exclude_idle: true,
                exclude_host: true,
                exclude_user: attr.exclude_user,
                exclude_kernel: attr.exclude_kernel,
                // perf_event_attr's field has two bits.
                precise_ip: if attr.pebs { (precise_ip & 3) as u8 } else { 0 },
            },
            // Privilege filters cannot apply: the hrtimer sees host registers.
            Backing::TaskClock => bindings::vpmu_perf_attr {
                type_: bindings::perf_type_id_PERF_TYPE_SOFTWARE,
                config: u64::from(bindings::perf_sw_ids_PERF_COUNT_SW_TASK_CLOCK),
                sample_period: attr.sample_period,
                ..Default::default()
            },
        };
        Attr(pa)
    }

    /// Creates a pinned kernel counter on the current task.
    ///
    /// # Safety
    ///
    /// `handler` must stay callable with `context` for as long as the event
    /// lives.
    #[inline]
    pub(super) unsafe fn create(
        &self,
        handler: bindings::perf_overflow_handler_t,
        context: *mut c_void,
    ) -> Result<NonNull<bindings::perf_event>> {
        let mut event = core::ptr::null_mut();
        // SAFETY: `self.0` is valid for reads and `event` for writes; the
        // caller keeps `handler` and `context` valid.
        let ret =
            unsafe { bindings::vpmu_perf_event_create(&self.0, handler, context, &mut event) };
        if ret < 0 {
            return Err(Error::from_errno(ret));
        }
        // perf returns an event or an error, never NULL.
        NonNull::new(event).ok_or(kernel::error::code::ENOMEM)
    }
}

/// A live perf_event, borrowed from whoever owns it.
#[repr(transparent)]
pub(crate) struct Event(Opaque<bindings::perf_event>);

impl Event {
    /// # Safety
    ///
    /// `ptr` must be a live perf_event that is not released for `'a`.
    pub(super) unsafe fn from_raw<'a>(ptr: NonNull<bindings::perf_event>) -> &'a Event {
        // SAFETY: `Event` is transparent over the event, which the caller
        // keeps alive for `'a`.
        unsafe { ptr.cast::<Event>().as_ref() }
    }

    pub(super) fn as_ptr(&self) -> *mut bindings::perf_event {
        self.0.get()
    }

    /// Stops counting; returns and resets the count.
    #[inline]
    pub(crate) fn pause(&self) -> u64 {
        // SAFETY: the event is live while borrowed.
        unsafe { bindings::perf_event_pause(self.as_ptr(), true) }
    }

    /// The count since it was last reset.
    pub(crate) fn read(&self) -> u64 {
        let (mut enabled, mut running) = (0u64, 0u64);
        // SAFETY: the event is live while borrowed; the out parameters are
        // valid for writes.
        unsafe { bindings::perf_event_read_value(self.as_ptr(), &mut enabled, &mut running) }
    }

    /// Sets a new sample period; perf may refuse it.
    #[inline]
    pub(crate) fn set_period(&self, period: u64) -> Result {
        // SAFETY: the event is live while borrowed.
        let ret = unsafe { bindings::perf_event_period(self.as_ptr(), period) };
        // `to_result()`, which the kernel crate does not inline, inlined:
        // a resume calls this.
        if ret < 0 {
            return Err(Error::from_errno(ret));
        }
        Ok(())
    }

    #[inline]
    pub(crate) fn enable(&self) {
        // SAFETY: the event is live while borrowed.
        unsafe { bindings::perf_event_enable(self.as_ptr()) }
    }
}

/// A kernel counter on the current task owned by this module, outside any
/// VM (the self-test's): its overflows only count.
///
/// # Invariants
///
/// `0` is a live kernel counter that nothing else releases, created with
/// [`count_overflow`] and a `'static` counter as its context.
pub(crate) struct PerfEvent(NonNull<bindings::perf_event>);

/// Overflow handler of [`PerfEvent`]s.
///
/// # Safety
///
/// Called by perf with an event created by [`PerfEvent::create`].
unsafe extern "C" fn count_overflow(
    event: *mut bindings::perf_event,
    _data: *mut bindings::perf_sample_data,
    _regs: *mut bindings::pt_regs,
) {
    // SAFETY: perf passes a live event, whose context is the `'static`
    // counter given at creation (type invariant of `PerfEvent`).
    let overflows = unsafe { &*bindings::vpmu_event_context(event).cast::<AtomicU64>() };
    overflows.fetch_add(1, Ordering::Relaxed);
}

impl PerfEvent {
    /// Creates a counter for the current task; every overflow increments
    /// `overflows`.
    ///
    /// # Safety
    ///
    /// The event must be dropped before this module is unloaded: its
    /// overflow handler is in this module's text.
    pub(crate) unsafe fn create(attr: &Attr, overflows: &'static AtomicU64) -> Result<Self> {
        let context = core::ptr::from_ref(overflows).cast_mut().cast();
        // SAFETY: `count_overflow` stays callable while the event lives (the
        // caller drops it before unloading) and `context` is `'static`.
        let event = unsafe { attr.create(Some(count_overflow), context) }?;
        // INVARIANT: created above, with `count_overflow` and `overflows`.
        Ok(PerfEvent(event))
    }
}

impl Deref for PerfEvent {
    type Target = Event;

    fn deref(&self) -> &Event {
        // SAFETY: the event lives as long as `self` (type invariant).
        unsafe { Event::from_raw(self.0) }
    }
}

impl Drop for PerfEvent {
    fn drop(&mut self) {
        // SAFETY: nothing else releases the event (type invariant).
        unsafe { bindings::perf_event_release_kernel(self.0.as_ptr()) };
    }
}

/// A paused event that KVM detached from a vPMC of `vcpu` for this module
/// to keep (`kvm_pmc_detach_perf_event()`).  It still counts in the vCPU's
/// `pmu->event_count`; dropping it releases it through KVM.
///
/// Not `Send`: it is created in a vCPU callback and stays with that vCPU's
/// backend state, so it is dropped where the vCPU's PMU may change.
///
/// # Invariants
///
/// `event` is live, paused, attached to no vPMC and released by nothing
/// else.  `vcpu` is the vCPU it was detached from, which outlives it, and
/// whose `vcpu->mutex` is held, or which is being destroyed, wherever it is
/// used or dropped.
pub(crate) struct DetachedEvent {
    event: NonNull<bindings::perf_event>,
    vcpu: NonNull<bindings::kvm_vcpu>,
}

impl DetachedEvent {
    /// # Safety
    ///
    /// As the type invariants say: `event` was just detached from a vPMC of
    /// `vcpu`, whose `vcpu->mutex` the current task holds.
    pub(super) unsafe fn new(
        event: NonNull<bindings::perf_event>,
        vcpu: NonNull<bindings::kvm_vcpu>,
    ) -> Self {
        // INVARIANT: guaranteed by the caller.
        DetachedEvent { event, vcpu }
    }

    /// Hands the event over; the new owner must attach or release it.
    pub(super) fn into_raw(self) -> (NonNull<bindings::perf_event>, NonNull<bindings::kvm_vcpu>) {
        let parts = (self.event, self.vcpu);
        core::mem::forget(self);
        parts
    }
}

impl Deref for DetachedEvent {
    type Target = Event;

    fn deref(&self) -> &Event {
        // SAFETY: the event lives as long as `self` (type invariant).
        unsafe { Event::from_raw(self.event) }
    }
}

impl Drop for DetachedEvent {
    fn drop(&mut self) {
        // SAFETY: the event is detached and ours, and its vCPU's PMU may be
        // changed here (type invariants).
        unsafe {
            bindings::kvm_pmu_release_detached_event(self.vcpu.as_ptr(), self.event.as_ptr())
        };
    }
}
