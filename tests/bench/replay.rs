// SPDX-License-Identifier: GPL-2.0

//! `cargo bench --bench replay`: replays the workload traces (the same
//! generator as tests/workloads.rs, full size) under `legacy`, `reuse` and
//! `cache` on simulated perf, and prints exact counts per workload next to
//! the seed's figures from commit a6da0d77 ("KVM: x86/vPMU: Reuse perf_event
//! to avoid unnecessary pmc_reprogram_counter").  For the multiplexing
//! workloads it adds creates per 1000 guest PMIs, creates after warm-up
//! (after the first and the second full rotation cycle), and how the bound
//! of `cache`'s kept set decides them.
//!
//! Counts only, no timing: the tables are the same on every run and machine.

#[path = "../sim/mod.rs"]
mod sim;
#[path = "../trace/mod.rs"]
mod trace;

use trace::gen::{self, Workload};
use trace::{replay, replay_bounded, Replay, Trace};
use vpmu_model::{PmuShape, Policy, Vendor};

/// The seed's reduction of pmc_reprogram_counter() calls for the workload.
fn seed(name: &str) -> &'static str {
    match name {
        "stat-fixed" => "-99.9% (fixed event)",
        n if n.starts_with("record-gp") => "-82.5% (gp sampling event)",
        _ => "- (latency only: NMI handler 2.16x)",
    }
}

/// `-(legacy - other) / legacy` in percent with two decimals, from integers.
fn reduction(legacy: u64, other: u64) -> String {
    if legacy == 0 {
        return "-".into();
    }
    let bp = ((legacy - other) as u128 * 10_000 + legacy as u128 / 2) / legacy as u128;
    format!("-{}.{:02}%", bp / 100, bp % 100)
}

/// `n` per 1000 of `of`, with one decimal, from integers.
fn per_mille(n: u64, of: u64) -> String {
    if of == 0 {
        return "-".into();
    }
    let tenths = (n as u128 * 10_000 + of as u128 / 2) / of as u128;
    format!("{}.{}", tenths / 10, tenths % 10)
}

fn shape_name(s: &PmuShape) -> String {
    match s.vendor {
        Vendor::Intel => format!("Intel v{} {}gp+{}fx", s.version, s.nr_gp, s.nr_fixed),
        Vendor::Amd => format!("AMD v{} {}gp", s.version, s.nr_gp),
    }
}

/// The default bound of the kept set: three times the counters plus one.
fn default_bound(s: &PmuShape) -> usize {
    vpmu_model::cache::keep_bound((s.nr_gp + s.nr_fixed) as usize, 0)
}

/// Prints a table: the first `text` columns and the last `text_last`
/// columns left-aligned, numbers right-aligned.
fn table(header: &[&str], rows: &[Vec<String>], text: usize, text_last: usize) {
    let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let n = header.len();
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, (c, &w)) in cells.iter().zip(&width).enumerate() {
            if i < text || i >= n - text_last {
                s += &format!("{c:<w$}");
            } else {
                s += &format!("{c:>w$}");
            }
            if i + 1 < cells.len() {
                s += "  ";
            }
        }
        s.trim_end().to_string()
    };
    let h: Vec<String> = header.iter().map(|s| s.to_string()).collect();
    println!("{}", line(&h));
    println!("{}", "-".repeat(line(&h).len()));
    for r in rows {
        println!("{}", line(r));
    }
}

/// Events created after the `cycles`-th full rotation cycle.
fn after_cycles(w: &Workload, r: &Replay, cycles: usize) -> u64 {
    r.creates_after(w.cycle_ends[cycles - 1])
}

