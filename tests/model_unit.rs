// SPDX-License-Identifier: GPL-2.0

//! Unit tests of the vPMC model: every event select and fixed-control
//! field, counter widths and aliases, reserved bits, overflow and PMI
//! delivery, and each decision of every policy (the kept-event set of
//! `cache` included), against simulated perf.

mod sim;

use sim::{Faults, Harness, SimEvent, Solo, EBUSY};
use vpmu_model::arch::{
    Pebs, AMD64_RAW_EVENT_MASK, EVENTSEL_ANY, EVENTSEL_CMASK, EVENTSEL_EDGE, EVENTSEL_ENABLE,
    EVENTSEL_INT, EVENTSEL_INV, EVENTSEL_OS, EVENTSEL_PIN_CONTROL, EVENTSEL_UMASK, EVENTSEL_USR,
    GLOBAL_STATUS_BUFFER_OVF, GLOBAL_STATUS_COND_CHGD, HSW_IN_TX, HSW_IN_TX_CHECKPOINTED,
    ICL_EVENTSEL_ADAPTIVE, MSR_AMD64_PERF_CNTR_GLOBAL_CTL, MSR_AMD64_PERF_CNTR_GLOBAL_STATUS,
    MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_CLR, MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_SET,
    MSR_CORE_PERF_FIXED_CTR0, MSR_CORE_PERF_FIXED_CTR_CTRL, MSR_CORE_PERF_GLOBAL_CTRL,
    MSR_CORE_PERF_GLOBAL_OVF_CTRL, MSR_CORE_PERF_GLOBAL_STATUS, MSR_F15H_PERF_CTL0,
    MSR_IA32_PEBS_ENABLE, MSR_IA32_PERFCTR0, MSR_IA32_PMC0, MSR_K7_EVNTSEL0, MSR_K7_PERFCTR0,
    MSR_P6_EVNTSEL0, X86_RAW_EVENT_MASK,
};
use vpmu_model::counter::sample_period;
use vpmu_model::{
    plan, reprogram, Action, AdoptedFrom, EventAttr, EventInfo, KeptKey, MsrFault, Outcome,
    PmcConfig, PmcHost, PmcKind, PmcState, PmuShape, Policy, RejectReason,
};

const GP0: PmcKind = PmcKind::Gp(0);
const GP1: PmcKind = PmcKind::Gp(1);
const GP2: PmcKind = PmcKind::Gp(2);
const FX0: PmcKind = PmcKind::Fixed(0);
const FX1: PmcKind = PmcKind::Fixed(1);
const M48: u64 = (1 << 48) - 1;
const M32: u64 = (1 << 32) - 1;
/// USR|OS|INT|EN with event 0xc5 (branch misses).
const SEL: u64 = 0x5300c5;
const SEL_NOINT: u64 = SEL & !EVENTSEL_INT;

fn intel() -> PmuShape {
    PmuShape::intel(2, 4, 3, 48, 48)
}

fn harness(shape: PmuShape, policy: Policy) -> Harness {
    Harness::new(shape, policy)
}

fn gp_cfg(eventsel: u64) -> PmcConfig {
    PmcConfig {
        kind: GP0,
        eventsel,
        fixed_ctrl: 0,
        mask: M48,
        raw_event_mask: X86_RAW_EVENT_MASK,
        globally_enabled: true,
        filter_allows: true,
        pebs_enabled: false,
        host_tsx: false,
    }
}

fn fixed_cfg(n: u8, field: u8) -> PmcConfig {
    PmcConfig {
        kind: PmcKind::Fixed(n),
        eventsel: PmuShape::fixed_eventsel(n),
        fixed_ctrl: field,
        ..gp_cfg(0)
    }
}

/// Sets `kind` counting with a sampling event at `counter` on Intel.
fn armed(policy: Policy, counter: u64, sel: u64) -> Harness {
    let mut h = harness(intel(), policy);
    h.wrmsr(MSR_IA32_PMC0, counter).unwrap();
    h.wrmsr(MSR_P6_EVNTSEL0, sel).unwrap();
    h
}

// ---------------------------------------------------------------------------
// Event select fields -> perf_event_attr

#[test]
fn eventsel_user_kernel_and_int_fields() {
    for (usr, os, int) in [
        (false, false, false),
        (true, false, true),
        (false, true, false),
    ] {
        let mut sel = 0x003c | EVENTSEL_ENABLE;
        if usr {
            sel |= EVENTSEL_USR;
        }
        if os {
            sel |= EVENTSEL_OS;
        }
        if int {
            sel |= EVENTSEL_INT;
        }
        let a = gp_cfg(sel).event_attr(0);
        assert_eq!(a.exclude_user, !usr, "{sel:#x}");
        assert_eq!(a.exclude_kernel, !os, "{sel:#x}");
        assert_eq!(a.intr, int, "{sel:#x}");
        assert!(!a.pebs);
        assert_eq!(a.current_config, sel, "GP config is the whole eventsel");
    }
}

#[test]
fn raw_config_keeps_event_umask_edge_inv_cmask_only() {
    let all = 0xffff_ffff_ffff_ffffu64;
    let a = gp_cfg(all).event_attr(0);
    assert_eq!(a.config, X86_RAW_EVENT_MASK);
    for bit in [
        EVENTSEL_USR,
        EVENTSEL_OS,
        EVENTSEL_PIN_CONTROL,
        EVENTSEL_INT,
        EVENTSEL_ANY,
        EVENTSEL_ENABLE,
    ] {
        assert_eq!(a.config & bit, 0, "{bit:#x} must not reach perf");
    }
    for bit in [
        0xff,
        EVENTSEL_UMASK,
        EVENTSEL_EDGE,
        EVENTSEL_INV,
        EVENTSEL_CMASK,
    ] {
        assert_eq!(a.config & bit, bit);
    }
    // AMD passes event select bits 35:32 too.
    let amd = PmcConfig {
        raw_event_mask: AMD64_RAW_EVENT_MASK,
        ..gp_cfg(0xf_0053_00c0)
    };
    assert_eq!(amd.event_attr(0).config, 0xf_0000_00c0);
}

#[test]
fn sample_period_is_distance_to_wrap_or_full_lap() {
    assert_eq!(gp_cfg(SEL).event_attr(M48 - 99).sample_period, 100);
    assert_eq!(gp_cfg(SEL).event_attr(0).sample_period, 1 << 48);
    let narrow = PmcConfig {
        mask: M32,
        ..gp_cfg(SEL)
    };
    assert_eq!(narrow.event_attr(0).sample_period, 1 << 32);
    assert_eq!(narrow.event_attr(M32).sample_period, 1);
    assert_eq!(
        sample_period(1 << 32, M32),
        1 << 32,
        "masked to 0: full lap"
    );
}

#[test]
fn created_event_period_follows_guest_counter() {
    let h = armed(Policy::Reuse, M48 - 999, SEL);
    let w = h.world.borrow();
    assert_eq!(w.created.len(), 1);
    let (kind, attr) = w.created[0];
    assert_eq!(kind, GP0);
    assert_eq!(attr.sample_period, 1000);
    assert_eq!(attr.config, 0xc5);
    assert!(attr.intr && !attr.exclude_user && !attr.exclude_kernel);
    drop(w);
    // Period 0 counter: a full lap.
    let h = armed(Policy::Reuse, 0, SEL);
    assert_eq!(h.world.borrow().created[0].1.sample_period, 1 << 48);
}

// ---------------------------------------------------------------------------
// Fixed counters

#[test]
fn fixed_field_maps_to_eventsel_bits() {
    for field in 0u8..16 {
        let a = fixed_cfg(1, field).event_attr(0);
        assert_eq!(a.config, 0x3c, "fixed 1 counts cycles");
        assert_eq!(a.exclude_kernel, field & 1 == 0);
        assert_eq!(a.exclude_user, field & 2 == 0);
        assert_eq!(a.intr, field & 8 != 0);
        assert_eq!(a.current_config, field as u64, "fixed config is the nibble");
        assert_eq!(fixed_cfg(1, field).locally_enabled(), field & 3 != 0);
    }
    assert_eq!(fixed_cfg(0, 3).event_attr(0).config, 0xc0);
    assert_eq!(fixed_cfg(2, 3).event_attr(0).config, 0x300);
}

#[test]
fn fixed_any_bit_and_missing_counters_gp_on_intel() {
    let mut h = harness(intel(), Policy::Reuse);
    assert_eq!(
        h.wrmsr(MSR_CORE_PERF_FIXED_CTR_CTRL, 0x4),
        Err(MsrFault),
        "ANY"
    );
    assert_eq!(h.wrmsr(MSR_CORE_PERF_FIXED_CTR_CTRL, 0x400), Err(MsrFault));
    assert_eq!(
        h.wrmsr(MSR_CORE_PERF_FIXED_CTR_CTRL, 0xb000),
        Err(MsrFault),
        "no fixed 3"
    );
    assert_eq!(h.wrmsr(MSR_CORE_PERF_FIXED_CTR_CTRL, 0xbbb), Ok(()));
    assert_eq!(h.rdmsr(MSR_CORE_PERF_FIXED_CTR_CTRL), Ok(0xbbb));
    // Adaptive PEBS bits only with PEBS baseline.
    assert_eq!(
        h.wrmsr(MSR_CORE_PERF_FIXED_CTR_CTRL, 1 << 32),
        Err(MsrFault)
    );
    let mut shape = intel();
    shape.pebs = Pebs::Baseline;
    let mut h = harness(shape, Policy::Reuse);
    assert_eq!(
        h.wrmsr(MSR_CORE_PERF_FIXED_CTR_CTRL, (1 << 36) | 0xb0),
        Ok(())
    );
    // Version 1: no FIXED_CTR_CTRL, no fixed counters at all.
    let mut v1 = harness(PmuShape::intel(1, 2, 3, 48, 48), Policy::Reuse);
    assert_eq!(v1.wrmsr(MSR_CORE_PERF_FIXED_CTR_CTRL, 0), Err(MsrFault));
    assert_eq!(v1.rdmsr(MSR_CORE_PERF_FIXED_CTR0), Err(MsrFault));
    assert_eq!(v1.kinds(), vec![GP0, GP1]);
}

