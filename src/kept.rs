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

/// A vCPU's backend state: its kept set, and how many of its events the
/// host-wide count holds.
pub(crate) struct VcpuState {
    pub(crate) kept: VcpuKept,
    counted: usize,
}

impl VcpuState {
    /// A new vCPU's state; counts it among the vCPUs with a set.
    pub(crate) fn new() -> Self {
        SETS_NOW.fetch_add(1, Ordering::Relaxed);
        VcpuState {
            kept: KeptSet::new(KVec::new()),
            counted: 0,
        }
    }

    /// Brings the host-wide count of kept events up to date with the set.
    pub(crate) fn recount(&mut self) {
        let held = self.kept.len();
        if held > self.counted {
            KEPT_NOW.fetch_add((held - self.counted) as u64, Ordering::Relaxed);
            KEPT_MAX_SEEN.fetch_max(held as u64, Ordering::Relaxed);
        } else if held < self.counted {
            KEPT_NOW.fetch_sub((self.counted - held) as u64, Ordering::Relaxed);
        }
        self.counted = held;
    }
}

impl Drop for VcpuState {
    fn drop(&mut self) {
        // The set releases what it still holds as it is dropped.
        KEPT_NOW.fetch_sub(self.counted as u64, Ordering::Relaxed);
        SETS_NOW.fetch_sub(1, Ordering::Relaxed);
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

/// Events kept now, in all vCPUs.
static KEPT_NOW: AtomicU64 = AtomicU64::new(0);
/// vCPUs holding a set now.
static SETS_NOW: AtomicU64 = AtomicU64::new(0);
/// The most events one vCPU ever kept at once.
static KEPT_MAX_SEEN: AtomicU64 = AtomicU64::new(0);

/// The memory of a vCPU's kept-event state: the set itself and one slot.
pub(crate) const fn vcpu_state_bytes() -> (usize, usize) {
    (
        core::mem::size_of::<VcpuState>(),
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
