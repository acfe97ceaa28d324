// SPDX-License-Identifier: GPL-2.0

//! A whole vPMU as the guest sees it: KVM 6.12's MSR emulation
//! (`kvm_pmu_set_msr()`, `intel_pmu_set_msr()`, `amd_pmu_set_msr()` and their
//! reads), the reprogram requests they raise, `kvm_pmu_handle_event()`,
//! `kvm_perf_overflow()` and the lazy release of unused events.
//!
//! The kernel module does not use this: KVM itself is the vPMU there.  It
//! exists so that whole guest write sequences can be replayed against
//! simulated perf events on the host and compared across policies.

use super::arch::{
    fixed_ctrl_field, PmcKind, PmuShape, Vendor, FIXED_PMC_BASE_IDX, GLOBAL_STATUS_BUFFER_OVF,
    HSW_IN_TX_CHECKPOINTED, MAX_FIXED, MAX_GP_INTEL, MSR_AMD64_PERF_CNTR_GLOBAL_CTL,
    MSR_AMD64_PERF_CNTR_GLOBAL_STATUS, MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_CLR,
    MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_SET, MSR_CORE_PERF_FIXED_CTR0, MSR_CORE_PERF_FIXED_CTR_CTRL,
    MSR_CORE_PERF_GLOBAL_CTRL, MSR_CORE_PERF_GLOBAL_OVF_CTRL, MSR_CORE_PERF_GLOBAL_STATUS,
    MSR_F15H_PERF_CTL0, MSR_IA32_PEBS_ENABLE, MSR_IA32_PERFCTR0, MSR_IA32_PMC0, MSR_K7_EVNTSEL0,
    MSR_K7_PERFCTR0, MSR_P6_EVNTSEL0,
};
use super::cache::{self, AdoptedFrom};
use super::counter;
use super::host::{DetachedEvents, Errno, PmcHost, VcpuHost};
use super::kept_set::{Entry, KeptSet, Slots};
use super::pmc::{EventAttr, KeptKey, PmcConfig, PmcState};
use super::policy::Policy;
use super::reprogram::{self, Outcome};
use alloc::vec::Vec;

/// A guest access that raises #GP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsrFault;

/// The PMU MSRs of a vCPU, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Msr {
    EventSel(u8),
    Counter(u8, CounterWrite),
    FixedCounter(u8),
    FixedCtrl,
    GlobalCtrl,
    GlobalStatus,
    GlobalOvfCtrl,
    GlobalStatusClr,
    GlobalStatusSet,
    PebsEnable,
}

/// How a write to a GP counter MSR is interpreted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CounterWrite {
    /// Intel IA32_PERFCTRx: the low 32 bits, sign-extended.
    Legacy32,
    /// Intel IA32_PMCx: the full width; bits beyond it #GP.
    FullWidth,
    /// AMD: the value, truncated to the width.
    Truncate,
}

/// Counts of what the vPMU did, per policy run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VpmuStats {
    /// Guest PMU MSR writes that did not fault.
    pub guest_writes: u64,
    /// Reprograms of a vPMC.
    pub reprograms: u64,
    /// Events created.
    pub creates: u64,
    /// Events resumed by the vPMC that held them.
    pub resumes: u64,
    /// Events the vPMU released from a vPMC (on replacing them, in the lazy
    /// cleanup and at destruction).  Kept events released are counted
    /// below, by why.
    pub releases: u64,
    /// `Cache`: events kept in the vCPU's set instead of released, by a
    /// reprogram or by the lazy cleanup.
    pub keeps: u64,
    /// `Cache`: events adopted and resumed by a vPMC instead of a create.
    pub adoptions: u64,
    /// `Cache`: of those, events taken from a counter the guest disabled.
    pub adoptions_from_disabled: u64,
    /// `Cache`: of the keeps, those of the lazy cleanup.
    pub cleanup_keeps: u64,
    /// `Cache`: kept events released to stay within the bound.
    pub evictions: u64,
    /// `Cache`: kept events released because the PMU was idle too long.
    pub released_idle: u64,
    /// `Cache`: kept events released at vCPU destruction.
    pub released_at_destroy: u64,
    /// Creates perf refused.
    pub create_failures: u64,
    /// Emulated overflows reported.
    pub emulated_overflows: u64,
}

