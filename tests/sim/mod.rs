// SPDX-License-Identifier: GPL-2.0

//! A host-side simulation of the perf_events that back a vPMU, and a harness
//! that runs a [`Vpmu`] over them on a simulated clock.
//!
//! [`SimEvent`] implements [`PmcHost`] for one vPMC with the semantics of the
//! perf calls KVM 6.12 makes:
//! - `perf_event_create_kernel_counter()`: a new event counts from 0, enabled,
//!   with `period_left = sample_period`;
//! - `perf_event_pause(event, true)`: disables, returns the count and zeroes
//!   it; `period_left` is kept;
//! - `perf_event_period()`: refused for counting events, 0 and bit 63 as perf
//!   does, otherwise the next overflow comes a full new period later
//!   (`__perf_event_period()` zeroes `period_left`, the next
//!   `x86_perf_event_set_period()` adds the period);
//! - a sampling event overflows each time it has counted `period_left` more
//!   events and reloads the same period; counting events (period 0) never
//!   overflow.
//!
//! A fault knob rejects every Nth `perf_event_period()` and/or fails every
//! Nth create, to drive KVM's fallback paths.
//!
//! Every event of one [`Harness`] (one vCPU) shares a [`World`] that counts
//! creates, releases and live events, so tests can check that the model
//! neither leaks nor double-releases.  Events the `cache` policy keeps are
//! detached from their vPMC ([`PmcHost::detach`]) and held by the model's
//! kept set in the emulated vCPU; attaching one to a vPMC
//! ([`PmcHost::attach`]) re-targets it.  Calls the model must never make
//! (pause, read, period, enable, release or detach without an event; create
//! or attach over a live event; detach of a running event) panic.
//!
//! [`Harness`] drives the vCPU as KVM 6.12 and 7.3 do: a guest access exits
//! and re-enters, and KVM_REQ_PMU is processed at the entry (reprograms in
//! counter index order, then the lazy cleanup); the vCPU thread is scheduled
//! out and in (preemption, halt), which asks for the lazy cleanup; it exits
//! to user space (MMIO or port I/O to a device model), which does not; and
//! the clock is the vCPU thread's run time, which the guest's running
//! advances ([`Harness::ns_per_tick`]).

#![allow(dead_code)]

use std::cell::RefCell;
use std::rc::Rc;

use vpmu_model::{
    DetachedEvents, Errno, EventAttr, MsrFault, PmcHost, PmcKind, PmuShape, Policy, VcpuHost, Vpmu,
};

pub const EINVAL: Errno = -22;
pub const EBUSY: Errno = -16;

/// Injected failures.  Calls are numbered from 1 over the whole simulation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Every Nth `perf_event_create_kernel_counter()` fails with -EBUSY.
    pub fail_create_every: Option<u64>,
    /// Every Nth `perf_event_period()` is refused with -EINVAL.
    pub reject_period_every: Option<u64>,
}

/// What the simulated perf was asked to do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    pub create_attempts: u64,
    pub creates: u64,
    pub create_failures: u64,
    pub releases: u64,
    /// Events created and not yet released.
    pub live: u64,
    pub pauses: u64,
    pub reads: u64,
    pub set_periods: u64,
    pub period_rejects: u64,
    pub enables: u64,
    /// Overflows of sampling events (calls of KVM's overflow handler).
    pub overflows: u64,
    /// `PmcHost::emulate_overflow` calls that reached the host.
    pub emulated_overflows: u64,
    /// Events detached from a vPMC (`kvm_pmc_detach_perf_event()`).
    pub detaches: u64,
    /// Detached events attached to a vPMC (`kvm_pmc_adopt_perf_event()`).
    pub attaches: u64,
    /// Detached events released (`kvm_pmu_release_detached_event()`).
    pub detached_releases: u64,
    /// Attaches to a vPMC other than the one that created the event.
    pub retargets: u64,
}

/// State shared by all simulated events of one vPMU (one vCPU).
#[derive(Debug, Default)]
pub struct World {
    pub stats: SimStats,
    pub faults: Faults,
    /// The attrs of every successful create, in order.
    pub created: Vec<(PmcKind, EventAttr)>,
}

pub type Shared = Rc<RefCell<World>>;