#[test]
fn fixed_field_change_requests_only_that_counter() {
    let mut h = harness(intel(), Policy::Reuse);
    h.vpmu.wrmsr(MSR_CORE_PERF_FIXED_CTR_CTRL, 0x0b0).unwrap();
    h.entry();
    let before = h.vpmu.stats().reprograms;
    h.vpmu.wrmsr(MSR_CORE_PERF_FIXED_CTR_CTRL, 0x0b0).unwrap();
    assert!(!h.vpmu.reprogram_pending(), "same value: no request");
    h.vpmu.wrmsr(MSR_CORE_PERF_FIXED_CTR_CTRL, 0x3b0).unwrap();
    h.entry();
    assert_eq!(h.vpmu.stats().reprograms, before + 1, "only fixed 0");
}

#[test]
fn fixed_pmi_toggle_recreates_but_enable_toggles_resume() {
    let mut h = harness(intel(), Policy::Reuse);
    h.wrmsr(MSR_CORE_PERF_GLOBAL_CTRL, 0x7_0000_000f).unwrap();
    h.wrmsr(MSR_CORE_PERF_FIXED_CTR_CTRL, 0x30).unwrap(); // FX1: OS|USR
    assert_eq!(h.vpmu.stats().creates, 1);
    h.run(10);
    // PMI toggled, OS/USR kept: a different config (intr changes).
    h.wrmsr(MSR_CORE_PERF_FIXED_CTR_CTRL, 0xb0).unwrap();
    assert_eq!(h.vpmu.stats().creates, 2);
    assert!(h.world.borrow().created[1].1.intr);
    // Clear the field (disable) and restore it: same nibble, resumed.
    h.wrmsr(MSR_CORE_PERF_FIXED_CTR_CTRL, 0x00).unwrap();
    h.run(1000);
    h.wrmsr(MSR_CORE_PERF_FIXED_CTR_CTRL, 0xb0).unwrap();
    assert_eq!(h.vpmu.stats().creates, 2);
    assert_eq!(h.vpmu.stats().resumes, 1);
    // GLOBAL_CTRL toggle only: resumed.
    h.wrmsr(MSR_CORE_PERF_GLOBAL_CTRL, 0).unwrap();
    h.wrmsr(MSR_CORE_PERF_GLOBAL_CTRL, 0x7_0000_000f).unwrap();
    assert_eq!(h.vpmu.stats().creates, 2);
    assert_eq!(h.vpmu.stats().resumes, 2);
    h.run(5);
    assert_eq!(h.vpmu.read_counter(FX1), 15, "paused ticks not counted");
    h.check_consistent();

    // Legacy recreates every time.
    let mut l = harness(intel(), Policy::Legacy);
    l.wrmsr(MSR_CORE_PERF_GLOBAL_CTRL, 0x7_0000_000f).unwrap();
    for v in [0x30, 0xb0, 0x00, 0xb0] {
        l.wrmsr(MSR_CORE_PERF_FIXED_CTR_CTRL, v).unwrap();
    }
    l.wrmsr(MSR_CORE_PERF_GLOBAL_CTRL, 0).unwrap();
    l.wrmsr(MSR_CORE_PERF_GLOBAL_CTRL, 0x7_0000_000f).unwrap();
    assert_eq!(l.vpmu.stats().creates, 4);
    // Disabling only pauses; each of the three later creates replaces one.
    assert_eq!(l.vpmu.stats().releases, 3, "released when replaced");
    l.check_consistent();
}

// ---------------------------------------------------------------------------
// GP event selects and policies

#[test]
fn usr_os_change_forces_new_event() {
    for bit in [EVENTSEL_USR, EVENTSEL_OS] {
        let mut h = armed(Policy::Reuse, 0, SEL);
        h.run(7);
        h.wrmsr(MSR_P6_EVNTSEL0, SEL & !bit).unwrap();
        assert_eq!(h.vpmu.stats().creates, 2);
        assert_eq!(h.vpmu.stats().resumes, 0);
        assert_eq!(h.sim().releases, 1);
        let attr = h.world.borrow().created[1].1;
        assert_eq!(attr.exclude_user, bit == EVENTSEL_USR);
        assert_eq!(attr.exclude_kernel, bit == EVENTSEL_OS);
        assert_eq!(h.vpmu.read_counter(GP0), 7, "count carried over");
        h.check_consistent();
    }
}

#[test]
fn enable_toggle_resumes_under_reuse_and_cache_recreates_under_legacy() {
    for policy in Policy::ALL {
        let mut h = armed(policy, 0, SEL);
        for _ in 0..10 {
            h.run(3);
            h.wrmsr(MSR_P6_EVNTSEL0, SEL & !EVENTSEL_ENABLE).unwrap();
            h.run(100);
            h.wrmsr(MSR_P6_EVNTSEL0, SEL).unwrap();
        }
        let st = *h.vpmu.stats();
        assert_eq!(h.vpmu.read_counter(GP0), 30, "{policy:?}");
        match policy {
            Policy::Reuse | Policy::Cache => {
                assert_eq!((st.creates, st.resumes, st.releases), (1, 10, 0))
            }
            Policy::Legacy => assert_eq!((st.creates, st.resumes, st.releases), (11, 0, 10)),
        }
        h.check_consistent();
    }
}

#[test]
fn same_value_write_requests_nothing() {
    let mut h = armed(Policy::Legacy, 0, SEL);
    let before = *h.vpmu.stats();
    h.vpmu.wrmsr(MSR_P6_EVNTSEL0, SEL).unwrap();
    assert!(!h.vpmu.reprogram_pending());
    h.entry();
    assert_eq!(h.vpmu.stats().creates, before.creates);
    assert_eq!(h.vpmu.stats().guest_writes, before.guest_writes + 1);
}

#[test]
fn plan_decisions() {
    let cfg = gp_cfg(SEL);
    let none = PmcState::default();
    let sampling = EventInfo {
        sampling: true,
        precise: false,
    };
    let with = PmcState {
        event: Some(sampling),
        current_config: SEL,
        counter: M48 - 9,
        is_paused: true,
        ..none
    };
    let attr = cfg.event_attr(M48 - 9);
    assert_eq!(
        plan(Policy::Reuse, &cfg, &none),
        Action::Recreate {
            attr: cfg.event_attr(0),
            reason: RejectReason::NoEvent
        }
    );
    assert_eq!(
        plan(Policy::Reuse, &cfg, &with),
        Action::Resume { period: Some(10) }
    );
    assert_eq!(
        plan(Policy::Legacy, &cfg, &with),
        Action::Recreate {
            attr,
            reason: RejectReason::Legacy
        }
    );
    let changed = PmcState {
        current_config: SEL_NOINT,
        ..with
    };
    assert!(matches!(
        plan(Policy::Reuse, &cfg, &changed),
        Action::Recreate {
            reason: RejectReason::ConfigChanged,
            ..
        }
    ));
    // Counting events resume without a period.
    let counting = PmcState {
        event: Some(EventInfo {
            sampling: false,
            precise: false,
        }),
        ..with
    };
    assert!(matches!(
        plan(Policy::Reuse, &cfg, &counting),
        Action::Resume { period: None, .. }
    ));
    // Not allowed: every policy keeps the paused event.
    let off = PmcConfig {
        globally_enabled: false,
        ..cfg
    };
    assert_eq!(plan(Policy::Reuse, &off, &with), Action::Idle);
    assert_eq!(plan(Policy::Legacy, &off, &with), Action::Idle);
    assert_eq!(plan(Policy::Legacy, &off, &none), Action::Idle);
    let filtered = PmcConfig {
        filter_allows: false,
        ..cfg
    };
    assert_eq!(plan(Policy::Reuse, &filtered, &none), Action::Idle);
}

#[test]
fn pebs_enable_diff_forces_recreate() {
    let mut shape = intel();
    shape.pebs = Pebs::Legacy;
    let mut h = harness(shape, Policy::Reuse);
    h.wrmsr(MSR_P6_EVNTSEL0, SEL).unwrap();
    h.wrmsr(MSR_IA32_PEBS_ENABLE, 1).unwrap();
    let w = h.world.borrow().created.clone();
    assert_eq!(w.len(), 2);
    assert!(w[1].1.pebs && w[1].1.intr, "PEBS events always interrupt");
    let r = h.vpmu.state(GP0).unwrap().event.unwrap();
    assert!(r.precise);
    // Same config, PEBS unchanged: resumed.
    h.wrmsr(MSR_CORE_PERF_GLOBAL_CTRL, 0).unwrap();
    h.wrmsr(MSR_CORE_PERF_GLOBAL_CTRL, 0xf).unwrap();
    assert_eq!(h.vpmu.stats().creates, 2);
    h.wrmsr(MSR_IA32_PEBS_ENABLE, 0).unwrap();
    assert_eq!(h.vpmu.stats().creates, 3);
    assert!(!h.world.borrow().created[2].1.pebs);
    // PEBS on counters the guest lacks, or without PEBS at all: #GP.
    assert_eq!(h.wrmsr(MSR_IA32_PEBS_ENABLE, 1 << 4), Err(MsrFault));
    assert_eq!(h.wrmsr(MSR_IA32_PEBS_ENABLE, 1 << 32), Err(MsrFault));
    let mut none = harness(intel(), Policy::Reuse);
    assert_eq!(none.wrmsr(MSR_IA32_PEBS_ENABLE, 0), Err(MsrFault));
    // Baseline: fixed counters too.
    shape.pebs = Pebs::Baseline;
    let mut b = harness(shape, Policy::Reuse);
    assert_eq!(b.wrmsr(MSR_IA32_PEBS_ENABLE, 1 << 32), Ok(()));
    assert_eq!(
        b.wrmsr(MSR_P6_EVNTSEL0, SEL | ICL_EVENTSEL_ADAPTIVE),
        Ok(())
    );
}

#[test]
fn pebs_overflow_reports_buffer_ovf_once() {
    let mut shape = intel();
    shape.pebs = Pebs::Legacy;
    let mut h = harness(shape, Policy::Reuse);
    h.wrmsr(MSR_IA32_PEBS_ENABLE, 0x3).unwrap();
    h.wrmsr(MSR_IA32_PMC0, M48 - 9).unwrap();
    h.wrmsr(MSR_IA32_PMC0 + 1, M48 - 9).unwrap();
    h.wrmsr(MSR_P6_EVNTSEL0, SEL_NOINT).unwrap();
    h.wrmsr(MSR_P6_EVNTSEL0 + 1, SEL_NOINT).unwrap();
    h.run(10);
    // Both overflowed in one host PMI: BUFFER_OVF, one PMI (intr from PEBS).
    assert_eq!(
        h.rdmsr(MSR_CORE_PERF_GLOBAL_STATUS),
        Ok(GLOBAL_STATUS_BUFFER_OVF)
    );
    assert_eq!(h.vpmu.pmi_requests(), 1);
    assert_eq!(h.pmis_injected, 1);
}

