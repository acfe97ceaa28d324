// SPDX-License-Identifier: GPL-2.0

//! The `cache` policy's kept events: paused host events detached from any
//! vPMC, held per vCPU under the key of the configuration they serve, until
//! a vPMC of the same vCPU is programmed with that configuration again.
//!
//! Each vCPU keeps at most `cache_size` events (0: twice its counters plus
//! one), evicting the least recently kept.  KVM's lazy cleanup releases a
//! vCPU's kept events when the guest used none of its counters in the time
//! slice that ended, as KVM releases the events of unused counters; vCPU
//! destruction releases all of a vCPU's events, and unloading the module
//! releases all.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::bindings;
use crate::model::{CacheKey, EventInfo};
use crate::perf::PerfEvent;
use crate::stats::Stat;

/// Kept events across all vCPUs; a full table releases instead of keeping.
const CAPACITY: usize = 512;

struct Entry {
    /// The vCPU whose vPMCs may adopt the event, as an address only: it is
    /// never dereferenced, so a vCPU destroyed without the backend (while the
    /// module was unloaded) leaves nothing unsafe behind.
    vcpu: usize,
    key: CacheKey,
    info: EventInfo,
    event: PerfEvent,
    /// When it was kept, for LRU eviction.
    stamp: u64,
}

/// # Invariants
///
/// `slots`, `high` and `clock` are only accessed with `vpmu_kept_lock()`
/// held (see [`Locked`]).  Every entry owns a paused event that no vPMC
/// holds.  No slot at or beyond `high` is in use, so scans stop there.
struct Table {
    slots: UnsafeCell<[Option<Entry>; CAPACITY]>,
    high: UnsafeCell<usize>,
    clock: UnsafeCell<u64>,
}

// SAFETY: all access is serialized by the shim's mutex (type invariant).
unsafe impl Sync for Table {}

static TABLE: Table = Table {
    slots: UnsafeCell::new([const { None }; CAPACITY]),
    high: UnsafeCell::new(0),
    clock: UnsafeCell::new(0),
};

static KEPT: AtomicU64 = AtomicU64::new(0);

/// The table, locked for as long as this value lives.
struct Locked;

impl Locked {
    fn new() -> Self {
        // SAFETY: takes the shim's mutex from process context; released in `drop`.
        unsafe { bindings::vpmu_kept_lock() };
        Locked
    }

    /// The slots that may be in use.
    fn slots(&mut self) -> &mut [Option<Entry>] {
        // SAFETY: the lock is held while `self` lives and `&mut self` makes
        // these the only references to the table.
        let (slots, high) = unsafe { (&mut *TABLE.slots.get(), *TABLE.high.get()) };
        &mut slots[..high]
    }

    /// Puts `entry` in the first free slot; gives it back if all are taken.
    fn insert(&mut self, entry: Entry) -> Result<(), Entry> {
        // SAFETY: as in `slots`.
        let (slots, high) = unsafe { (&mut *TABLE.slots.get(), &mut *TABLE.high.get()) };
        let Some(i) = slots.iter().position(|s| s.is_none()) else {
            return Err(entry);
        };
        slots[i] = Some(entry);
        *high = (*high).max(i + 1);
        Ok(())
    }

    /// Lowers `high` past the free slots at its end.
    fn trim(&mut self) {
        // SAFETY: as in `slots`.
        let (slots, high) = unsafe { (&*TABLE.slots.get(), &mut *TABLE.high.get()) };
        while *high > 0 && slots[*high - 1].is_none() {
            *high -= 1;
        }
    }

    fn tick(&mut self) -> u64 {
        // SAFETY: as in `slots`.
        let clock = unsafe { &mut *TABLE.clock.get() };
        *clock += 1;
        *clock
    }

