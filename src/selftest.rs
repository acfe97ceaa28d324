// SPDX-License-Identifier: GPL-2.0

//! In-kernel self-test (KTAP), run at load with `selftest=1`.
//!
//! It needs no hardware PMU: it drives the model's reprogram sequence and the
//! perf wrappers with real task-clock sampling events, for GP and fixed
//! vPMCs under both policies, and checks the statistics.  It then times
//! create+release against pause+period+resume and prints the ratio.

use core::ffi::c_void;
use core::sync::atomic::{AtomicU64, Ordering};

use kernel::prelude::*;

use crate::bindings;
use crate::model::arch::{
    EVENTSEL_ENABLE, EVENTSEL_INT, EVENTSEL_OS, EVENTSEL_USR, FIXED_OS, FIXED_PMI, FIXED_USR,
    X86_RAW_EVENT_MASK,
};
use crate::model::{
    self, reprogram, EventAttr, Outcome, PmcConfig, PmcHost, PmcKind, PmcState, PmuShape, Policy,
    RejectReason, Report,
};
use crate::perf::{perf_attr, Backing, PerfEvent};
use crate::stats::{self, Stat};
use crate::POLICY_NAMES;

static OVERFLOWS: AtomicU64 = AtomicU64::new(0);

/// Overflow handler of the self-test's events (which never outlive it).
///
/// # Safety
///
/// Called by perf only; it reads none of its arguments.
unsafe extern "C" fn count_overflow(
    _event: *mut bindings::perf_event,
    _data: *mut bindings::perf_sample_data,
    _regs: *mut bindings::pt_regs,
) {
    OVERFLOWS.fetch_add(1, Ordering::Relaxed);
}

/// A vPMC outside any VM: its event is owned here, not by KVM.
#[derive(Default)]
struct StandalonePmc {
    event: Option<PerfEvent>,
    emulated_overflows: u64,
}

impl PmcHost for StandalonePmc {
    fn pause(&mut self) -> u64 {
        self.event.as_ref().map_or(0, |e| e.as_ref().pause())
    }

    fn read(&mut self) -> u64 {
        self.event.as_ref().map_or(0, |e| e.as_ref().read())
    }

    fn set_period(&mut self, period: u64) -> Result<(), model::Errno> {
        let event = self.event.as_ref().ok_or(ENOENT.to_errno())?;
        event.as_ref().set_period(period).map_err(|e| e.to_errno())
    }

    fn enable(&mut self) {
        if let Some(e) = &self.event {
            e.as_ref().enable();
        }
    }

    fn release(&mut self) {
        Stat::Releases.add();
        self.event = None;
    }

    fn create(&mut self, attr: &EventAttr) -> Result<(), model::Errno> {
        let mut pa = perf_attr(attr, Backing::TaskClock, 0);
        // SAFETY: `count_overflow` is in this module and needs no context;
        // every event is dropped before the self-test returns.
        let event =
            unsafe { PerfEvent::create(&mut pa, count_overflow, core::ptr::null_mut::<c_void>()) }
                .map_err(|e| e.to_errno())?;
        self.event = Some(event);
        Ok(())
    }

    fn emulate_overflow(&mut self) {
        self.emulated_overflows += 1;
    }
}

const SHAPE: PmuShape = PmuShape::intel(2, 4, 3, 48, 48);