#[test]
fn in_tx_checkpointed_needs_tsx_counter2_and_counts_only() {
    let mut shape = intel();
    let sel = SEL | HSW_IN_TX_CHECKPOINTED;
    let mut h = harness(shape, Policy::Reuse);
    assert_eq!(h.wrmsr(MSR_P6_EVNTSEL0 + 2, sel), Err(MsrFault), "no TSX");
    assert_eq!(h.wrmsr(MSR_P6_EVNTSEL0, SEL | HSW_IN_TX), Err(MsrFault));
    shape.tsx = true;
    for policy in Policy::ALL {
        let mut h = harness(shape, policy);
        h.vpmu.set_host_tsx(true);
        assert_eq!(
            h.wrmsr(MSR_P6_EVNTSEL0 + 1, sel),
            Err(MsrFault),
            "counter 2 only"
        );
        assert_eq!(h.wrmsr(MSR_P6_EVNTSEL0, SEL | HSW_IN_TX), Ok(()));
        h.wrmsr(MSR_P6_EVNTSEL0, 0).unwrap();
        h.wrmsr(MSR_IA32_PMC0 + 2, M48 - 4).unwrap();
        h.wrmsr(MSR_P6_EVNTSEL0 + 2, sel).unwrap();
        let attr = h.world.borrow().created.last().unwrap().1;
        assert_eq!(attr.sample_period, 0, "counting event");
        assert_eq!(attr.config & HSW_IN_TX_CHECKPOINTED, HSW_IN_TX_CHECKPOINTED);
        // Counting events never overflow: the guest counter wraps silently.
        h.run(10);
        assert_eq!(h.vpmu.read_counter(GP2), 5);
        assert_eq!(h.rdmsr(MSR_CORE_PERF_GLOBAL_STATUS), Ok(0));
        assert_eq!(h.vpmu.pmi_requests(), 0);
        // A GLOBAL_CTRL toggle resumes without perf_event_period().
        h.wrmsr(MSR_CORE_PERF_GLOBAL_CTRL, 0).unwrap();
        h.wrmsr(MSR_CORE_PERF_GLOBAL_CTRL, 0xf).unwrap();
        assert_eq!(h.sim().set_periods, 0);
        h.check_consistent();
    }
    // Without TSX on the host the event samples as usual.
    let cfg = PmcConfig {
        kind: GP2,
        raw_event_mask: X86_RAW_EVENT_MASK | HSW_IN_TX | HSW_IN_TX_CHECKPOINTED,
        ..gp_cfg(sel)
    };
    assert_eq!(cfg.event_attr(0).sample_period, 1 << 48);
    let tsx = PmcConfig {
        host_tsx: true,
        ..cfg
    };
    assert_eq!(tsx.event_attr(0).sample_period, 0);
}

// ---------------------------------------------------------------------------
// Counters, widths, aliases

#[test]
fn perfctr_sign_extends_32_bits_pmc_is_full_width() {
    let mut h = harness(intel(), Policy::Reuse);
    h.wrmsr(MSR_IA32_PERFCTR0, 0xffff_fff0).unwrap();
    assert_eq!(h.rdmsr(MSR_IA32_PERFCTR0), Ok(M48 - 0xf));
    assert_eq!(h.rdmsr(MSR_IA32_PMC0), Ok(M48 - 0xf), "same counter");
    h.wrmsr(MSR_IA32_PERFCTR0, 0x1234_0000_0005).unwrap();
    assert_eq!(h.rdmsr(MSR_IA32_PMC0), Ok(5), "upper bits dropped");
    h.wrmsr(MSR_IA32_PERFCTR0, 0x7fff_ffff).unwrap();
    assert_eq!(h.rdmsr(MSR_IA32_PMC0), Ok(0x7fff_ffff));
    assert_eq!(
        h.wrmsr(MSR_IA32_PMC0, 1 << 48),
        Err(MsrFault),
        "beyond width"
    );
    assert_eq!(
        h.rdmsr(MSR_IA32_PMC0),
        Ok(0x7fff_ffff),
        "#GP writes nothing"
    );
    assert_eq!(h.wrmsr(MSR_IA32_PMC0, M48), Ok(()));
    assert_eq!(h.rdmsr(MSR_IA32_PERFCTR0), Ok(M48));
    // Counters beyond nr_gp do not exist.
    assert_eq!(h.rdmsr(MSR_IA32_PMC0 + 4), Err(MsrFault));
    assert_eq!(h.wrmsr(MSR_IA32_PERFCTR0 + 4, 0), Err(MsrFault));
    assert_eq!(h.wrmsr(MSR_P6_EVNTSEL0 + 4, 0), Err(MsrFault));

    // 32-bit counters.
    let mut n = harness(PmuShape::intel(2, 2, 1, 32, 40), Policy::Reuse);
    n.wrmsr(MSR_IA32_PERFCTR0, 0x8000_0000).unwrap();
    assert_eq!(n.rdmsr(MSR_IA32_PMC0), Ok(0x8000_0000));
    assert_eq!(n.wrmsr(MSR_IA32_PMC0, 1 << 32), Err(MsrFault));
    // Fixed counters truncate to their own width, no #GP.
    n.wrmsr(MSR_CORE_PERF_FIXED_CTR0, u64::MAX).unwrap();
    assert_eq!(n.rdmsr(MSR_CORE_PERF_FIXED_CTR0), Ok((1 << 40) - 1));
}

#[test]
fn counter_wrap_sets_status_and_pmi_only_with_int() {
    for (sel, pmi) in [(SEL, 1), (SEL_NOINT, 0)] {
        for policy in Policy::ALL {
            let mut h = armed(policy, M48 - 99, sel);
            h.run(99);
            assert_eq!(h.rdmsr(MSR_CORE_PERF_GLOBAL_STATUS), Ok(0));
            h.run(1);
            assert_eq!(h.overflow_log, vec![(100, GP0)]);
            assert_eq!(h.rdmsr(MSR_CORE_PERF_GLOBAL_STATUS), Ok(1));
            assert_eq!(h.vpmu.pmi_requests(), pmi, "{sel:#x}");
            assert_eq!(h.pmis_injected, pmi);
            assert_eq!(h.vpmu.read_counter(GP0), 0);
            // Next overflow a full lap later: KVM reprogrammed the period.
            let ev = h.vpmu.host_mut(GP0).unwrap().event.unwrap();
            assert_eq!(ev.period_left, 1 << 48);
            // The guest acks through OVF_CTRL.
            h.wrmsr(MSR_CORE_PERF_GLOBAL_OVF_CTRL, 1).unwrap();
            assert_eq!(h.rdmsr(MSR_CORE_PERF_GLOBAL_STATUS), Ok(0));
            h.check_consistent();
        }
    }
}

#[test]
fn counter_write_while_paused_moves_the_overflow() {
    let mut h = armed(Policy::Reuse, 0, SEL);
    h.run(50);
    h.wrmsr(MSR_CORE_PERF_GLOBAL_CTRL, 0).unwrap();
    h.wrmsr(MSR_IA32_PMC0, M48 - 9).unwrap();
    h.wrmsr(MSR_CORE_PERF_GLOBAL_CTRL, 1).unwrap();
    assert_eq!(h.vpmu.stats().creates, 1);
    assert_eq!(h.vpmu.read_counter(GP0), M48 - 9);
    h.run(9);
    assert!(h.overflow_log.is_empty());
    h.run(1);
    assert_eq!(h.overflow_log, vec![(60, GP0)]);
    assert_eq!(h.vpmu.read_counter(GP0), 0);
}

/// KVM 6.12 quirk, kept by the model: a counter write while the event runs
/// stores the value relative to the live count and calls
/// `perf_event_period(-stored)`, which restarts a full period from now, so
/// the overflow comes `live` events after the guest counter wraps.  The
/// reads are right; only the overflow point moves.  Both policies agree.
#[test]
fn counter_write_while_running_overflows_late_as_in_kvm() {
    for policy in Policy::ALL {
        let mut h = armed(policy, 0, SEL);
        h.run(50);
        h.wrmsr(MSR_IA32_PMC0, M48 - 9).unwrap();
        assert_eq!(
            h.vpmu.stats().creates,
            1,
            "a counter write does not reprogram"
        );
        assert_eq!(h.vpmu.read_counter(GP0), M48 - 9);
        h.run(10);
        assert_eq!(h.vpmu.read_counter(GP0), 0, "the guest counter wrapped");
        assert!(h.overflow_log.is_empty(), "but perf has 50 to go");
        h.run(50);
        assert_eq!(h.overflow_log, vec![(110, GP0)]);
        assert_eq!(h.vpmu.read_counter(GP0), 50);
    }
}

#[test]
fn emulated_counts_and_emulated_overflow() {
    for policy in Policy::ALL {
        let mut h = armed(policy, M48 - 2, SEL);
        h.add_emulated(GP0, 2);
        assert_eq!(h.vpmu.read_counter(GP0), M48);
        assert_eq!(h.vpmu.pmi_requests(), 0);
        h.add_emulated(GP0, 3);
        assert_eq!(h.vpmu.read_counter(GP0), 2);
        assert_eq!(h.vpmu.stats().emulated_overflows, 1);
        assert_eq!(h.rdmsr(MSR_CORE_PERF_GLOBAL_STATUS), Ok(1));
        assert_eq!(h.vpmu.pmi_requests(), 1, "INT set");
        assert_eq!(h.pmis_injected, 1);
        h.check_consistent();
    }
    // Without INT: status only.  Disabled: not even that, but counted.
    let mut h = armed(Policy::Reuse, M48, SEL_NOINT);
    h.add_emulated(GP0, 1);
    assert_eq!(h.rdmsr(MSR_CORE_PERF_GLOBAL_STATUS), Ok(1));
    assert_eq!(h.vpmu.pmi_requests(), 0);
    let mut h = armed(Policy::Reuse, M48, SEL & !EVENTSEL_ENABLE);
    h.add_emulated(GP0, 1);
    assert_eq!(h.rdmsr(MSR_CORE_PERF_GLOBAL_STATUS), Ok(0));
    assert_eq!(h.vpmu.read_counter(GP0), 0);
    // A write drops pending emulated counts.
    let mut h = armed(Policy::Reuse, 0, SEL);
    h.vpmu.add_emulated(GP0, 5);
    h.vpmu.wrmsr(MSR_IA32_PMC0, 100).unwrap();
    h.entry();
    assert_eq!(h.vpmu.read_counter(GP0), 100);
}

