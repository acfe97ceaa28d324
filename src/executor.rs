// SPDX-License-Identifier: GPL-2.0

//! The executor: carries out the model's reprogram of a vPMC on KVM's
//! `struct kvm_pmc` and real perf events.

use kernel::error::code::{ENOENT, ENOMEM};

use crate::ffi::kvm::{Pmc, PmcSnapshot, PmcUpdate, Vcpu};
use crate::ffi::perf::{Backing, DetachedEvent, Event};
use crate::ffi::{self, KEPT_MAX};
use crate::model::{
    self, EventAttr, EventInfo, KeptKey, PmcConfig, PmcHost, PmcKind, PmcState, Policy,
};
use crate::stats::{self, Stat};

/// The host side of a vPMC inside KVM.
struct KvmPmc<'a> {
    pmc: Pmc<'a>,
    backing: Backing,
    /// The event adopted in this reprogram came from a disabled counter.
    from_disabled: bool,
}

impl<'a> KvmPmc<'a> {
    fn new(pmc: Pmc<'a>, backing: Backing) -> Self {
        KvmPmc {
            pmc,
            backing,
            from_disabled: false,
        }
    }

    /// How many events the vCPU may keep: the `cache_size` parameter, or by
    /// default three times the vCPU's counters plus one.  KVM reprograms a
    /// rotation's counters in index order and each keeps its old event
    /// before it looks for its new one, so a config moving to a lower
    /// counter is wanted before the higher counter gives its event up: up to
    /// twice the counters can be in flight (the model's bound sweep, `make
    /// bench`).  KVM's lazy cleanup may add every counter's paused event
    /// (`vcpu_cleanup`), hence three times.
    fn keep_bound(&self) -> usize {
        match ffi::cache_size() {
            0 => 3 * self.pmc.nr_counters() + 1,
            n => n,
        }
        .min(KEPT_MAX)
    }

    /// Takes the paused event for `key` from another counter of the vCPU
    /// that the guest has disabled.  Linux's perf driver moves events
    /// between counters when it multiplexes, disabling them all first and
    /// then programming each counter in turn: the config a counter is given
    /// is often still attached, paused, to a counter programmed later.
    /// Without this, that counter would create a second event for the
    /// config, and the first would be kept beside it until evicted.
    fn take_from_disabled(&mut self, key: KeptKey) -> Option<(DetachedEvent, EventInfo)> {
        let mut vcpu = self.pmc.vcpu();
        let mut idx = 0;
        while let Some(mut other) = vcpu.next_idle_pmc(&mut idx) {
            let (cfg, state) = from_snapshot(&other.snapshot());
            if KeptKey::held(cfg.kind, &state) != Some(key) {
                continue;
            }
            let info = state.event?;
            let event = other.detach_event()?;
            self.from_disabled = true;
            return Some((event, info));
        }
        None
    }
}

impl PmcHost for KvmPmc<'_> {
    #[inline]
    fn pause(&mut self) -> u64 {
        self.pmc.event().map_or(0, Event::pause)
    }

    fn read(&mut self) -> u64 {
        self.pmc.event().map_or(0, Event::read)
    }

    #[inline]
    fn set_period(&mut self, period: u64) -> Result<(), model::Errno> {
        let event = self.pmc.event().ok_or(ENOENT.to_errno())?;
        event.set_period(period).map_err(|e| e.to_errno())
    }

    #[inline]
    fn enable(&mut self) {
        if let Some(event) = self.pmc.event() {
            event.enable();
        }
    }

    fn release(&mut self) {
        Stat::Releases.add();
        self.pmc.release_event();
    }

    fn create(&mut self, attr: &EventAttr) -> Result<(), model::Errno> {
        if ffi::should_fail_create() {
            Stat::InjectedFailures.add();
            return Err(ENOMEM.to_errno());
        }
        self.pmc
            .create_event(attr, self.backing)
            .map_err(|e| e.to_errno())
    }

    fn emulate_overflow(&mut self) {
        self.pmc.emulate_overflow();
    }

    fn keep(&mut self, key: KeptKey) {
        let bound = self.keep_bound();
        let Some(event) = self.pmc.detach_event() else {
            return;
        };
        let info = event.info();
        match self.pmc.kept_or_new() {
            Ok(kept) => kept.keep(key, info, event, bound),
            // No memory for the vCPU's set: the event is released.
            Err(_) => Stat::Evicted.add(),
        }
    }

    fn adopt(&mut self, key: KeptKey) -> Option<EventInfo> {
        let (event, info) = match self.pmc.kept().and_then(|kept| kept.take(key)) {
            Some(found) => found,
            None => self.take_from_disabled(key)?,
        };
        self.pmc.adopt_event(event).then_some(info)
    }
}