fn gp_config(eventsel: u64) -> PmcConfig {
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

const CYCLES_EVENTSEL: u64 = 0x3c | EVENTSEL_USR | EVENTSEL_OS | EVENTSEL_INT | EVENTSEL_ENABLE;

fn rdtsc() -> u64 {
    // SAFETY: reads the TSC.
    unsafe { bindings::vpmu_rdtsc() }
}

/// Busy-waits for `cycles` TSC cycles; task-clock events count meanwhile.
fn spin(cycles: u64) {
    let start = rdtsc();
    while rdtsc().wrapping_sub(start) < cycles {
        core::hint::spin_loop();
    }
}

type Step = core::result::Result<Report, (i32, RejectReason)>;

fn step(policy: Policy, cfg: &PmcConfig, st: &mut PmcState, host: &mut StandalonePmc) -> Step {
    let r = reprogram(policy, cfg, st, host);
    stats::record(&r);
    r
}

fn outcome(r: &Step) -> Option<Outcome> {
    r.as_ref().ok().map(|r| r.outcome)
}

type TestResult = core::result::Result<(), &'static str>;
type Case = fn() -> TestResult;

fn check(cond: bool, what: &'static str) -> TestResult {
    if cond {
        Ok(())
    } else {
        Err(what)
    }
}

fn policy_names() -> TestResult {
    for (p, name) in Policy::ALL.iter().zip(POLICY_NAMES) {
        check(
            name.to_bytes() == p.name().as_bytes(),
            "parameter name differs from model",
        )?;
        check(
            Policy::parse(name.to_bytes()) == Some(*p),
            "name does not parse",
        )?;
    }
    check(Policy::parse(b"fast").is_none(), "unknown policy accepted")
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
        st.intr && st.current_config == (FIXED_OS | FIXED_USR | FIXED_PMI) as u64,
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

/// KVM takes one backend at a time; this module is registered already.
fn second_registration_busy() -> TestResult {
    // SAFETY: registering the same backend again must fail and change nothing.
    let ret = unsafe { bindings::vpmu_backend_register() };
    check(
        ret == EBUSY.to_errno(),
        "a second registration was not refused with -EBUSY",
    )
}

const TIMING_RUNS: usize = 201;
const COST_ROUNDS: usize = 5;

fn median(samples: &mut [u64; TIMING_RUNS]) -> u64 {
    samples.sort_unstable();
    samples[TIMING_RUNS / 2]
}

/// Cost of create+release against pause+period+resume, in TSC cycles.
fn costs() -> core::result::Result<(u64, u64), &'static str> {
    let cfg = gp_config(CYCLES_EVENTSEL);
    let attr = cfg.event_attr(cfg.mask - 1_000_000 + 1);
    let mut create = [0u64; TIMING_RUNS];
    let mut resume = [0u64; TIMING_RUNS];
    let mut host = StandalonePmc::default();
    for sample in create.iter_mut() {
        let t0 = rdtsc();
        host.create(&attr).map_err(|_| "create failed")?;
        host.release();
        *sample = rdtsc() - t0;
    }
    host.create(&attr).map_err(|_| "create failed")?;
    for sample in resume.iter_mut() {
        let t0 = rdtsc();
        host.pause();
        host.set_period(attr.sample_period)
            .map_err(|_| "period refused")?;
        host.enable();
        *sample = rdtsc() - t0;
    }
    host.release();
    Ok((median(&mut create), median(&mut resume)))
}

/// Paused events on the task for the context-switch measurement (issue 6:
/// what keeping events costs the vCPU thread).
const KEPT_EVENTS: [usize; 4] = [0, 4, 16, 64];
const ROUND_TRIPS: usize = 101;

/// Median cycles of one ping-pong round trip with a kthread on the same CPU
/// (two context switches) of this task with `n` paused task-clock events
/// attached to it.
fn ctxsw_cycles(n: usize) -> core::result::Result<u64, &'static str> {
    let cfg = gp_config(CYCLES_EVENTSEL);
    let attr = cfg.event_attr(0);
    let mut kept: [StandalonePmc; 64] = core::array::from_fn(|_| StandalonePmc::default());
    for pmc in kept.iter_mut().take(n) {
        pmc.create(&attr).map_err(|_| "create failed")?;
        pmc.pause();
    }
    // SAFETY: pins this task to its CPU and starts a partner kthread there;
    // undone by `vpmu_ctxsw_stop()` below.
    let partner = unsafe { bindings::vpmu_ctxsw_start() };
    if partner.is_null() {
        return Err("cannot start the yield partner");
    }
    let mut samples = [0u64; ROUND_TRIPS];
    for sample in samples.iter_mut() {
        let t0 = rdtsc();
        // SAFETY: sleeps until the partner answers, from process context.
        unsafe { bindings::vpmu_ctxsw_round_trip() };
        *sample = rdtsc() - t0;
    }
    // SAFETY: `partner` came from `vpmu_ctxsw_start()` and is stopped once.
    unsafe { bindings::vpmu_ctxsw_stop(partner) };
    samples.sort_unstable();
    Ok(samples[ROUND_TRIPS / 2])
}

