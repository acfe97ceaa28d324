// SPDX-License-Identifier: GPL-2.0

//! In-kernel self-test: KTAP at load with `selftest=1` (both kernels), and
//! the same cases as the KUnit suite `kvm_vpmu` where the kernel crate has
//! `#[kunit_tests]` (7.3, `CONFIG_KVM_VPMU_KUNIT_TEST`), which KUnit runs
//! when the module loads (unless booted with `kunit.autorun=0`) and on each
//! write to `/sys/kernel/debug/kunit/kvm_vpmu/run`.
//!
//! It needs no hardware PMU: it drives the model's reprogram sequence and the
//! perf wrappers with real task-clock sampling events, for GP and fixed
//! vPMCs under both policies, and checks the statistics and the kept-event
//! set.  Then the benchmarks of `bench.rs` print their ratios.

use core::sync::atomic::{AtomicU64, Ordering};

use kernel::prelude::*;

use crate::ffi::perf::{Attr, Backing, PerfEvent};
use crate::ffi::{self, Registration};
use crate::model::arch::{
    EVENTSEL_ENABLE, EVENTSEL_INT, EVENTSEL_OS, EVENTSEL_USR, FIXED_OS, FIXED_PMI, FIXED_USR,
    X86_RAW_EVENT_MASK,
};
use crate::model::{
    self, reprogram, EventAttr, Outcome, PmcConfig, PmcHost, PmcKind, PmcState, PmuShape, Policy,
    RejectReason, Report,
};
use crate::stats::{self, Stat};

mod bench;

use bench::{create_resume_cost, keep_take_cost_host_wide, kept_events_ctxsw_cost};

/// Overflows of the self-test's events.
static OVERFLOWS: AtomicU64 = AtomicU64::new(0);

/// A vPMC outside any VM: its event is owned here, not by KVM.
#[derive(Default)]
pub(super) struct StandalonePmc {
    pub(super) event: Option<PerfEvent>,
    emulated_overflows: u64,
}

