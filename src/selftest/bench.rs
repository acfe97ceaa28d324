// SPDX-License-Identifier: GPL-2.0

//! The self-test's benchmarks: what reprogramming costs in perf calls, what
//! kept events cost the task that holds them, and what keeping costs as the
//! host keeps more events.  Each prints ratios measured in the same run
//! (TSC cycles, medians); none passes or fails on a time.

use kernel::prelude::*;

use super::vpmc::{check, gp_config, StandaloneHost, TestResult, CYCLES_EVENTSEL};
use crate::ffi::{self, perf::PerfEvent, CtxswPartner};
use crate::kept::KVecSlots;
use crate::model::{EventInfo, KeptKey, KeptSet, PmcHost, PmcKind};

const TIMING_RUNS: usize = 201;
const COST_ROUNDS: usize = 5;

/// Median of `samples`, which it sorts.
fn median(samples: &mut [u64]) -> u64 {
    samples.sort_unstable();
    samples.get(samples.len() / 2).copied().unwrap_or(0)
}

/// `runs` timings of `f`, in TSC cycles, on the heap.
fn timings(runs: usize, mut f: impl FnMut() -> TestResult) -> Result<KVec<u64>, &'static str> {
    let mut samples = KVec::with_capacity(runs, GFP_KERNEL).map_err(|_| "no memory")?;
    for _ in 0..runs {
        let t0 = ffi::rdtsc();
        f()?;
        samples
            .push(ffi::rdtsc() - t0, GFP_KERNEL)
            .map_err(|_| "no memory")?;
    }
    Ok(samples)
}

/// `num / den` in hundredths, printed as `x.yy` with `"{}.{:02}"` from
/// [`Ratio::int`] and [`Ratio::frac`].  Not `Display`: 7.3's print macros
/// take `kernel::fmt::Display`, which 6.12 does not have.
struct Ratio(u64);

impl Ratio {
    fn of(num: u64, den: u64) -> Self {
        // A benchmark that timed nothing reports 0 instead of panicking.
        Ratio((num * 100).checked_div(den).unwrap_or(0))
    }

    fn int(&self) -> u64 {
        self.0 / 100
    }

    fn frac(&self) -> u64 {
        self.0 % 100
    }
}

/// Measures `cycles(n)` for each of `sizes`, the first being the baseline,
/// and prints each as "<what> with <n> <unit>" with its ratio to the first.
fn sweep(
    sizes: &[usize],
    what: &str,
    unit: &str,
    mut cycles: impl FnMut(usize) -> Result<u64, &'static str>,
) -> TestResult {
    let mut base = 0;
    for &n in sizes {
        let c = cycles(n)?;
        check(c > 0, "nothing measurable")?;
        if base == 0 {
            base = c;
        }
        let ratio = Ratio::of(c, base);
        pr_info!(
            "# {} with {} {}: median {} cycles ({}.{:02}x of none)\n",
            what,
            n,
            unit,
            c,
            ratio.int(),
            ratio.frac()
        );
    }
    Ok(())
}

/// Medians of create+release and of pause+period+resume in one round.
fn create_resume_round() -> Result<(u64, u64), &'static str> {
    let cfg = gp_config(CYCLES_EVENTSEL);
    let attr = cfg.event_attr(cfg.mask - 1_000_000 + 1);
    let mut host = StandaloneHost::default();
    let mut create = timings(TIMING_RUNS, || {
        host.create(&attr).map_err(|_| "create failed")?;
        host.release();
        Ok(())
    })?;
    host.create(&attr).map_err(|_| "create failed")?;
    let mut resume = timings(TIMING_RUNS, || {
        host.pause();
        host.set_period(attr.sample_period)
            .map_err(|_| "period refused")?;
        host.enable();
        Ok(())
    })?;
    host.release();
    Ok((median(&mut create), median(&mut resume)))
}

/// create+release against pause+period+resume: median of five rounds.
pub(super) fn create_resume_cost() -> TestResult {
    let mut ratios = [0u64; COST_ROUNDS];
    for (round, ratio) in ratios.iter_mut().enumerate() {
        let (create, resume) = create_resume_round()?;
        check(resume > 0, "no measurable resume")?;
        *ratio = Ratio::of(create, resume).0;
        pr_info!(
            "# round {}: create+release median {} cycles, pause+period+resume median {} cycles (n={})\n",
            round + 1,
            create,
            resume,
            TIMING_RUNS
        );
    }
    ratios.sort_unstable();
    let (median, min, max) = (
        Ratio(ratios[COST_ROUNDS / 2]),
        Ratio(ratios[0]),
        Ratio(ratios[COST_ROUNDS - 1]),
    );
    pr_info!(
        "# cost ratio create:resume = {}.{:02} (median of {} rounds, {}.{:02} to {}.{:02})\n",
        median.int(),
        median.frac(),
        COST_ROUNDS,
        min.int(),
        min.frac(),
        max.int(),
        max.frac()
    );
    Ok(())
}

