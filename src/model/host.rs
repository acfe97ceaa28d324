// SPDX-License-Identifier: GPL-2.0

//! Host build of the vPMC model: the same files the module compiles, as a
//! `no_std` library for cargo tests and benchmarks.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[path = "mod.rs"]
mod model;

pub use model::*;

/// The vPMU's MSR interface around the model, for tests and benchmarks only:
/// in the kernel KVM itself is the vPMU.
#[path = "vpmu.rs"]
pub mod vpmu;

pub use vpmu::{MsrFault, Vpmu};