#[test]
fn overflow_racing_a_pending_reprogram_is_dropped() {
    let mut h = armed(Policy::Reuse, 0, SEL);
    h.vpmu.wrmsr(MSR_P6_EVNTSEL0, SEL_NOINT).unwrap();
    h.vpmu.perf_overflow(GP0);
    assert_eq!(h.vpmu.pmi_requests(), 0);
    assert_eq!(h.vpmu.rdmsr(MSR_CORE_PERF_GLOBAL_STATUS), Ok(0));
    h.entry();
    h.vpmu.perf_overflow(GP0);
    assert_eq!(h.vpmu.rdmsr(MSR_CORE_PERF_GLOBAL_STATUS), Ok(1));
    assert_eq!(h.vpmu.pmi_requests(), 0, "INT is now clear");
}

#[test]
fn amd_k7_aliases_and_f15h_interleave() {
    let mut h = harness(PmuShape::amd(6, true), Policy::Reuse);
    h.wrmsr(MSR_F15H_PERF_CTL0, 0x530076).unwrap();
    assert_eq!(
        h.rdmsr(MSR_K7_EVNTSEL0),
        Ok(0x530076),
        "CTL0 aliases EVNTSEL0"
    );
    h.wrmsr(MSR_K7_PERFCTR0 + 3, 42).unwrap();
    assert_eq!(
        h.rdmsr(MSR_F15H_PERF_CTL0 + 7),
        Ok(42),
        "CTR3 aliases PERFCTR3"
    );
    h.wrmsr(MSR_F15H_PERF_CTL0 + 10, 0x5300c0).unwrap();
    assert_eq!(h.vpmu.config(PmcKind::Gp(5)).unwrap().eventsel, 0x5300c0);
    h.wrmsr(MSR_F15H_PERF_CTL0 + 11, u64::MAX).unwrap();
    assert_eq!(
        h.rdmsr(MSR_F15H_PERF_CTL0 + 11),
        Ok(M48),
        "truncated, no #GP"
    );
    assert_eq!(
        h.rdmsr(MSR_F15H_PERF_CTL0 + 12),
        Err(MsrFault),
        "no counter 6"
    );
    assert_eq!(
        h.rdmsr(MSR_K7_PERFCTR0 + 4),
        Err(MsrFault),
        "K7 has 4 pairs"
    );
    // Without PERFCTR_CORE (4 counters) only the K7 MSRs exist.
    let mut k7 = harness(PmuShape::amd(4, false), Policy::Reuse);
    assert_eq!(k7.rdmsr(MSR_F15H_PERF_CTL0), Err(MsrFault));
    assert_eq!(k7.rdmsr(MSR_K7_PERFCTR0 + 3), Ok(0));
    assert_eq!(
        k7.rdmsr(MSR_AMD64_PERF_CNTR_GLOBAL_CTL),
        Err(MsrFault),
        "v1"
    );
    // Intel MSRs do not exist on AMD and vice versa.
    assert_eq!(k7.rdmsr(MSR_P6_EVNTSEL0), Err(MsrFault));
    let mut i = harness(intel(), Policy::Reuse);
    assert_eq!(i.rdmsr(MSR_K7_EVNTSEL0), Err(MsrFault));
}

#[test]
fn amd_counts_without_global_ctrl_on_v1() {
    let mut h = harness(PmuShape::amd(4, false), Policy::Reuse);
    h.wrmsr(MSR_K7_PERFCTR0, M48 - 4).unwrap();
    h.wrmsr(MSR_K7_EVNTSEL0, 0x530076).unwrap();
    h.run(5);
    assert_eq!(h.vpmu.pmi_requests(), 1);
    assert_eq!(h.vpmu.read_counter(GP0), 0);
}

// ---------------------------------------------------------------------------
// Reserved bits and global registers

#[test]
fn intel_reserved_bits_gp_amd_ignores_them() {
    let mut h = harness(intel(), Policy::Reuse);
    for bad in [EVENTSEL_ANY, HSW_IN_TX, 1 << 40, 1 << 63] {
        assert_eq!(
            h.wrmsr(MSR_P6_EVNTSEL0, SEL | bad),
            Err(MsrFault),
            "{bad:#x}"
        );
    }
    assert_eq!(h.rdmsr(MSR_P6_EVNTSEL0), Ok(0));
    assert_eq!(h.vpmu.stats().creates, 0);
    // PIN_CONTROL is writable (KVM ignores it for perf).
    assert_eq!(h.wrmsr(MSR_P6_EVNTSEL0, SEL | EVENTSEL_PIN_CONTROL), Ok(()));
    assert_eq!(h.world.borrow().created[0].1.config, 0xc5);

    let mut a = harness(PmuShape::amd(6, true), Policy::Reuse);
    let sel = 0x530076 | EVENTSEL_ANY | EVENTSEL_PIN_CONTROL | (1 << 40) | (0xf << 32);
    assert_eq!(a.wrmsr(MSR_K7_EVNTSEL0, sel), Ok(()));
    assert_eq!(
        a.rdmsr(MSR_K7_EVNTSEL0),
        Ok(0xf_0053_0076),
        "reserved bits dropped"
    );
    assert_eq!(a.world.borrow().created[0].1.config, 0xf_0000_0076);
}

#[test]
fn global_ctrl_status_and_ovf_ctrl() {
    let mut h = harness(intel(), Policy::Reuse);
    assert_eq!(
        h.rdmsr(MSR_CORE_PERF_GLOBAL_CTRL),
        Ok(0xf),
        "GP enabled at reset"
    );
    assert_eq!(h.wrmsr(MSR_CORE_PERF_GLOBAL_CTRL, 1 << 4), Err(MsrFault));
    assert_eq!(h.wrmsr(MSR_CORE_PERF_GLOBAL_CTRL, 1 << 35), Err(MsrFault));
    assert_eq!(h.wrmsr(MSR_CORE_PERF_GLOBAL_CTRL, 0x7_0000_000f), Ok(()));
    assert_eq!(
        h.wrmsr(MSR_CORE_PERF_GLOBAL_STATUS, 0),
        Err(MsrFault),
        "read-only"
    );
    assert_eq!(
        h.wrmsr(
            MSR_CORE_PERF_GLOBAL_OVF_CTRL,
            GLOBAL_STATUS_BUFFER_OVF | GLOBAL_STATUS_COND_CHGD | 0x7_0000_000f
        ),
        Ok(())
    );
    assert_eq!(
        h.wrmsr(MSR_CORE_PERF_GLOBAL_OVF_CTRL, 1 << 5),
        Err(MsrFault)
    );
    assert_eq!(h.rdmsr(MSR_CORE_PERF_GLOBAL_OVF_CTRL), Ok(0));
    // v1: no global registers; counters count on EN alone.
    let mut v1 = harness(PmuShape::intel(1, 2, 0, 40, 0), Policy::Reuse);
    assert_eq!(v1.rdmsr(MSR_CORE_PERF_GLOBAL_CTRL), Err(MsrFault));
    assert_eq!(v1.rdmsr(MSR_CORE_PERF_GLOBAL_STATUS), Err(MsrFault));
    v1.wrmsr(MSR_P6_EVNTSEL0, SEL).unwrap();
    v1.run(3);
    assert_eq!(v1.vpmu.read_counter(GP0), 3);

    let mut a = harness(PmuShape::amd(6, true), Policy::Reuse);
    assert_eq!(a.rdmsr(MSR_AMD64_PERF_CNTR_GLOBAL_CTL), Ok(0x3f));
    assert_eq!(a.wrmsr(MSR_AMD64_PERF_CNTR_GLOBAL_CTL, u64::MAX), Ok(()));
    assert_eq!(a.rdmsr(MSR_AMD64_PERF_CNTR_GLOBAL_CTL), Ok(0x3f), "masked");
    assert_eq!(
        a.wrmsr(MSR_AMD64_PERF_CNTR_GLOBAL_STATUS, 5),
        Ok(()),
        "ignored"
    );
    assert_eq!(a.rdmsr(MSR_AMD64_PERF_CNTR_GLOBAL_STATUS), Ok(0));
    a.wrmsr(MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_SET, u64::MAX)
        .unwrap();
    assert_eq!(a.rdmsr(MSR_AMD64_PERF_CNTR_GLOBAL_STATUS), Ok(0x3f));
    a.wrmsr(MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_CLR, 0x5).unwrap();
    assert_eq!(a.rdmsr(MSR_AMD64_PERF_CNTR_GLOBAL_STATUS), Ok(0x3a));
    assert_eq!(a.rdmsr(MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_CLR), Ok(0));
}

#[test]
fn global_ctrl_gates_counting() {
    let mut h = harness(intel(), Policy::Reuse);
    h.wrmsr(MSR_CORE_PERF_GLOBAL_CTRL, 0).unwrap();
    h.wrmsr(MSR_P6_EVNTSEL0, SEL).unwrap();
    assert_eq!(h.vpmu.stats().creates, 0, "not globally enabled");
    h.run(10);
    assert_eq!(h.vpmu.read_counter(GP0), 0);
    h.wrmsr(MSR_CORE_PERF_GLOBAL_CTRL, 2).unwrap();
    assert_eq!(h.vpmu.stats().creates, 0, "another counter's bit");
    h.wrmsr(MSR_CORE_PERF_GLOBAL_CTRL, 3).unwrap();
    assert_eq!(h.vpmu.stats().creates, 1);
    h.run(10);
    assert_eq!(h.vpmu.read_counter(GP0), 10);
}