/// `n` paused task-clock events on the current task.
fn paused_events(n: usize, sample_period: u64) -> Result<KVec<PerfEvent>, &'static str> {
    let cfg = gp_config(CYCLES_EVENTSEL);
    let mut attr = cfg.event_attr(0);
    attr.sample_period = sample_period;
    let mut events = KVec::with_capacity(n, GFP_KERNEL).map_err(|_| "no memory")?;
    for _ in 0..n {
        let mut host = StandaloneHost::default();
        host.create(&attr).map_err(|_| "create failed")?;
        host.pause();
        let event = host.event.take().ok_or("no event")?;
        events.push(event, GFP_KERNEL).map_err(|_| "no memory")?;
    }
    Ok(events)
}

/// Paused events on the task for the context-switch measurement: what
/// keeping events costs the vCPU thread.
const CTXSW_KEPT: [usize; 4] = [0, 4, 16, 64];
const ROUND_TRIPS: usize = 101;

/// Median cycles of a context-switch round trip (two switches, with a
/// kthread on the same CPU) with `n` paused events on this task.
fn ctxsw_cycles(n: usize) -> Result<u64, &'static str> {
    let _events = paused_events(n, 0)?;
    let partner = CtxswPartner::start().ok_or("cannot start the partner")?;
    let mut samples = timings(ROUND_TRIPS, || {
        partner.round_trip();
        Ok(())
    })?;
    Ok(median(&mut samples))
}

/// Context-switch round trips with 0, 4, 16 and 64 paused events on this
/// task.
pub(super) fn kept_events_ctxsw_cost() -> TestResult {
    sweep(
        &CTXSW_KEPT,
        "context-switch round trip",
        "paused events",
        ctxsw_cycles,
    )
}

/// Events kept host-wide, in other vCPUs' sets, while one vCPU keeps and
/// takes: with per-vCPU sets its cost must not depend on them.
const HOST_KEPT: [usize; 3] = [0, 1_000, 10_000];
/// Events per other set: a vCPU with four counters rotating twelve events.
const PER_SET: usize = 8;
/// keep+take pairs per timing sample.
const BATCH: usize = 64;

fn key(n: u64) -> KeptKey {
    KeptKey::new(PmcKind::Gp(0), CYCLES_EVENTSEL + (n << 8), false)
}

const INFO: EventInfo = EventInfo {
    sampling: false,
    precise: false,
};

/// What other vCPUs keep, in the sets of this benchmark: their perf events
/// would live on their own vCPU threads, whose cost the context-switch case
/// measures; here only the sets themselves count.
struct OtherVcpuEvent;

/// An empty set of the kernel's kind.
fn new_set<E>() -> KeptSet<E, KVecSlots<E>> {
    KeptSet::new(KVec::new())
}

/// Median cycles of one take+keep of one vCPU's set, full at its bound less
/// one with real paused events, with `host_kept` events kept in other sets.
fn keep_take_cycles(host_kept: usize) -> Result<u64, &'static str> {
    let mut others = KVec::new();
    for first in (0..host_kept).step_by(PER_SET) {
        let mut set = new_set();
        for n in first..host_kept.min(first + PER_SET) {
            set.insert(key(n as u64), INFO, OtherVcpuEvent)
                .map_err(|_| "no memory")?;
        }
        others.push(set, GFP_KERNEL).map_err(|_| "no memory")?;
    }
    let mut mine = new_set();
    for (n, event) in (0u64..).zip(paused_events(PER_SET, 0)?) {
        mine.insert(key(n), INFO, event).map_err(|_| "no memory")?;
    }
    // Take the oldest and keep it again: a full scan of the set each way.
    let mut next = 0u64;
    let mut samples = timings(TIMING_RUNS, || {
        for _ in 0..BATCH {
            let k = key(next % PER_SET as u64);
            let (event, info) = mine.take(k).ok_or("kept event not found")?;
            mine.insert(k, info, event).map_err(|_| "no slot")?;
            next += 1;
        }
        Ok(())
    })?;
    check(mine.len() == PER_SET, "the measured set lost events")?;
    let kept: usize = others.iter().map(KeptSet::len).sum();
    check(kept == host_kept, "the other sets lost events")?;
    Ok(median(&mut samples) / BATCH as u64)
}

/// take+keep of one vCPU with 0, 1,000 and 10,000 events kept host-wide.
pub(super) fn keep_take_cost_host_wide() -> TestResult {
    sweep(
        &HOST_KEPT,
        "take+keep",
        "events kept host-wide",
        keep_take_cycles,
    )
}