fn main() {
    let workloads = gen::all(false);
    let mut rows = Vec::new();
    let mut mux = Vec::new();
    for w in &workloads {
        let t = Trace::parse(&w.text).unwrap_or_else(|e| panic!("{}: {e}", w.name));
        let [legacy, reuse, cache] =
            Policy::ALL.map(|p| replay(&t, p).unwrap_or_else(|e| panic!("{} {p:?}: {e}", w.name)));
        for r in [&reuse, &cache] {
            assert_eq!(legacy.guest_view, r.guest_view, "{}: guest view", w.name);
            assert_eq!(legacy.overflow_log, r.overflow_log, "{}", w.name);
            assert_eq!(legacy.vpmu.reprograms, r.vpmu.reprograms, "{}", w.name);
        }
        assert_eq!(legacy.vpmu.creates, w.expected.creates_legacy, "{}", w.name);
        assert_eq!(reuse.vpmu.creates, w.expected.creates_reuse, "{}", w.name);
        assert!(cache.vpmu.creates <= reuse.vpmu.creates, "{}", w.name);
        rows.push(vec![
            w.name.to_string(),
            shape_name(&t.shape),
            legacy.vpmu.guest_writes.to_string(),
            legacy.vpmu.reprograms.to_string(),
            legacy.vpmu.creates.to_string(),
            reuse.vpmu.creates.to_string(),
            cache.vpmu.creates.to_string(),
            reduction(legacy.vpmu.creates, reuse.vpmu.creates),
            reduction(legacy.vpmu.creates, cache.vpmu.creates),
            reuse.pmis_injected.to_string(),
            seed(w.name).to_string(),
        ]);
        if !w.cycle_ends.is_empty() {
            mux.push((w, t, [legacy, reuse, cache]));
        }
    }

    println!("vPMC reprogramming: host perf_event creates, legacy vs reuse vs cache");
    println!("(guest perf driver traces replayed on the model over simulated perf; exact counts)");
    println!();
    table(
        &[
            "workload",
            "shape",
            "guest writes",
            "reprogram requests",
            "creates legacy",
            "creates reuse",
            "creates cache",
            "reduction reuse",
            "reduction cache",
            "PMIs",
            "seed (a6da0d77)",
        ],
        &rows,
        2,
        1,
    );
    println!();
    println!("reduction = creates saved / creates under legacy.  cache runs with its default");
    println!(
        "bound (kept events <= 2 x the counters + 1).  The seed counted pmc_reprogram_counter()"
    );
    println!("calls in a real guest (2019 KVM); these workloads are described at the top of");
    println!("each trace (tests/traces/).");

    println!();
    println!("Multiplexed sampling (6 events, 4 GP counters, rotated every 250000 ticks):");
    println!("creates per 1000 guest PMIs, and creates after warm-up (after the 1st and the 2nd");
    println!("full rotation cycle of 6 rotations); cache with its default bound");
    println!();
    let mut rows = Vec::new();
    for (w, t, [legacy, reuse, cache]) in &mux {
        let pmis = legacy.pmis_injected;
        let mut row = vec![
            w.name.to_string(),
            shape_name(&t.shape),
            pmis.to_string(),
            w.rotations.to_string(),
            default_bound(&t.shape).to_string(),
        ];
        for r in [legacy, reuse, cache] {
            row.push(per_mille(r.vpmu.creates, pmis));
        }
        for cycles in [1, 2] {
            for r in [legacy, reuse, cache] {
                row.push(after_cycles(w, r, cycles).to_string());
            }
        }
        rows.push(row);
    }
    table(
        &[
            "workload",
            "shape",
            "PMIs",
            "rotations",
            "bound",
            "/1k PMIs legacy",
            "reuse",
            "cache",
            "after 1 cycle legacy",
            "reuse",
            "cache",
            "after 2 cycles legacy",
            "reuse",
            "cache",
        ],
        &rows,
        2,
        0,
    );

    println!();
    println!("cache by kept-set bound (default marked *)");
    println!();
    let mut rows = Vec::new();
    let mut verdicts = Vec::new();
    for (w, t, [legacy, ..]) in &mux {
        let default = default_bound(&t.shape);
        let mut bounds = vec![1, 2, 4, 6, 8, 9, 10, 12, 14, 16];
        if !bounds.contains(&default) {
            bounds.push(default);
            bounds.sort();
        }
        let mut smallest = [None, None];
        for b in 1..=16 {
            let r = replay_bounded(t, Policy::Cache, b).unwrap();
            assert_eq!(r.guest_view, legacy.guest_view, "{} bound {b}", w.name);
            for (c, s) in smallest.iter_mut().enumerate() {
                if s.is_none() && after_cycles(w, &r, c + 1) == 0 {
                    *s = Some(b);
                }
            }
            if !bounds.contains(&b) {
                continue;
            }
            let mark = if b == default { "*" } else { "" };
            rows.push(vec![
                w.name.to_string(),
                format!("{b}{mark}"),
                r.vpmu.creates.to_string(),
                per_mille(r.vpmu.creates, r.pmis_injected),
                after_cycles(w, &r, 1).to_string(),
                after_cycles(w, &r, 2).to_string(),
                r.vpmu.keeps.to_string(),
                format!("{} ({})", r.vpmu.adoptions, r.vpmu.adoptions_from_disabled),
                r.vpmu.evictions.to_string(),
                (r.sim.live as usize - r.kept).to_string(),
                r.kept.to_string(),
            ]);
        }
        let d = replay_bounded(t, Policy::Cache, default).unwrap();
        let show = |s: Option<usize>| s.map_or("none up to 16".to_string(), |b| b.to_string());
        let (one, two) = (after_cycles(w, &d, 1), after_cycles(w, &d, 2));
        verdicts.push(format!(
            "{}: default bound {default}: creates after 1 cycle {one}, after 2 cycles {two}: \
             no creates after warm-up {}.\n  smallest bound with none after 2 cycles: {}; \
             after 1 cycle: {}",
            w.name,
            if two == 0 {
                "HOLDS (warm-up = 2 cycles)"
            } else {
                "does NOT hold"
            },
            show(smallest[1]),
            show(smallest[0]),
        ));
    }
    table(
        &[
            "workload",
            "bound",
            "creates",
            "/1k PMIs",
            "after 1 cycle",
            "after 2 cycles",
            "keeps",
            "adoptions (from a counter)",
            "evictions",
            "held at end",
            "kept at end",
        ],
        &rows,
        1,
        0,
    );
    println!();
    for v in verdicts {
        println!("{v}");
    }
    println!();
    println!("KVM reprograms the counters of one rotation in index order: a config that moves");
    println!("to a lower counter is wanted while the higher counter still holds it, paused, and");
    println!("is taken from there (adoptions from a counter), so 6 configs need 6 events.");
}