#[test]
fn event_filter_denies_counting() {
    fn deny_c5(_: PmcKind, sel: u64) -> bool {
        sel & 0xff != 0xc5
    }
    let mut h = armed(Policy::Reuse, 0, SEL);
    h.run(4);
    h.vpmu.set_filter(Some(deny_c5));
    h.entry();
    h.run(100);
    assert_eq!(h.vpmu.read_counter(GP0), 4);
    h.wrmsr(MSR_P6_EVNTSEL0, 0x5300c4).unwrap();
    h.run(1);
    assert_eq!(h.vpmu.read_counter(GP0), 5);
}

#[test]
fn policy_switch_takes_effect_on_next_reprogram() {
    let mut h = armed(Policy::Legacy, 0, SEL);
    h.vpmu.set_policy(Policy::Reuse);
    h.wrmsr(MSR_CORE_PERF_GLOBAL_CTRL, 0).unwrap();
    h.wrmsr(MSR_CORE_PERF_GLOBAL_CTRL, 1).unwrap();
    assert_eq!(h.vpmu.stats().resumes, 1);
    h.vpmu.set_policy(Policy::Legacy);
    h.wrmsr(MSR_CORE_PERF_GLOBAL_CTRL, 0).unwrap();
    assert_eq!(h.vpmu.stats().releases, 0, "disabling only pauses");
    h.wrmsr(MSR_CORE_PERF_GLOBAL_CTRL, 1).unwrap();
    assert_eq!(h.vpmu.stats().creates, 2);
    assert_eq!(h.vpmu.stats().releases, 1);
    h.check_consistent();
}

// ---------------------------------------------------------------------------
// Failures and fallbacks

#[test]
fn create_failure_leaves_reprogram_pending_and_retries() {
    let faults = Faults {
        fail_create_every: Some(1),
        ..Faults::default()
    };
    for policy in Policy::ALL {
        let mut h = Harness::with_faults(intel(), policy, faults);
        h.wrmsr(MSR_IA32_PMC0, 7).unwrap();
        h.wrmsr(MSR_P6_EVNTSEL0, SEL).unwrap();
        assert!(h.vpmu.reprogram_pending());
        assert!(h.vpmu.state(GP0).unwrap().event.is_none());
        assert_eq!(
            h.vpmu.state(GP0).unwrap().current_config,
            SEL,
            "kept for the retry"
        );
        assert_eq!(h.vpmu.stats().create_failures, 1);
        h.run(100);
        assert_eq!(h.vpmu.read_counter(GP0), 7, "no event, no counting");
        h.set_faults(Faults::default());
        h.entry();
        assert!(!h.vpmu.reprogram_pending());
        assert_eq!(h.vpmu.stats().creates, 1);
        h.run(3);
        assert_eq!(h.vpmu.read_counter(GP0), 10);
        h.check_consistent();
    }
}

#[test]
fn period_rejection_falls_back_to_create() {
    // Directly through reprogram(): the outcome says why.
    let world = std::rc::Rc::new(std::cell::RefCell::new(sim::World::default()));
    let mut host = Solo::new(GP0, world.clone());
    let cfg = gp_cfg(SEL);
    let mut st = PmcState::default();
    let r = reprogram(Policy::Reuse, &cfg, &mut st, &mut host).unwrap();
    assert_eq!(r.outcome, Outcome::Created(RejectReason::NoEvent));
    host.event.advance(25);
    let r = reprogram(Policy::Reuse, &cfg, &mut st, &mut host).unwrap();
    assert_eq!(r.outcome, Outcome::Resumed);
    assert_eq!(st.counter, 25);
    world.borrow_mut().faults.reject_period_every = Some(1);
    host.event.advance(5);
    let r = reprogram(Policy::Reuse, &cfg, &mut st, &mut host).unwrap();
    assert_eq!(r.outcome, Outcome::Created(RejectReason::PeriodRejected));
    assert!(!r.emulated_overflow);
    assert_eq!(st.counter, 30);
    let s = world.borrow().stats;
    assert_eq!(
        (s.creates, s.releases, s.period_rejects, s.live),
        (2, 1, 1, 1)
    );
    assert_eq!(world.borrow().created[1].1.sample_period, (1 << 48) - 30);

    // Through the vPMU: every other period refused.
    let faults = Faults {
        reject_period_every: Some(2),
        ..Faults::default()
    };
    let mut h = Harness::with_faults(intel(), Policy::Reuse, faults);
    h.wrmsr(MSR_P6_EVNTSEL0, SEL).unwrap();
    for _ in 0..10 {
        h.run(1);
        h.wrmsr(MSR_CORE_PERF_GLOBAL_CTRL, 0).unwrap();
        h.wrmsr(MSR_CORE_PERF_GLOBAL_CTRL, 1).unwrap();
    }
    assert_eq!(h.vpmu.read_counter(GP0), 10);
    let st = h.vpmu.stats();
    assert_eq!((st.creates, st.resumes), (1 + 5, 5));
    h.check_consistent();
}

#[test]
fn create_failure_under_period_fallback_keeps_no_event() {
    let faults = Faults {
        reject_period_every: Some(1),
        fail_create_every: Some(2),
    };
    let mut h = Harness::with_faults(intel(), Policy::Reuse, faults);
    h.wrmsr(MSR_P6_EVNTSEL0, SEL).unwrap(); // create #1 succeeds
    h.wrmsr(MSR_CORE_PERF_GLOBAL_CTRL, 0).unwrap();
    h.wrmsr(MSR_CORE_PERF_GLOBAL_CTRL, 1).unwrap(); // period refused, create #2 fails
    assert!(h.vpmu.state(GP0).unwrap().event.is_none());
    assert!(h.vpmu.reprogram_pending());
    assert_eq!(h.sim().live, 0);
    h.entry(); // create #3 succeeds
    assert!(h.vpmu.state(GP0).unwrap().event.is_some());
    h.check_consistent();
}

// ---------------------------------------------------------------------------
// Lazy cleanup

#[test]
fn sched_in_releases_unused_disabled_counters() {
    let mut h = harness(intel(), Policy::Reuse);
    h.wrmsr(MSR_CORE_PERF_GLOBAL_CTRL, 0x7_0000_000f).unwrap();
    h.wrmsr(MSR_P6_EVNTSEL0, SEL).unwrap();
    h.wrmsr(MSR_P6_EVNTSEL0 + 1, 0x5300c4).unwrap();
    h.wrmsr(MSR_CORE_PERF_FIXED_CTR_CTRL, 0xb).unwrap();
    h.run(10);
    h.wrmsr(MSR_P6_EVNTSEL0, SEL & !EVENTSEL_ENABLE).unwrap();
    h.wrmsr(MSR_CORE_PERF_FIXED_CTR_CTRL, 0).unwrap();
    assert_eq!(h.pmcs_with_events(), 3, "reuse keeps paused events");
    // First slice: all were touched, nothing released.
    h.sched_in();
    assert_eq!(h.pmcs_with_events(), 3);
    // Next slice: nobody touched them; the disabled ones go.
    h.sched_in();
    assert_eq!(h.pmcs_with_events(), 1);
    assert!(h.vpmu.state(GP1).unwrap().event.is_some(), "still enabled");
    assert_eq!(h.vpmu.stats().releases, 2);
    assert_eq!(h.vpmu.read_counter(GP0), 10, "count folded in on release");
    assert_eq!(h.vpmu.read_counter(FX0), 10);
    h.check_consistent();
    // Re-enabling creates a new event.
    h.wrmsr(MSR_P6_EVNTSEL0, SEL).unwrap();
    assert_eq!(
        h.vpmu.state(GP0).unwrap().event.map(|e| e.sampling),
        Some(true)
    );
    assert_eq!(h.vpmu.stats().creates, 4);
    // Nothing to clean: sched_in does not even ask.
    let mut idle = harness(intel(), Policy::Reuse);
    idle.vpmu.sched_in();
    assert!(!idle.vpmu.reprogram_pending());
}

#[test]
fn touching_a_counter_keeps_its_event() {
    for (msr, keeps) in [
        (MSR_IA32_PERFCTR0, true),
        (MSR_P6_EVNTSEL0, true),
        // intel_msr_idx_to_pmc() does not know the full-width aliases, so
        // KVM does not mark the counter in use on an IA32_PMCx write.
        (MSR_IA32_PMC0, false),
    ] {
        let mut h2 = armed(Policy::Reuse, 0, SEL);
        h2.wrmsr(MSR_P6_EVNTSEL0, SEL & !EVENTSEL_ENABLE).unwrap();
        h2.sched_in(); // ends the slice: clears in-use, keeps the event
        let val = if msr == MSR_P6_EVNTSEL0 {
            SEL & !EVENTSEL_ENABLE
        } else {
            5
        };
        h2.wrmsr(msr, val).unwrap();
        h2.sched_in();
        assert_eq!(h2.pmcs_with_events() == 1, keeps, "{msr:#x}");
        h2.check_consistent();
    }
}

#[test]
fn legacy_leaves_disabled_events_to_lazy_cleanup() {
    let mut h = armed(Policy::Legacy, 0, SEL);
    h.wrmsr(MSR_P6_EVNTSEL0, SEL & !EVENTSEL_ENABLE).unwrap();
    assert_eq!(h.pmcs_with_events(), 1, "disabling only pauses");
    assert_eq!(h.vpmu.stats().releases, 0);
    h.sched_in(); // the slice in which the guest disabled it
    h.sched_in(); // a slice without touching it: released
    assert_eq!(h.pmcs_with_events(), 0);
    assert_eq!(h.vpmu.stats().releases, 1);
    h.check_consistent();
}

// ---------------------------------------------------------------------------
// The cache policy: kept events

/// USR|OS|INT|EN with event 0xc4 (branch instructions).
const SEL_B: u64 = 0x5300c4;
/// USR|OS|INT|EN with event 0x3c (cycles).
const SEL_C: u64 = 0x53003c;
/// USR|OS|INT|EN with event 0xc0 (instructions).
const SEL_D: u64 = 0x5300c0;

/// The id of the simulated perf_event `kind` holds.
fn event_id(h: &mut Harness, kind: PmcKind) -> Option<u64> {
    h.vpmu.host_mut(kind).unwrap().event.map(|e| e.id)
}

/// The configs in the kept set, least recently kept first.
fn kept_configs(h: &Harness) -> Vec<u64> {
    h.vpmu.kept_events().iter().map(|k| k.0.config).collect()
}