/// One counter of the emulated vPMU: `struct kvm_pmc` and its host event.
struct Counter<H> {
    kind: PmcKind,
    eventsel: u64,
    state: PmcState,
    host: H,
}

/// The event filter's verdict on a counter and its event select
/// (`check_pmu_event_filter()`).
pub type EventFilter = fn(PmcKind, u64) -> bool;

/// One vCPU's vPMU.
pub struct Vpmu<H: PmcHost> {
    shape: PmuShape,
    policy: Policy,
    host_tsx: bool,
    filter: Option<EventFilter>,
    gp: [Counter<H>; MAX_GP_INTEL as usize],
    fixed: [Counter<H>; MAX_FIXED as usize],
    global_ctrl: u64,
    global_status: u64,
    fixed_ctr_ctrl: u64,
    pebs_enable: u64,
    reprogram_pmi: u64,
    pmc_in_use: u64,
    need_cleanup: bool,
    pmi_requests: u64,
    stats: VpmuStats,
    /// `pmu->backend_priv`: the `cache` policy's kept set, from the vCPU's
    /// first reprogram under `cache` until it is destroyed.
    kept: Option<KeptSet<H::Event, VecSlots<H::Event>>>,
    /// The `cache_size` parameter.
    cache_size: usize,
    /// The vCPU thread's run time, in ns.
    run_time_ns: u64,
    /// `vcpu->scheduled_out`.
    scheduled_out: bool,
}

/// The storage of the emulated vCPU's kept set.
type VecSlots<E> = Vec<Option<Entry<E>>>;

impl<T: Default> Slots<T> for Vec<T> {
    fn slots(&self) -> &[T] {
        self
    }
    fn slots_mut(&mut self) -> &mut [T] {
        self
    }
    fn grow(&mut self) -> bool {
        self.push(T::default());
        true
    }
}

/// The backend's view of KVM while it reprograms counter `kind`: that
/// counter's event, with `__kvm_perf_overflow()`'s bookkeeping, and the rest
/// of the vCPU.
struct Backend<'a, H: PmcHost> {
    vpmu: &'a mut Vpmu<H>,
    kind: PmcKind,
    intr: bool,
    precise: bool,
}

impl<H: PmcHost> Backend<'_, H> {
    fn host(&mut self) -> &mut H {
        let kind = self.kind;
        &mut self.vpmu.counter_mut(kind).host
    }
}

impl<H: PmcHost> DetachedEvents for Backend<'_, H> {
    type Event = H::Event;
    fn release_detached(&mut self, event: H::Event) {
        self.vpmu.release_detached(event)
    }
}

impl<H: PmcHost> PmcHost for Backend<'_, H> {
    fn pause(&mut self) -> u64 {
        self.host().pause()
    }
    fn read(&mut self) -> u64 {
        self.host().read()
    }
    fn set_period(&mut self, period: u64) -> Result<(), Errno> {
        self.host().set_period(period)
    }
    fn enable(&mut self) {
        self.host().enable()
    }
    fn release(&mut self) {
        self.vpmu.stats.releases += 1;
        self.host().release()
    }
    fn create(&mut self, attr: &EventAttr) -> Result<(), Errno> {
        self.host().create(attr)
    }
    fn emulate_overflow(&mut self) {
        // KVM does not emulate PEBS records, so an emulated wrap of a PEBS
        // counter raises nothing.
        if self.precise {
            return;
        }
        self.vpmu.global_status |= self.kind.bit();
        if self.intr {
            self.vpmu.pmi_requests += 1;
        }
    }
    fn detach(&mut self) -> Option<H::Event> {
        self.host().detach()
    }
    fn attach(&mut self, event: H::Event) {
        self.host().attach(event)
    }
}

impl<H: PmcHost> VcpuHost for Backend<'_, H> {
    type Slots = VecSlots<H::Event>;
    fn kept_set(&mut self, create: bool) -> Option<&mut KeptSet<H::Event, Self::Slots>> {
        self.vpmu.kept_set(create)
    }
    fn nr_counters(&self) -> usize {
        self.vpmu.nr_counters()
    }
    fn cache_size(&self) -> usize {
        self.vpmu.cache_size
    }
    fn next_pmc(
        &mut self,
        idx: &mut u32,
        paused_only: bool,
    ) -> Option<(PmcConfig, PmcState, bool)> {
        // The counter being reprogrammed is not among its vCPU's others.
        let next = self.vpmu.next_pmc(idx, paused_only)?;
        if next.0.kind != self.kind {
            return Some(next);
        }
        self.vpmu.next_pmc(idx, paused_only)
    }
    fn detach_from(&mut self, kind: PmcKind) -> Option<H::Event> {
        self.vpmu.detach_from(kind)
    }
}

