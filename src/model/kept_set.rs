// SPDX-License-Identifier: GPL-2.0

//! The set in which the `cache` policy keeps one vCPU's paused events that
//! no vPMC holds, each under the [`KeptKey`] of the configuration it serves.
//!
//! A data structure only: [`cache`](super::cache) decides what goes in, what
//! comes out and when, and the host releases what comes out.  The host also
//! supplies the storage ([`Slots`]): `KVec` in the kernel, `Vec` on the host.

use core::marker::PhantomData;

use super::pmc::{EventInfo, KeptKey};

/// The most events a vCPU may keep, whatever the `cache_size` parameter
/// says: kept events count in KVM's 8-bit `pmu->event_count` beside the
/// vPMCs' own, and every scan of the set is bounded by it.
pub const KEPT_MAX: usize = 64;

/// Growable storage for the slots of a [`KeptSet`].
pub trait Slots<T> {
    /// The slots.
    fn slots(&self) -> &[T];
    /// The slots, to change.
    fn slots_mut(&mut self) -> &mut [T];
    /// Appends a free slot (`T::default()`); false if there is no memory.
    fn grow(&mut self) -> bool;
}

/// One kept event.
pub struct Entry<E> {
    key: KeptKey,
    info: EventInfo,
    event: E,
    /// When it was kept, for least-recently-kept eviction; unique in the set.
    stamp: u64,
}

/// A vCPU's kept events of type `E` in storage `S`.
///
/// # Invariants
///
/// `held` is the number of `Some` slots, at most [`KEPT_MAX`]; there are
/// never more than [`KEPT_MAX`] slots.
pub struct KeptSet<E, S> {
    slots: S,
    held: usize,
    clock: u64,
    /// The vCPU's run time (ns) when its PMU was last seen in use.
    active_at: u64,
    _events: PhantomData<E>,
}

impl<E, S: Slots<Option<Entry<E>>>> KeptSet<E, S> {
    /// An empty set over `slots`, which must be empty.
    pub fn new(slots: S) -> Self {
        KeptSet {
            slots,
            held: 0,
            clock: 0,
            active_at: 0,
            _events: PhantomData,
        }
    }

    /// Events in the set.
    pub fn len(&self) -> usize {
        self.held
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.held == 0
    }

    /// Slots allocated (each holds an event or is free).
    pub fn capacity(&self) -> usize {
        self.slots.slots().len()
    }

    /// Adds `event`, which serves `key`.  Gives it back if the set is full
    /// ([`KEPT_MAX`]) or no slot can be allocated.
    pub fn insert(&mut self, key: KeptKey, info: EventInfo, event: E) -> Result<(), E> {
        if self.held == self.capacity() && (self.capacity() >= KEPT_MAX || !self.slots.grow()) {
            return Err(event);
        }
        let Some(slot) = self.slots.slots_mut().iter_mut().find(|s| s.is_none()) else {
            // A set with fewer events than slots has a free one.
            return Err(event);
        };
        self.clock += 1;
        *slot = Some(Entry {
            key,
            info,
            event,
            stamp: self.clock,
        });
        self.held += 1;
        Ok(())
    }

    /// The kept events with their keys, in no particular order; the first
    /// of each item orders them by when they were kept.
    pub fn iter(&self) -> impl Iterator<Item = (u64, KeptKey, &E)> {
        self.slots
            .slots()
            .iter()
            .flatten()
            .map(|e| (e.stamp, e.key, &e.event))
    }

    /// Takes out the event kept under `key`, if any.
    pub fn take(&mut self, key: KeptKey) -> Option<(E, EventInfo)> {
        let slot = self
            .slots
            .slots_mut()
            .iter_mut()
            .find(|s| s.as_ref().is_some_and(|e| e.key == key))?;
        let entry = slot.take()?;
        self.held -= 1;
        Some((entry.event, entry.info))
    }

    /// Takes out the least recently kept event, if any.
    pub fn take_oldest(&mut self) -> Option<E> {
        let slot = self
            .slots
            .slots_mut()
            .iter_mut()
            .filter(|s| s.is_some())
            .min_by_key(|s| s.as_ref().map_or(u64::MAX, |e| e.stamp))?;
        let entry = slot.take()?;
        self.held -= 1;
        Some(entry.event)
    }

    /// Records whether the vCPU used its PMU in the time slice that ended,
    /// at its run time `now` (ns), and returns how long it has run since it
    /// last did.  An empty set is never idle: the clock restarts while it
    /// holds nothing.
    pub fn idle_time(&mut self, pmu_in_use: bool, now: u64) -> u64 {
        if pmu_in_use || self.held == 0 {
            self.active_at = now;
        }
        now.saturating_sub(self.active_at)
    }
}