    /// Removes entries matching `pred`; their events are released on drop.
    fn release_where(&mut self, mut pred: impl FnMut(&Entry) -> bool) -> u64 {
        let mut n = 0;
        for slot in self.slots().iter_mut() {
            if slot.as_ref().is_some_and(&mut pred) {
                *slot = None;
                n += 1;
            }
        }
        KEPT.fetch_sub(n, Ordering::Relaxed);
        self.trim();
        n
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        // SAFETY: taken in `new`.
        unsafe { bindings::vpmu_kept_unlock() };
    }
}

/// Keeps `event` (paused, detached) for `vcpu` under `key`, evicting the
/// vCPU's least recently kept event beyond `bound`.
pub(crate) fn keep(vcpu: usize, key: CacheKey, info: EventInfo, event: PerfEvent, bound: usize) {
    let mut t = Locked::new();
    let stamp = t.tick();
    // One pass: how many the vCPU keeps, and the slot of its oldest.
    let mut held = 0;
    let mut oldest: Option<(usize, u64)> = None;
    for (i, e) in t.slots().iter().enumerate() {
        if let Some(e) = e.as_ref().filter(|e| e.vcpu == vcpu) {
            held += 1;
            match oldest {
                Some((_, stamp)) if stamp <= e.stamp => {}
                _ => oldest = Some((i, e.stamp)),
            }
        }
    }
    if let Some((i, _)) = oldest.filter(|_| held >= bound.max(1)) {
        // Stamps are unique: this is the least recently kept.  Its event
        // is released as the entry is dropped.
        t.slots()[i] = None;
        KEPT.fetch_sub(1, Ordering::Relaxed);
        t.trim();
        Stat::Evictions.add();
    }
    let entry = Entry {
        vcpu,
        key,
        info,
        event,
        stamp,
    };
    match t.insert(entry) {
        Ok(()) => {
            KEPT.fetch_add(1, Ordering::Relaxed);
            Stat::Stashes.add();
        }
        // Full: the event is released as the entry goes out of scope.
        Err(_) => Stat::Evictions.add(),
    }
}

/// Takes the event `vcpu` keeps under `key`, if any.
pub(crate) fn take(vcpu: usize, key: CacheKey) -> Option<(PerfEvent, EventInfo)> {
    let mut t = Locked::new();
    let slot = t
        .slots()
        .iter_mut()
        .find(|s| s.as_ref().is_some_and(|e| e.vcpu == vcpu && e.key == key))?;
    let entry = slot.take()?;
    KEPT.fetch_sub(1, Ordering::Relaxed);
    t.trim();
    Some((entry.event, entry.info))
}

/// Releases every event `vcpu` keeps.
pub(crate) fn forget_vcpu(vcpu: usize) {
    Locked::new().release_where(|e| e.vcpu == vcpu);
}

/// Releases every kept event (module unload).
pub(crate) fn forget_all() {
    Locked::new().release_where(|_| true);
}

/// Events kept now, in all vCPUs.
pub(crate) fn count() -> u64 {
    KEPT.load(Ordering::Relaxed)
}

#[no_mangle]
extern "C" fn kvm_vpmu_kept_events() -> u64 {
    count()
}

/// KVM's lazy cleanup of unused events of `vcpu` (patches/0004): if the
/// guest used none of its counters in the slice that ended, its PMU is idle
/// and what it keeps is released; while it uses its PMU the bound alone
/// limits the set (aging it by slices thrashed when the vCPU was rescheduled
/// more often than a multiplexing rotation brought a config back).
#[no_mangle]
extern "C" fn kvm_vpmu_vcpu_cleanup(vcpu: *mut bindings::kvm_vcpu) {
    // SAFETY: KVM passes a live vCPU whose `vcpu->mutex` it holds.
    if unsafe { bindings::vpmu_vcpu_pmu_in_use(vcpu) } {
        return;
    }
    let n = Locked::new().release_where(|e| e.vcpu == vcpu as usize);
    Stat::Evictions.add_n(n);
}

/// `vcpu` is being destroyed (patches/0004).
#[no_mangle]
extern "C" fn kvm_vpmu_vcpu_destroy(vcpu: *mut bindings::kvm_vcpu) {
    forget_vcpu(vcpu as usize);
}
