// SPDX-License-Identifier: GPL-2.0

//! Safe wrappers over the perf kernel API for host events that back vPMCs.

use core::ffi::c_void;
use core::ptr::NonNull;

use kernel::error::{code::EINVAL, Error, Result};

use crate::bindings;
use crate::model::EventAttr;

/// How guest events are backed on the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backing {
    /// Raw hardware events, as KVM creates them.
    Hardware,
    /// Software task-clock sampling events (one count per nanosecond the
    /// task runs), for hosts without a PMU and for the self-test.
    TaskClock,
}

/// The `perf_event_attr` of a host event for `attr`, as
/// `pmc_reprogram_counter()` builds it.  `precise_ip` is the host's PEBS
/// level for PEBS events.
pub(crate) fn perf_attr(
    attr: &EventAttr,
    backing: Backing,
    precise_ip: u64,
) -> bindings::perf_event_attr {
    let mut pa = bindings::perf_event_attr {
        size: core::mem::size_of::<bindings::perf_event_attr>() as u32,
        ..Default::default()
    };
    pa.__bindgen_anon_1.sample_period = attr.sample_period;
    pa.set_pinned(1);
    match backing {
        Backing::Hardware => {
            pa.type_ = bindings::perf_type_id_PERF_TYPE_RAW;
            pa.config = attr.config;
            pa.set_exclude_idle(1);
            pa.set_exclude_host(1);
            pa.set_exclude_user(attr.exclude_user.into());
            pa.set_exclude_kernel(attr.exclude_kernel.into());
            if attr.pebs {
                pa.set_precise_ip(precise_ip);
            }
        }
        Backing::TaskClock => {
            // Privilege filters cannot apply: the hrtimer sees host registers.
            pa.type_ = bindings::perf_type_id_PERF_TYPE_SOFTWARE;
            pa.config = bindings::perf_sw_ids_PERF_COUNT_SW_TASK_CLOCK as u64;
        }
    }
    pa
}

/// The signature of a perf overflow handler.
pub(crate) type OverflowHandler = unsafe extern "C" fn(
    *mut bindings::perf_event,
    *mut bindings::perf_sample_data,
    *mut bindings::pt_regs,
);

/// A live perf_event that someone else owns.
///
/// # Invariants
///
/// The pointer refers to a perf_event that stays alive, and is not released,
/// for as long as the `EventRef` exists.
#[derive(Clone, Copy)]
pub(crate) struct EventRef(NonNull<bindings::perf_event>);

impl EventRef {
    /// # Safety
    ///
    /// `event` must be a live perf_event that stays alive and unreleased for
    /// as long as the returned value is used.
    pub(crate) unsafe fn from_raw(event: NonNull<bindings::perf_event>) -> Self {
        // INVARIANT: guaranteed by the caller.
        EventRef(event)
    }

    /// Stops counting; returns and resets the count.
    pub(crate) fn pause(self) -> u64 {
        // SAFETY: by the type invariant the event is alive.
        unsafe { bindings::perf_event_pause(self.0.as_ptr(), true) }
    }

    /// The count since it was last reset.
    pub(crate) fn read(self) -> u64 {
        let (mut enabled, mut running) = (0u64, 0u64);
        // SAFETY: by the type invariant the event is alive; the out
        // parameters are valid for writes.
        unsafe { bindings::perf_event_read_value(self.0.as_ptr(), &mut enabled, &mut running) }
    }

    /// Sets a new sample period; perf may refuse it.
    pub(crate) fn set_period(self, period: u64) -> Result {
        // SAFETY: by the type invariant the event is alive.
        let ret = unsafe { bindings::perf_event_period(self.0.as_ptr(), period) };
        if ret < 0 {
            return Err(Error::from_errno(ret));
        }
        Ok(())
    }

    pub(crate) fn enable(self) {
        // SAFETY: by the type invariant the event is alive.
        unsafe { bindings::perf_event_enable(self.0.as_ptr()) }
    }
}

/// A host perf_event owned by kvm_vpmu; released on drop unless handed over.
///
/// # Invariants
///
/// The pointer refers to a live kernel counter created by
/// `perf_event_create_kernel_counter()` that nothing else releases.
pub(crate) struct PerfEvent(NonNull<bindings::perf_event>);

// SAFETY: a kernel counter may be operated on and released from any task.
unsafe impl Send for PerfEvent {}

impl PerfEvent {
    /// Creates a counter for the current task.
    ///
    /// # Safety
    ///
    /// `handler` must stay callable, with `context` valid for it, for as
    /// long as the event lives.
    pub(crate) unsafe fn create(
        attr: &mut bindings::perf_event_attr,
        handler: OverflowHandler,
        context: *mut c_void,
    ) -> Result<Self> {
        // SAFETY: `attr` is a valid attribute; `current` is a live task; the
        // caller keeps `handler` and `context` valid.
        let event = unsafe {
            bindings::perf_event_create_kernel_counter(
                attr,
                -1,
                bindings::vpmu_current(),
                Some(handler),
                context,
            )
        };
        // SAFETY: `vpmu_is_err()` and `vpmu_ptr_err()` only look at the pointer value.
        if unsafe { bindings::vpmu_is_err(event.cast()) } {
            // SAFETY: as above, only the pointer value is read.
            let errno = unsafe { bindings::vpmu_ptr_err(event.cast()) };
            return Err(Error::from_errno(errno as i32));
        }
        let event = NonNull::new(event).ok_or(EINVAL)?;
        // INVARIANT: a successful create returns a live event only we hold.
        Ok(PerfEvent(event))
    }

    /// Takes ownership of a live kernel counter.
    ///
    /// # Safety
    ///
    /// `event` must be a live kernel counter that nothing else will release.
    pub(crate) unsafe fn from_raw(event: NonNull<bindings::perf_event>) -> Self {
        // INVARIANT: guaranteed by the caller.
        PerfEvent(event)
    }

    pub(crate) fn as_ref(&self) -> EventRef {
        // SAFETY: by the type invariant the event lives as long as `self`.
        unsafe { EventRef::from_raw(self.0) }
    }

    /// Hands the event over to a new owner, who must release it.
    pub(crate) fn into_raw(self) -> *mut bindings::perf_event {
        let ptr = self.0.as_ptr();
        core::mem::forget(self);
        ptr
    }
}

impl Drop for PerfEvent {
    fn drop(&mut self) {
        // SAFETY: by the type invariant nothing else releases the event.
        unsafe { bindings::perf_event_release_kernel(self.0.as_ptr()) };
    }
}