/// One simulated host perf_event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PerfEvent {
    /// Serial number of the create that made it, from 1.
    pub id: u64,
    pub attr: EventAttr,
    /// `event->count`.
    pub count: u64,
    /// PERF_EVENT_STATE_ACTIVE.
    pub enabled: bool,
    /// `hw.sample_period`; 0 for a counting event.
    pub sample_period: u64,
    /// Events left until the next overflow (sampling events only).
    pub period_left: u64,
}

/// The host side of one vPMC: the event it holds, if any.
#[derive(Debug)]
pub struct SimEvent {
    pub kind: PmcKind,
    pub event: Option<PerfEvent>,
    world: Shared,
}

fn nth(count: u64, every: Option<u64>) -> bool {
    every.is_some_and(|n| n != 0 && count.is_multiple_of(n))
}

impl SimEvent {
    pub fn new(kind: PmcKind, world: Shared) -> Self {
        SimEvent {
            kind,
            event: None,
            world,
        }
    }

    fn live(&mut self, what: &str) -> &mut PerfEvent {
        let kind = self.kind;
        self.event
            .as_mut()
            .unwrap_or_else(|| panic!("{what} on {kind:?} without a perf_event"))
    }

    /// Ticks until this event overflows, if it is a running sampling event.
    pub fn ticks_to_overflow(&self) -> Option<u64> {
        self.event
            .filter(|e| e.enabled && e.sample_period != 0)
            .map(|e| e.period_left)
    }

    /// Counts `ticks` events if enabled; returns whether the event overflowed.
    /// The caller never advances a sampling event past its overflow.
    pub fn advance(&mut self, ticks: u64) -> bool {
        let Some(e) = self.event.as_mut().filter(|e| e.enabled) else {
            return false;
        };
        e.count = e.count.wrapping_add(ticks);
        if e.sample_period == 0 {
            return false;
        }
        assert!(ticks <= e.period_left, "advanced past an overflow");
        e.period_left -= ticks;
        if e.period_left == 0 {
            e.period_left = e.sample_period;
            self.world.borrow_mut().stats.overflows += 1;
            return true;
        }
        false
    }
}

impl PmcHost for SimEvent {
    fn pause(&mut self) -> u64 {
        let e = self.live("pause");
        e.enabled = false;
        let count = e.count;
        e.count = 0;
        self.world.borrow_mut().stats.pauses += 1;
        count
    }

    fn read(&mut self) -> u64 {
        let count = self.live("read").count;
        self.world.borrow_mut().stats.reads += 1;
        count
    }

    fn set_period(&mut self, period: u64) -> Result<(), Errno> {
        let kind = self.kind;
        let world = self.world.clone();
        let e = self.live("set_period");
        assert!(
            e.sample_period != 0,
            "perf_event_period on counting event of {kind:?}"
        );
        let mut w = world.borrow_mut();
        w.stats.set_periods += 1;
        let n = w.stats.set_periods;
        if period == 0 || period & (1 << 63) != 0 || nth(n, w.faults.reject_period_every) {
            w.stats.period_rejects += 1;
            return Err(EINVAL);
        }
        e.sample_period = period;
        e.period_left = period;
        Ok(())
    }

    fn enable(&mut self) {
        self.live("enable").enabled = true;
        self.world.borrow_mut().stats.enables += 1;
    }

    fn release(&mut self) {
        let kind = self.kind;
        assert!(self.event.take().is_some(), "double release on {kind:?}");
        let mut w = self.world.borrow_mut();
        w.stats.releases += 1;
        w.stats.live -= 1;
    }

    fn create(&mut self, attr: &EventAttr) -> Result<(), Errno> {
        assert!(
            self.event.is_none(),
            "create over a live perf_event on {:?} (leak)",
            self.kind
        );
        let mut w = self.world.borrow_mut();
        w.stats.create_attempts += 1;
        if nth(w.stats.create_attempts, w.faults.fail_create_every) {
            w.stats.create_failures += 1;
            return Err(EBUSY);
        }
        w.stats.creates += 1;
        w.stats.live += 1;
        w.created.push((self.kind, *attr));
        let id = w.stats.creates;
        drop(w);
        self.event = Some(PerfEvent {
            id,
            attr: *attr,
            count: 0,
            enabled: true,
            sample_period: attr.sample_period,
            period_left: attr.sample_period,
        });
        Ok(())
    }

    fn emulate_overflow(&mut self) {
        self.world.borrow_mut().stats.emulated_overflows += 1;
    }

