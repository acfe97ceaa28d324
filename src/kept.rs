// SPDX-License-Identifier: GPL-2.0

//! Where the `cache` policy's kept events live in the kernel: each vCPU's
//! [`KeptSet`] (its backend state, `pmu->backend_priv`, from its first
//! reprogram under `cache` until it is destroyed) in `KVec` storage, and
//! its share of the host-wide counts in debugfs (`kept_events`,
//! `kept_vcpus`, `kept_max`).  What a set holds and when is the model's to
//! decide (`crate::model::cache`).
//!
//! A set is reached only with its vCPU's `vcpu->mutex` held or while the
//! vCPU is destroyed, so no lock is shared between vCPUs and events are
//! released without one.  While a vCPU has a set, it pins this module
//! (patches/).

use kernel::alloc::{flags::GFP_KERNEL, KVec};

use crate::ffi;
use crate::ffi::perf::DetachedEvent;
use crate::model::{Entry, KeptSet, Slots};

/// The storage of a kept set: a slot per event it ever held at once (at
/// most `KEPT_MAX`), grown by doubling.
pub(crate) type KVecSlots<E> = KVec<Option<Entry<E>>>;

/// A vCPU's kept events.
pub(crate) type VcpuKept = KeptSet<DetachedEvent, KVecSlots<DetachedEvent>>;

/// A vCPU's backend state: its kept set, and how many of its events the
/// host-wide count holds.
pub(crate) struct VcpuState {
    pub(crate) kept: VcpuKept,
    counted: usize,
}

impl VcpuState {
    /// A new vCPU's state; counts it among the vCPUs with a set.
    pub(crate) fn new() -> Self {
        ffi::kept_sets_account(1);
        VcpuState {
            kept: KeptSet::new(KVec::new()),
            counted: 0,
        }
    }

    /// Brings the host-wide count of kept events up to date with the set.
    pub(crate) fn recount(&mut self) {
        let held = self.kept.len();
        if held != self.counted {
            ffi::kept_account(held as i64 - self.counted as i64, held);
            self.counted = held;
        }
    }
}

impl Drop for VcpuState {
    fn drop(&mut self) {
        // The set releases what it still holds as it is dropped.
        ffi::kept_account(-(self.counted as i64), 0);
        ffi::kept_sets_account(-1);
    }
}

impl<T: Default> Slots<T> for KVec<T> {
    fn slots(&self) -> &[T] {
        self.as_slice()
    }

    fn slots_mut(&mut self) -> &mut [T] {
        self.as_mut_slice()
    }

    fn grow(&mut self) -> bool {
        self.push(T::default(), GFP_KERNEL).is_ok()
    }
}

/// The memory of a vCPU's kept-event state: the set itself and one slot.
pub(crate) const fn vcpu_state_bytes() -> (usize, usize) {
    (
        core::mem::size_of::<VcpuState>(),
        core::mem::size_of::<Option<Entry<DetachedEvent>>>(),
    )
}
