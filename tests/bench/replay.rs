// SPDX-License-Identifier: GPL-2.0

//! `cargo bench --bench replay`: replays the workload traces (the same
//! generator as tests/workloads.rs, full size) under `legacy` and `reuse`
//! on simulated perf, and prints exact counts per workload next to the
//! seed's figures from commit a6da0d77 ("KVM: x86/vPMU: Reuse perf_event to
//! avoid unnecessary pmc_reprogram_counter").
//!
//! Counts only, no timing: the table is the same on every run and machine.

#[path = "../sim/mod.rs"]
mod sim;
#[path = "../trace/mod.rs"]
mod trace;

use trace::gen;
use trace::{replay, Trace};
use vpmu_model::Policy;

/// The seed's reduction of pmc_reprogram_counter() calls for the workload.
fn seed(name: &str) -> &'static str {
    match name {
        "stat-fixed" => "-99.9% (fixed event)",
        n if n.starts_with("record-gp") => "-82.5% (gp sampling event)",
        _ => "- (latency only: NMI handler 2.16x)",
    }
}

/// `-(legacy - reuse) / legacy` in percent with two decimals, from integers.
fn reduction(legacy: u64, reuse: u64) -> String {
    if legacy == 0 {
        return "-".into();
    }
    let bp = ((legacy - reuse) as u128 * 10_000 + legacy as u128 / 2) / legacy as u128;
    format!("-{}.{:02}%", bp / 100, bp % 100)
}

fn main() {
    let header = [
        "workload",
        "shape",
        "guest writes",
        "reprogram requests",
        "creates legacy",
        "creates reuse",
        "reduction",
        "PMIs",
        "seed (a6da0d77)",
    ];
    let mut rows = Vec::new();
    for w in gen::all(false) {
        let t = Trace::parse(&w.text).unwrap_or_else(|e| panic!("{}: {e}", w.name));
        let legacy = replay(&t, Policy::Legacy).unwrap_or_else(|e| panic!("{}: {e}", w.name));
        let reuse = replay(&t, Policy::Reuse).unwrap_or_else(|e| panic!("{}: {e}", w.name));
        assert_eq!(
            legacy.guest_view, reuse.guest_view,
            "{}: guest view",
            w.name
        );
        assert_eq!(legacy.vpmu.reprograms, reuse.vpmu.reprograms, "{}", w.name);
        assert_eq!(legacy.vpmu.creates, w.expected.creates_legacy, "{}", w.name);
        assert_eq!(reuse.vpmu.creates, w.expected.creates_reuse, "{}", w.name);
        let s = t.shape;
        let shape = match s.vendor {
            vpmu_model::Vendor::Intel => {
                format!("Intel v{} {}gp+{}fx", s.version, s.nr_gp, s.nr_fixed)
            }
            vpmu_model::Vendor::Amd => format!("AMD v{} {}gp", s.version, s.nr_gp),
        };
        rows.push([
            w.name.to_string(),
            shape,
            legacy.vpmu.guest_writes.to_string(),
            legacy.vpmu.reprograms.to_string(),
            legacy.vpmu.creates.to_string(),
            reuse.vpmu.creates.to_string(),
            reduction(legacy.vpmu.creates, reuse.vpmu.creates),
            reuse.pmis_injected.to_string(),
            seed(w.name).to_string(),
        ]);
    }
    let mut width = header.map(str::len);
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(width).enumerate() {
            // Text left, numbers right.
            if i < 2 || i == cells.len() - 1 {
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
    println!("vPMC reprogramming: host perf_event creates, legacy vs reuse");
    println!("(guest perf driver traces replayed on the model over simulated perf; exact counts)");
    println!();
    let h: Vec<String> = header.iter().map(|s| s.to_string()).collect();
    println!("{}", line(&h));
    println!("{}", "-".repeat(line(&h).len()));
    for r in &rows {
        println!("{}", line(r));
    }
    println!();
    println!("reduction = creates saved by reuse / creates under legacy.");
    println!("The seed counted pmc_reprogram_counter() calls in a real guest (2019 KVM);");
    println!("these workloads are described at the top of each trace (tests/traces/).");
}
