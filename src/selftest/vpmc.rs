// SPDX-License-Identifier: GPL-2.0

//! A vPMC outside any VM, as the self-test's cases and benchmarks drive it,
//! and what every case uses to check.

use core::sync::atomic::AtomicU64;

use kernel::prelude::*;

use crate::ffi::perf::{Attr, Backing, PerfEvent};
use crate::kept::KVecSlots;
use crate::model::arch::{
    EVENTSEL_ENABLE, EVENTSEL_INT, EVENTSEL_OS, EVENTSEL_USR, X86_RAW_EVENT_MASK,
};
use crate::model::{
    self, DetachedEvents, EventAttr, KeptSet, PmcConfig, PmcHost, PmcKind, PmcState, PmuShape,
    VcpuHost,
};
use crate::stats::{Counts, Local, Stat};

/// Overflows of the self-test's events.
pub(super) static OVERFLOWS: AtomicU64 = AtomicU64::new(0);

/// A vPMC outside any VM, alone on a vCPU without a kept set: its event is
/// owned here, not by KVM, and what it does is counted here, not in the
/// module's statistics.
#[derive(Default)]
pub(super) struct StandaloneHost {
    pub(super) event: Option<PerfEvent>,
    emulated_overflows: u64,
    pub(super) counts: Local,
}

impl DetachedEvents for StandaloneHost {
    type Event = PerfEvent;

    fn release_detached(&mut self, event: PerfEvent) {
        self.counts.add(Stat::Releases, 1);
        drop(event);
    }
}

impl PmcHost for StandaloneHost {
    fn pause(&mut self) -> u64 {
        self.event.as_ref().map_or(0, |e| e.pause())
    }

    fn read(&mut self) -> u64 {
        self.event.as_ref().map_or(0, |e| e.read())
    }

    fn set_period(&mut self, period: u64) -> Result<(), model::Errno> {
        let event = self.event.as_ref().ok_or(ENOENT.to_errno())?;
        event.set_period(period).map_err(|e| e.to_errno())
    }

    fn enable(&mut self) {
        if let Some(e) = &self.event {
            e.enable();
        }
    }

    fn release(&mut self) {
        self.counts.add(Stat::Releases, 1);
        self.event = None;
    }

    fn create(&mut self, attr: &EventAttr) -> Result<(), model::Errno> {
        let pa = Attr::new(attr, Backing::TaskClock, 0);
        // SAFETY: every self-test event is dropped before the self-test, and
        // so the module's init, returns.
        let event = unsafe { PerfEvent::create(&pa, &OVERFLOWS) }.map_err(|e| e.to_errno())?;
        self.event = Some(event);
        Ok(())
    }

    fn emulate_overflow(&mut self) {
        self.emulated_overflows += 1;
    }

    fn detach(&mut self) -> Option<PerfEvent> {
        self.event.take()
    }

    fn attach(&mut self, event: PerfEvent) {
        self.event = Some(event);
    }
}

impl VcpuHost for StandaloneHost {
    type Slots = KVecSlots<PerfEvent>;

    fn kept_set(&mut self, _create: bool) -> Option<&mut KeptSet<PerfEvent, Self::Slots>> {
        None
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
    ) -> Option<(PmcConfig, PmcState, bool)> {
        None
    }

    fn detach_from(&mut self, _kind: PmcKind) -> Option<PerfEvent> {
        None
    }
}

pub(super) const SHAPE: PmuShape = PmuShape::intel(2, 4, 3, 48, 48);

pub(super) fn gp_config(eventsel: u64) -> PmcConfig {
    PmcConfig {
        kind: PmcKind::Gp(0),
        eventsel,
        fixed_ctrl: 0,
        mask: SHAPE.counter_mask(PmcKind::Gp(0)),
        raw_event_mask: X86_RAW_EVENT_MASK,
        globally_enabled: true,
        filter_allows: true,
        pebs_enabled: false,
        host_tsx: false,
    }
}

pub(super) fn fixed_config(ctrl: u8) -> PmcConfig {
    PmcConfig {
        kind: PmcKind::Fixed(0),
        eventsel: PmuShape::fixed_eventsel(0),
        fixed_ctrl: ctrl,
        mask: SHAPE.counter_mask(PmcKind::Fixed(0)),
        ..gp_config(0)
    }
}

pub(super) const CYCLES_EVENTSEL: u64 =
    0x3c | EVENTSEL_USR | EVENTSEL_OS | EVENTSEL_INT | EVENTSEL_ENABLE;

pub(super) type TestResult = core::result::Result<(), &'static str>;

pub(super) fn check(cond: bool, what: &'static str) -> TestResult {
    if cond {
        Ok(())
    } else {
        Err(what)
    }
}
