// SPDX-License-Identifier: GPL-2.0

//! What the model asks of its host: the perf calls KVM makes on one vPMC's
//! event ([`PmcHost`]) and, for the `cache` policy, the vCPU around it
//! ([`VcpuHost`]): its set of kept events and its other counters.  The
//! module implements them over KVM and real perf, the host tests over a
//! simulation; the model decides every call.

use super::kept_set::{Entry, KeptSet, Slots};
use super::pmc::{EventAttr, PmcConfig, PmcState};

/// A negative errno, as returned by the perf kernel API.
pub type Errno = i32;

/// A paused host event that no vPMC holds, and how to release one.
pub trait DetachedEvents {
    /// A paused event detached from its vPMC; it still counts as one of the
    /// vCPU's events (`pmu->event_count`).
    type Event;

    /// Releases a detached event (`kvm_pmu_release_detached_event()`).
    fn release_detached(&mut self, event: Self::Event);
}

/// The host side of one vPMC: its perf_event and KVM's overflow bookkeeping.
///
/// Every method but `create` and `attach` acts on the event the vPMC holds;
/// the model calls them only while one exists, and `create` and `attach`
/// only while none does.
///
/// Why moving a paused event to another vPMC is sound: the model only
/// detaches an event that is paused (`perf_event_pause()` stopped it and
/// folded its count into its vPMC's counter), so it counts nothing, has no
/// overflow in flight, and owes its old vPMC nothing.  The model resets its
/// period from the new vPMC's counter before enabling it, so its first
/// overflow is the new counter's wrap; `attach` re-targets the overflow
/// context while the event is still paused.
pub trait PmcHost: DetachedEvents {
    /// `perf_event_pause(event, true)`: stop counting, return and reset the count.
    fn pause(&mut self) -> u64;
    /// The running event's count (`perf_event_read_value()`).
    fn read(&mut self) -> u64;
    /// `perf_event_period()`.
    fn set_period(&mut self, period: u64) -> Result<(), Errno>;
    /// `perf_event_enable()`.
    fn enable(&mut self);
    /// `perf_event_release_kernel()` of the vPMC's event.
    fn release(&mut self);
    /// `perf_event_create_kernel_counter()` with KVM's overflow handler.
    fn create(&mut self, attr: &EventAttr) -> Result<(), Errno>;
    /// `__kvm_perf_overflow(pmc, false)`: an emulated count wrapped the
    /// counter; set its GLOBAL_STATUS bit and, if `pmc->intr`, request a PMI.
    /// Called while the paused old event (if any) is still attached.
    fn emulate_overflow(&mut self);
    /// `kvm_pmc_detach_perf_event()`: takes the vPMC's paused event away
    /// without releasing it.
    fn detach(&mut self) -> Option<Self::Event>;
    /// `kvm_pmc_adopt_perf_event()`: gives the vPMC, which has none, a
    /// paused event detached from a vPMC of the same vCPU; its overflows
    /// now reach this vPMC.
    fn attach(&mut self, event: Self::Event);
}

/// The vCPU of a vPMC, as the `cache` policy needs it.
pub trait VcpuHost: DetachedEvents {
    /// The storage of the vCPU's kept set.
    type Slots: Slots<Option<Entry<Self::Event>>>;

    /// The vCPU's kept set (`pmu->backend_priv`); with `create`, an empty
    /// one is given to a vCPU without one first (`None` if there is no
    /// memory for it).  KVM tells the backend of its lazy cleanup only for a
    /// vCPU with a set.
    fn kept_set(&mut self, create: bool) -> Option<&mut KeptSet<Self::Event, Self::Slots>>;
    /// Gives the vCPU an empty set if it has none (`kept_set(true)`); a host
    /// that knows the vCPU has one may skip the look.
    fn give_kept_set(&mut self) {
        let _ = self.kept_set(true);
    }
    /// Counters of the vCPU, general purpose and fixed.
    fn nr_counters(&self) -> usize;
    /// The `cache_size` parameter: events kept per vCPU, 0 for the default.
    fn cache_size(&self) -> usize;
    /// The next counter of the vCPU from index `idx` on, in index order
    /// (while a counter is reprogrammed, the others), with `paused_only`
    /// the next that holds a paused event: its config, its state and
    /// whether the guest accessed it in the time slice that ended
    /// (`pmu->pmc_in_use`); `idx` moves past it.  The config's
    /// `filter_allows` is not filled in.
    fn next_pmc(&mut self, idx: &mut u32, paused_only: bool)
        -> Option<(PmcConfig, PmcState, bool)>;
    /// Detaches the paused event of the vCPU's counter `kind`
    /// (`kvm_pmc_detach_perf_event()`), which then holds none.
    fn detach_from(&mut self, kind: super::arch::PmcKind) -> Option<Self::Event>;
}