    fn detach(&mut self) -> Option<PerfEvent> {
        let kind = self.kind;
        let event = self
            .event
            .take()
            .unwrap_or_else(|| panic!("detach on {kind:?} without a perf_event"));
        assert!(!event.enabled, "detach of a running perf_event on {kind:?}");
        self.world.borrow_mut().stats.detaches += 1;
        Some(event)
    }

    fn attach(&mut self, event: PerfEvent) {
        assert!(
            self.event.is_none(),
            "attach over a live perf_event on {:?} (leak)",
            self.kind
        );
        assert!(!event.enabled, "attach of a running perf_event");
        let mut w = self.world.borrow_mut();
        w.stats.attaches += 1;
        if w.created[event.id as usize - 1].0 != self.kind {
            w.stats.retargets += 1;
        }
        drop(w);
        self.event = Some(event);
    }
}

impl DetachedEvents for SimEvent {
    type Event = PerfEvent;

    fn release_detached(&mut self, event: PerfEvent) {
        assert!(!event.enabled, "release of a running detached perf_event");
        let mut w = self.world.borrow_mut();
        w.stats.detached_releases += 1;
        w.stats.releases += 1;
        w.stats.live -= 1;
    }
}

/// One vCPU: a [`Vpmu`] over simulated perf, and the clock.
///
/// Every guest access is a VM exit followed by a VM entry, and KVM processes
/// KVM_REQ_PMU on entry: [`Harness::wrmsr`] and friends call
/// [`Vpmu::handle_event`] after the access.  A host overflow also exits
/// (the host PMI), so [`Harness::run`] enters again after each one.
pub struct Harness {
    pub vpmu: Vpmu<SimEvent>,
    pub world: Shared,
    /// Simulated time in ticks; every running event counts one per tick.
    pub now: u64,
    /// The vCPU thread's run time per tick, in ns.
    pub ns_per_tick: u64,
    /// `(now, counter)` of every overflow callback, in order.
    pub overflow_log: Vec<(u64, PmcKind)>,
    /// VM entries that delivered a PMI (KVM_REQ_PMI requests made since
    /// the previous entry coalesce into one LVTPC interrupt).
    pub pmis_injected: u64,
    pmi_seen: u64,
}

impl Harness {
    pub fn new(shape: PmuShape, policy: Policy) -> Self {
        Self::with_faults(shape, policy, Faults::default())
    }

    pub fn with_faults(shape: PmuShape, policy: Policy, faults: Faults) -> Self {
        let world: Shared = Rc::new(RefCell::new(World {
            faults,
            ..World::default()
        }));
        let w = world.clone();
        let vpmu = Vpmu::new(shape, policy, move |kind| SimEvent::new(kind, w.clone()));
        Harness {
            vpmu,
            world,
            now: 0,
            ns_per_tick: 1,
            overflow_log: Vec::new(),
            pmis_injected: 0,
            pmi_seen: 0,
        }
    }

    pub fn set_faults(&mut self, faults: Faults) {
        self.world.borrow_mut().faults = faults;
    }

    pub fn sim(&self) -> SimStats {
        self.world.borrow().stats
    }

    /// Sets the `cache_size` parameter: the kept set's bound, 0 for the
    /// default (the next keep evicts what no longer fits).
    pub fn set_kept_bound(&mut self, bound: usize) {
        self.vpmu.set_cache_size(bound);
    }

    /// The kept set's bound now.
    pub fn kept_bound(&self) -> usize {
        let counters = self.kinds().len();
        vpmu_model::cache::keep_bound(counters, self.vpmu.cache_size())
    }

    /// Events in the kept set.
    pub fn kept(&self) -> usize {
        self.vpmu.kept_len()
    }

    /// VM entry: process KVM_REQ_PMU, then deliver a pending PMI.
    pub fn entry(&mut self) {
        self.vpmu.handle_event();
        let req = self.vpmu.pmi_requests();
        if req > self.pmi_seen {
            self.pmis_injected += 1;
            self.pmi_seen = req;
        }
    }

    /// The guest writes an MSR (exit, emulation, entry).
    pub fn wrmsr(&mut self, msr: u32, val: u64) -> Result<(), MsrFault> {
        let r = self.vpmu.wrmsr(msr, val);
        self.entry();
        r
    }

    /// The guest reads an MSR (exit, emulation, entry).
    pub fn rdmsr(&mut self, msr: u32) -> Result<u64, MsrFault> {
        let r = self.vpmu.rdmsr(msr);
        self.entry();
        r
    }