/// The keys in the kept set, least recently kept first.
fn kept_keys_of(h: &Harness) -> Vec<KeptKey> {
    h.vpmu.kept_events().iter().map(|k| k.0).collect()
}

#[test]
fn kept_keys() {
    let gp = gp_cfg(SEL);
    let gp2 = PmcConfig { kind: GP2, ..gp };
    assert_eq!(gp.kept_key(), gp2.kept_key(), "any GP counter");
    assert_eq!(
        gp.kept_key(),
        KeptKey {
            fixed: None,
            pebs_gp: None,
            config: SEL,
            pebs: false
        }
    );
    let pebs = PmcConfig {
        pebs_enabled: true,
        ..gp
    };
    assert_ne!(gp.kept_key(), pebs.kept_key(), "PEBS is part of the key");
    // A PEBS event's precise level depends on its GP counter.
    let pebs2 = PmcConfig { kind: GP2, ..pebs };
    assert_ne!(
        pebs.kept_key(),
        pebs2.kept_key(),
        "PEBS keys name the counter"
    );
    assert_eq!(pebs.kept_key().pebs_gp, Some(0));
    assert_ne!(gp.kept_key(), gp_cfg(SEL_NOINT).kept_key());
    // Fixed counters: the 4-bit field, only for the same counter.
    let (f0, f1) = (fixed_cfg(0, 0xb), fixed_cfg(1, 0xb));
    assert_eq!(f0.kept_key().config, 0xb);
    assert_eq!(f0.kept_key().fixed, Some(0));
    assert_ne!(f0.kept_key(), f1.kept_key());
    assert_ne!(
        f0.kept_key(),
        gp_cfg(0xb).kept_key(),
        "GP never adopts fixed"
    );
    // The key of the event a vPMC holds: its current config and PEBS state.
    let held = PmcState {
        current_config: SEL,
        event: Some(EventInfo {
            sampling: true,
            precise: false,
        }),
        ..PmcState::default()
    };
    assert_eq!(KeptKey::held(GP2, &held), Some(gp.kept_key()));
    assert_eq!(KeptKey::held(GP0, &PmcState::default()), None);
    let held_fixed = PmcState {
        current_config: 0xb,
        ..held
    };
    assert_eq!(KeptKey::held(FX0, &held_fixed), Some(f0.kept_key()));
    // A created event's key is the key it is later kept under.
    let attr = gp.event_attr(0);
    let info = EventInfo::of(&attr);
    let st = PmcState {
        current_config: attr.current_config,
        event: Some(info),
        ..PmcState::default()
    };
    assert_eq!(KeptKey::held(GP0, &st), Some(gp.kept_key()));
}

#[test]
fn cache_keeps_on_config_change_and_adopts_on_return() {
    let mut h = armed(Policy::Cache, 0, SEL);
    h.run(10);
    // A new config: the old event is kept, not released; a new one is made.
    h.wrmsr(MSR_P6_EVNTSEL0, SEL_B).unwrap();
    assert_eq!(h.vpmu.stats().creates, 2);
    assert_eq!(h.vpmu.stats().keeps, 1);
    assert_eq!((h.sim().releases, h.kept()), (0, 1));
    assert_eq!(kept_configs(&h), [SEL]);
    assert_eq!(event_id(&mut h, GP0), Some(2));
    h.check_consistent();
    h.run(20);
    // Back to the first config: adopted, no create; the second is kept.
    h.wrmsr(MSR_P6_EVNTSEL0, SEL).unwrap();
    let st = *h.vpmu.stats();
    assert_eq!(
        (st.creates, st.adoptions, st.keeps, st.resumes),
        (2, 1, 2, 0)
    );
    assert_eq!(st.releases, 0);
    assert_eq!(event_id(&mut h, GP0), Some(1), "the first event again");
    assert_eq!(kept_configs(&h), [SEL_B]);
    assert_eq!(h.vpmu.read_counter(GP0), 30);
    let s = *h.vpmu.state(GP0).unwrap();
    assert_eq!((s.current_config, s.intr, s.is_paused), (SEL, true, false));
    h.run(5);
    assert_eq!(h.vpmu.read_counter(GP0), 35, "the adopted event counts");
    h.check_consistent();
    // An unchanged config resumes as under reuse: nothing kept or adopted.
    h.wrmsr(MSR_CORE_PERF_GLOBAL_CTRL, 0).unwrap();
    h.wrmsr(MSR_CORE_PERF_GLOBAL_CTRL, 0xf).unwrap();
    let st = *h.vpmu.stats();
    assert_eq!(
        (st.creates, st.adoptions, st.keeps, st.resumes),
        (2, 1, 2, 1)
    );
    // Disabling keeps the paused event on the counter, as every policy does.
    h.wrmsr(MSR_P6_EVNTSEL0, SEL & !EVENTSEL_ENABLE).unwrap();
    assert_eq!(h.vpmu.stats().keeps, 2);
    assert_eq!(event_id(&mut h, GP0), Some(1));
    h.check_consistent();

    // Reuse releases and creates each time.
    let mut r = armed(Policy::Reuse, 0, SEL);
    r.wrmsr(MSR_P6_EVNTSEL0, SEL_B).unwrap();
    r.wrmsr(MSR_P6_EVNTSEL0, SEL).unwrap();
    assert_eq!(
        (r.vpmu.stats().creates, r.sim().releases, r.kept()),
        (3, 2, 0)
    );
}

#[test]
fn cache_event_adopted_by_another_counter_serves_it() {
    let mut h = armed(Policy::Cache, 0, SEL_NOINT);
    h.run(100);
    // Counter 0 moves on; its event (id 1) is kept.
    h.wrmsr(MSR_P6_EVNTSEL0, SEL_B).unwrap();
    assert_eq!(h.vpmu.read_counter(GP0), 100);
    // Counter 2, 50 from its wrap, takes counter 0's old config.
    h.wrmsr(MSR_IA32_PMC0 + 2, M48 - 49).unwrap();
    h.wrmsr(MSR_P6_EVNTSEL0 + 2, SEL_NOINT).unwrap();
    assert_eq!(h.vpmu.stats().creates, 2, "adopted, not created");
    assert_eq!(h.sim().retargets, 1);
    assert_eq!(event_id(&mut h, GP2), Some(1), "re-targeted to counter 2");
    assert_eq!(h.world.borrow().created[0].0, GP0, "made for counter 0");
    let ev = h.vpmu.host_mut(GP2).unwrap().event.unwrap();
    assert!(ev.enabled);
    assert_eq!(ev.count, 0, "counter 0's count stayed with counter 0");
    assert_eq!(ev.sample_period, 50, "period from counter 2's value");
    assert_eq!(h.vpmu.host_mut(GP2).unwrap().ticks_to_overflow(), Some(50));
    let s = *h.vpmu.state(GP2).unwrap();
    assert_eq!((s.current_config, s.intr), (SEL_NOINT, false));
    h.check_consistent();
    // Overflow exactly at counter 2's wrap, on counter 2: its status bit,
    // and no PMI (no INT).
    h.run(49);
    assert!(h.overflow_log.is_empty());
    assert_eq!(h.vpmu.read_counter(GP2), M48);
    h.run(1);
    assert_eq!(h.overflow_log, vec![(150, GP2)]);
    assert_eq!(h.rdmsr(MSR_CORE_PERF_GLOBAL_STATUS), Ok(GP2.bit()));
    assert_eq!(h.vpmu.pmi_requests(), 0);
    assert_eq!(h.vpmu.read_counter(GP2), 0);
    assert_eq!(
        h.vpmu.read_counter(GP0),
        150,
        "counter 0 ran on its new event"
    );
    h.wrmsr(MSR_CORE_PERF_GLOBAL_OVF_CTRL, GP2.bit()).unwrap();
    h.check_consistent();

    // With INT, the adopted event's overflow is counter 2's PMI; counter 1
    // adopts counter 2's event in turn.
    let mut h = armed(Policy::Cache, 0, SEL);
    h.wrmsr(MSR_P6_EVNTSEL0, SEL_B).unwrap();
    h.wrmsr(MSR_IA32_PMC0 + 2, M48 - 9).unwrap();
    h.wrmsr(MSR_P6_EVNTSEL0 + 2, SEL).unwrap();
    assert_eq!(event_id(&mut h, GP2), Some(1));
    h.run(10);
    assert_eq!(h.overflow_log, vec![(10, GP2)]);
    assert_eq!(h.rdmsr(MSR_CORE_PERF_GLOBAL_STATUS), Ok(GP2.bit()));
    assert_eq!((h.vpmu.pmi_requests(), h.pmis_injected), (1, 1));
    h.wrmsr(MSR_P6_EVNTSEL0 + 2, SEL_C).unwrap();
    h.wrmsr(MSR_IA32_PMC0 + 1, M48 - 4).unwrap();
    h.wrmsr(MSR_P6_EVNTSEL0 + 1, SEL).unwrap();
    assert_eq!(event_id(&mut h, GP1), Some(1));
    assert_eq!(h.vpmu.stats().creates, 3, "only SEL_B and SEL_C were new");
    h.run(5);
    assert_eq!(h.overflow_log[1], (15, GP1));
    assert_eq!(
        h.rdmsr(MSR_CORE_PERF_GLOBAL_STATUS),
        Ok(GP1.bit() | GP2.bit())
    );
    assert_eq!(h.pmis_injected, 2);
    h.check_consistent();
}

