// SPDX-License-Identifier: GPL-2.0

//! Soft mode: on a host without a PMU, the PMU that kvm_vpmu describes to
//! KVM (patches/), backed by task-clock events.

use core::sync::atomic::{AtomicBool, Ordering};

use kernel::prelude::*;

use crate::ffi::{self, kvm::HostPmu, perf::Backing};

/// AMD's four legacy counters, or an Intel architectural PMU v2 with four
/// GP counters and three fixed counters (IA32_PERF_GLOBAL_CTRL, _STATUS
/// and _OVF_CTRL come with version 2), all 48 bits wide.  Every counter,
/// fixed ones too, counts vCPU run time in ns, whatever its event.
const GP_COUNTERS: i32 = 4;
const FIXED_COUNTERS: i32 = 3;
const COUNTER_WIDTH: i32 = 48;
/// The seven Intel architectural events (CPUID.0AH:EAX[31:24]).
const EVENTS_MASK_LEN: i32 = 7;

/// Set once at load: guest counters are backed by task-clock events because
/// the host has no PMU and the `soft` parameter asked for it.
static SOFT: AtomicBool = AtomicBool::new(false);

/// Decides the backing of guest counters for this load of the module.
pub(crate) fn init() {
    let soft = ffi::soft_requested() && !ffi::host_has_pmu();
    SOFT.store(soft, Ordering::Relaxed);
    if soft {
        pr_info!("soft mode: no host PMU, guest counters use task-clock events\n");
    }
}

/// How guest counters are backed on this host.
pub(crate) fn backing() -> Backing {
    if active() {
        Backing::TaskClock
    } else {
        Backing::Hardware
    }
}

/// Whether soft mode is on.
pub(crate) fn active() -> bool {
    SOFT.load(Ordering::Relaxed)
}

/// KVM asks for the host PMU because perf has none: in soft mode, describe
/// the soft PMU.  KVM then pins this module until the vendor module exits.
pub(crate) fn describe_host_pmu(cap: &mut HostPmu) {
    if !active() {
        return;
    }
    // AMD has no fixed counters, and KVM on AMD none to give guests.
    let fixed = if ffi::host_is_intel() {
        FIXED_COUNTERS
    } else {
        0
    };
    cap.describe(GP_COUNTERS, fixed, COUNTER_WIDTH, EVENTS_MASK_LEN);
    pr_info!(
        "soft PMU for KVM: {} GP and {} fixed counters of {} bits counting vCPU run time in ns\n",
        GP_COUNTERS,
        fixed,
        COUNTER_WIDTH
    );
}