impl<H: PmcHost> DetachedEvents for Vpmu<H> {
    type Event = H::Event;
    fn release_detached(&mut self, event: H::Event) {
        // Every counter's host releases into the same vCPU
        // (`kvm_pmu_release_detached_event()` takes the vCPU).
        self.gp[0].host.release_detached(event)
    }
}

impl<H: PmcHost> VcpuHost for Vpmu<H> {
    type Slots = VecSlots<H::Event>;
    fn kept_set(&mut self, create: bool) -> Option<&mut KeptSet<H::Event, Self::Slots>> {
        if create && self.kept.is_none() {
            self.kept = Some(KeptSet::new(Vec::new()));
        }
        self.kept.as_mut()
    }
    fn nr_counters(&self) -> usize {
        (self.shape.nr_gp + self.shape.nr_fixed) as usize
    }
    fn cache_size(&self) -> usize {
        self.cache_size
    }
    fn next_pmc(
        &mut self,
        idx: &mut u32,
        paused_only: bool,
    ) -> Option<(PmcConfig, PmcState, bool)> {
        // In index order, as `kvm_for_each_pmc()`.
        while *idx < FIXED_PMC_BASE_IDX + MAX_FIXED as u32 {
            let i = *idx;
            *idx += 1;
            if let Some(kind) = self.kind_of_idx(i) {
                let state = self.counter(kind).state;
                if paused_only && (state.event.is_none() || !state.is_paused) {
                    continue;
                }
                let cfg = self.config(kind)?;
                return Some((cfg, state, self.pmc_in_use & kind.bit() != 0));
            }
        }
        None
    }
    fn detach_from(&mut self, kind: PmcKind) -> Option<H::Event> {
        let counter = self.pmc_mut(kind)?;
        let event = counter.host.detach()?;
        counter.state.event = None;
        counter.state.current_config = 0;
        Some(event)
    }
}

impl<H: PmcHost> Vpmu<H> {
    /// A vPMU of `shape` after refresh, with one host per counter from `host`.
    pub fn new(shape: PmuShape, policy: Policy, mut host: impl FnMut(PmcKind) -> H) -> Self {
        let gp = core::array::from_fn(|n| {
            let kind = PmcKind::Gp(n as u8);
            Counter {
                kind,
                eventsel: 0,
                state: PmcState::default(),
                host: host(kind),
            }
        });
        let fixed = core::array::from_fn(|n| {
            let kind = PmcKind::Fixed(n as u8);
            Counter {
                kind,
                eventsel: PmuShape::fixed_eventsel(n as u8),
                state: PmcState::default(),
                host: host(kind),
            }
        });
        Vpmu {
            shape,
            policy,
            host_tsx: false,
            filter: None,
            gp,
            fixed,
            global_ctrl: shape.global_ctrl_at_reset(),
            global_status: 0,
            fixed_ctr_ctrl: 0,
            pebs_enable: 0,
            reprogram_pmi: 0,
            pmc_in_use: 0,
            need_cleanup: false,
            pmi_requests: 0,
            stats: VpmuStats::default(),
            kept: None,
            cache_size: 0,
            run_time_ns: 0,
            scheduled_out: false,
        }
    }

    /// Sets the `cache_size` parameter (0: the default bound).
    pub fn set_cache_size(&mut self, cache_size: usize) {
        self.cache_size = cache_size;
    }

    /// The vCPU thread ran for `ns` more.
    pub fn add_run_time(&mut self, ns: u64) {
        self.run_time_ns += ns;
    }

    /// The vCPU thread's run time, in ns.
    pub fn run_time_ns(&self) -> u64 {
        self.run_time_ns
    }

    /// Events in the vCPU's kept set.
    pub fn kept_len(&self) -> usize {
        self.kept.as_ref().map_or(0, KeptSet::len)
    }

    /// Whether the vCPU has a kept set (`pmu->backend_priv`).
    pub fn has_kept_set(&self) -> bool {
        self.kept.is_some()
    }

