// SPDX-License-Identifier: GPL-2.0

//! The `cache` policy's kept events of one vCPU: paused host events detached
//! from any vPMC, each under the key of the configuration it serves, until a
//! vPMC of the same vCPU is programmed with that configuration again.
//!
//! Each vCPU owns its set (KVM's `pmu->backend_priv`), from its first
//! reprogram under `cache` on (KVM tells the backend of its lazy cleanup only
//! for vCPUs with backend state), reached only with its
//! `vcpu->mutex` held or while it is destroyed, so no lock is shared between
//! vCPUs and events are released without one.  A set holds at most its
//! bound (`cache_size`, by default three times the vCPU's counters plus one),
//! evicting the least recently kept; keep, take and evict scan at most
//! [`KEPT_MAX`] slots.  KVM's lazy cleanup releases the set of a vCPU that
//! has run for a while without using its PMU (`executor::vcpu_cleanup`),
//! and vCPU destruction frees it.  While a vCPU has a set, it pins this
//! module (patches/).

use core::sync::atomic::{AtomicU64, Ordering};

use kernel::alloc::{flags::GFP_KERNEL, KVec};

use crate::ffi::perf::DetachedEvent;
use crate::ffi::KEPT_MAX;
use crate::model::{EventInfo, KeptKey};
use crate::stats::Stat;

/// A vCPU's kept events, as KVM keeps them in `pmu->backend_priv`.
pub(crate) type VcpuKept = KeptEvents<DetachedEvent>;

/// Events kept now, in all sets.
static KEPT_NOW: AtomicU64 = AtomicU64::new(0);
/// Sets alive: vCPUs holding kept-event state.
static SETS_NOW: AtomicU64 = AtomicU64::new(0);
/// The most events one set ever held.
static KEPT_MAX_SEEN: AtomicU64 = AtomicU64::new(0);

struct Entry<E> {
    key: KeptKey,
    info: EventInfo,
    event: E,
    /// When it was kept, for LRU eviction; unique within the set.
    stamp: u64,
}

/// A bounded set of kept events of type `E` (a [`DetachedEvent`] in a
/// vCPU; a standalone event in the self-test).
///
/// # Invariants
///
/// `held` is the number of `Some` slots, at most [`KEPT_MAX`]; `slots` never
/// grows beyond [`KEPT_MAX`].
pub(crate) struct KeptEvents<E> {
    slots: KVec<Option<Entry<E>>>,
    held: usize,
    clock: u64,
    /// The vCPU thread's run time when its PMU was last seen in use.
    active_at: u64,
}

impl<E> KeptEvents<E> {
    pub(crate) fn new() -> Self {
        SETS_NOW.fetch_add(1, Ordering::Relaxed);
        KeptEvents {
            slots: KVec::new(),
            held: 0,
            clock: 0,
            active_at: 0,
        }
    }

    /// Events in the set.
    pub(crate) fn len(&self) -> usize {
        self.held
    }

    /// How long the vCPU has run without using its PMU, at run time `now`
    /// (of the vCPU thread, in ns), given whether it used it in the time
    /// slice that ended (`in_use`).
    ///
    /// Run time, not slices: a vCPU thread that shares its CPU with many may
    /// get slices too short to reach its next PMU access.
    pub(crate) fn idle_for(&mut self, in_use: bool, now: u64) -> u64 {
        if in_use || self.held == 0 {
            self.active_at = now;
        }
        now.saturating_sub(self.active_at)
    }

    /// Keeps `event`, which serves `key`, evicting (and so releasing) the
    /// least recently kept events beyond `bound` (at least 1, at most
    /// [`KEPT_MAX`]).  If no slot can be had the event itself is released.
    pub(crate) fn keep(&mut self, key: KeptKey, info: EventInfo, event: E, bound: usize) {
        let bound = bound.clamp(1, KEPT_MAX);
        while self.held >= bound {
            self.evict_oldest();
        }
        self.clock += 1;
        let entry = Entry {
            key,
            info,
            event,
            stamp: self.clock,
        };
        let entry = match self.slots.iter_mut().find(|s| s.is_none()) {
            Some(slot) => {
                *slot = Some(entry);
                None
            }
            None => Some(entry),
        };
        if let Some(entry) = entry {
            if self.slots.len() >= KEPT_MAX || self.slots.push(Some(entry), GFP_KERNEL).is_err() {
                // No slot: the event is released as the entry is dropped.
                Stat::Evicted.add();
                return;
            }
        }
        self.held += 1;
        KEPT_NOW.fetch_add(1, Ordering::Relaxed);
        if self.held as u64 > KEPT_MAX_SEEN.load(Ordering::Relaxed) {
            KEPT_MAX_SEEN.fetch_max(self.held as u64, Ordering::Relaxed);
        }
        Stat::Kept.add();
    }

    /// Takes the event kept under `key`, if any.
    pub(crate) fn take(&mut self, key: KeptKey) -> Option<(E, EventInfo)> {
        let slot = self
            .slots
            .iter_mut()
            .find(|s| s.as_ref().is_some_and(|e| e.key == key))?;
        let entry = slot.take()?;
        self.forget(1);
        Some((entry.event, entry.info))
    }

    /// Releases every kept event; returns how many.
    pub(crate) fn clear(&mut self) -> usize {
        let mut n = 0;
        for slot in self.slots.iter_mut().filter(|s| s.is_some()) {
            *slot = None;
            n += 1;
        }
        self.forget(n);
        n
    }

    fn evict_oldest(&mut self) {
        let oldest = self
            .slots
            .iter_mut()
            .filter(|s| s.is_some())
            .min_by_key(|s| s.as_ref().map_or(u64::MAX, |e| e.stamp));
        if let Some(slot) = oldest {
            // The event is released as the entry is dropped.
            *slot = None;
            self.forget(1);
            Stat::Evicted.add();
        }
    }

    fn forget(&mut self, n: usize) {
        self.held -= n;
        KEPT_NOW.fetch_sub(n as u64, Ordering::Relaxed);
    }
}

impl<E> Drop for KeptEvents<E> {
    fn drop(&mut self) {
        // The slots drop their events, releasing them.
        KEPT_NOW.fetch_sub(self.held as u64, Ordering::Relaxed);
        SETS_NOW.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The memory of a vCPU's kept-event state: the set itself and one slot (a
/// set has as many slots as it ever held events, at most [`KEPT_MAX`],
/// allocated by doubling).
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

/// vCPUs (and self-test sets) holding kept-event state now.
pub(crate) fn sets_now() -> u64 {
    SETS_NOW.load(Ordering::Relaxed)
}

/// The most events one vCPU ever kept at once.
pub(crate) fn kept_max_seen() -> u64 {
    KEPT_MAX_SEEN.load(Ordering::Relaxed)
}
