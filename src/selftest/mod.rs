// SPDX-License-Identifier: GPL-2.0

//! In-kernel self-test: KTAP at load with `selftest=1`, and the same cases
//! as the KUnit suite `kvm_vpmu` (`CONFIG_KVM_VPMU_KUNIT_TEST`), which KUnit runs
//! when the module loads (unless booted with `kunit.autorun=0`) and on each
//! write to `/sys/kernel/debug/kunit/kvm_vpmu/run`.
//!
//! It needs no hardware PMU: it drives the model's reprogram sequence and the
//! perf wrappers with real task-clock sampling events, for GP and fixed
//! vPMCs under both policies, and checks the statistics and the kept-event
//! set.  Then the benchmarks of `bench.rs` print their ratios.

use core::sync::atomic::Ordering;

use kernel::prelude::*;

use crate::ffi::perf::PerfEvent;
use crate::ffi::{self, Registration};
use crate::kept::KVecSlots;
use crate::model::arch::{EVENTSEL_ENABLE, EVENTSEL_USR, FIXED_OS, FIXED_PMI, FIXED_USR};
use crate::model::{
    reprogram, KeptSet, Outcome, PmcConfig, PmcHost, PmcKind, PmcState, Policy, RejectReason,
    Report,
};
use crate::stats::{self, Stat};

mod bench;
mod vpmc;

use bench::{create_resume_cost, keep_take_cost_host_wide, kept_events_ctxsw_cost};
use vpmc::{
    check, fixed_config, gp_config, StandaloneHost, TestResult, CYCLES_EVENTSEL, OVERFLOWS,
};

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

fn step(policy: Policy, cfg: &PmcConfig, st: &mut PmcState, host: &mut StandaloneHost) -> Step {
    let r = reprogram(policy, cfg, st, host);
    stats::record(&mut host.counts, &r);
    r
}

fn outcome(r: &Step) -> Option<Outcome> {
    r.as_ref().ok().map(|r| r.outcome)
}

fn gp_reuse_lifecycle() -> TestResult {
    let mut host = StandaloneHost::default();
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
    let mut host = StandaloneHost::default();
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
    let mut host = StandaloneHost::default();
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
    let mut host = StandaloneHost::default();
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

/// What the statistics count for a sequence of reprograms (the case's own
/// counts: the module's belong to the VMs running beside it).
fn statistics() -> TestResult {
    let mut host = StandaloneHost::default();
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
    let c = &host.counts;
    check(c.get(Stat::Reprograms) == 5, "reprograms")?;
    check(c.get(Stat::Creates) == 2, "creates")?;
    check(c.get(Stat::Resumes) == 2, "resumes")?;
    check(c.get(Stat::Idle) == 1, "idle")?;
    check(
        c.get(Stat::RejectNoEvent) == 1 && c.get(Stat::RejectLegacy) == 1,
        "reject reasons",
    )?;
    check(c.get(Stat::Releases) == 1, "releases")?;
    check(c.get(Stat::CreateFailures) == 0, "create failures")
}

/// KVM takes one backend at a time; this module is registered already (the
/// self-test runs with its `Registration`, KUnit once the module is live).
fn second_registration_busy() -> TestResult {
    check(
        Registration::register_again() == Err(EBUSY),
        "a second registration was not refused with -EBUSY",
    )
}

/// The kernel's kept set holds real paused events, finds them by key, gives
/// out the least recently kept first, and releases every one at vCPU
/// destruction.
fn kept_set_with_perf_events() -> TestResult {
    use crate::model::{cache, EventInfo, KeptKey};

    let info = EventInfo {
        sampling: true,
        precise: false,
    };
    let key = |n: u64| KeptKey::new(PmcKind::Gp(0), CYCLES_EVENTSEL + (n << 8), false);
    let mut set: KeptSet<PerfEvent, KVecSlots<PerfEvent>> = KeptSet::new(KVec::new());
    for n in 0..4 {
        let mut host = StandaloneHost::default();
        host.create(&gp_config(CYCLES_EVENTSEL).event_attr(0))
            .map_err(|_| "create failed")?;
        host.pause();
        let event = host.detach().ok_or("no event")?;
        set.insert(key(n), info, event).map_err(|_| "no slot")?;
    }
    check(set.len() == 4, "four events kept")?;
    check(set.take_oldest().is_some(), "the oldest was not given out")?;
    check(set.take(key(0)).is_none(), "the oldest was given out twice")?;
    check(set.take(key(2)).is_some(), "a kept event was not found")?;
    check(set.take(key(2)).is_none(), "an event was taken twice")?;
    let mut released = 0;
    check(
        cache::destroy(&mut set, |event| {
            released += 1;
            drop(event);
        }) == 2
            && released == 2
            && set.is_empty(),
        "destruction did not release what was kept",
    )?;
    let (state, slot) = crate::kept::vcpu_state_bytes();
    pr_info!(
        "# per-vCPU kept-event state: {} bytes, plus {} bytes per slot\n",
        state,
        slot
    );
    Ok(())
}

/// Defines the cases once, in order, for both runners: [`CASES`] for the
/// KTAP self-test and, with `CONFIG_KVM_VPMU_KUNIT_TEST`, a KUnit case
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
    kept_set_with_perf_events,
    create_resume_cost,
    kept_events_ctxsw_cost,
    keep_take_cost_host_wide,
}

/// Runs one case under KUnit, saying why it failed: KUnit's own message only
/// names the failed result.
#[cfg(CONFIG_KVM_VPMU_KUNIT_TEST)]
fn kunit_case(name: &str, case: fn() -> TestResult) -> TestResult {
    case().inspect_err(|why| pr_info!("# {}: {}\n", name, why))
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
