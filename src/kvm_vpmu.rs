// SPDX-License-Identifier: GPL-2.0

//! kvm_vpmu: a KVM vPMC reprogramming backend.
//!
//! KVM (with `patches/`) calls the backend instead of its own
//! `reprogram_counter()` after the guest reprograms a vPMC.  The model
//! decides what to do with the counter's host perf_event under the policy in
//! force; the executor does it.  Parameters: `enable`, `policy` and
//! `cache_size` (writable at run time, `bindings/shim.c`), `soft` and
//! `selftest` (load time: below on 7.3, in the shim on 6.12).

use kernel::prelude::*;

pub mod model;

mod entry;
mod executor;
mod ffi;
mod kept;
mod selftest;
mod soft;
mod stats;

// No `author`: 6.12's module! takes `author`, 7.3's only `authors`;
// bindings/shim.c says MODULE_AUTHOR() for both.
#[cfg(not(VPMU_KVER_GE_6_18))]
module! {
    type: KvmVpmu,
    name: "kvm_vpmu",
    description: "KVM vPMC reprogramming backend",
    license: "GPL",
}

// The load-time parameters, where module! takes them (7.3; on 6.12 the C shim
// declares them, with the same names, types, descriptions and mode 0).  The
// run-time ones stay in the shim on both kernels (bindings/shim.c says why).
#[cfg(VPMU_KVER_GE_6_18)]
module! {
    type: KvmVpmu,
    name: "kvm_vpmu",
    description: "KVM vPMC reprogramming backend",
    license: "GPL",
    params: {
        soft: bool {
            default: false,
            description: "On hosts without a PMU, emulate one with task-clock events (load before kvm-amd/kvm-intel)",
        },
        selftest: bool {
            default: false,
            description: "Run the KTAP self-test at load; fail the load if it fails",
        },
    },
}

struct KvmVpmu {
    // Dropped first: KVM stops calling in before debugfs goes.
    _registration: ffi::Registration,
    _debugfs: ffi::DebugfsDir,
}

impl kernel::Module for KvmVpmu {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        soft::init();
        let debugfs = ffi::DebugfsDir::new();
        let registration = ffi::Registration::new().inspect_err(|e| {
            pr_err!(
                "cannot register: another vPMU backend is registered ({:?})\n",
                e
            )
        })?;
        if ffi::selftest_requested() {
            // On failure `registration` is dropped, which unregisters.
            selftest::run(&registration)?;
        }
        pr_info!("registered, policy {}\n", ffi::policy_name());
        Ok(KvmVpmu {
            _registration: registration,
            _debugfs: debugfs,
        })
    }
}

impl Drop for KvmVpmu {
    fn drop(&mut self) {
        // Dropping the registration unregisters the backend.  No vCPU holds
        // kept events here: each such vCPU pins this module.
        pr_info!("unregistering\n");
    }
}