    /// The events in the vCPU's kept set with their keys, least recently
    /// kept first.
    pub fn kept_events(&self) -> Vec<(KeptKey, &H::Event)> {
        let mut kept: Vec<_> = self.kept.iter().flat_map(KeptSet::iter).collect();
        kept.sort_by_key(|&(stamp, _, _)| stamp);
        kept.into_iter().map(|(_, key, e)| (key, e)).collect()
    }

    /// The `cache_size` parameter.
    pub fn cache_size(&self) -> usize {
        self.cache_size
    }

    fn counter(&self, kind: PmcKind) -> &Counter<H> {
        match kind {
            PmcKind::Gp(n) => &self.gp[n as usize],
            PmcKind::Fixed(n) => &self.fixed[n as usize],
        }
    }

    fn counter_mut(&mut self, kind: PmcKind) -> &mut Counter<H> {
        match kind {
            PmcKind::Gp(n) => &mut self.gp[n as usize],
            PmcKind::Fixed(n) => &mut self.fixed[n as usize],
        }
    }

    /// The guest PMU shape.
    pub fn shape(&self) -> &PmuShape {
        &self.shape
    }

    /// The policy in force.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Switches policy, as the `policy` module parameter does while VMs run.
    pub fn set_policy(&mut self, policy: Policy) {
        self.policy = policy;
    }

    /// Whether the host has HLE or RTM (`boot_cpu_has()`), which makes KVM
    /// create IN_TX_CHECKPOINTED events as counting events (period 0).
    pub fn set_host_tsx(&mut self, host_tsx: bool) {
        self.host_tsx = host_tsx;
    }

    /// Installs (or removes) the VM's PMU event filter.  Like
    /// `KVM_SET_PMU_EVENT_FILTER`, this requests a reprogram of every counter.
    pub fn set_filter(&mut self, filter: Option<EventFilter>) {
        self.filter = filter;
        self.reprogram_pmi |= self.shape.counters_mask();
    }

    /// What the vPMU did so far.
    pub fn stats(&self) -> &VpmuStats {
        &self.stats
    }

    /// KVM_REQ_PMI requests made so far: the guest PMIs owed.
    pub fn pmi_requests(&self) -> u64 {
        self.pmi_requests
    }

    /// Whether a KVM_REQ_PMU is pending.
    pub fn reprogram_pending(&self) -> bool {
        self.reprogram_pmi != 0 || self.need_cleanup
    }

