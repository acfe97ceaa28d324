// SPDX-License-Identifier: GPL-2.0

//! The vPMC model: what KVM x86 (Linux 6.12) owes a guest between a write to a
//! PMU MSR and the host perf_event that backs the counter, and the reprogram
//! policies that decide how that perf_event is kept or replaced.
//!
//! Nothing here touches the kernel: the module compiles these files into
//! `kvm_vpmu` and cargo compiles the very same files on the host for tests and
//! benchmarks.  The host perf_event is reached only through [`PmcHost`], which
//! the module implements over real perf and the host tests over a simulation.

pub mod arch;
pub mod counter;
pub mod policy;
pub mod reprogram;

pub use arch::{PmcKind, PmuShape, Vendor};
pub use policy::{plan, Action, EventAttr, KeptKey, PmcConfig, Policy, RejectReason};
pub use reprogram::{reprogram, EventInfo, Outcome, PmcHost, PmcState, Report};

/// A negative errno, as returned by the perf kernel API.
pub type Errno = i32;
