// SPDX-License-Identifier: GPL-2.0

//! Workload replays: what the guest Linux perf driver writes for `perf stat`
//! on fixed counters, `perf record` on one GP event (Intel and AMD
//! PerfMonV2), and multiplexed sampling with six events on four counters
//! (Intel and AMD), replayed under `legacy`, `reuse` and `cache`.
//!
//! The full-size traces (about 1000 intervals, samples or PMIs) are generated
//! at test time by `trace::gen`; small versions of the same workloads are
//! committed under tests/traces/ as hand-readable examples, and
//! [`committed_traces_match_generator`] keeps them equal to the generator's
//! output (`VPMU_BLESS=1 cargo test --test workloads` rewrites them).
//!
//! Every trace carries the values the guest expects to read (computed by the
//! generator's own architectural model), so each replay checks counter
//! values, GLOBAL_STATUS and PMI delivery, not only counts.

mod sim;
mod trace;

use std::path::PathBuf;

use trace::gen::{self, Flavor, Workload};
use trace::{replay, replay_bounded, replay_switching, Replay, Trace};
use vpmu_model::Policy;

fn traces_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/traces")
}

/// Replays under every policy, checks everything they must agree on and
/// the oracle's counts; returns (legacy, reuse, cache).
fn replay_all(w: &Workload) -> (Replay, Replay, Replay) {
    let t = Trace::parse(&w.text).unwrap_or_else(|e| panic!("{}: {e}", w.name));
    let run = |p: Policy| replay(&t, p).unwrap_or_else(|e| panic!("{} {p:?}: {e}", w.name));
    let (legacy, reuse, cache) = (run(Policy::Legacy), run(Policy::Reuse), run(Policy::Cache));
    let e = &w.expected;
    for r in [&legacy, &reuse, &cache] {
        let p = format!("{:?}", r.policy);
        assert_eq!(r.pmis_injected, e.pmis, "{} {p}: PMIs", w.name);
        assert_eq!(r.pmi_requests, e.samples, "{} {p}: PMI requests", w.name);
        assert_eq!(r.sim.overflows, e.samples, "{} {p}: overflows", w.name);
        assert_eq!(
            r.vpmu.reprograms, e.reprograms,
            "{} {p}: reprograms",
            w.name
        );
        assert_eq!(r.vpmu.guest_writes, t.guest_writes(), "{} {p}", w.name);
        assert_eq!(r.vpmu.creates, r.sim.creates, "{} {p}", w.name);
        assert_eq!(r.vpmu.create_failures, 0, "{} {p}", w.name);
        assert_eq!(r.sim.period_rejects, 0, "{} {p}", w.name);
    }
    assert_eq!(
        legacy.vpmu.creates, e.creates_legacy,
        "{}: legacy creates",
        w.name
    );
    assert_eq!(
        reuse.vpmu.creates, e.creates_reuse,
        "{}: reuse creates",
        w.name
    );
    assert_eq!(legacy.vpmu.resumes, 0, "{}: legacy never resumes", w.name);
    assert_eq!(
        reuse.vpmu.creates + reuse.vpmu.resumes,
        legacy.vpmu.creates,
        "{}: reuse resumes where legacy recreates",
        w.name
    );
    // Cache resumes where reuse does and adopts where reuse creates.
    assert_eq!(cache.vpmu.resumes, reuse.vpmu.resumes, "{}", w.name);
    assert_eq!(
        cache.vpmu.creates + cache.vpmu.adoptions,
        reuse.vpmu.creates,
        "{}: cache adopts where reuse creates",
        w.name
    );
    assert!(cache.vpmu.adoptions <= cache.sim.attaches, "{}", w.name);
    for r in [&reuse, &cache] {
        let p = format!("{:?}", r.policy);
        assert_eq!(
            r.guest_view, legacy.guest_view,
            "{} {p}: guest view",
            w.name
        );
        assert_eq!(
            r.overflow_log, legacy.overflow_log,
            "{} {p}: overflows",
            w.name
        );
        assert_eq!(r.final_counters, legacy.final_counters, "{} {p}", w.name);
    }
    (legacy, reuse, cache)
}

/// Events created after the `cycles`-th full rotation cycle of a
/// multiplexing workload.
fn creates_after_cycles(w: &Workload, r: &Replay, cycles: usize) -> u64 {
    r.creates_after(w.cycle_ends[cycles - 1])
}