#[test]
fn cache_evicts_least_recently_kept_at_its_bound() {
    let mut h = armed(Policy::Cache, 0, SEL);
    h.set_kept_bound(2);
    for sel in [SEL_B, SEL_C, SEL_D] {
        h.wrmsr(MSR_P6_EVNTSEL0, sel).unwrap();
    }
    // SEL, SEL_B, SEL_C kept in turn; SEL, the oldest, evicted (released).
    assert_eq!(kept_configs(&h), [SEL_B, SEL_C]);
    let (s, v) = (h.sim(), *h.vpmu.stats());
    assert_eq!((v.keeps, v.evictions, s.releases, s.creates), (3, 1, 1, 4));
    assert_eq!(
        (v.releases, s.detached_releases),
        (0, 1),
        "a kept event's release, not a vPMC's"
    );
    h.check_consistent();
    // SEL was evicted: created anew.  Keeping SEL_D first evicts SEL_B.
    h.wrmsr(MSR_P6_EVNTSEL0, SEL).unwrap();
    assert_eq!(kept_configs(&h), [SEL_C, SEL_D]);
    assert_eq!((h.sim().creates, h.vpmu.stats().evictions), (5, 2));
    // Keeping SEL evicts SEL_C; SEL_D, the most recently kept, is adopted.
    h.wrmsr(MSR_P6_EVNTSEL0, SEL_D).unwrap();
    assert_eq!(kept_configs(&h), [SEL]);
    let v = *h.vpmu.stats();
    assert_eq!((h.sim().creates, v.adoptions, v.evictions), (5, 1, 3));
    assert_eq!(event_id(&mut h, GP0), Some(4));
    h.check_consistent();
    // The keep comes before the adopt, so with a bound of 1 a counter
    // flipping between two configs evicts the one it is about to want.
    let mut one = armed(Policy::Cache, 0, SEL);
    one.set_kept_bound(1);
    for _ in 0..3 {
        one.wrmsr(MSR_P6_EVNTSEL0, SEL_B).unwrap();
        one.wrmsr(MSR_P6_EVNTSEL0, SEL).unwrap();
    }
    assert_eq!((one.sim().creates, one.vpmu.stats().adoptions), (7, 0));
    // With a bound of 2 it flips without creating.
    let mut two = armed(Policy::Cache, 0, SEL);
    two.set_kept_bound(2);
    for _ in 0..3 {
        two.wrmsr(MSR_P6_EVNTSEL0, SEL_B).unwrap();
        two.wrmsr(MSR_P6_EVNTSEL0, SEL).unwrap();
    }
    assert_eq!((two.sim().creates, two.vpmu.stats().adoptions), (2, 5));
    // Shrinking the bound evicts at the next keep, down to the new bound
    // before the event is kept.
    assert_eq!(two.kept(), 1);
    two.set_kept_bound(1);
    two.wrmsr(MSR_P6_EVNTSEL0, SEL_C).unwrap();
    assert_eq!(kept_configs(&two), [SEL]);
    two.check_consistent();
    // The default bound is three times the counters plus one.
    let d = harness(intel(), Policy::Cache);
    assert_eq!(d.kept_bound(), 3 * (4 + 3) + 1);
}

#[test]
fn cache_keeps_pebs_and_non_pebs_events_apart() {
    let mut shape = intel();
    shape.pebs = Pebs::Legacy;
    let mut h = harness(shape, Policy::Cache);
    h.wrmsr(MSR_P6_EVNTSEL0, SEL).unwrap();
    // PEBS on: same event select, a precise event.  The old one is kept
    // under its own (non-PEBS) key; no precise event is kept: created.
    h.wrmsr(MSR_IA32_PEBS_ENABLE, 1).unwrap();
    assert_eq!(h.vpmu.stats().creates, 2);
    assert_eq!(h.vpmu.stats().keeps, 1);
    let kept = kept_keys_of(&h)[0];
    assert_eq!(
        kept,
        KeptKey {
            fixed: None,
            pebs_gp: None,
            config: SEL,
            pebs: false
        }
    );
    assert!(h.vpmu.state(GP0).unwrap().event.unwrap().precise);
    h.check_consistent();
    // PEBS off: the non-PEBS event comes back; the precise one is kept.
    h.wrmsr(MSR_IA32_PEBS_ENABLE, 0).unwrap();
    assert_eq!(h.vpmu.stats().creates, 2);
    assert_eq!(h.vpmu.stats().adoptions, 1);
    assert_eq!(event_id(&mut h, GP0), Some(1));
    assert!(!h.vpmu.state(GP0).unwrap().event.unwrap().precise);
    assert!(kept_keys_of(&h)[0].pebs);
    // Counter 1 with PEBS and the same select cannot adopt counter 0's
    // precise event: KVM's precise level depends on the counter.
    h.wrmsr(MSR_IA32_PEBS_ENABLE, 2).unwrap();
    h.wrmsr(MSR_P6_EVNTSEL0 + 1, SEL).unwrap();
    assert_eq!(h.vpmu.stats().creates, 3);
    assert!(h.vpmu.state(GP1).unwrap().event.unwrap().precise);
    assert_eq!(kept_keys_of(&h)[0].pebs_gp, Some(0));
    h.check_consistent();
}

#[test]
fn cache_fixed_counter_events_stay_with_their_counter() {
    let mut h = harness(intel(), Policy::Cache);
    h.wrmsr(MSR_CORE_PERF_GLOBAL_CTRL, 0x7_0000_000f).unwrap();
    h.wrmsr(MSR_CORE_PERF_FIXED_CTR_CTRL, 0x0b).unwrap(); // FX0: OS|USR|PMI
    h.wrmsr(MSR_CORE_PERF_FIXED_CTR_CTRL, 0x03).unwrap(); // FX0: no PMI
    assert_eq!(h.vpmu.stats().creates, 2);
    // Fixed counter 1 with the kept field: a different counter, created.
    h.wrmsr(MSR_CORE_PERF_FIXED_CTR_CTRL, 0xb3).unwrap();
    assert_eq!(h.vpmu.stats().creates, 3);
    // Fixed counter 0 back to 0xb: adopted.
    h.wrmsr(MSR_CORE_PERF_FIXED_CTR_CTRL, 0xbb).unwrap();
    assert_eq!(h.vpmu.stats().creates, 3);
    assert_eq!(event_id(&mut h, FX0), Some(1));
    assert!(h.vpmu.state(FX0).unwrap().intr);
    h.check_consistent();
}

#[test]
fn cache_reports_and_falls_back_through_reprogram() {
    let world = std::rc::Rc::new(std::cell::RefCell::new(sim::World::default()));
    // One vCPU: counter 0's event, and counter 2's swapped in for its
    // reprogram.
    let mut h0 = Solo::new(GP0, world.clone());
    let (a, b) = (gp_cfg(SEL), gp_cfg(SEL_B));
    let mut st0 = PmcState::default();
    let r = reprogram(Policy::Cache, &a, &mut st0, &mut h0).unwrap();
    assert_eq!(r.outcome, Outcome::Created(RejectReason::NoEvent));
    assert!(!r.kept && r.adopted.is_none());
    h0.event.advance(7);
    let r = reprogram(Policy::Cache, &b, &mut st0, &mut h0).unwrap();
    assert_eq!(r.outcome, Outcome::Created(RejectReason::ConfigChanged));
    assert!(r.kept && r.adopted.is_none());
    assert_eq!(st0.counter, 7);
    // Counter 2 adopts the kept event: `Resumed`, adopted.
    let a2 = PmcConfig { kind: GP2, ..a };
    let mut st2 = PmcState {
        counter: M48 - 99,
        ..PmcState::default()
    };
    let ev0 = std::mem::replace(&mut h0.event, SimEvent::new(GP2, world.clone()));
    let r = reprogram(Policy::Cache, &a2, &mut st2, &mut h0).unwrap();
    let ev2 = std::mem::replace(&mut h0.event, ev0);
    assert_eq!(r.outcome, Outcome::Resumed);
    assert!(r.adopted == Some(AdoptedFrom::Set) && !r.kept);
    assert_eq!(ev2.ticks_to_overflow(), Some(100));
    assert_eq!(world.borrow().stats.retargets, 1);
    assert_eq!(st2.event, Some(EventInfo::of(&a2.event_attr(0))));
    // Perf refuses the adopted event's period: released, created instead.
    let r = reprogram(Policy::Cache, &gp_cfg(SEL_C), &mut st0, &mut h0).unwrap();
    assert!(r.kept, "SEL_B kept");
    world.borrow_mut().faults.reject_period_every = Some(1);
    let r = reprogram(Policy::Cache, &b, &mut st0, &mut h0).unwrap();
    assert_eq!(r.outcome, Outcome::Created(RejectReason::PeriodRejected));
    assert!(r.kept && r.adopted.is_none());
    let s = world.borrow().stats;
    assert_eq!(
        (s.attaches, s.period_rejects, s.creates, s.releases),
        (2, 1, 4, 1)
    );
    assert_eq!((s.live, h0.kept_len()), (3, 1), "GP0, GP2 and SEL_C kept");
    assert_eq!(h0.event.event.unwrap().id, 4);
    assert_eq!(h0.event.ticks_to_overflow(), Some((1 << 48) - 7));
    // A failed create after a keep keeps the old event in the set.
    world.borrow_mut().faults = sim::Faults {
        fail_create_every: Some(1),
        ..sim::Faults::default()
    };
    let err = reprogram(Policy::Cache, &gp_cfg(SEL_D), &mut st0, &mut h0).unwrap_err();
    assert_eq!(err, (EBUSY, RejectReason::ConfigChanged));
    assert!(st0.event.is_none());
    assert_eq!(st0.current_config, SEL_D, "kept for the retry");
    assert_eq!(h0.kept_len(), 2);
    assert_eq!(world.borrow().stats.releases, 1);

    // Legacy and reuse never touch the set.
    for policy in [Policy::Legacy, Policy::Reuse] {
        let world = std::rc::Rc::new(std::cell::RefCell::new(sim::World::default()));
        let mut h = Solo::new(GP0, world.clone());
        let mut st = PmcState::default();
        for cfg in [a, b, a] {
            let r = reprogram(policy, &cfg, &mut st, &mut h).unwrap();
            assert!(!r.kept && r.adopted.is_none());
        }
        let s = world.borrow().stats;
        assert_eq!(
            (s.detaches, s.attaches, s.creates, s.releases),
            (0, 0, 3, 2)
        );
    }

    // A host that cannot detach the event: released, never attached over.
    let world = std::rc::Rc::new(std::cell::RefCell::new(sim::World::default()));
    let mut h = Solo::new(GP0, world.clone());
    let mut st = PmcState::default();
    reprogram(Policy::Cache, &a, &mut st, &mut h).unwrap();
    reprogram(Policy::Cache, &b, &mut st, &mut h).unwrap();
    h.refuse_detach = true;
    let r = reprogram(Policy::Cache, &a, &mut st, &mut h).unwrap();
    assert!(r.dropped && !r.kept);
    assert_eq!(r.outcome, Outcome::Resumed);
    assert_eq!(r.adopted, Some(AdoptedFrom::Set), "SEL, kept before");
    let s = world.borrow().stats;
    assert_eq!((s.creates, s.releases, s.live, h.kept_len()), (2, 1, 1, 0));

    // A host without a set: cache degrades to reuse, releasing on change.
    let world = std::rc::Rc::new(std::cell::RefCell::new(sim::World::default()));
    let mut h = Solo::without_set(GP0, world.clone());
    let mut st = PmcState::default();
    for cfg in [a, b, a, a] {
        let r = reprogram(Policy::Cache, &cfg, &mut st, &mut h).unwrap();
        assert!(r.adopted.is_none());
    }
    let s = world.borrow().stats;
    assert_eq!((s.creates, s.releases, s.live), (3, 2, 1));
    assert_eq!(h.kept_len(), 0);
}