    /// The counters the guest has.
    pub fn kinds(&self) -> impl Iterator<Item = PmcKind> + '_ {
        let gp = (0..self.shape.nr_gp).map(PmcKind::Gp);
        gp.chain((0..self.shape.nr_fixed).map(PmcKind::Fixed))
    }

    fn pmc(&self, kind: PmcKind) -> Option<&Counter<H>> {
        match kind {
            PmcKind::Gp(n) if n < self.shape.nr_gp => self.gp.get(n as usize),
            PmcKind::Fixed(n) if n < self.shape.nr_fixed => self.fixed.get(n as usize),
            _ => None,
        }
    }

    fn pmc_mut(&mut self, kind: PmcKind) -> Option<&mut Counter<H>> {
        match kind {
            PmcKind::Gp(n) if n < self.shape.nr_gp => self.gp.get_mut(n as usize),
            PmcKind::Fixed(n) if n < self.shape.nr_fixed => self.fixed.get_mut(n as usize),
            _ => None,
        }
    }

    fn kind_of_idx(&self, idx: u32) -> Option<PmcKind> {
        self.pmc(PmcKind::from_idx(idx)).map(|p| p.kind)
    }

    /// The host of a vPMC, for a simulation to drive.
    pub fn host_mut(&mut self, kind: PmcKind) -> Option<&mut H> {
        self.pmc_mut(kind).map(|p| &mut p.host)
    }

    /// The vPMC's `struct kvm_pmc` state.
    pub fn state(&self, kind: PmcKind) -> Option<&PmcState> {
        self.pmc(kind).map(|p| &p.state)
    }

    /// The decision inputs of a vPMC as KVM would snapshot them now.
    pub fn config(&self, kind: PmcKind) -> Option<PmcConfig> {
        let pmc = self.pmc(kind)?;
        let fixed_ctrl = match kind {
            PmcKind::Fixed(n) => fixed_ctrl_field(self.fixed_ctr_ctrl, n),
            PmcKind::Gp(_) => 0,
        };
        Some(PmcConfig {
            kind,
            eventsel: pmc.eventsel,
            fixed_ctrl,
            mask: self.shape.counter_mask(kind),
            raw_event_mask: self.shape.raw_event_mask(),
            globally_enabled: !self.shape.has_global_ctrl() || self.global_ctrl & kind.bit() != 0,
            filter_allows: match self.filter {
                Some(allows) => allows(kind, pmc.eventsel),
                None => true,
            },
            pebs_enabled: self.pebs_enable & kind.bit() != 0,
            host_tsx: self.host_tsx,
        })
    }

    fn decode(&self, msr: u32) -> Option<Msr> {
        let s = &self.shape;
        let in_range = |base: u32, n: u8| msr.checked_sub(base).filter(|&i| i < n as u32);
        match s.vendor {
            Vendor::Intel => {
                if s.has_global_ctrl() {
                    match msr {
                        MSR_CORE_PERF_GLOBAL_CTRL => return Some(Msr::GlobalCtrl),
                        MSR_CORE_PERF_GLOBAL_STATUS => return Some(Msr::GlobalStatus),
                        MSR_CORE_PERF_GLOBAL_OVF_CTRL => return Some(Msr::GlobalOvfCtrl),
                        MSR_CORE_PERF_FIXED_CTR_CTRL => return Some(Msr::FixedCtrl),
                        _ => {}
                    }
                }
                if msr == MSR_IA32_PEBS_ENABLE && s.pebs != super::arch::Pebs::None {
                    return Some(Msr::PebsEnable);
                }
                if let Some(i) = in_range(MSR_P6_EVNTSEL0, s.nr_gp) {
                    return Some(Msr::EventSel(i as u8));
                }
                if let Some(i) = in_range(MSR_IA32_PERFCTR0, s.nr_gp) {
                    return Some(Msr::Counter(i as u8, CounterWrite::Legacy32));
                }
                if let Some(i) = in_range(MSR_IA32_PMC0, s.nr_gp) {
                    return Some(Msr::Counter(i as u8, CounterWrite::FullWidth));
                }
                in_range(MSR_CORE_PERF_FIXED_CTR0, s.nr_fixed).map(|i| Msr::FixedCounter(i as u8))
            }
            Vendor::Amd => {
                if s.has_global_ctrl() {
                    match msr {
                        MSR_AMD64_PERF_CNTR_GLOBAL_CTL => return Some(Msr::GlobalCtrl),
                        MSR_AMD64_PERF_CNTR_GLOBAL_STATUS => return Some(Msr::GlobalStatus),
                        MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_CLR => return Some(Msr::GlobalStatusClr),
                        MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_SET => return Some(Msr::GlobalStatusSet),
                        _ => {}
                    }
                }
                // With PERFCTR_CORE (more than 4 counters) the Family 15h
                // interleaved CTL/CTR pairs exist too; the K7 MSRs alias the
                // first four counters either way.
                if s.nr_gp > 4 {
                    if let Some(i) = in_range(MSR_F15H_PERF_CTL0, s.nr_gp * 2) {
                        let n = (i / 2) as u8;
                        return Some(if i % 2 == 0 {
                            Msr::EventSel(n)
                        } else {
                            Msr::Counter(n, CounterWrite::Truncate)
                        });
                    }
                }
                let k7 = s.nr_gp.min(4);
                if let Some(i) = in_range(MSR_K7_EVNTSEL0, k7) {
                    return Some(Msr::EventSel(i as u8));
                }
                in_range(MSR_K7_PERFCTR0, k7).map(|i| Msr::Counter(i as u8, CounterWrite::Truncate))
            }
        }
    }

    /// The guest reads `msr` (`kvm_pmu_get_msr()`).
    pub fn rdmsr(&mut self, msr: u32) -> Result<u64, MsrFault> {
        match self.decode(msr).ok_or(MsrFault)? {
            Msr::GlobalCtrl => Ok(self.global_ctrl),
            Msr::GlobalStatus => Ok(self.global_status),
            Msr::GlobalOvfCtrl | Msr::GlobalStatusClr | Msr::GlobalStatusSet => Ok(0),
            Msr::FixedCtrl => Ok(self.fixed_ctr_ctrl),
            Msr::PebsEnable => Ok(self.pebs_enable),
            Msr::EventSel(n) => Ok(self.gp[n as usize].eventsel),
            Msr::Counter(n, _) => Ok(self.read_counter(PmcKind::Gp(n))),
            Msr::FixedCounter(n) => Ok(self.read_counter(PmcKind::Fixed(n))),
        }
    }

    /// The counter value the guest reads (`pmc_read_counter()`).
    pub fn read_counter(&mut self, kind: PmcKind) -> u64 {
        let mask = self.shape.counter_mask(kind);
        let Some(pmc) = self.pmc_mut(kind) else {
            return 0;
        };
        let st = pmc.state;
        let live = if st.event.is_some() && !st.is_paused {
            pmc.host.read()
        } else {
            0
        };
        counter::read(st.counter, st.emulated_counter, live, mask)
    }

    fn request_reprogram(&mut self, bits: u64) {
        self.reprogram_pmi |= bits & self.shape.counters_mask();
    }

    /// The guest writes `msr` (`kvm_pmu_set_msr()` and the vendor code).
    pub fn wrmsr(&mut self, msr: u32, data: u64) -> Result<(), MsrFault> {
        let what = self.decode(msr).ok_or(MsrFault)?;
        self.stats.guest_writes += 1;
        let s = self.shape;
        match what {
            Msr::GlobalStatus => {
                // Read-only: Intel raises #GP, AMD ignores the write.
                if s.vendor == Vendor::Intel {
                    return Err(MsrFault);
                }
            }
            Msr::GlobalCtrl => {
                let data = match s.vendor {
                    Vendor::Amd => data & !s.global_ctrl_rsvd(),
                    Vendor::Intel => data,
                };
                if data & s.global_ctrl_rsvd() != 0 {
                    return Err(MsrFault);
                }
                let diff = self.global_ctrl ^ data;
                self.global_ctrl = data;
                self.request_reprogram(diff);
            }
            Msr::GlobalOvfCtrl => {
                if data & s.global_status_rsvd() != 0 {
                    return Err(MsrFault);
                }
                self.global_status &= !data;
            }
            Msr::GlobalStatusClr => self.global_status &= !data,
            Msr::GlobalStatusSet => self.global_status |= data & !s.global_status_rsvd(),
            Msr::FixedCtrl => {
                if data & s.fixed_ctr_ctrl_rsvd() != 0 {
                    return Err(MsrFault);
                }
                let old = self.fixed_ctr_ctrl;
                self.fixed_ctr_ctrl = data;
                for n in 0..s.nr_fixed {
                    if fixed_ctrl_field(old, n) != fixed_ctrl_field(data, n) {
                        let bit = PmcKind::Fixed(n).bit();
                        self.pmc_in_use |= bit;
                        self.request_reprogram(bit);
                    }
                }
            }
            Msr::PebsEnable => {
                if data & s.pebs_enable_rsvd() != 0 {
                    return Err(MsrFault);
                }
                let diff = self.pebs_enable ^ data;
                self.pebs_enable = data;
                self.request_reprogram(diff);
            }
            Msr::EventSel(n) => {
                let kind = PmcKind::Gp(n);
                self.pmc_in_use |= kind.bit();
                let data = match s.vendor {
                    Vendor::Amd => data & !s.eventsel_rsvd(),
                    Vendor::Intel => {
                        let mut rsvd = s.eventsel_rsvd();
                        if n == 2 && s.raw_event_mask() & HSW_IN_TX_CHECKPOINTED != 0 {
                            rsvd ^= HSW_IN_TX_CHECKPOINTED;
                        }
                        if data & rsvd != 0 {
                            return Err(MsrFault);
                        }
                        data
                    }
                };
                if data != self.gp[n as usize].eventsel {
                    self.gp[n as usize].eventsel = data;
                    self.request_reprogram(kind.bit());
                }
            }
            Msr::Counter(n, how) => {
                let kind = PmcKind::Gp(n);
                // kvm_pmu_mark_pmc_in_use() finds the counter through
                // intel_msr_idx_to_pmc(), which knows IA32_PERFCTRx but
                // not the full-width IA32_PMCx aliases.
                if how != CounterWrite::FullWidth {
                    self.pmc_in_use |= kind.bit();
                }
                let data = match how {
                    CounterWrite::Legacy32 => data as u32 as i32 as i64 as u64,
                    CounterWrite::FullWidth if data & !s.counter_mask(kind) != 0 => {
                        return Err(MsrFault)
                    }
                    CounterWrite::FullWidth | CounterWrite::Truncate => data,
                };
                self.write_counter(kind, data);
            }
            Msr::FixedCounter(n) => {
                let kind = PmcKind::Fixed(n);
                self.pmc_in_use |= kind.bit();
                self.write_counter(kind, data);
            }
        }
        Ok(())
    }

    /// `pmc_write_counter()`.
    fn write_counter(&mut self, kind: PmcKind, val: u64) {
        let mask = self.shape.counter_mask(kind);
        let Some(pmc) = self.pmc_mut(kind) else {
            return;
        };
        let st = &mut pmc.state;
        let running = st.event.is_some() && !st.is_paused;
        let live = if running { pmc.host.read() } else { 0 };
        st.emulated_counter = 0;
        st.counter = counter::write(st.counter, live, val, mask);
        if running && st.event.is_some_and(|e| e.sampling) {
            // KVM ignores a refusal here; the next reprogram recalibrates.
            let _ = pmc
                .host
                .set_period(counter::sample_period(st.counter, mask));
        }
    }

    /// KVM counted `n` events in emulation on `kind` (`kvm_pmu_incr_counter()`).
    pub fn add_emulated(&mut self, kind: PmcKind, n: u64) {
        if let Some(pmc) = self.pmc_mut(kind) {
            pmc.state.emulated_counter = pmc.state.emulated_counter.wrapping_add(n);
            self.request_reprogram(kind.bit());
        }
    }

    /// The host event of `kind` overflowed (`kvm_perf_overflow()`).
    pub fn perf_overflow(&mut self, kind: PmcKind) {
        let bit = kind.bit();
        // A PMI racing with a pending reprogram of the counter is dropped.
        if self.reprogram_pmi & bit != 0 {
            return;
        }
        self.reprogram_pmi |= bit;
        let Some(pmc) = self.pmc(kind) else {
            return;
        };
        let (precise, intr) = (pmc.state.event.is_some_and(|e| e.precise), pmc.state.intr);
        // In a PMI, a PEBS overflow is reported once through BUFFER_OVF.
        let skip_pmi = if precise {
            let was = self.global_status & GLOBAL_STATUS_BUFFER_OVF != 0;
            self.global_status |= GLOBAL_STATUS_BUFFER_OVF;
            was
        } else {
            self.global_status |= bit;
            false
        };
        if intr && !skip_pmi {
            self.pmi_requests += 1;
        }
    }

    /// The vCPU thread is scheduled out while it runs the vCPU
    /// (`kvm_sched_out()`): preempted, or asleep in a halt.
    pub fn sched_out(&mut self) {
        self.scheduled_out = true;
    }

    /// The vCPU thread is scheduled back in (`kvm_sched_in()`):
    /// `kvm_arch_vcpu_load()` asks for KVM's lazy cleanup at the next entry
    /// if the thread was scheduled out and the vPMU has events, kept ones
    /// included (`pmu->event_count`).
    pub fn sched_in(&mut self) {
        self.vcpu_load();
        self.scheduled_out = false;
    }

    /// The vCPU exits to user space and enters again (`vcpu_put()`, then
    /// `vcpu_load()` in the next `KVM_RUN`).  KVM 6.12 and 7.3 set
    /// `scheduled_out` only from the preempt notifier, so this asks for no
    /// cleanup unless the thread was scheduled out meanwhile.
    pub fn exit_to_user(&mut self) {
        self.vcpu_load();
    }

    fn vcpu_load(&mut self) {
        let events = self.kinds().any(|k| self.counter(k).state.event.is_some());
        if self.scheduled_out && self.shape.version > 0 && (events || self.kept_len() > 0) {
            self.need_cleanup = true;
        }
    }

    /// KVM_REQ_PMU on the next VM entry (`kvm_pmu_handle_event()`).
    pub fn handle_event(&mut self) {
        let pending = self.reprogram_pmi;
        self.reprogram_pmi = 0;
        let mut bits = pending;
        while bits != 0 {
            let idx = bits.trailing_zeros();
            bits &= bits - 1;
            let Some(kind) = self.kind_of_idx(idx) else {
                continue;
            };
            if self.reprogram_one(kind).is_err() {
                // Retried on the next PMU refresh, without a new request.
                self.reprogram_pmi |= kind.bit();
            }
        }
        if self.need_cleanup {
            self.cleanup();
        }
    }

    fn reprogram_one(&mut self, kind: PmcKind) -> Result<(), Errno> {
        let cfg = self.config(kind).ok_or(0)?;
        let policy = self.policy;
        self.stats.reprograms += 1;
        // The state is copied out and back, as the module's shim does.
        let mut state = self.counter(kind).state;
        let mut backend = Backend {
            vpmu: self,
            kind,
            intr: state.intr,
            precise: state.event.is_some_and(|e| e.precise),
        };
        let result = reprogram::reprogram(policy, &cfg, &mut state, &mut backend);
        self.counter_mut(kind).state = state;
        match result {
            Ok(report) => {
                let st = &mut self.stats;
                st.emulated_overflows += u64::from(report.emulated_overflow);
                st.keeps += u64::from(report.kept);
                st.evictions += u64::from(report.evicted) + u64::from(report.dropped);
                match (report.outcome, report.adopted) {
                    (Outcome::Idle, _) => {}
                    (Outcome::Resumed, Some(from)) => {
                        st.adoptions += 1;
                        if from == AdoptedFrom::DisabledPmc {
                            st.adoptions_from_disabled += 1;
                        }
                    }
                    (Outcome::Resumed, None) => st.resumes += 1,
                    (Outcome::Created(_), _) => st.creates += 1,
                }
                Ok(())
            }
            Err((e, _)) => {
                self.stats.create_failures += 1;
                Err(e)
            }
        }
    }

    /// The vCPU is destroyed (`kvm_pmu_destroy()`): the backend releases
    /// what it keeps, then every vPMC's event is stopped (its count folded
    /// in) and released.
    pub fn destroy(&mut self) {
        if let Some(mut set) = self.kept.take() {
            let host = &mut self.gp[0].host;
            let n = cache::destroy(&mut set, |event| host.release_detached(event));
            self.stats.released_at_destroy += u64::from(n);
        }
        self.need_cleanup = false;
        self.reprogram_pmi = 0;
        self.stop_counters(self.shape.counters_mask(), true);
        self.pmc_in_use = 0;
    }

    /// `kvm_pmu_cleanup()`: the backend's `vcpu_cleanup` for a vCPU with
    /// backend state, then release the events of counters the guest neither
    /// touched in the last time slice nor left enabled.
    fn cleanup(&mut self) {
        if self.kept.is_some() {
            let (policy, now) = (self.policy, self.run_time_ns);
            let done = cache::cleanup(policy, self, now);
            self.stats.keeps += u64::from(done.kept);
            self.stats.cleanup_keeps += u64::from(done.kept);
            self.stats.evictions += u64::from(done.evicted + done.dropped);
            self.stats.released_idle += u64::from(done.released_idle);
        }
        self.need_cleanup = false;
        let unused = self.shape.counters_mask() & !self.pmc_in_use;
        self.stop_counters(unused, false);
        self.pmc_in_use = 0;
    }

    /// `pmc_stop_counter()` on the counters in `bits` that hold an event
    /// and, unless `enabled_too`, are not locally enabled.
    fn stop_counters(&mut self, bits: u64, enabled_too: bool) {
        let mut bits = bits;
        while bits != 0 {
            let idx = bits.trailing_zeros();
            bits &= bits - 1;
            let Some(kind) = self.kind_of_idx(idx) else {
                continue;
            };
            let Some(cfg) = self.config(kind) else {
                continue;
            };
            let mask = cfg.mask;
            let Some(pmc) = self.pmc_mut(kind) else {
                continue;
            };
            if pmc.state.event.is_some() && (enabled_too || !cfg.locally_enabled()) {
                // pmc_stop_counter(): fold the count in, then release.  As in
                // KVM, pending emulated counts are folded in but not cleared.
                let st = &mut pmc.state;
                let live = if st.is_paused { 0 } else { pmc.host.read() };
                st.counter = counter::read(st.counter, st.emulated_counter, live, mask);
                reprogram::release(st, &mut pmc.host);
                self.stats.releases += 1;
            }
        }
    }
}