/// The smallest kept-set bound with which `cache` creates nothing after
/// `cycles` rotation cycles, searched up to `max`.
fn bound_for_no_creates(w: &Workload, cycles: usize, max: usize) -> Option<usize> {
    let t = Trace::parse(&w.text).unwrap();
    // `cache_size` 0 is the default bound: from 1 on.
    (1..=max).find(|&b| {
        let r = replay_bounded(&t, Policy::Cache, b).unwrap();
        creates_after_cycles(w, &r, cycles) == 0
    })
}

fn full(name: &str) -> Workload {
    gen::all(false)
        .into_iter()
        .find(|w| w.name == name)
        .unwrap()
}

#[test]
fn stat_fixed() {
    let w = full("stat-fixed");
    let (legacy, reuse, cache) = replay_all(&w);
    // Three counting events; every interval the context switch clears the
    // fixed fields and GLOBAL_CTRL re-enables them: legacy recreates all
    // three, reuse resumes them (same 4-bit field, counting events: no period).
    assert_eq!(reuse.vpmu.creates, 3);
    assert_eq!(legacy.vpmu.creates, 3 + 3 * 1000);
    assert_eq!(reuse.vpmu.resumes, 3 * 1000);
    assert_eq!(
        cache.vpmu.creates, 3,
        "nothing to keep: configs never change"
    );
    assert_eq!(cache.vpmu.keeps, 0);
    assert_eq!(reuse.pmis_injected, 0, "48-bit counters never wrap here");
    assert_eq!(reuse.sim.live, 3);
    // Counters ran 900k ticks per interval and were stopped (not counting)
    // while another task ran: 2^47 + 1 (-max_period) plus 900M.
    let start = (1u64 << 47) + 1;
    let ran = 900_000 * 1000;
    assert_eq!(&reuse.final_counters[4..], &[start + ran; 3]);
}

#[test]
fn record_gp_intel() {
    let w = full("record-gp");
    let (legacy, reuse, cache) = replay_all(&w);
    assert_eq!(w.expected.samples, 1000);
    assert_eq!(w.expected.pmis, 1000, "one PMI per sample");
    assert_eq!(reuse.vpmu.creates, 1, "one host event serves every sample");
    assert_eq!(cache.vpmu.creates, 1);
    // Legacy: the initial create, then per sample the overflow reprogram
    // and the handler's GLOBAL_CTRL 0 -> all, and per context switch the
    // re-enable.  100M ticks of task time, a switch every 1.05M ticks.
    let switches = 100_000_000 / 1_050_000;
    assert_eq!(legacy.vpmu.creates, 1 + 2 * 1000 + switches);
    // Overflows exactly every 100000 ticks of task time.
    let first = reuse.overflow_log[0].0;
    assert_eq!(first, 100_000);
}

#[test]
fn record_gp_amd_v2() {
    let w = full("record-gp-amd");
    let (legacy, reuse, cache) = replay_all(&w);
    assert_eq!(w.expected.samples, 1000);
    assert_eq!(w.expected.pmis, 1000);
    assert_eq!(reuse.vpmu.creates, 1);
    assert_eq!(cache.vpmu.creates, 1);
    let switches = 100_000_000 / 1_050_000;
    assert_eq!(legacy.vpmu.creates, 1 + 2 * 1000 + switches);
}

/// What `cache` does for a multiplexing workload: six configs rotated
/// through four GP counters, 104 rotations in 1000 PMIs.
fn check_mux(w: &Workload, cache: &Replay) {
    assert_eq!(w.cycle_ends.len() as u64, w.rotations / 6);
    assert!(w.rotations >= 100);
    // Six configs, six events: KVM reprograms the counters of one rotation
    // in index order, so a config that moves to a lower counter is wanted
    // while the higher counter still holds it, paused; the lower counter
    // takes it from there (AMD: the counter is disabled; Intel: it is
    // disabled in GLOBAL_CTRL or already has its next config).  Nothing is
    // created after the first cycle, and nothing is evicted.
    assert_eq!(cache.vpmu.creates, 6, "{}", w.name);
    assert_eq!(creates_after_cycles(w, cache, 1), 0, "{}", w.name);
    assert!(cache.vpmu.adoptions_from_disabled > 100, "{}", w.name);
    assert_eq!(cache.vpmu.evictions, 0, "{}", w.name);
    assert_eq!(cache.sim.live, 6, "{}: 4 serving, 2 kept", w.name);
    assert_eq!(cache.kept, 2, "{}", w.name);
    // A bound of 4 is enough; the default is far above it.
    assert_eq!(bound_for_no_creates(w, 1, 16), Some(4), "{}", w.name);
}