    /// KVM counted `n` events in emulation (exit, emulation, entry).
    pub fn add_emulated(&mut self, kind: PmcKind, n: u64) {
        self.vpmu.add_emulated(kind, n);
        self.entry();
    }

    /// The vCPU thread is scheduled out (preempted, or asleep in a halt),
    /// then back in, and the vCPU enters: KVM's lazy cleanup runs at that
    /// entry if the vPMU has events.
    pub fn sched_in(&mut self) {
        self.vpmu.sched_out();
        self.vpmu.sched_in();
        self.entry();
    }

    /// The vCPU exits to user space (a serial byte, an MMIO access) and
    /// enters again.
    pub fn exit_to_user(&mut self) {
        self.vpmu.exit_to_user();
        self.entry();
    }

    /// The guest runs for `ns` of run time without counting anything: every
    /// counter is disabled (a throttled guest, or one that does not use its
    /// PMU).  Running events would count, so this is only for such a guest.
    pub fn idle(&mut self, ns: u64) {
        assert!(
            self.kinds().iter().all(|&k| self
                .vpmu
                .host_mut(k)
                .unwrap()
                .event
                .is_none_or(|e| !e.enabled)),
            "idle() with a running event"
        );
        self.vpmu.add_run_time(ns);
    }

    /// The vCPU is destroyed: every event, held or kept, is released.
    pub fn destroy(&mut self) {
        self.vpmu.destroy();
    }

    /// The counters of the guest's PMU.
    pub fn kinds(&self) -> Vec<PmcKind> {
        self.vpmu.kinds().collect()
    }

    /// Runs the guest for `n` ticks.  Every running event counts each tick;
    /// at each overflow the host PMI calls KVM's handler
    /// (`Vpmu::perf_overflow`) and the vCPU re-enters.
    pub fn run(&mut self, n: u64) {
        self.entry();
        let kinds = self.kinds();
        let mut left = n;
        let mut exits = 0u32;
        loop {
            // KVM gives each event a period up to the counter's wrap, so a
            // few dozen overflows per run at most; a runaway loop is a bug.
            exits += 1;
            assert!(exits < 100_000, "runaway overflow loop in run({n})");
            let next = kinds
                .iter()
                .filter_map(|&k| self.vpmu.host_mut(k).and_then(|h| h.ticks_to_overflow()))
                .min();
            let step = match next {
                Some(t) if t <= left => t,
                _ => left,
            };
            let mut overflowed = Vec::new();
            for &k in &kinds {
                if self.vpmu.host_mut(k).is_some_and(|h| h.advance(step)) {
                    overflowed.push(k);
                }
            }
            self.now += step;
            self.vpmu.add_run_time(step * self.ns_per_tick);
            left -= step;
            if overflowed.is_empty() {
                break;
            }
            for k in overflowed {
                self.overflow_log.push((self.now, k));
                self.vpmu.perf_overflow(k);
            }
            self.entry();
            if left == 0 {
                break;
            }
        }
    }

    /// vPMCs whose `pmc->perf_event` is set.
    pub fn pmcs_with_events(&self) -> u64 {
        self.vpmu
            .kinds()
            .filter(|&k| self.vpmu.state(k).is_some_and(|s| s.event.is_some()))
            .count() as u64
    }

