// SPDX-License-Identifier: GPL-2.0

//! Workload trace generator: emulates what the guest Linux perf driver of
//! 6.12 writes to the PMU for a few workloads, and what the guest expects to
//! read back.
//!
//! Two layers, both independent of the model under test:
//! - [`Hw`]: the PMU as the guest architecture defines it (counters count
//!   while locally and globally enabled, wrap at their width, set their
//!   GLOBAL_STATUS bit and raise a PMI if INT/PMI is set).  It supplies the
//!   values every `rdmsr` line expects.  It also keeps an oracle of what KVM
//!   must do: every reprogram request (eventsel change, fixed field change,
//!   GLOBAL_CTRL bit change, host overflow), and for each one whether
//!   `legacy` creates (the counter may count) and whether `reuse` creates
//!   (it may count and its config differs from the one its event was created
//!   for).
//! - [`Perf`]: the guest driver: `x86_pmu_enable()`/`x86_pmu_disable()`,
//!   `x86_pmu_start()`/`x86_pmu_stop()`, `x86_perf_event_update()`,
//!   `x86_perf_event_set_period()`, `x86_schedule_events()` (fast path and
//!   greedy slow path), the context switch and the multiplexing rotation
//!   (`perf_rotate_context()`), and the NMI handlers `intel_pmu_handle_irq()`
//!   (v2, early ack), `x86_pmu_handle_irq()` (AMD) and
//!   `amd_pmu_v2_handle_irq()` (AMD PerfMonV2).  `rdpmc` is written as
//!   `rdmsr` of the same counter: KVM intercepts both and returns the same
//!   value.
//!
//! The simulated clock counts one event per tick on every running counter,
//! so all events of a workload count at the same rate.

use std::fmt::Write;

use vpmu_model::arch::{
    fixed_ctrl_field, EVENTSEL_ENABLE, EVENTSEL_INT, EVENTSEL_OS, EVENTSEL_USR, FIXED_OS,
    FIXED_PMI, FIXED_USR, MSR_AMD64_PERF_CNTR_GLOBAL_CTL, MSR_AMD64_PERF_CNTR_GLOBAL_STATUS,
    MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_CLR, MSR_CORE_PERF_FIXED_CTR0, MSR_CORE_PERF_FIXED_CTR_CTRL,
    MSR_CORE_PERF_GLOBAL_CTRL, MSR_CORE_PERF_GLOBAL_OVF_CTRL, MSR_CORE_PERF_GLOBAL_STATUS,
    MSR_F15H_PERF_CTL0, MSR_IA32_PMC0, MSR_K7_EVNTSEL0, MSR_K7_PERFCTR0, MSR_P6_EVNTSEL0,
};
use vpmu_model::{PmcKind, PmuShape, Vendor};

/// What the oracle expects a replay of the trace to count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Expected {
    /// Reprograms of a vPMC (one per request per VM entry).
    pub reprograms: u64,
    pub creates_legacy: u64,
    pub creates_reuse: u64,
    /// Overflows the guest driver handled (`perf_event_overflow()` calls).
    pub samples: u64,
    /// NMIs the guest took.
    pub pmis: u64,
}

/// A generated workload.
pub struct Workload {
    pub name: &'static str,
    pub text: String,
    pub expected: Expected,
    /// Multiplexing: the line that ends each full rotation cycle (every
    /// event rotated out once and the list back in its first order).
    pub cycle_ends: Vec<usize>,
    /// Multiplexing: the rotations in the trace.
    pub rotations: u64,
}

const NR_SLOTS: usize = 11;
const AMD_EVENTSEL_RSVD: u64 = 0xffff_fff0_0028_0000;