#[test]
fn mux_intel() {
    let w = full("mux");
    let (legacy, reuse, cache) = replay_all(&w);
    assert_eq!(w.expected.pmis, 1000);
    assert!(w.expected.samples >= 1000);
    // Rotation gives counters new configs, so reuse still creates, but
    // far less than legacy, which also recreates on every PMI.
    assert!(reuse.vpmu.creates > 4);
    assert!(reuse.vpmu.creates * 4 < legacy.vpmu.creates);
    assert!(creates_after_cycles(&w, &reuse, 2) > 200);
    check_mux(&w, &cache);
}

#[test]
fn mux_amd() {
    let w = full("mux-amd");
    let (legacy, reuse, cache) = replay_all(&w);
    assert_eq!(w.expected.pmis, 1000);
    assert!(reuse.vpmu.creates > 4);
    assert!(reuse.vpmu.creates < legacy.vpmu.creates);
    check_mux(&w, &cache);
    // A bound of 4 is just enough; with one less the least recently kept
    // event is evicted and created again, yet the guest sees nothing.
    let t = Trace::parse(&w.text).unwrap();
    let three = replay_bounded(&t, Policy::Cache, 3).unwrap();
    assert_eq!(three.guest_view, legacy.guest_view);
    assert_eq!(three.overflow_log, legacy.overflow_log);
    assert_eq!(three.vpmu.evictions, 29);
    assert_eq!(three.vpmu.creates, 35);
    assert_eq!(creates_after_cycles(&w, &three, 2), 26);
}

#[test]
fn policy_switches_mid_trace_are_invisible() {
    for w in gen::all(false) {
        let t = Trace::parse(&w.text).unwrap();
        let legacy = replay(&t, Policy::Legacy).unwrap();
        for period in [1, 7, 100] {
            let flip = |i: usize| Policy::ALL[(i / period) % 3];
            let mixed = replay_switching(&t, flip)
                .unwrap_or_else(|e| panic!("{} every {period}: {e}", w.name));
            assert_eq!(mixed.guest_view, legacy.guest_view, "{}", w.name);
            assert_eq!(mixed.overflow_log, legacy.overflow_log, "{}", w.name);
            assert_eq!(mixed.pmi_requests, legacy.pmi_requests, "{}", w.name);
            assert!(mixed.vpmu.creates <= legacy.vpmu.creates, "{}", w.name);
        }
    }
}

#[test]
fn committed_traces_match_generator() {
    let bless = std::env::var_os("VPMU_BLESS").is_some();
    for w in gen::all(true) {
        let path = traces_dir().join(format!("{}.trace", w.name));
        if bless {
            std::fs::create_dir_all(traces_dir()).unwrap();
            std::fs::write(&path, &w.text).unwrap();
            continue;
        }
        let committed =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            committed == w.text,
            "{} differs from the generator; rerun with VPMU_BLESS=1",
            path.display()
        );
    }
}

#[test]
fn committed_traces_replay() {
    let mut seen = 0;
    for entry in std::fs::read_dir(traces_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "trace") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let t = Trace::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let legacy = replay(&t, Policy::Legacy).unwrap_or_else(|e| panic!("{e}"));
        let reuse = replay(&t, Policy::Reuse).unwrap_or_else(|e| panic!("{e}"));
        let cache = replay(&t, Policy::Cache).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(legacy.guest_view, reuse.guest_view, "{}", path.display());
        assert_eq!(legacy.guest_view, cache.guest_view, "{}", path.display());
        assert!(reuse.vpmu.creates <= legacy.vpmu.creates);
        assert!(cache.vpmu.creates <= reuse.vpmu.creates);
        seen += 1;
    }
    assert!(seen >= 5, "expected the committed traces, found {seen}");
}

#[test]
fn small_workloads_match_oracle() {
    for w in gen::all(true) {
        replay_all(&w);
    }
}

