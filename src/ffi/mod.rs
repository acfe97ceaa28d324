// SPDX-License-Identifier: GPL-2.0

//! The C seam: safe wrappers over KVM, perf and the C shim
//! (`bindings/shim.c`).  This is the only module that names `bindings::`;
//! the rest of the crate is safe Rust, apart from one file of `extern "C"`
//! entry points (`src/entry.rs`).

use kernel::error::{to_result, Result};

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

/// What C passes to the entry points, opaque to Rust.
pub(crate) use bindings::{kvm_pmc as RawPmc, kvm_vcpu as RawVcpu, x86_pmu_capability};

/// The most events a vCPU may keep, whatever `cache_size` says: kept events
/// count in KVM's 8-bit `pmu->event_count` beside the vPMCs' own.
pub(crate) const KEPT_MAX: usize = bindings::VPMU_KEPT_MAX as usize;

// The shim's policy numbers are the model's policies, in the same order.
const _: () = assert!(Policy::ALL.len() == bindings::vpmu_policy_NR_VPMU_POLICIES as usize);

/// The policy the `policy` parameter selects now.
pub(crate) fn policy() -> Policy {
    // SAFETY: reads an integer; no preconditions.
    match unsafe { bindings::vpmu_param_policy() } {
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
    // 7.3's clippy.toml wants `CStrExt::from_char_ptr()`, a trait 6.12 does
    // not have; `name` is a `core::ffi::c_char` pointer (our bindgen's).
    #[allow(clippy::disallowed_methods)]
    // SAFETY: `name` is a static NUL-terminated string that is never freed.
    let name = unsafe { core::ffi::CStr::from_ptr(name) };
    name.to_str().unwrap_or("?")
}

/// The `cache_size` parameter: events kept per vCPU, 0 for the default.
pub(crate) fn cache_size() -> usize {
    // SAFETY: reads an integer; no preconditions.
    unsafe { bindings::vpmu_param_cache_size() as usize }
}

/// The `soft` parameter (load time).
#[cfg(VPMU_KVER_GE_6_18)]
pub(crate) fn soft_requested() -> bool {
    crate::module_parameters::soft.value()
}

/// The `soft` parameter (load time), which 6.12's `module!` cannot declare.
#[cfg(not(VPMU_KVER_GE_6_18))]
pub(crate) fn soft_requested() -> bool {
    // SAFETY: reads a boolean; no preconditions.
    unsafe { bindings::vpmu_param_soft() }
}

/// The `selftest` parameter (load time).
#[cfg(VPMU_KVER_GE_6_18)]
pub(crate) fn selftest_requested() -> bool {
    crate::module_parameters::selftest.value()
}

/// The `selftest` parameter (load time), which 6.12's `module!` cannot
/// declare.
#[cfg(not(VPMU_KVER_GE_6_18))]
pub(crate) fn selftest_requested() -> bool {
    // SAFETY: reads a boolean; no preconditions.
    unsafe { bindings::vpmu_param_selftest() }
}

/// Whether perf found general purpose counters on this host.
pub(crate) fn host_has_pmu() -> bool {
    // SAFETY: asks perf for the host PMU's capability; no preconditions.
    unsafe { bindings::vpmu_host_has_pmu() }
}

/// Whether the host has HLE or RTM.
pub(crate) fn host_has_tsx() -> bool {
    // SAFETY: reads boot CPU features; no preconditions.
    unsafe { bindings::vpmu_host_has_tsx() }
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

/// The backend registered with KVM and its debugfs directory, for as long
/// as this value lives.
///
/// # Invariants
///
/// The backend is registered and the debugfs directory exists.
pub(crate) struct Registration(());

impl Registration {
    /// Creates the debugfs directory and registers the backend with KVM;
    /// fails with `EBUSY` if another backend is registered.
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: creates the debugfs files, whose accessors are in this
        // module; removed in `drop` or below.
        unsafe { bindings::vpmu_debugfs_init() };
        // SAFETY: the backend's functions are in this module, which stays
        // loaded until `drop` has unregistered it.
        if let Err(e) = to_result(unsafe { bindings::vpmu_backend_register() }) {
            // SAFETY: created above; nothing else refers to it yet.
            unsafe { bindings::vpmu_debugfs_exit() };
            return Err(e);
        }
        // INVARIANT: both were set up above.
        Ok(Registration(()))
    }

    /// Registers the backend once more, which KVM must refuse with `EBUSY`
    /// (self-test).  A registration that succeeded is undone.
    pub(crate) fn register_again(&self) -> Result {
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
        // SAFETY: created in `new` (type invariant); no reader is left.
        unsafe { bindings::vpmu_debugfs_exit() };
    }
}

/// The context-switch partner of the self-test's benchmark
/// (`src/selftest/ctxsw.c`): a kthread on this task's CPU, to which this
/// task, pinned there meanwhile, hands the CPU back and forth.
///
/// # Invariants
///
/// `0` is a partner started by `vpmu_ctxsw_start()` and not yet stopped.
pub(crate) struct CtxswPartner(core::ptr::NonNull<bindings::task_struct>);

impl CtxswPartner {
    /// Pins this task to its CPU and starts the partner there.
    pub(crate) fn start() -> Option<Self> {
        // SAFETY: called from process context; undone by `drop`.
        let partner = unsafe { bindings::vpmu_ctxsw_start() };
        // INVARIANT: a non-NULL result is a started partner.
        core::ptr::NonNull::new(partner).map(CtxswPartner)
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
        unsafe { bindings::vpmu_ctxsw_stop(self.0.as_ptr()) }
    }
}