    /// Panics unless the model's view of every vPMC's event matches the
    /// simulated perf: same events, same running state, nothing leaked or
    /// released twice; every kept event is paused, within the bound, under
    /// its own key and held by no vPMC.
    pub fn check_consistent(&mut self) {
        let sim = self.sim();
        let kept: Vec<(vpmu_model::KeptKey, PerfEvent)> = self
            .vpmu
            .kept_events()
            .into_iter()
            .map(|(k, e)| (k, *e))
            .collect();
        assert_eq!(
            sim.live,
            self.pmcs_with_events() + kept.len() as u64,
            "live perf_events != vPMCs holding one + kept ones"
        );
        assert_eq!(sim.creates - sim.releases, sim.live, "creates - releases");
        assert!(kept.len() <= self.kept_bound(), "kept set over its bound");
        assert_eq!(
            sim.detaches,
            sim.attaches + sim.detached_releases + kept.len() as u64,
            "a detached event is attached, released or kept"
        );
        let held: Vec<u64> = self
            .kinds()
            .into_iter()
            .filter_map(|k| self.vpmu.host_mut(k).unwrap().event.map(|e| e.id))
            .collect();
        for (i, (key, event)) in kept.iter().enumerate() {
            assert!(!event.enabled, "kept event {} is running", event.id);
            let (kind, attr) = self.world.borrow().created[event.id as usize - 1];
            assert_eq!(
                *key,
                vpmu_model::KeptKey::new(kind, attr.current_config, attr.pebs),
                "kept event {} under another event's key",
                event.id
            );
            assert!(
                !held.contains(&event.id),
                "kept event {} also attached",
                event.id
            );
            assert!(
                kept[..i].iter().all(|o| o.1.id != event.id),
                "event {} kept twice",
                event.id
            );
        }
        for k in self.kinds() {
            let st = *self.vpmu.state(k).unwrap();
            let ev = self.vpmu.host_mut(k).unwrap().event;
            assert_eq!(
                st.event.is_some(),
                ev.is_some(),
                "{k:?}: model and perf disagree on the event"
            );
            if let (Some(info), Some(ev)) = (st.event, ev) {
                assert_eq!(ev.enabled, !st.is_paused, "{k:?}: paused state");
                assert_eq!(info.sampling, ev.attr.sample_period != 0, "{k:?}");
                assert_eq!(info.precise, ev.attr.pebs, "{k:?}");
                assert_eq!(st.current_config, ev.attr.current_config, "{k:?}");
            }
        }
    }
}

/// The storage of a simulated kept set.
pub type SimSlots = Vec<Option<vpmu_model::Entry<PerfEvent>>>;

/// One vPMC alone on its vCPU, for calling the model's `reprogram()`
/// directly: its simulated event, and the vCPU's kept set (unless built
/// [`Solo::without_set`]).
pub struct Solo {
    pub event: SimEvent,
    pub kept: Option<vpmu_model::KeptSet<PerfEvent, SimSlots>>,
    /// A vCPU that cannot have a set (no memory for one).
    no_set: bool,
    /// A host that cannot detach the vPMC's event.
    pub refuse_detach: bool,
}

impl Solo {
    pub fn new(kind: PmcKind, world: Shared) -> Self {
        Solo {
            event: SimEvent::new(kind, world),
            kept: None,
            no_set: false,
            refuse_detach: false,
        }
    }

    pub fn without_set(kind: PmcKind, world: Shared) -> Self {
        Solo {
            no_set: true,
            ..Solo::new(kind, world)
        }
    }

    /// Events in the kept set.
    pub fn kept_len(&self) -> usize {
        self.kept.as_ref().map_or(0, |k| k.len())
    }
}

impl DetachedEvents for Solo {
    type Event = PerfEvent;
    fn release_detached(&mut self, event: PerfEvent) {
        self.event.release_detached(event)
    }
}

impl PmcHost for Solo {
    fn pause(&mut self) -> u64 {
        self.event.pause()
    }
    fn read(&mut self) -> u64 {
        self.event.read()
    }
    fn set_period(&mut self, period: u64) -> Result<(), Errno> {
        self.event.set_period(period)
    }
    fn enable(&mut self) {
        self.event.enable()
    }
    fn release(&mut self) {
        self.event.release()
    }
    fn create(&mut self, attr: &EventAttr) -> Result<(), Errno> {
        self.event.create(attr)
    }
    fn emulate_overflow(&mut self) {
        self.event.emulate_overflow()
    }
    fn detach(&mut self) -> Option<PerfEvent> {
        if self.refuse_detach {
            return None;
        }
        self.event.detach()
    }
    fn attach(&mut self, event: PerfEvent) {
        self.event.attach(event)
    }
}

impl VcpuHost for Solo {
    type Slots = SimSlots;
    fn kept_set(&mut self, create: bool) -> Option<&mut vpmu_model::KeptSet<PerfEvent, SimSlots>> {
        if create && self.kept.is_none() && !self.no_set {
            self.kept = Some(vpmu_model::KeptSet::new(Vec::new()));
        }
        self.kept.as_mut()
    }
    fn nr_counters(&self) -> usize {
        1
    }
    fn cache_size(&self) -> usize {
        0
    }
    fn next_pmc(
        &mut self,
        _idx: &mut u32,
        _paused_only: bool,
    ) -> Option<(vpmu_model::PmcConfig, vpmu_model::PmcState, bool)> {
        None
    }
    fn detach_from(&mut self, _kind: PmcKind) -> Option<PerfEvent> {
        None
    }
}
