// SPDX-License-Identifier: GPL-2.0

//! kvm_vpmu: a KVM vPMC reprogramming backend.
//!
//! KVM (with `patches/`) calls [`kvm_vpmu_reprogram`] instead of its own
//! `reprogram_counter()` after the guest reprograms a vPMC.  The model
//! decides what to do with the counter's host perf_event under the policy in
//! force; the executor does it.  Parameters: `enable` and `policy` (both
//! writable at run time), `soft` and `selftest` (load time).

use core::ffi::{c_char, c_int, CStr};
use core::ptr::NonNull;

use kernel::prelude::*;

pub mod model;

mod bindings;
mod executor;
mod kept;
mod perf;
mod selftest;
mod stats;

use model::Policy;

module! {
    type: KvmVpmu,
    name: "kvm_vpmu",
    author: "kvm-vpmu developers",
    description: "KVM vPMC reprogramming backend",
    license: "GPL",
}

/// The `policy` parameter's names, in the order of [`Policy::ALL`].
const POLICY_NAMES: [&CStr; 3] = [c"legacy", c"reuse", c"cache"];

// The shim's default for `policy` is KVM 6.12's own behaviour.
const _: () = assert!(matches!(
    Policy::ALL[bindings::VPMU_POLICY_DEFAULT as usize],
    Policy::Reuse
));

struct KvmVpmu;

impl kernel::Module for KvmVpmu {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        if executor::init_backing() == perf::Backing::TaskClock {
            pr_info!("soft mode: no host PMU, guest counters use task-clock events\n");
        }
        // SAFETY: called once, before the backend can be reached.
        unsafe { bindings::vpmu_debugfs_init() };
        // SAFETY: the backend's functions are in this module, which stays
        // loaded until `drop` has unregistered it.
        let ret = unsafe { bindings::vpmu_backend_register() };
        if ret < 0 {
            pr_err!(
                "cannot register: another vPMU backend is registered ({})\n",
                ret
            );
            // SAFETY: undoes `vpmu_debugfs_init()` above.
            unsafe { bindings::vpmu_debugfs_exit() };
            return Err(Error::from_errno(ret));
        }
        let module = KvmVpmu;
        // SAFETY: reads a load-time parameter.
        if unsafe { bindings::vpmu_param_selftest() } {
            // On failure `module` is dropped, which unregisters.
            selftest::run()?;
        }
        pr_info!("registered, policy {}\n", executor::current_policy().name());
        Ok(module)
    }
}

impl Drop for KvmVpmu {
    fn drop(&mut self) {
        // SAFETY: registered in `init`; returns once no vCPU is inside the
        // backend, so nothing runs module code afterwards.  Live events use
        // KVM's overflow handler and stay with their vCPUs.
        unsafe { bindings::vpmu_backend_unregister() };
        // No vCPU is inside the backend any more: release what it kept.
        kept::forget_all();
        // SAFETY: created in `init`; no reader is left.
        unsafe { bindings::vpmu_debugfs_exit() };
        pr_info!("unregistered\n");
    }
}

/// KVM's reprogram hook (through the shim, which checks `enable`).
///
/// # Safety
///
/// `pmc` must be a vPMC of a vCPU whose `vcpu->mutex` the current task holds.
#[no_mangle]
unsafe extern "C" fn kvm_vpmu_reprogram(pmc: *mut bindings::kvm_pmc) -> c_int {
    let Some(pmc) = NonNull::new(pmc) else {
        return EINVAL.to_errno();
    };
    // SAFETY: KVM calls the backend from kvm_pmu_handle_event() in vCPU
    // context with `vcpu->mutex` held, as the caller guarantees.
    unsafe { executor::reprogram(pmc, executor::current_policy(), executor::backing()) }
}

/// Parses a `policy` parameter value into its index in [`Policy::ALL`].
///
/// # Safety
///
/// `val` must point to `len` readable bytes.
#[no_mangle]
unsafe extern "C" fn kvm_vpmu_policy_parse(val: *const c_char, len: usize) -> c_int {
    // SAFETY: the caller passes `len` readable bytes.
    let s = unsafe { core::slice::from_raw_parts(val.cast::<u8>(), len) };
    Policy::parse(s)
        .and_then(|p| Policy::ALL.iter().position(|&q| q == p))
        .map_or(EINVAL.to_errno(), |i| i as c_int)
}

#[no_mangle]
extern "C" fn kvm_vpmu_policy_name(policy: c_int) -> *const c_char {
    POLICY_NAMES
        .get(policy as usize)
        .map_or(c"?".as_ptr(), |n| n.as_ptr())
}
