// SPDX-License-Identifier: GPL-2.0

//! kvm_vpmu: a KVM vPMC reprogramming backend.
//!
//! KVM (with `patches/`) calls the backend instead of its own
//! `reprogram_counter()` after the guest reprograms a vPMC.  The model
//! decides what to do with the counter's host perf_event under the policy in
//! force; the executor does it.  Parameters: `enable`, `policy` and
//! `cache_size` (writable at run time, `bindings/shim.c`), `soft` and
//! `selftest` (load time, below).

use kernel::prelude::*;

pub mod model;

mod entry;
mod executor;
mod ffi;
mod kept;
mod selftest;
mod soft;
mod stats;

// The run-time parameters are the C shim's (bindings/shim.c says why).
module! {
    type: KvmVpmu,
    name: "kvm_vpmu",
    authors: ["kvm-vpmu developers"],
    description: "KVM vPMC reprogramming backend",
    license: "GPL",
    params: {
        soft: bool {
            default: false,
            description: "Testing without a host PMU: emulate one; load before kvm-amd/kvm-intel",
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