/// The model's view of a snapshot.  The event filter is not part of it
/// (`filter_allows` is false): [`reprogram`] consults it only where it
/// decides.
#[inline]
fn from_snapshot(s: &PmcSnapshot) -> (PmcConfig, PmcState) {
    let kind = if s.is_fixed {
        PmcKind::Fixed((s.idx - model::arch::FIXED_PMC_BASE_IDX) as u8)
    } else {
        PmcKind::Gp(s.idx as u8)
    };
    let cfg = PmcConfig {
        kind,
        eventsel: s.eventsel,
        fixed_ctrl: s.fixed_ctrl,
        mask: s.mask,
        raw_event_mask: s.raw_event_mask,
        globally_enabled: s.globally_enabled,
        filter_allows: false,
        pebs_enabled: s.pebs_enabled,
        host_tsx: s.host_tsx,
    };
    let state = PmcState {
        counter: s.counter,
        emulated_counter: s.emulated_counter,
        current_config: s.current_config,
        is_paused: s.is_paused,
        intr: s.intr,
        event: s.has_event.then_some(EventInfo {
            sampling: s.sampling,
            precise: s.precise,
        }),
    };
    (cfg, state)
}

/// Reprograms `pmc` under `policy`; returns 0 or the errno of a failed create.
pub(crate) fn reprogram(pmc: Pmc<'_>, policy: Policy, backing: Backing) -> i32 {
    let snap = pmc.snapshot();
    let (mut cfg, mut state) = from_snapshot(&snap);
    // As in KVM's pmc_event_is_allowed(), the filter is looked up only for a
    // counter enabled locally and globally: only then does it decide.
    cfg.filter_allows = cfg.globally_enabled && cfg.locally_enabled() && pmc.event_filter_allows();
    let mut host = KvmPmc::new(pmc, backing);
    if policy == Policy::Cache && !snap.vcpu_has_state {
        // KVM tells the backend of its lazy cleanup only for vCPUs with
        // backend state: without a set from the start, the cleanup releases
        // the paused events of counters left disabled for a time slice, and
        // the guest's next enables recreate them.  Without memory for it the
        // vCPU just goes on without one.
        let _ = host.pmc.kept_or_new();
    }

    let result = model::reprogram(policy, &cfg, &mut state, &mut host);
    stats::record(&result, host.from_disabled);

    host.pmc.update(&PmcUpdate {
        counter: state.counter,
        current_config: state.current_config,
        is_paused: state.is_paused,
        intr: state.intr,
    });
    match result {
        Ok(_) => 0,
        Err((errno, _)) => errno,
    }
}

/// How long a vCPU runs without using its PMU before its kept events are
/// released.  Far more than a multiplexing guest's rotation (perf rotates
/// every 4 ms by default): a Linux guest whose perf throttles leaves every
/// counter disabled until a later tick, and under nested TCG that lasted
/// more than 50 ms of run time (tests/guest/).
const IDLE_RUN_TIME_NS: u64 = 1_000_000_000;

/// KVM's lazy cleanup of a vCPU with kept events, at its first entry after
/// it was scheduled out.  Once the vCPU has run for [`IDLE_RUN_TIME_NS`]
/// without using its PMU, what it keeps is released, as KVM releases the
/// events of unused counters.  Until then, under `cache`, the paused events
/// of the counters the guest did not use in the slice that ended are kept
/// rather than released by KVM: a vCPU thread with short slices (many vCPUs
/// on few CPUs) may see a slice end between disabling a counter and
/// programming its next config.
pub(crate) fn vcpu_cleanup(mut vcpu: Vcpu<'_>, policy: Policy, backing: Backing) {
    let in_use = vcpu.pmu_in_use();
    let now = ffi::current_run_time_ns();
    let Some(kept) = vcpu.kept() else {
        return;
    };
    if kept.idle_for(in_use, now) >= IDLE_RUN_TIME_NS {
        Stat::ReleasedIdle.add_n(kept.clear() as u64);
    } else if policy == Policy::Cache {
        let mut idx = 0;
        while let Some(pmc) = vcpu.next_unused_pmc(&mut idx) {
            let (cfg, state) = from_snapshot(&pmc.snapshot());
            if let Some(key) = KeptKey::held(cfg.kind, &state) {
                KvmPmc::new(pmc, backing).keep(key);
            }
        }
    }
    Stat::CleanupReleases.add_n(u64::from(vcpu.cleanup_releases()));
}