fn slot(k: PmcKind) -> usize {
    match k {
        PmcKind::Gp(n) => n as usize,
        PmcKind::Fixed(n) => 8 + n as usize,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reg {
    Sel(u8),
    Ctr(u8, bool),
    Fixed(u8),
    FixedCtrl,
    GlobalCtrl,
    GlobalStatus,
    StatusClear,
}

/// The guest's architectural view of its PMU, and the KVM oracle.
struct Hw {
    shape: PmuShape,
    mask: u64,
    sel: [u64; 8],
    val: [u64; NR_SLOTS],
    fixed_ctrl: u64,
    global_ctrl: u64,
    status: u64,
    pmi: bool,
    /// The config each vPMC's host event was created for under `reuse`.
    created: [Option<u64>; NR_SLOTS],
    exp: Expected,
}

impl Hw {
    fn new(shape: PmuShape) -> Self {
        assert_eq!(shape.gp_width, 48);
        assert!(shape.nr_fixed == 0 || shape.fixed_width == 48);
        Hw {
            shape,
            mask: (1 << 48) - 1,
            sel: [0; 8],
            val: [0; NR_SLOTS],
            fixed_ctrl: 0,
            global_ctrl: shape.global_ctrl_at_reset(),
            status: 0,
            pmi: false,
            created: [None; NR_SLOTS],
            exp: Expected::default(),
        }
    }

    fn kinds(&self) -> impl Iterator<Item = PmcKind> {
        let gp = (0..self.shape.nr_gp).map(PmcKind::Gp);
        gp.chain((0..self.shape.nr_fixed).map(PmcKind::Fixed))
    }

    fn field(&self, n: u8) -> u8 {
        fixed_ctrl_field(self.fixed_ctrl, n)
    }

    fn counting(&self, k: PmcKind) -> bool {
        let global = !self.shape.has_global_ctrl() || self.global_ctrl & k.bit() != 0;
        let local = match k {
            PmcKind::Gp(n) => self.sel[n as usize] & EVENTSEL_ENABLE != 0,
            PmcKind::Fixed(n) => self.field(n) & (FIXED_OS | FIXED_USR) != 0,
        };
        global && local
    }

    fn intr(&self, k: PmcKind) -> bool {
        match k {
            PmcKind::Gp(n) => self.sel[n as usize] & EVENTSEL_INT != 0,
            PmcKind::Fixed(n) => self.field(n) & FIXED_PMI != 0,
        }
    }

    fn config(&self, k: PmcKind) -> u64 {
        match k {
            PmcKind::Gp(n) => self.sel[n as usize],
            PmcKind::Fixed(n) => self.field(n) as u64,
        }
    }

    /// KVM reprograms `k` at the next VM entry.
    fn reprogram(&mut self, k: PmcKind) {
        self.exp.reprograms += 1;
        if !self.counting(k) {
            return;
        }
        self.exp.creates_legacy += 1;
        let cfg = self.config(k);
        if self.created[slot(k)] != Some(cfg) {
            self.exp.creates_reuse += 1;
            self.created[slot(k)] = Some(cfg);
        }
    }

    fn decode(&self, msr: u32) -> Reg {
        let s = &self.shape;
        let idx = |base: u32, n: u8| msr.checked_sub(base).filter(|&i| i < n as u32);
        let r = match s.vendor {
            Vendor::Intel => match msr {
                MSR_CORE_PERF_GLOBAL_CTRL => Some(Reg::GlobalCtrl),
                MSR_CORE_PERF_GLOBAL_STATUS => Some(Reg::GlobalStatus),
                MSR_CORE_PERF_GLOBAL_OVF_CTRL => Some(Reg::StatusClear),
                MSR_CORE_PERF_FIXED_CTR_CTRL => Some(Reg::FixedCtrl),
                _ => idx(MSR_P6_EVNTSEL0, s.nr_gp)
                    .map(|i| Reg::Sel(i as u8))
                    .or(idx(MSR_IA32_PMC0, s.nr_gp).map(|i| Reg::Ctr(i as u8, true)))
                    .or(idx(MSR_CORE_PERF_FIXED_CTR0, s.nr_fixed).map(|i| Reg::Fixed(i as u8))),
            },
            Vendor::Amd => match msr {
                MSR_AMD64_PERF_CNTR_GLOBAL_CTL => Some(Reg::GlobalCtrl),
                MSR_AMD64_PERF_CNTR_GLOBAL_STATUS => Some(Reg::GlobalStatus),
                MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_CLR => Some(Reg::StatusClear),
                _ => idx(MSR_K7_EVNTSEL0, s.nr_gp.min(4))
                    .map(|i| Reg::Sel(i as u8))
                    .or(idx(MSR_K7_PERFCTR0, s.nr_gp.min(4)).map(|i| Reg::Ctr(i as u8, true)))
                    .or(idx(MSR_F15H_PERF_CTL0, 2 * s.nr_gp).map(|i| {
                        if i % 2 == 0 {
                            Reg::Sel((i / 2) as u8)
                        } else {
                            Reg::Ctr((i / 2) as u8, true)
                        }
                    })),
            },
        };
        r.unwrap_or_else(|| panic!("generator uses unknown MSR {msr:#x}"))
    }

    fn write(&mut self, msr: u32, v: u64) {
        match self.decode(msr) {
            Reg::Sel(n) => {
                let v = match self.shape.vendor {
                    Vendor::Amd => v & !AMD_EVENTSEL_RSVD,
                    Vendor::Intel => v,
                };
                if v != self.sel[n as usize] {
                    self.sel[n as usize] = v;
                    self.reprogram(PmcKind::Gp(n));
                }
            }
            Reg::Ctr(n, _) => self.val[n as usize] = v & self.mask,
            Reg::Fixed(n) => self.val[8 + n as usize] = v & self.mask,
            Reg::FixedCtrl => {
                let old = self.fixed_ctrl;
                self.fixed_ctrl = v;
                for n in 0..self.shape.nr_fixed {
                    if fixed_ctrl_field(old, n) != fixed_ctrl_field(v, n) {
                        self.reprogram(PmcKind::Fixed(n));
                    }
                }
            }
            Reg::GlobalCtrl => {
                let diff = self.global_ctrl ^ v;
                self.global_ctrl = v;
                let kinds: Vec<_> = self.kinds().collect();
                for k in kinds {
                    if diff & k.bit() != 0 {
                        self.reprogram(k);
                    }
                }
            }
            Reg::StatusClear => self.status &= !v,
            Reg::GlobalStatus => panic!("GLOBAL_STATUS is read-only"),
        }
    }

    fn read(&self, msr: u32) -> u64 {
        match self.decode(msr) {
            Reg::Sel(n) => self.sel[n as usize],
            Reg::Ctr(n, _) => self.val[n as usize],
            Reg::Fixed(n) => self.val[8 + n as usize],
            Reg::FixedCtrl => self.fixed_ctrl,
            Reg::GlobalCtrl => self.global_ctrl,
            Reg::GlobalStatus => self.status,
            Reg::StatusClear => 0,
        }
    }

    /// Ticks until the first running counter wraps.
    fn ticks_to_wrap(&self) -> Option<u64> {
        self.kinds()
            .filter(|&k| self.counting(k))
            .map(|k| self.mask + 1 - self.val[slot(k)])
            .min()
    }

    /// Runs `d` ticks, which must not go past the first wrap.
    fn advance(&mut self, d: u64) {
        let kinds: Vec<_> = self.kinds().filter(|&k| self.counting(k)).collect();
        for k in kinds {
            let v = self.val[slot(k)] + d;
            assert!(v <= self.mask + 1, "ran past a wrap");
            if v == self.mask + 1 {
                // The host event overflows: GLOBAL_STATUS, PMI, and KVM
                // reprograms the counter on the next entry.
                self.val[slot(k)] = 0;
                self.status |= k.bit();
                self.pmi |= self.intr(k);
                self.reprogram(k);
            } else {
                self.val[slot(k)] = v;
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// Intel architectural PMU v2, full-width counter writes.
    IntelV2,
    /// AMD K7 MSRs, no global control.
    AmdV1,
    /// AMD PerfMonV2 with PERFCTR_CORE MSRs.
    AmdV2,
}

/// One guest perf_event.
struct Event {
    name: &'static str,
    /// `hwc->config`: the event select without EN.
    config: u64,
    /// The fixed counter it is constrained to, if any.
    fixed: Option<u8>,
    sample_period: u64,
    period_left: i64,
    prev_count: u64,
    /// `hwc->idx`: the counter it was last assigned.
    idx: Option<PmcKind>,
    active: bool,
}

/// The guest perf driver on one CPU.
struct Perf {
    flavor: Flavor,
    hw: Hw,
    out: String,
    events: Vec<Event>,
    /// The flexible list order (indices into `events`), rotated by muxing.
    order: Vec<usize>,
    max_period: i64,
    fixed_ctrl_val: u64,
    active_fixed_ctrl_val: u64,
    now: u64,
}

impl Perf {
    fn new(flavor: Flavor, shape: PmuShape, title: &str) -> Self {
        let mut out = String::from("# SPDX-License-Identifier: GPL-2.0\n");
        for l in title.lines() {
            writeln!(out, "# {l}").unwrap();
        }
        writeln!(out, "# Generated by tests/trace/gen.rs; regenerate with VPMU_BLESS=1 cargo test --release --test workloads").unwrap();
        match shape.vendor {
            Vendor::Intel => writeln!(
                out,
                "shape intel version={} gp={} fixed={} gp_width={} fixed_width={}",
                shape.version, shape.nr_gp, shape.nr_fixed, shape.gp_width, shape.fixed_width
            ),
            Vendor::Amd => writeln!(
                out,
                "shape amd version={} gp={}",
                shape.version, shape.nr_gp
            ),
        }
        .unwrap();
        Perf {
            flavor,
            hw: Hw::new(shape),
            out,
            events: Vec::new(),
            order: Vec::new(),
            max_period: (1 << 47) - 1,
            fixed_ctrl_val: 0,
            active_fixed_ctrl_val: 0,
            now: 0,
        }
    }

    fn note(&mut self, s: &str) {
        writeln!(self.out, "# {s}").unwrap();
    }

    fn wr(&mut self, msr: u32, v: u64) {
        writeln!(self.out, "wrmsr {msr:#x} {v:#x}").unwrap();
        self.hw.write(msr, v);
    }

    fn rd(&mut self, msr: u32) -> u64 {
        let v = self.hw.read(msr);
        writeln!(self.out, "rdmsr {msr:#x} = {v:#x}").unwrap();
        v
    }

    fn run(&mut self, d: u64) {
        if d == 0 {
            return;
        }
        writeln!(self.out, "run {d}").unwrap();
        self.hw.advance(d);
        self.now += d;
    }

    /// Adds a sampling (`period > 0`) or counting event.
    fn add_event(&mut self, name: &'static str, event: u64, fixed: Option<u8>, period: u64) {
        // x86_pmu_hw_config(): INT always, USR and OS unless excluded.
        let config = event | EVENTSEL_INT | EVENTSEL_USR | EVENTSEL_OS;
        // perf_event_alloc()/x86_pmu_event_init(): counting events get
        // max_period as their hardware period.
        let sample_period = if period == 0 {
            self.max_period as u64
        } else {
            period
        };
        self.order.push(self.events.len());
        self.events.push(Event {
            name,
            config,
            fixed,
            sample_period,
            period_left: sample_period as i64,
            prev_count: 0,
            idx: None,
            active: false,
        });
    }

    fn sel_msr(&self, n: u8) -> u32 {
        match self.flavor {
            Flavor::IntelV2 => MSR_P6_EVNTSEL0 + n as u32,
            Flavor::AmdV1 => MSR_K7_EVNTSEL0 + n as u32,
            Flavor::AmdV2 => MSR_F15H_PERF_CTL0 + 2 * n as u32,
        }
    }

    fn ctr_msr(&self, k: PmcKind) -> u32 {
        match (self.flavor, k) {
            (Flavor::IntelV2, PmcKind::Gp(n)) => MSR_IA32_PMC0 + n as u32,
            (Flavor::IntelV2, PmcKind::Fixed(n)) => MSR_CORE_PERF_FIXED_CTR0 + n as u32,
            (Flavor::AmdV1, PmcKind::Gp(n)) => MSR_K7_PERFCTR0 + n as u32,
            (Flavor::AmdV2, PmcKind::Gp(n)) => MSR_F15H_PERF_CTL0 + 2 * n as u32 + 1,
            _ => unreachable!(),
        }
    }

    fn intel_ctrl(&self) -> u64 {
        self.hw.shape.counters_mask()
    }

    /// Counters in `cpuc->active_mask`, in bit order, with their event.
    fn active(&self) -> Vec<(PmcKind, usize)> {
        let mut v: Vec<_> = (0..self.events.len())
            .filter(|&i| self.events[i].active)
            .map(|i| (self.events[i].idx.unwrap(), i))
            .collect();
        v.sort_by_key(|(k, _)| k.idx());
        v
    }

    /// `x86_perf_event_update()`: returns the raw count.
    fn update(&mut self, i: usize) -> u64 {
        let k = self.events[i].idx.unwrap();
        let new = self.rd(self.ctr_msr(k));
        let e = &mut self.events[i];
        let delta = new.wrapping_sub(e.prev_count) & self.hw.mask;
        e.prev_count = new;
        e.period_left -= delta as i64;
        new
    }

    /// `x86_perf_event_set_period()`: returns whether a period elapsed.
    fn set_period(&mut self, i: usize) -> bool {
        let max = self.max_period;
        let e = &mut self.events[i];
        let period = e.sample_period as i64;
        let mut left = e.period_left;
        let mut ret = false;
        if left <= -period {
            left = period;
            e.period_left = left;
            ret = true;
        }
        if left <= 0 {
            left += period;
            e.period_left = left;
            ret = true;
        }
        left = left.clamp(2, max);
        e.prev_count = (-left) as u64;
        let k = e.idx.unwrap();
        self.wr(self.ctr_msr(k), (-left) as u64 & self.hw.mask);
        ret
    }

    fn enable_event(&mut self, i: usize, in_pmu_enable: bool) {
        let (k, config) = (self.events[i].idx.unwrap(), self.events[i].config);
        match (self.flavor, k) {
            (Flavor::IntelV2, PmcKind::Fixed(n)) => {
                // intel_pmu_enable_fixed(): only cpuc->fixed_ctrl_val.
                let mut bits = FIXED_PMI as u64;
                if config & EVENTSEL_USR != 0 {
                    bits |= FIXED_USR as u64;
                }
                if config & EVENTSEL_OS != 0 {
                    bits |= FIXED_OS as u64;
                }
                let shift = 4 * n as u32;
                self.fixed_ctrl_val &= !(0xf << shift);
                self.fixed_ctrl_val |= bits << shift;
            }
            (Flavor::IntelV2 | Flavor::AmdV2, PmcKind::Gp(n)) => {
                self.wr(self.sel_msr(n), config | EVENTSEL_ENABLE)
            }
            // x86_pmu_enable_event(): nothing while cpuc->enabled is 0.
            (Flavor::AmdV1, PmcKind::Gp(n)) if !in_pmu_enable => {
                self.wr(self.sel_msr(n), config | EVENTSEL_ENABLE)
            }
            (Flavor::AmdV1, _) => {}
            _ => unreachable!(),
        }
    }

    fn disable_event(&mut self, i: usize) {
        let (k, config) = (self.events[i].idx.unwrap(), self.events[i].config);
        match (self.flavor, k) {
            (Flavor::IntelV2, PmcKind::Fixed(n)) => {
                self.fixed_ctrl_val &= !(0xf << (4 * n as u32));
            }
            (Flavor::IntelV2, PmcKind::Gp(n)) => self.wr(self.sel_msr(n), config),
            (Flavor::AmdV1 | Flavor::AmdV2, PmcKind::Gp(n)) => {
                // amd_pmu_disable_event(): then amd_pmu_wait_on_overflow().
                self.wr(self.sel_msr(n), config);
                self.rd(self.ctr_msr(k));
            }
            _ => unreachable!(),
        }
    }

    /// `perf_pmu_disable()`.
    fn pmu_disable(&mut self) {
        match self.flavor {
            Flavor::IntelV2 => self.wr(MSR_CORE_PERF_GLOBAL_CTRL, 0),
            Flavor::AmdV1 => {
                // x86_pmu_disable_all(), then amd_pmu_check_overflow().
                for (k, _) in self.active() {
                    let PmcKind::Gp(n) = k else { unreachable!() };
                    let v = self.rd(self.sel_msr(n));
                    if v & EVENTSEL_ENABLE != 0 {
                        self.wr(self.sel_msr(n), v & !EVENTSEL_ENABLE);
                    }
                }
                for (k, _) in self.active() {
                    self.rd(self.ctr_msr(k));
                }
            }
            Flavor::AmdV2 => {
                self.wr(MSR_AMD64_PERF_CNTR_GLOBAL_CTL, 0);
                for (k, _) in self.active() {
                    self.rd(self.ctr_msr(k));
                }
            }
        }
    }

    /// `x86_pmu_enable_all()` and friends.
    fn enable_all(&mut self) {
        match self.flavor {
            Flavor::IntelV2 => {
                if self.fixed_ctrl_val != self.active_fixed_ctrl_val {
                    self.wr(MSR_CORE_PERF_FIXED_CTR_CTRL, self.fixed_ctrl_val);
                    self.active_fixed_ctrl_val = self.fixed_ctrl_val;
                }
                self.wr(MSR_CORE_PERF_GLOBAL_CTRL, self.intel_ctrl());
            }
            Flavor::AmdV1 => {
                for (_, i) in self.active() {
                    self.enable_event(i, false);
                }
            }
            Flavor::AmdV2 => self.wr(MSR_AMD64_PERF_CNTR_GLOBAL_CTL, self.intel_ctrl()),
        }
    }

    /// `x86_schedule_events()` for `list`: the fast path keeps every
    /// event's previous counter if all are still free, else the slow path
    /// assigns greedily in list order (fixed counters first for events
    /// that have one).
    fn schedule(&self, list: &[usize]) -> Vec<PmcKind> {
        let mut used = 0u64;
        let mut fast = Vec::new();
        for &i in list {
            match self.events[i].idx {
                Some(k) if used & k.bit() == 0 => {
                    used |= k.bit();
                    fast.push(k);
                }
                _ => break,
            }
        }
        if fast.len() == list.len() {
            return fast;
        }
        let mut used = 0u64;
        list.iter()
            .map(|&i| {
                let k = match self.events[i].fixed {
                    Some(n) => PmcKind::Fixed(n),
                    None => (0..self.hw.shape.nr_gp)
                        .map(PmcKind::Gp)
                        .find(|k| used & k.bit() == 0)
                        .expect("no free counter"),
                };
                used |= k.bit();
                k
            })
            .collect()
    }

    /// `perf_pmu_disable()`, `ctx_sched_in()`, `perf_pmu_enable()`.
    fn sched_in(&mut self) {
        self.pmu_disable();
        self.add_and_enable();
    }

    /// `ctx_sched_in()` adds events in list order while they fit (collect
    /// fails beyond the counters), then the outermost `perf_pmu_enable()`
    /// runs `x86_pmu_enable()`: every added event is assigned and started
    /// (`x86_pmu_start(event, PERF_EF_RELOAD)`), then enable_all.
    fn add_and_enable(&mut self) {
        let mut list = Vec::new();
        let mut gp = 0;
        for &i in &self.order {
            if self.events[i].fixed.is_none() {
                if gp == self.hw.shape.nr_gp {
                    continue;
                }
                gp += 1;
            }
            list.push(i);
        }
        let assign = self.schedule(&list);
        for (&i, &k) in list.iter().zip(&assign) {
            let e = &mut self.events[i];
            e.idx = Some(k);
            e.active = true;
            self.set_period(i);
            self.enable_event(i, true);
        }
        self.enable_all();
    }

    /// `ctx_sched_out()`: `x86_pmu_del()` -> `x86_pmu_stop(PERF_EF_UPDATE)`.
    fn sched_out_events(&mut self) {
        let order = self.order.clone();
        for i in order {
            if self.events[i].active {
                self.disable_event(i);
                self.update(i);
                self.events[i].active = false;
            }
        }
    }

    /// A context switch away from the profiled task and back after `away`
    /// ticks of another task.
    fn context_switch(&mut self, away: u64) {
        self.note("context switch out: perf_event_task_sched_out()");
        self.pmu_disable();
        self.sched_out_events();
        self.enable_all();
        self.note("another task runs");
        self.run_plain(away);
        self.note("context switch in: perf_event_task_sched_in()");
        self.sched_in();
    }

    /// `perf_rotate_context()` from the mux hrtimer.
    fn rotate(&mut self) {
        self.note("mux hrtimer: perf_rotate_context()");
        self.pmu_disable();
        let first = self.order.iter().copied().find(|&i| self.events[i].active);
        self.sched_out_events();
        if let Some(first) = first {
            self.order.retain(|&i| i != first);
            self.order.push(first);
        }
        // The nested disables and enables of sched out/in are no-ops
        // (perf_pmu_disable() counts); the outer enable starts the events.
        self.add_and_enable();
    }

    /// The NMI handler for one PMI.
    fn nmi(&mut self) -> u64 {
        self.hw.pmi = false;
        self.hw.exp.pmis += 1;
        writeln!(self.out, "pmi").unwrap();
        let mut samples = 0;
        match self.flavor {
            Flavor::IntelV2 => {
                self.note("intel_pmu_handle_irq()");
                self.wr(MSR_CORE_PERF_GLOBAL_CTRL, 0);
                let mut status = self.rd(MSR_CORE_PERF_GLOBAL_STATUS);
                while status != 0 {
                    self.wr(MSR_CORE_PERF_GLOBAL_OVF_CTRL, status);
                    for (k, i) in self.active() {
                        if status & k.bit() == 0 {
                            continue;
                        }
                        self.update(i);
                        if self.set_period(i) {
                            samples += 1;
                        }
                    }
                    status = self.rd(MSR_CORE_PERF_GLOBAL_STATUS);
                }
                self.enable_all();
            }
            Flavor::AmdV1 => {
                self.note("x86_pmu_handle_irq()");
                for (_, i) in self.active() {
                    let val = self.update(i);
                    if val & (1 << 47) != 0 {
                        continue;
                    }
                    if self.set_period(i) {
                        samples += 1;
                    }
                }
            }
            Flavor::AmdV2 => {
                self.note("amd_pmu_v2_handle_irq()");
                self.wr(MSR_AMD64_PERF_CNTR_GLOBAL_CTL, 0);
                let mut status = self.rd(MSR_AMD64_PERF_CNTR_GLOBAL_STATUS);
                if status != 0 {
                    status &= self.intel_ctrl();
                    for (k, i) in self.active() {
                        self.update(i);
                        if status & k.bit() == 0 {
                            continue;
                        }
                        status &= !k.bit();
                        if self.set_period(i) {
                            samples += 1;
                        }
                    }
                    self.wr(MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_CLR, !status);
                }
                self.wr(MSR_AMD64_PERF_CNTR_GLOBAL_CTL, self.intel_ctrl());
            }
        }
        assert!(samples > 0, "PMI without a sample");
        self.hw.exp.samples += samples;
        samples
    }

    /// Runs `d` ticks in which no counter may wrap.
    fn run_plain(&mut self, d: u64) {
        assert!(self.hw.ticks_to_wrap().is_none_or(|t| t > d));
        self.run(d);
    }

    /// Runs `d` ticks of the profiled task, taking every PMI on the way.
    fn run_task(&mut self, mut d: u64) {
        while d > 0 {
            let step = self.hw.ticks_to_wrap().map_or(d, |t| t.min(d));
            self.run(step);
            d -= step;
            if self.hw.pmi {
                self.nmi();
            }
        }
    }

    fn finish(self, name: &'static str) -> Workload {
        Workload {
            name,
            text: self.out,
            expected: self.hw.exp,
            cycle_ends: Vec::new(),
            rotations: 0,
        }
    }
}

/// Intel PMU v2 with 4 GP and 3 fixed counters, 48 bits wide.
pub fn intel_shape() -> PmuShape {
    PmuShape::intel(2, 4, 3, 48, 48)
}

/// `perf stat -I 1000 -e instructions,cycles,ref-cycles -- task` on the
/// fixed counters, `intervals` intervals, one context switch each.
pub fn stat_fixed(intervals: u64) -> Workload {
    let mut p = Perf::new(
        Flavor::IntelV2,
        intel_shape(),
        &format!(
            "perf stat -I 1000 -e instructions,cycles,ref-cycles -- task\n\
             Counting events on fixed counters 0-2; {intervals} intervals, each with\n\
             one context switch: perf stops the events (fixed fields cleared,\n\
             FIXED_CTR_CTRL written by __intel_pmu_enable_all()) and restarts them."
        ),
    );
    p.add_event("instructions", 0x00c0, Some(0), 0);
    p.add_event("cycles", 0x003c, Some(1), 0);
    p.add_event("ref-cycles", 0x0300, Some(2), 0);
    p.note("perf_event_enable(): ctx_resched()");
    p.sched_in();
    for n in 0..intervals {
        p.note(&format!("interval {}", n + 1));
        p.run_task(900_000);
        p.context_switch(100_000);
    }
    p.note("perf stat exits: the events are stopped and read");
    p.pmu_disable();
    p.sched_out_events();
    p.enable_all();
    p.finish("stat-fixed")
}

/// `perf record -c 100000 -e <event> -- task`: one sampling GP event, until
/// `samples` samples; the task is switched out every 1,050,000 ticks.
pub fn record_gp(flavor: Flavor, samples: u64) -> Workload {
    let (shape, name, event, desc) = match flavor {
        Flavor::IntelV2 => (intel_shape(), "record-gp", 0x00c5, "branch-misses"),
        Flavor::AmdV2 => (PmuShape::amd(6, true), "record-gp-amd", 0x0076, "cycles"),
        Flavor::AmdV1 => (
            PmuShape::amd(4, false),
            "record-gp-amd-v1",
            0x0076,
            "cycles",
        ),
    };
    let mut p = Perf::new(
        flavor,
        shape,
        &format!(
            "perf record -c 100000 -e {desc} -- task   (event {event:#x})\n\
             One sampling event on a GP counter until {samples} samples; the NMI\n\
             handler re-arms the counter with -period; the task is switched out\n\
             every 1050000 ticks (x86_pmu_stop/x86_pmu_start)."
        ),
    );
    p.add_event(desc, event, None, 100_000);
    p.note("perf_event_enable(): ctx_resched()");
    p.sched_in();
    while p.hw.exp.samples < samples {
        let budget = (samples - p.hw.exp.samples) * 100_000;
        p.run_task(budget.min(1_050_000));
        if p.hw.exp.samples < samples {
            p.context_switch(50_000);
        }
    }
    p.note("perf record exits");
    p.pmu_disable();
    p.sched_out_events();
    p.enable_all();
    p.finish(name)
}

/// `perf record -a -e e0/period=../,...,e5/period=../`: six sampling
/// events with different periods on four GP counters, rotated by the mux
/// hrtimer every 250,000 ticks, until `pmis` PMIs.
pub fn mux(flavor: Flavor, pmis: u64) -> Workload {
    const ROTATE: u64 = 250_000;
    let (shape, name, events): (_, _, [(&'static str, u64, u64); 6]) = match flavor {
        Flavor::IntelV2 => (
            intel_shape(),
            "mux",
            [
                ("branch-instructions", 0x00c4, 100_000),
                ("branch-misses", 0x00c5, 70_000),
                ("cache-references", 0x4f2e, 130_000),
                ("cache-misses", 0x412e, 50_000),
                ("l1d.replacement", 0x0151, 90_000),
                ("uops_retired.slots", 0x02c2, 110_000),
            ],
        ),
        Flavor::AmdV1 | Flavor::AmdV2 => (
            PmuShape::amd(4, flavor == Flavor::AmdV2),
            "mux-amd",
            [
                ("cycles", 0x0076, 100_000),
                ("instructions", 0x00c0, 70_000),
                ("branches", 0x00c2, 130_000),
                ("branch-misses", 0x00c3, 50_000),
                ("dc-accesses", 0x0040, 90_000),
                ("dc-misses", 0x0041, 110_000),
            ],
        ),
    };
    let list: Vec<_> = events
        .iter()
        .map(|(n, _, period)| format!("{n}/period={period}/"))
        .collect();
    let mut p = Perf::new(
        flavor,
        shape,
        &format!(
            "perf record -a -e {}\n\
             Six sampling events on four GP counters, rotated every {ROTATE} ticks\n\
             by the mux hrtimer (perf_rotate_context), until {pmis} PMIs.",
            list.join(",")
        ),
    );
    for (n, e, period) in events {
        p.add_event(n, e, None, period);
    }
    p.note("perf_event_enable(): ctx_resched()");
    p.sched_in();
    let mut next_rotation = ROTATE;
    let (mut rotations, mut cycle_ends) = (0u64, Vec::new());
    while p.hw.exp.pmis < pmis {
        let to_rotation = next_rotation - p.now;
        let step =
            p.hw.ticks_to_wrap()
                .map_or(to_rotation, |t| t.min(to_rotation));
        p.run(step);
        if p.hw.pmi {
            p.nmi();
        }
        if p.now == next_rotation && p.hw.exp.pmis < pmis {
            p.rotate();
            next_rotation += ROTATE;
            rotations += 1;
            if rotations.is_multiple_of(events.len() as u64) {
                cycle_ends.push(p.out.lines().count());
            }
        }
    }
    Workload {
        cycle_ends,
        rotations,
        ..p.finish(name)
    }
}

/// The workloads of the replay tests and the benchmark: `(small)` sizes are
/// the committed, hand-readable traces.
pub fn all(small: bool) -> Vec<Workload> {
    let n = |full: u64, few: u64| if small { few } else { full };
    vec![
        stat_fixed(n(1000, 3)),
        record_gp(Flavor::IntelV2, n(1000, 12)),
        record_gp(Flavor::AmdV2, n(1000, 12)),
        mux(Flavor::IntelV2, n(1000, 12)),
        mux(Flavor::AmdV1, n(1000, 12)),
    ]
}