#[test]
fn cache_kept_events_age_out_after_a_second_of_idle_run_time() {
    use vpmu_model::cache::IDLE_RUN_TIME_NS;
    let mut h = armed(Policy::Cache, 0, SEL);
    h.wrmsr(MSR_P6_EVNTSEL0, SEL_B).unwrap(); // SEL kept
    h.sched_in(); // the guest used the PMU in the last slice: it stays
    assert_eq!(kept_configs(&h), [SEL]);
    h.wrmsr(MSR_P6_EVNTSEL0, SEL).unwrap(); // adopted; SEL_B kept
    assert_eq!(h.vpmu.stats().creates, 2);
    // Disabled, the guest runs without touching its PMU: slices alone do not
    // age the set, run time does.
    h.wrmsr(MSR_P6_EVNTSEL0, SEL & !EVENTSEL_ENABLE).unwrap();
    h.sched_in();
    for _ in 0..5 {
        h.idle(IDLE_RUN_TIME_NS / 5 - 1);
        h.sched_in();
    }
    // The unused, disabled counter's paused event was kept, not released by
    // KVM's cleanup, and nothing ages in just under a second of run time.
    assert_eq!(kept_configs(&h), [SEL_B, SEL]);
    assert_eq!(event_id(&mut h, GP0), None);
    assert_eq!(h.vpmu.stats().cleanup_keeps, 1);
    h.idle(5);
    h.sched_in();
    assert_eq!(h.kept(), 0, "a second of idle run time releases the set");
    let v = *h.vpmu.stats();
    assert_eq!(v.released_idle, 2);
    assert_eq!(h.sim().live, 0);
    h.wrmsr(MSR_P6_EVNTSEL0, SEL_B).unwrap();
    assert_eq!(h.vpmu.stats().creates, 3, "aged out: created again");
    h.check_consistent();
    // A guest that uses its PMU in every slice keeps its set however long
    // it runs.
    let mut h = armed(Policy::Cache, 0, SEL);
    h.wrmsr(MSR_P6_EVNTSEL0, SEL_B).unwrap();
    for _ in 0..4 {
        h.run(IDLE_RUN_TIME_NS / 2);
        h.rdmsr(MSR_IA32_PERFCTR0).unwrap();
        h.wrmsr(MSR_IA32_PERFCTR0, 0).unwrap();
        h.sched_in();
    }
    assert_eq!(kept_configs(&h), [SEL], "an active PMU keeps its set");
    // Exits to user space do not ask for KVM's cleanup.
    h.wrmsr(MSR_P6_EVNTSEL0, SEL & !EVENTSEL_ENABLE).unwrap();
    h.sched_in(); // the slice of that write: in use
    h.idle(2 * IDLE_RUN_TIME_NS);
    h.exit_to_user();
    assert_eq!(h.kept(), 1);
    h.sched_in();
    assert_eq!(h.kept(), 0);
    h.check_consistent();
}

#[test]
fn destroying_the_vcpu_releases_held_and_kept_events() {
    for policy in Policy::ALL {
        let mut h = armed(policy, 0, SEL);
        h.wrmsr(MSR_CORE_PERF_GLOBAL_CTRL, 0x7_0000_000f).unwrap();
        h.wrmsr(MSR_P6_EVNTSEL0 + 1, SEL_B).unwrap();
        h.wrmsr(MSR_CORE_PERF_FIXED_CTR_CTRL, 0xb).unwrap();
        h.wrmsr(MSR_P6_EVNTSEL0, SEL_C).unwrap();
        h.wrmsr(MSR_P6_EVNTSEL0 + 1, SEL_D).unwrap();
        h.run(10);
        let kept = if policy == Policy::Cache { 2 } else { 0 };
        assert_eq!(h.kept(), kept, "{policy:?}");
        assert_eq!(h.sim().live, 3 + kept as u64);
        h.destroy();
        assert_eq!(h.pmcs_with_events(), 0);
        assert_eq!(h.kept(), 0);
        let s = h.sim();
        assert_eq!((s.live, s.creates - s.releases), (0, 0), "{policy:?}");
        assert_eq!(h.vpmu.read_counter(GP0), 10, "count folded in");
        h.check_consistent();
    }
}

// ---------------------------------------------------------------------------
// The simulation itself

#[test]
fn sim_perf_semantics() {
    let world = std::rc::Rc::new(std::cell::RefCell::new(sim::World::default()));
    let mut e = SimEvent::new(GP0, world.clone());
    let attr = EventAttr {
        sample_period: 10,
        ..gp_cfg(SEL).event_attr(0)
    };
    e.create(&attr).unwrap();
    assert_eq!(e.ticks_to_overflow(), Some(10));
    assert!(!e.advance(4));
    assert_eq!(e.read(), 4);
    assert_eq!(e.pause(), 4, "pause returns the count");
    assert_eq!(e.read(), 0, "and resets it");
    assert_eq!(e.ticks_to_overflow(), None, "paused");
    assert!(!e.advance(100), "paused events do not count");
    e.enable();
    assert_eq!(
        e.ticks_to_overflow(),
        Some(6),
        "period_left kept over a pause"
    );
    e.set_period(20).unwrap();
    assert_eq!(
        e.ticks_to_overflow(),
        Some(20),
        "a new period starts in full"
    );
    assert!(e.advance(20));
    assert_eq!(e.ticks_to_overflow(), Some(20), "reloaded");
    assert_eq!(e.set_period(0), Err(sim::EINVAL));
    assert_eq!(e.set_period(1 << 63), Err(sim::EINVAL));
    e.release();
    let counting = EventAttr {
        sample_period: 0,
        ..attr
    };
    e.create(&counting).unwrap();
    assert_eq!(e.ticks_to_overflow(), None);
    assert!(!e.advance(u64::MAX / 2));
    e.release();
    let s = world.borrow().stats;
    assert_eq!((s.creates, s.releases, s.live, s.overflows), (2, 2, 0, 1));
    world.borrow_mut().faults.fail_create_every = Some(1);
    assert_eq!(e.create(&attr), Err(EBUSY));
    assert!(e.event.is_none());
}

#[test]
#[should_panic(expected = "detach of a running perf_event")]
fn sim_catches_detach_of_a_running_event() {
    let world = std::rc::Rc::new(std::cell::RefCell::new(sim::World::default()));
    let mut e = SimEvent::new(GP0, world);
    let cfg = gp_cfg(SEL);
    e.create(&cfg.event_attr(0)).unwrap();
    e.detach();
}

#[test]
#[should_panic(expected = "attach over a live perf_event")]
fn sim_catches_attach_over_a_live_event() {
    let world = std::rc::Rc::new(std::cell::RefCell::new(sim::World::default()));
    let mut e = SimEvent::new(GP0, world.clone());
    let cfg = gp_cfg(SEL);
    e.create(&cfg.event_attr(0)).unwrap();
    e.pause();
    let event = e.detach().unwrap();
    let mut other = SimEvent::new(GP1, world);
    other.create(&cfg.event_attr(0)).unwrap();
    other.attach(event);
}

#[test]
#[should_panic(expected = "double release")]
fn sim_catches_double_release() {
    let world = std::rc::Rc::new(std::cell::RefCell::new(sim::World::default()));
    let mut e = SimEvent::new(GP0, world);
    e.release();
}

#[test]
#[should_panic(expected = "leak")]
fn sim_catches_leaked_event() {
    let world = std::rc::Rc::new(std::cell::RefCell::new(sim::World::default()));
    let mut e = SimEvent::new(GP0, world);
    let attr = gp_cfg(SEL).event_attr(0);
    e.create(&attr).unwrap();
    e.create(&attr).unwrap();
}

/// Found by the property tests: KVM reports an emulated overflow through the
/// event the vPMC holds, and `__kvm_perf_overflow(pmc, false)` skips
/// GLOBAL_STATUS and the PMI for a PEBS event.  When `legacy` released a
/// disabled counter's paused PEBS event, re-enabling it and wrapping it with
/// an emulated count (e.g. the WRMSR's own retirement) raised a status bit
/// and a PMI that `reuse` did not.  Every policy now keeps the paused event
/// of a counter that may not count, so both report the same.
#[test]
fn pebs_emulated_wrap_after_disable_is_policy_invisible() {
    let mut shape = intel();
    shape.pebs = Pebs::Legacy;
    let mut seen = Vec::new();
    for policy in Policy::ALL {
        let mut h = harness(shape, policy);
        h.wrmsr(MSR_IA32_PEBS_ENABLE, 1).unwrap();
        h.wrmsr(MSR_IA32_PMC0, M48).unwrap();
        h.wrmsr(MSR_P6_EVNTSEL0, SEL).unwrap();
        h.wrmsr(MSR_P6_EVNTSEL0, SEL & !EVENTSEL_ENABLE).unwrap();
        assert!(
            h.vpmu.state(GP0).unwrap().event.is_some(),
            "{policy:?} kept the event"
        );
        // Re-enable; the WRMSR itself retires as an emulated instruction.
        h.vpmu.wrmsr(MSR_P6_EVNTSEL0, SEL).unwrap();
        h.vpmu.add_emulated(GP0, 1);
        h.entry();
        assert_eq!(h.vpmu.read_counter(GP0), 0);
        seen.push((h.rdmsr(MSR_CORE_PERF_GLOBAL_STATUS), h.vpmu.pmi_requests()));
        h.check_consistent();
    }
    assert_eq!(seen, [(Ok(0), 0); 3], "legacy, reuse, cache");
}
