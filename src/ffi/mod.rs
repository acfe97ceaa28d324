// SPDX-License-Identifier: GPL-2.0

//! The C seam: safe wrappers over KVM, perf and the C shim
//! (`bindings/shim.c`).  This is the only module that names `bindings::`;
//! the rest of the crate is safe Rust, apart from one file of `extern "C"`
//! entry points (`src/entry.rs`).

use core::sync::atomic::{AtomicBool, Ordering};

use kernel::error::to_result;
use kernel::prelude::*;

use crate::model::Policy;

pub(crate) mod kvm;
pub(crate) mod perf;

#[allow(
    dead_code,
    non_camel_case_types,
    non_upper_case_globals,
    non_snake_case,
    improper_ctypes,
    unreachable_pub,
    unsafe_op_in_unsafe_fn,
    clippy::all,
    clippy::undocumented_unsafe_blocks,
    // Lints 7.3 enables beyond clippy::all (bitfield accessors).
    clippy::cast_lossless,
    clippy::ptr_as_ptr
)] // generated bindgen code
mod bindings {
    include!(env!("KVM_VPMU_BINDINGS"));
}

/// What KVM asks soft mode to fill in.
#[cfg(CONFIG_KVM_VPMU_SOFT)]
pub(crate) use bindings::x86_pmu_capability;
/// What C passes to the entry points, opaque to Rust.
pub(crate) use bindings::{kvm_pmc as RawPmc, kvm_vcpu as RawVcpu, vpmu_policy as RawPolicy};

// The shim refuses a `cache_size` above the model's most kept events.
const _: () = assert!(crate::model::KEPT_MAX == bindings::VPMU_KEPT_MAX as usize);

// The shim's policy numbers are the model's policies, in the same order.
const _: () = assert!(Policy::ALL.len() == bindings::vpmu_policy_NR_VPMU_POLICIES as usize);

/// The policy the `policy` parameter selects now.
#[inline]
pub(crate) fn policy() -> Policy {
    // SAFETY: reads an integer; no preconditions.
    policy_of(unsafe { bindings::vpmu_param_policy() })
}

/// The policy of a value the shim read from the `policy` parameter.
#[inline(always)]
pub(crate) fn policy_of(policy: RawPolicy) -> Policy {
    match policy {
        bindings::vpmu_policy_VPMU_POLICY_LEGACY => Policy::Legacy,
        bindings::vpmu_policy_VPMU_POLICY_CACHE => Policy::Cache,
        // The shim stores only parsed values: this is VPMU_POLICY_REUSE.
        _ => Policy::Reuse,
    }
}

/// The name of the policy in force, as the `policy` parameter spells it.
pub(crate) fn policy_name() -> &'static str {
    // SAFETY: reads an integer and returns a pointer into a static array of
    // NUL-terminated strings; no preconditions.
    let name = unsafe { bindings::vpmu_param_policy_name() };
    // SAFETY: `name` is a static NUL-terminated string that is never freed.
    let name = unsafe { CStr::from_char_ptr(name.cast()) };
    name.to_str().unwrap_or("?")
}

/// The `cache_size` parameter: events kept per vCPU, 0 for the default.
pub(crate) fn cache_size() -> usize {
    // SAFETY: reads an integer; no preconditions.
    unsafe { bindings::vpmu_param_cache_size() as usize }
}

/// The `soft` parameter (load time).
#[cfg(CONFIG_KVM_VPMU_SOFT)]
pub(crate) fn soft_requested() -> bool {
    // SAFETY: reads a boolean; no preconditions.
    unsafe { bindings::vpmu_param_soft() }
}

/// The `selftest` parameter (load time).
pub(crate) fn selftest_requested() -> bool {
    crate::module_parameters::selftest.value()
}

/// Whether perf found general purpose counters on this host.
#[cfg(CONFIG_KVM_VPMU_SOFT)]
pub(crate) fn host_has_pmu() -> bool {
    // SAFETY: asks perf for the host PMU's capability; no preconditions.
    unsafe { bindings::vpmu_host_has_pmu() }
}

/// Whether the host CPU is Intel's (KVM then runs kvm-intel's vPMU).
#[cfg(CONFIG_KVM_VPMU_SOFT)]
pub(crate) fn host_is_intel() -> bool {
    // SAFETY: reads the boot CPU's vendor; no preconditions.
    unsafe { bindings::vpmu_host_is_intel() }
}

/// The TSC, ordered against the code around it.
pub(crate) fn rdtsc() -> u64 {
    // SAFETY: reads the TSC; no preconditions.
    unsafe { bindings::vpmu_rdtsc() }
}

/// How long the current task has run, in ns (`sum_exec_runtime`).
pub(crate) fn current_run_time_ns() -> u64 {
    // SAFETY: reads a field of `current`; no preconditions.
    unsafe { bindings::vpmu_current_run_time_ns() }
}

/// Fault injection (`fail_create/` in debugfs, `CONFIG_FAULT_INJECTION`):
/// whether this create of a guest event is to fail.
pub(crate) fn should_fail_create() -> bool {
    // SAFETY: consults the fault attribute; no preconditions.
    unsafe { bindings::vpmu_should_fail_create() }
}