impl PmcHost for StandalonePmc {
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
        Stat::Releases.add();
        self.event = None;
    }

    fn create(&mut self, attr: &EventAttr) -> Result<(), model::Errno> {
        let mut pa = Attr::new(attr, Backing::TaskClock, 0);
        // SAFETY: every self-test event is dropped before the self-test, and
        // so the module's init, returns.
        let event = unsafe { PerfEvent::create(&mut pa, &OVERFLOWS) }.map_err(|e| e.to_errno())?;
        self.event = Some(event);
        Ok(())
    }

    fn emulate_overflow(&mut self) {
        self.emulated_overflows += 1;
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

fn fixed_config(ctrl: u8) -> PmcConfig {
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

/// Busy-waits for `cycles` TSC cycles; task-clock events count meanwhile.
fn spin(cycles: u64) {
    spin_until(cycles, || false);
}

/// Busy-waits until `done()` or for at most `cycles` TSC cycles.
fn spin_until(cycles: u64, done: impl Fn() -> bool) {
    let start = ffi::rdtsc();
    while !done() && ffi::rdtsc().wrapping_sub(start) < cycles {
        core::hint::spin_loop();
    }
}

type Step = core::result::Result<Report, (i32, RejectReason)>;

fn step(policy: Policy, cfg: &PmcConfig, st: &mut PmcState, host: &mut StandalonePmc) -> Step {
    let r = reprogram(policy, cfg, st, host);
    stats::record(&r, false);
    r
}

fn outcome(r: &Step) -> Option<Outcome> {
    r.as_ref().ok().map(|r| r.outcome)
}

pub(super) type TestResult = core::result::Result<(), &'static str>;

pub(super) fn check(cond: bool, what: &'static str) -> TestResult {
    if cond {
        Ok(())
    } else {
        Err(what)
    }
}

fn gp_reuse_lifecycle() -> TestResult {
    let mut host = StandalonePmc::default();
    let cfg = gp_config(CYCLES_EVENTSEL);
    // 200 us before the counter wraps.
    let start = cfg.mask - 200_000 + 1;
    let mut st = PmcState {
        counter: start,
        ..Default::default()
    };
    let r = step(Policy::Reuse, &cfg, &mut st, &mut host);
    check(
        outcome(&r) == Some(Outcome::Created(RejectReason::NoEvent)),
        "first reprogram must create",
    )?;
    check(
        st.event.is_some_and(|e| e.sampling) && st.intr,
        "created event must sample with PMI",
    )?;

    OVERFLOWS.store(0, Ordering::Relaxed);
    spin(4_000_000);
    check(host.read() > 0, "task clock did not count")?;
    // The overflow is an hrtimer interrupt, which under an emulator whose
    // thread the host preempted can come well after the TSC says that the
    // period elapsed: give it up to 200M cycles more before the pause below
    // cancels the timer.
    spin_until(200_000_000, || OVERFLOWS.load(Ordering::Relaxed) > 0);

    let r = step(Policy::Reuse, &cfg, &mut st, &mut host);
    check(
        outcome(&r) == Some(Outcome::Resumed),
        "same config must resume",
    )?;
    check(st.counter != start, "pause did not accumulate the count")?;
    check(
        OVERFLOWS.load(Ordering::Relaxed) > 0,
        "no overflow after the period elapsed",
    )?;

    // A paused, resumed event counts on.
    let before = st.counter;
    spin(2_000_000);
    let r = step(Policy::Reuse, &cfg, &mut st, &mut host);
    check(outcome(&r) == Some(Outcome::Resumed), "second resume")?;
    check(st.counter != before, "resumed event did not count")?;

    let r = step(
        Policy::Reuse,
        &gp_config(CYCLES_EVENTSEL & !EVENTSEL_USR),
        &mut st,
        &mut host,
    );
    check(
        outcome(&r) == Some(Outcome::Created(RejectReason::ConfigChanged)),
        "USR change must create a new event",
    )?;

    let disabled = gp_config(CYCLES_EVENTSEL & !EVENTSEL_ENABLE);
    let r = step(Policy::Reuse, &disabled, &mut st, &mut host);
    check(
        outcome(&r) == Some(Outcome::Idle),
        "disabled counter must idle under reuse",
    )?;
    check(
        host.event.is_some() && st.event.is_some(),
        "reuse keeps the paused event",
    )?;
    let r = step(Policy::Legacy, &disabled, &mut st, &mut host);
    check(
        outcome(&r) == Some(Outcome::Idle),
        "disabled counter must idle under legacy too",
    )?;
    check(
        host.event.is_some() && st.event.is_some(),
        "legacy keeps the paused event until the next reprogram",
    )?;
    let r = step(Policy::Legacy, &cfg, &mut st, &mut host);
    check(
        outcome(&r) == Some(Outcome::Created(RejectReason::Legacy)),
        "re-enabled counter must be recreated under legacy",
    )
}

fn gp_legacy_recreates() -> TestResult {
    let mut host = StandalonePmc::default();
    let cfg = gp_config(CYCLES_EVENTSEL);
    let mut st = PmcState::default();
    for i in 0..4 {
        let want = if i == 0 {
            RejectReason::NoEvent
        } else {
            RejectReason::Legacy
        };
        let r = step(Policy::Legacy, &cfg, &mut st, &mut host);
        check(
            outcome(&r) == Some(Outcome::Created(want)),
            "legacy must create on every reprogram",
        )?;
    }
    Ok(())
}

fn fixed_lifecycle() -> TestResult {
    let mut host = StandalonePmc::default();
    let mut st = PmcState::default();
    let counting = fixed_config(FIXED_OS | FIXED_USR);
    let r = step(Policy::Reuse, &counting, &mut st, &mut host);
    check(
        outcome(&r) == Some(Outcome::Created(RejectReason::NoEvent)),
        "fixed create",
    )?;
    check(!st.intr, "no PMI without the PMI bit")?;
    let r = step(Policy::Reuse, &counting, &mut st, &mut host);
    check(outcome(&r) == Some(Outcome::Resumed), "fixed resume")?;
    let r = step(
        Policy::Reuse,
        &fixed_config(FIXED_OS | FIXED_USR | FIXED_PMI),
        &mut st,
        &mut host,
    );
    check(
        outcome(&r) == Some(Outcome::Created(RejectReason::ConfigChanged)),
        "PMI bit change must create",
    )?;
    check(
        st.intr && st.current_config == u64::from(FIXED_OS | FIXED_USR | FIXED_PMI),
        "fixed config",
    )?;
    let r = step(Policy::Legacy, &counting, &mut st, &mut host);
    check(
        outcome(&r) == Some(Outcome::Created(RejectReason::Legacy)),
        "fixed legacy create",
    )
}

fn period_rejection_falls_back() -> TestResult {
    let mut host = StandalonePmc::default();
    let mut st = PmcState::default();
    let cfg = gp_config(CYCLES_EVENTSEL);
    step(Policy::Reuse, &cfg, &mut st, &mut host).map_err(|_| "create")?;
    // A 64-bit wide counter at 2^63 asks for a period perf refuses.
    let wide = PmcConfig {
        mask: u64::MAX,
        ..cfg
    };
    // Paused as KVM leaves it, so nothing counted moves the counter off 2^63.
    host.pause();
    st.is_paused = true;
    st.counter = 1 << 63;
    let r = step(Policy::Reuse, &wide, &mut st, &mut host);
    let fell_back = match r {
        Ok(rep) => rep.outcome == Outcome::Created(RejectReason::PeriodRejected),
        Err((_, reason)) => reason == RejectReason::PeriodRejected && st.event.is_none(),
    };
    check(fell_back, "refused period must fall back to a new event")?;
    check(
        st.event.is_some() == host.event.is_some(),
        "model and host disagree on the event",
    )
}

fn statistics() -> TestResult {
    stats::clear_all();
    let mut host = StandalonePmc::default();
    let mut st = PmcState::default();
    let cfg = gp_config(CYCLES_EVENTSEL);
    for _ in 0..3 {
        step(Policy::Reuse, &cfg, &mut st, &mut host).map_err(|_| "reuse step")?;
    }
    step(Policy::Legacy, &cfg, &mut st, &mut host).map_err(|_| "legacy step")?;
    step(
        Policy::Reuse,
        &gp_config(CYCLES_EVENTSEL & !EVENTSEL_ENABLE),
        &mut st,
        &mut host,
    )
    .map_err(|_| "idle step")?;
    check(Stat::Reprograms.get() == 5, "reprograms")?;
    check(Stat::Creates.get() == 2, "creates")?;
    check(Stat::Resumes.get() == 2, "resumes")?;
    check(Stat::Idle.get() == 1, "idle")?;
    check(
        Stat::RejectNoEvent.get() == 1 && Stat::RejectLegacy.get() == 1,
        "reject reasons",
    )?;
    check(Stat::Releases.get() == 1, "releases")?;
    check(Stat::CreateFailures.get() == 0, "create failures")?;
    stats::clear_all();
    Ok(())
}

/// KVM takes one backend at a time; this module is registered already (the
/// self-test runs with its `Registration`, KUnit once the module is live).
fn second_registration_busy() -> TestResult {
    check(
        Registration::register_again() == Err(EBUSY),
        "a second registration was not refused with -EBUSY",
    )
}

/// A bounded kept set evicts the least recently kept and finds by key.
fn kept_set_bound_and_lru() -> TestResult {
    use crate::kept::KeptEvents;
    use crate::model::{EventInfo, KeptKey};

    let info = EventInfo {
        sampling: true,
        precise: false,
    };
    let key = |n: u64| KeptKey::new(PmcKind::Gp(0), CYCLES_EVENTSEL + (n << 8), false);
    let mut set = KeptEvents::new();
    for n in 0..4 {
        let mut host = StandalonePmc::default();
        host.create(&gp_config(CYCLES_EVENTSEL).event_attr(0))
            .map_err(|_| "create failed")?;
        host.pause();
        let event = host.event.take().ok_or("no event")?;
        set.keep(key(n), info, event, 3);
    }
    check(set.len() == 3, "the bound of 3 was not kept")?;
    check(set.take(key(0)).is_none(), "the oldest was not evicted")?;
    check(set.take(key(2)).is_some(), "a kept event was not found")?;
    check(set.take(key(2)).is_none(), "an event was taken twice")?;
    check(set.clear() == 2 && set.len() == 0, "clear")?;
    let (state, slot) = crate::kept::vcpu_state_bytes();
    pr_info!(
        "# per-vCPU kept-event state: {} bytes, plus {} bytes per slot\n",
        state,
        slot
    );
    Ok(())
}

/// Defines the cases once, in order, for both runners: [`CASES`] for the
/// KTAP self-test and, on 7.3 with `CONFIG_KVM_VPMU_KUNIT_TEST`, a KUnit case
/// of the same name that runs the same function.
macro_rules! cases {
    ($($case:ident,)*) => {
        /// Every case, by name.
        const CASES: &[(&str, fn() -> TestResult)] = &[$((stringify!($case), $case),)*];

        // KUnit prints KTAP itself; each case returns the case's result.
        #[cfg(CONFIG_KVM_VPMU_KUNIT_TEST)]
        #[kernel::prelude::kunit_tests(kvm_vpmu)]
        mod kunit {
            $(
                #[test]
                fn $case() -> super::TestResult {
                    super::kunit_case(stringify!($case), super::$case)
                }
            )*
        }
    };
}

cases! {
    gp_reuse_lifecycle,
    gp_legacy_recreates,
    fixed_lifecycle,
    period_rejection_falls_back,
    statistics,
    second_registration_busy,
    kept_set_bound_and_lru,
    create_resume_cost,
    kept_events_ctxsw_cost,
    keep_take_cost_host_wide,
    nothing_left_kept,
}

/// Runs one case under KUnit, saying why it failed: KUnit's own message only
/// names the failed result.  The module's statistics are then cleared of
/// what the case counted, as `run` clears them after the last case.
#[cfg(CONFIG_KVM_VPMU_KUNIT_TEST)]
fn kunit_case(name: &str, case: fn() -> TestResult) -> TestResult {
    let result = case().inspect_err(|why| pr_info!("# {}: {}\n", name, why));
    stats::clear_all();
    result
}

/// Runs the self-test (KTAP) while `_registration` keeps the backend
/// registered, as `second_registration_busy` needs; fails if any case fails.
pub(crate) fn run(_registration: &Registration) -> Result {
    pr_info!("KTAP version 1\n");
    pr_info!("1..{}\n", CASES.len());
    let mut failed = 0;
    for (i, (name, case)) in CASES.iter().enumerate() {
        match case() {
            Ok(()) => pr_info!("ok {} {}\n", i + 1, name),
            Err(why) => {
                failed += 1;
                pr_info!("# {}: {}\n", name, why);
                pr_info!("not ok {} {}\n", i + 1, name);
            }
        }
    }
    stats::clear_all();
    pr_info!(
        "# kvm_vpmu self-test: {} passed, {} failed\n",
        CASES.len() - failed,
        failed
    );
    if failed > 0 {
        return Err(EINVAL);
    }
    Ok(())
}

/// The self-test's kept sets are all gone.
fn nothing_left_kept() -> TestResult {
    check(
        crate::kept::kept_now() == 0 && crate::kept::sets_now() == 0,
        "kept events or sets left behind",
    )
}