/// A trace whose expectations are wrong must fail the replay: the replays
/// above are only as strong as this check.
#[test]
fn replay_rejects_wrong_expectations() {
    let w = gen::record_gp(Flavor::IntelV2, 3);
    let ok = Trace::parse(&w.text).unwrap();
    assert!(replay(&ok, Policy::Reuse).is_ok());
    // Expect a different GLOBAL_STATUS in the first handler.
    let bad = w.text.replacen("rdmsr 0x38e = 0x1", "rdmsr 0x38e = 0x2", 1);
    assert_ne!(bad, w.text);
    let err = replay(&Trace::parse(&bad).unwrap(), Policy::Reuse).unwrap_err();
    assert!(err.contains("rdmsr 0x38e"), "{err}");
    // Take the first PMI 1 tick early: the guest is not interrupted yet.
    let early = w.text.replacen("run 100000\npmi", "run 99999\npmi", 1);
    assert_ne!(early, w.text);
    let err = replay(&Trace::parse(&early).unwrap(), Policy::Legacy).unwrap_err();
    assert!(err.contains("PMI"), "{err}");
    // A PMI that the guest never takes.
    let missing = w.text.replacen("pmi\n", "", 1);
    assert!(replay(&Trace::parse(&missing).unwrap(), Policy::Legacy).is_err());
    // Parser errors name the line.
    assert!(Trace::parse("shape intel version=2 gp=4\nwrmsr 0x186")
        .unwrap_err()
        .contains("line 2"));
    assert!(Trace::parse("run 5").is_err(), "op before shape");
}

/// The format by hand: faults, sched-in and lazy cleanup.
#[test]
fn hand_written_trace() {
    let text = "\
# SPDX-License-Identifier: GPL-2.0
shape intel version=2 gp=2 fixed=1 gp_width=40
wrmsr 0x186 0x5300c5        # branch-misses, USR|OS|INT|EN
run 10
wrmsr 0x186 0x1300c5        # EN off
sched_in                    # the slice that touched it ends
sched_in                    # untouched and disabled: released
rdmsr 0x4c1 = 10
rdmsr 0xc1 = 0xa
wrmsr 0x4c1 0x10000000000 !gp   # beyond 40 bits
wrmsr 0x38e 0 !gp           # GLOBAL_STATUS is read-only
rdmsr 0x4c3 !gp             # no third counter
rdmsr 0x30a !gp             # no second fixed counter
wrmsr 0xc1 0xfffffff6       # -10, sign-extended
wrmsr 0x186 0x5300c5
run 10
pmi
rdmsr 0x38e = 0x1
";
    let t = Trace::parse(text).unwrap();
    // Cache: KVM's cleanup would release the disabled counter's paused
    // event; the backend keeps it instead, and the counter adopts it again.
    for (policy, creates) in [(Policy::Legacy, 3), (Policy::Reuse, 2), (Policy::Cache, 1)] {
        let r = replay(&t, policy).unwrap();
        // Legacy also recreates for the overflow's reprogram.
        assert_eq!(r.vpmu.creates, creates, "{policy:?}");
        assert_eq!(r.sim.releases, creates - 1, "{policy:?}");
        assert_eq!(r.sim.live, 1);
        assert_eq!(r.pmis_injected, 1);
        assert_eq!(r.vpmu.cleanup_keeps, u64::from(policy == Policy::Cache));
        assert_eq!(r.final_counters[0], 0);
    }
    // Left enabled, the counter keeps its event.  Then the -10 write hits a
    // running event, and KVM 6.12 (pmc_write_counter() with
    // perf_event_period()) restarts a full period of 10 while the event
    // has already counted 10: the PMI comes 10 ticks after the guest
    // counter wraps (see counter_write_while_running_overflows_late_as_in_kvm).
    let kept = text.replace("wrmsr 0x186 0x1300c5        # EN off\n", "");
    for policy in Policy::ALL {
        let err = replay(&Trace::parse(&kept).unwrap(), policy).unwrap_err();
        assert!(
            err.starts_with("line 16: guest takes PMI #1, 0 injected"),
            "{err}"
        );
        let late = kept.replace("run 10\npmi", "run 20\npmi");
        let r = replay(&Trace::parse(&late).unwrap(), policy).unwrap();
        assert_eq!(r.sim.releases, r.vpmu.creates - 1);
        assert_eq!(r.pmis_injected, 1);
    }
    // A wrong expectation names its line.
    let wrong = text.replace("rdmsr 0x4c1 = 10", "rdmsr 0x4c1 = 11");
    let err = replay(&Trace::parse(&wrong).unwrap(), Policy::Reuse).unwrap_err();
    assert!(err.starts_with("line 8:"), "{err}");
}
