// SPDX-License-Identifier: GPL-2.0

//! Guest PMU traces: a text format, its parser, and a replayer that runs a
//! trace on a [`Harness`] under one policy.
//!
//! One op per line; `#` starts a comment; numbers are decimal or `0x` hex.
//!
//! ```text
//! shape intel version=2 gp=4 fixed=3 gp_width=48 fixed_width=48
//! shape amd version=2 gp=6
//! wrmsr 0x186 0x5300c5       # the write must succeed
//! wrmsr 0x38e 0x1 !gp        # the write must raise #GP
//! rdmsr 0x38e = 0x1          # the read must return 0x1
//! rdmsr 0x4c5 !gp            # the read must raise #GP
//! rdmsr 0xc1                 # any value
//! run 100000                 # the guest runs 100000 ticks
//! pmi                        # the guest takes its PMI here: exactly one
//!                            # was injected since the previous `pmi`
//! sched_in                   # the host schedules the vCPU back in
//! ```
//!
//! Every guest access is one VM exit and entry (see [`Harness`]).  The
//! replay checks every expectation, that the guest takes each PMI right
//! where the trace says and no other, and after every op that the model and the simulated perf agree
//! on every event ([`Harness::check_consistent`]).

#![allow(dead_code)]

pub mod gen;

use vpmu_model::emulator::VpmuStats;
use vpmu_model::{MsrFault, PmcKind, PmuShape, Policy};

use crate::sim::{Harness, SimStats};

/// What a guest access must produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    Any,
    Ok,
    Value(u64),
    Fault,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Wrmsr(u32, u64, Expect),
    Rdmsr(u32, Expect),
    Run(u64),
    Pmi,
    SchedIn,
}

#[derive(Clone, Debug)]
pub struct Trace {
    pub shape: PmuShape,
    /// `(line number, op)`.
    pub ops: Vec<(usize, Op)>,
}

fn num(s: &str) -> Result<u64, String> {
    let r = match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    r.map_err(|e| format!("bad number {s:?}: {e}"))
}

fn msr(s: &str) -> Result<u32, String> {
    u32::try_from(num(s)?).map_err(|_| format!("MSR {s} out of range"))
}

fn shape(words: &[&str]) -> Result<PmuShape, String> {
    let get = |key: &str, default: Option<u64>| -> Result<u64, String> {
        for w in &words[1..] {
            if let Some(v) = w.strip_prefix(key).and_then(|v| v.strip_prefix('=')) {
                return num(v);
            }
        }
        default.ok_or(format!("shape: missing {key}="))
    };
    let version = get("version", None)? as u8;
    let gp = get("gp", None)? as u8;
    match words.first() {
        Some(&"intel") => {
            let fixed = get("fixed", Some(0))? as u8;
            let gw = get("gp_width", Some(48))? as u8;
            let fw = get("fixed_width", Some(48))? as u8;
            Ok(PmuShape::intel(version, gp, fixed, gw, fw))
        }
        Some(&"amd") => Ok(PmuShape::amd(gp, version >= 2)),
        _ => Err("shape: expected intel or amd".into()),
    }
}

impl Trace {
    pub fn parse(text: &str) -> Result<Trace, String> {
        let mut shape_seen = None;
        let mut ops = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let no = i + 1;
            let line = raw.split('#').next().unwrap_or("");
            let w: Vec<&str> = line.split_whitespace().collect();
            let Some((&cmd, args)) = w.split_first() else {
                continue;
            };
            let err = |e: String| format!("line {no}: {e}: {raw:?}");
            let expect = |rest: &[&str], default: Expect| -> Result<Expect, String> {
                match rest {
                    [] => Ok(default),
                    ["!gp"] => Ok(Expect::Fault),
                    ["=", v] => Ok(Expect::Value(num(v)?)),
                    _ => Err("bad expectation".into()),
                }
            };
            let op = match (cmd, args) {
                ("shape", a) => {
                    if shape_seen.is_some() {
                        return Err(err("second shape".into()));
                    }
                    shape_seen = Some(shape(a).map_err(err)?);
                    continue;
                }
                ("wrmsr", [m, v, rest @ ..]) => {
                    let e = expect(rest, Expect::Ok).map_err(err)?;
                    if matches!(e, Expect::Value(_)) {
                        return Err(err("a write has no value to expect".into()));
                    }
                    Op::Wrmsr(msr(m).map_err(err)?, num(v).map_err(err)?, e)
                }
                ("rdmsr", [m, rest @ ..]) => Op::Rdmsr(
                    msr(m).map_err(err)?,
                    expect(rest, Expect::Any).map_err(err)?,
                ),
                ("run", [n]) => Op::Run(num(n).map_err(err)?),
                ("pmi", []) => Op::Pmi,
                ("sched_in", []) => Op::SchedIn,
                _ => return Err(err("unknown op".into())),
            };
            if shape_seen.is_none() {
                return Err(err("op before shape".into()));
            }
            ops.push((no, op));
        }
        let shape = shape_seen.ok_or("no shape line")?;
        Ok(Trace { shape, ops })
    }

    /// Guest WRMSRs in the trace.
    pub fn guest_writes(&self) -> u64 {
        self.ops
            .iter()
            .filter(|(_, op)| matches!(op, Op::Wrmsr(..)))
            .count() as u64
    }
}