/// `/sys/kernel/debug/kvm_vpmu/`, made by the C shim, for as long as this
/// value lives: the kept-event gauges, `mediated_pmu` and fault injection.
///
/// # Invariants
///
/// The debugfs directory exists, or debugfs is not available.
pub(crate) struct DebugfsDir(());

impl DebugfsDir {
    /// Creates the directory and its files.
    pub(crate) fn new() -> Self {
        // SAFETY: the files' accessors are in the shim, part of this module;
        // removed in `drop`.
        unsafe { bindings::vpmu_debugfs_init() };
        // INVARIANT: created above.
        DebugfsDir(())
    }
}

impl Drop for DebugfsDir {
    fn drop(&mut self) {
        // SAFETY: created in `new` (type invariant); removing it waits for
        // the readers of its files.
        unsafe { bindings::vpmu_debugfs_exit() };
    }
}

/// debugfs `kept_events` and `kept_max`: a vCPU's kept set changed by
/// `delta` events and holds `held` now.  Per CPU, no shared cache line.
#[inline]
pub(crate) fn kept_account(delta: i64, held: usize) {
    let held = u32::try_from(held).unwrap_or(u32::MAX);
    // SAFETY: updates this CPU's counters; no preconditions.
    unsafe { bindings::vpmu_kept_account(delta, held) }
}

/// debugfs `kept_vcpus`: a vCPU's kept-event state was made (1) or freed
/// (-1).
pub(crate) fn kept_sets_account(delta: i32) {
    // SAFETY: an atomic update; no preconditions.
    unsafe { bindings::vpmu_kept_sets_account(delta) }
}

/// The backend registered with KVM, for as long as this value lives.
///
/// # Invariants
///
/// The backend is registered.
pub(crate) struct Registration(());

impl Registration {
    /// Registers the backend with KVM; fails with `EBUSY` if another backend
    /// is registered.
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: the backend's functions are in this module, which stays
        // loaded until `drop` has unregistered it.
        to_result(unsafe { bindings::vpmu_backend_register() })?;
        // INVARIANT: registered above.
        Ok(Registration(()))
    }

    /// Registers the backend once more, which KVM must refuse with `EBUSY`
    /// while a `Registration` lives (self-test).  A registration that
    /// succeeded is undone.
    pub(crate) fn register_again() -> Result {
        // SAFETY: as in `new`; KVM refuses a second backend.
        let ret = unsafe { bindings::vpmu_backend_register() };
        if ret == 0 {
            // SAFETY: the registration that just succeeded is undone.
            unsafe { bindings::vpmu_backend_unregister() };
        }
        to_result(ret)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // SAFETY: registered (type invariant); returns once no vCPU is inside
        // the backend.  No vCPU holds backend state: each would pin this
        // module, so it could not be unloading.
        unsafe { bindings::vpmu_backend_unregister() };
    }
}

/// The context-switch partner of the self-test's benchmark
/// (`src/selftest/ctxsw.c`): a kthread on this task's CPU, to which this
/// task, pinned there meanwhile, hands the CPU back and forth.
///
/// # Invariants
///
/// `0` is a partner started by `vpmu_ctxsw_start()` and not yet stopped,
/// and it is the only one: `ctxsw.c` keeps one partner's state in statics,
/// so [`CTXSW_PARTNER_LIVE`] is set while a `CtxswPartner` exists.
pub(crate) struct CtxswPartner(core::ptr::NonNull<bindings::task_struct>);

/// Set while a [`CtxswPartner`] exists.
static CTXSW_PARTNER_LIVE: AtomicBool = AtomicBool::new(false);

impl CtxswPartner {
    /// Pins this task to its CPU and starts the partner there; `None` if
    /// it cannot start, or if another partner is running (the C side has
    /// room for one).
    pub(crate) fn start() -> Option<Self> {
        if CTXSW_PARTNER_LIVE.swap(true, Ordering::Acquire) {
            return None;
        }
        // SAFETY: called from process context, with no other partner live
        // (checked above); undone by `drop`.
        let partner = unsafe { bindings::vpmu_ctxsw_start() };
        let Some(partner) = core::ptr::NonNull::new(partner) else {
            CTXSW_PARTNER_LIVE.store(false, Ordering::Release);
            return None;
        };
        // INVARIANT: a started partner, the only one (the flag is ours).
        Some(CtxswPartner(partner))
    }

    /// One round trip: two context switches.
    pub(crate) fn round_trip(&self) {
        // SAFETY: the partner runs (type invariant); sleeps in process
        // context until it answers.
        unsafe { bindings::vpmu_ctxsw_round_trip() }
    }
}

impl Drop for CtxswPartner {
    fn drop(&mut self) {
        // SAFETY: started and not yet stopped (type invariant).
        unsafe { bindings::vpmu_ctxsw_stop(self.0.as_ptr()) };
        CTXSW_PARTNER_LIVE.store(false, Ordering::Release);
    }
}
