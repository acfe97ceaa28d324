// SPDX-License-Identifier: GPL-2.0

//! Where the `cache` policy's kept events live in the kernel: each vCPU's
//! [`KeptSet`] (its backend state, `pmu->backend_priv`, from its first
//! reprogram under `cache` until it is destroyed) in `KVec` storage, and the
//! host-wide counts of kept events and sets that debugfs shows.  What a set
//! holds and when is the model's to decide (`crate::model::cache`).
//!
//! A set is reached only with its vCPU's `vcpu->mutex` held or while the
//! vCPU is destroyed, so no lock is shared between vCPUs and events are
//! released without one.  While a vCPU has a set, it pins this module
//! (patches/).

use core::sync::atomic::{AtomicU64, Ordering};

use kernel::alloc::{flags::GFP_KERNEL, KVec};

use crate::ffi::perf::DetachedEvent;
use crate::model::{Entry, KeptSet, Slots};

/// The storage of a kept set: a slot per event it ever held at once (at
/// most `KEPT_MAX`), grown by doubling.
pub(crate) type KVecSlots<E> = KVec<Option<Entry<E>>>;

/// A vCPU's kept events.
pub(crate) type VcpuKept = KeptSet<DetachedEvent, KVecSlots<DetachedEvent>>;

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

/// Events kept now, in all vCPUs.
static KEPT_NOW: AtomicU64 = AtomicU64::new(0);
/// vCPUs holding a set now.
static SETS_NOW: AtomicU64 = AtomicU64::new(0);
/// The most events one vCPU ever kept at once.
static KEPT_MAX_SEEN: AtomicU64 = AtomicU64::new(0);

/// A vCPU was given a set.
pub(crate) fn set_created() {
    SETS_NOW.fetch_add(1, Ordering::Relaxed);
}

/// A vCPU's set went from `before` to `after` events.
#[inline]
pub(crate) fn set_changed(before: usize, after: usize) {
    if after > before {
        KEPT_NOW.fetch_add((after - before) as u64, Ordering::Relaxed);
        KEPT_MAX_SEEN.fetch_max(after as u64, Ordering::Relaxed);
    } else if before > after {
        KEPT_NOW.fetch_sub((before - after) as u64, Ordering::Relaxed);
    }
}

/// A vCPU's set, holding `held` events, was freed with them.
pub(crate) fn set_freed(held: usize) {
    set_changed(held, 0);
    SETS_NOW.fetch_sub(1, Ordering::Relaxed);
}

/// The memory of a vCPU's kept-event state: the set itself and one slot.
pub(crate) const fn vcpu_state_bytes() -> (usize, usize) {
    (
        core::mem::size_of::<VcpuKept>(),
        core::mem::size_of::<Option<Entry<DetachedEvent>>>(),
    )
}

/// Events kept now, in all vCPUs.
pub(crate) fn kept_now() -> u64 {
    KEPT_NOW.load(Ordering::Relaxed)
}

/// vCPUs holding kept-event state now.
pub(crate) fn sets_now() -> u64 {
    SETS_NOW.load(Ordering::Relaxed)
}

/// The most events one vCPU ever kept at once.
pub(crate) fn kept_max_seen() -> u64 {
    KEPT_MAX_SEEN.load(Ordering::Relaxed)
}