/// What one replay produced.
#[derive(Clone, Debug)]
pub struct Replay {
    pub policy: Policy,
    pub vpmu: VpmuStats,
    pub sim: SimStats,
    pub pmi_requests: u64,
    pub pmis_injected: u64,
    /// Every guest read and write result, in order: the guest-visible record.
    pub guest_view: Vec<Result<u64, MsrFault>>,
    pub overflow_log: Vec<(u64, PmcKind)>,
    /// Every counter's value at the end.
    pub final_counters: Vec<u64>,
    /// `(line, creates so far)` after every op.
    pub creates_log: Vec<(usize, u64)>,
    /// Events in the kept set at the end.
    pub kept: usize,
}

impl Replay {
    /// Events created after the op on `line` (0: all of them).
    pub fn creates_after(&self, line: usize) -> u64 {
        let before = self
            .creates_log
            .iter()
            .take_while(|&&(l, _)| l <= line)
            .last()
            .map_or(0, |&(_, c)| c);
        self.vpmu.creates - before
    }
}

fn check(no: usize, what: &str, got: Result<u64, MsrFault>, want: Expect) -> Result<(), String> {
    let ok = match want {
        Expect::Any => true,
        Expect::Ok => got.is_ok(),
        Expect::Value(v) => got == Ok(v),
        Expect::Fault => got.is_err(),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("line {no}: {what}: got {got:x?}, want {want:x?}"))
    }
}

/// Replays `trace` under `policy`, starting from a vPMU after refresh.
pub fn replay(trace: &Trace, policy: Policy) -> Result<Replay, String> {
    replay_switching(trace, |_| policy)
}

/// Replays `trace` with the policy `policy_at(i)` in force for op `i`, as
/// when the module parameter changes while the guest runs.
pub fn replay_switching(
    trace: &Trace,
    policy_at: impl Fn(usize) -> Policy,
) -> Result<Replay, String> {
    replay_with(trace, policy_at, None)
}

/// Replays `trace` under `cache` with the kept set bounded to `bound`.
pub fn replay_bounded(trace: &Trace, policy: Policy, bound: usize) -> Result<Replay, String> {
    replay_with(trace, |_| policy, Some(bound))
}

/// Replays `trace` with the policy `policy_at(i)` in force for op `i` and
/// the kept set bounded to `bound` (`None`: the default bound).
pub fn replay_with(
    trace: &Trace,
    policy_at: impl Fn(usize) -> Policy,
    bound: Option<usize>,
) -> Result<Replay, String> {
    let mut h = Harness::new(trace.shape, policy_at(0));
    if let Some(b) = bound {
        h.set_kept_bound(b);
    }
    let mut view = Vec::new();
    let mut creates_log = Vec::with_capacity(trace.ops.len());
    let mut pmis_taken = 0u64;
    for (i, &(no, op)) in trace.ops.iter().enumerate() {
        h.vpmu.set_policy(policy_at(i));
        if op != Op::Pmi && h.pmis_injected != pmis_taken {
            return Err(format!(
                "line {no}: the guest does not take the PMI injected"
            ));
        }
        match op {
            Op::Wrmsr(m, v, e) => {
                let r = h.wrmsr(m, v).map(|()| 0);
                check(no, &format!("wrmsr {m:#x} {v:#x}"), r, e)?;
                view.push(r);
            }
            Op::Rdmsr(m, e) => {
                let r = h.rdmsr(m);
                check(no, &format!("rdmsr {m:#x}"), r, e)?;
                view.push(r);
            }
            Op::Run(n) => h.run(n),
            Op::Pmi => {
                pmis_taken += 1;
                if h.pmis_injected != pmis_taken {
                    return Err(format!(
                        "line {no}: guest takes PMI #{pmis_taken}, {} injected",
                        h.pmis_injected
                    ));
                }
            }
            Op::SchedIn => h.sched_in(),
        }
        if h.pmis_injected > pmis_taken + 1 {
            return Err(format!("line {no}: more than one PMI injected"));
        }
        h.check_consistent();
        creates_log.push((no, h.vpmu.stats().creates));
    }
    if h.pmis_injected != pmis_taken {
        return Err(format!(
            "end: {} PMIs injected, the trace takes {pmis_taken}",
            h.pmis_injected
        ));
    }
    let kinds = h.kinds();
    let final_counters = kinds.iter().map(|&k| h.vpmu.read_counter(k)).collect();
    let kept = h.kept();
    Ok(Replay {
        policy: h.vpmu.policy(),
        vpmu: *h.vpmu.stats(),
        sim: h.sim(),
        pmi_requests: h.vpmu.pmi_requests(),
        pmis_injected: h.pmis_injected,
        guest_view: view,
        overflow_log: h.overflow_log,
        final_counters,
        creates_log,
        kept,
    })
}