/// Prints the context-switch cost with 0, 4, 16 and 64 kept events.
fn kept_events_ctxsw_cost() -> TestResult {
    let mut base = 0;
    for &n in KEPT_EVENTS.iter() {
        let cycles = ctxsw_cycles(n)?;
        check(cycles > 0, "no measurable context switch")?;
        if n == 0 {
            base = cycles;
        }
        // Checked: a division panic path trips objtool in 6.12.
        let ratio = (cycles * 100).checked_div(base).unwrap_or(0);
        pr_info!(
            "# context-switch round trip with {} paused events: median {} cycles ({}.{:02}x of none)\n",
            n,
            cycles,
            ratio / 100,
            ratio % 100
        );
    }
    Ok(())
}

/// Runs the self-test; fails if any case fails.
pub(crate) fn run() -> Result {
    let cases: [(&str, Case); 8] = [
        ("policy_names", policy_names),
        ("gp_reuse_lifecycle", gp_reuse_lifecycle),
        ("gp_legacy_recreates", gp_legacy_recreates),
        ("fixed_lifecycle", fixed_lifecycle),
        ("period_rejection_falls_back", period_rejection_falls_back),
        ("statistics", statistics),
        ("second_registration_busy", second_registration_busy),
        ("kept_events_ctxsw_cost", kept_events_ctxsw_cost),
    ];
    pr_info!("KTAP version 1\n");
    pr_info!("1..{}\n", cases.len() + 1);
    let mut failed = 0;
    for (i, (name, case)) in cases.iter().enumerate() {
        match case() {
            Ok(()) => pr_info!("ok {} {}\n", i + 1, name),
            Err(why) => {
                failed += 1;
                pr_info!("# {}: {}\n", name, why);
                pr_info!("not ok {} {}\n", i + 1, name);
            }
        }
    }
    let n = cases.len() + 1;
    // Ratios in hundredths, one per round, each from medians of one round.
    let mut ratios = [0u64; COST_ROUNDS];
    let mut measured = true;
    for (round, ratio) in ratios.iter_mut().enumerate() {
        match costs() {
            Ok((create, resume)) if resume > 0 => {
                *ratio = create * 100 / resume;
                pr_info!(
                    "# round {}: create+release median {} cycles, pause+period+resume median {} cycles (n={})\n",
                    round + 1,
                    create,
                    resume,
                    TIMING_RUNS
                );
            }
            Ok(_) | Err(_) => measured = false,
        }
    }
    if measured {
        ratios.sort_unstable();
        let median = ratios[COST_ROUNDS / 2];
        pr_info!(
            "# cost ratio create:resume = {}.{:02} (median of {} rounds, {}.{:02} to {}.{:02})\n",
            median / 100,
            median % 100,
            COST_ROUNDS,
            ratios[0] / 100,
            ratios[0] % 100,
            ratios[COST_ROUNDS - 1] / 100,
            ratios[COST_ROUNDS - 1] % 100
        );
        pr_info!("ok {} create_resume_cost\n", n);
    } else {
        failed += 1;
        pr_info!("not ok {} create_resume_cost\n", n);
    }
    pr_info!(
        "# kvm_vpmu self-test: {} passed, {} failed\n",
        n - failed,
        failed
    );
    if failed > 0 {
        return Err(EINVAL);
    }
    Ok(())
}
