// SPDX-License-Identifier: GPL-2.0

//! The statistics directory, `/sys/kernel/debug/kvm_vpmu/`, made with the
//! kernel crate's debugfs (7.3; 6.12's kernel crate has none, and there the
//! C shim makes the same files: `vpmu_debugfs_init()` in `bindings/shim.c`).
//!
//! Names and contents are those of the C version, byte for byte, because
//! tests parse them: a statistic reads as its count and a newline, and
//! clears when `0` is written (anything else that parses is refused with
//! `EINVAL`); the gauges of the kept-event sets are read-only; writing a
//! number to `reset` clears every statistic.  The file modes are the
//! kernel crate's: 0600, 0400 and 0200 where the C version has 0644, 0444
//! and 0200 (debugfs is root's alone either way).

use kernel::debugfs::Scope;
use kernel::fmt;
use kernel::prelude::*;
use kernel::uaccess::UserSliceReader;

use crate::ffi;
use crate::kept;
use crate::stats::{self, Stat};

/// A read-only file (the kept-event sets, the mediated vPMU): how to read
/// its value.
struct Gauge(fn() -> u64);

static GAUGES: [(&CStr, Gauge); 4] = [
    (c"kept_events", Gauge(kept::kept_now)),
    (c"kept_vcpus", Gauge(kept::sets_now)),
    (c"kept_max", Gauge(kept::kept_max_seen)),
    (c"mediated_pmu", Gauge(mediated_pmu)),
];

/// 1 while KVM runs its mediated vPMU: then no vCPU with a PMU reaches this
/// backend, and the statistics stand still.
fn mediated_pmu() -> u64 {
    u64::from(ffi::kvm_mediated_pmu())
}

/// `/sys/kernel/debug/kvm_vpmu/` and its files, for as long as this value
/// lives.
pub(crate) struct StatsDir {
    _scope: Pin<KBox<Scope<()>>>,
}

impl StatsDir {
    /// Creates the directory, its files and `fail_create/` in it.
    pub(crate) fn new() -> Result<Self> {
        let scope = KBox::pin_init(
            Scope::dir((), c"kvm_vpmu", |(), dir| {
                for stat in Stat::ALL {
                    dir.read_write_callback_file(stat.name(), stat, &read_stat, &write_stat);
                }
                for (name, gauge) in &GAUGES {
                    dir.read_callback_file(name, gauge, &read_gauge);
                }
                dir.write_only_callback_file(c"reset", &(), &write_reset);
            }),
            GFP_KERNEL,
        )?;
        // SAFETY: the directory exists, and goes, with all it holds, when
        // `_scope` is dropped, with this value, which the module owns.
        unsafe { ffi::debugfs_fail_create() };
        Ok(StatsDir { _scope: scope })
    }
}

fn read_stat(stat: &Stat, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    writeln!(f, "{}", stat.get())
}

fn write_stat(stat: &Stat, reader: &mut UserSliceReader) -> Result {
    if read_u64(reader)? != 0 {
        return Err(EINVAL);
    }
    stat.clear();
    Ok(())
}

fn read_gauge(gauge: &Gauge, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    writeln!(f, "{}", (gauge.0)())
}

fn write_reset(_: &(), reader: &mut UserSliceReader) -> Result {
    read_u64(reader)?;
    stats::clear_all();
    Ok(())
}

/// Parses what is written to a file as the C version's files did
/// (`simple_attr_write()`): at most the first 23 bytes, through
/// `kstrtoull()` in base 0.  Not `kernel::str::parse_int`, which also takes
/// `0o`, `0b` and `-0`, and answers an overflow with `EINVAL`, not `ERANGE`.
fn read_u64(reader: &mut UserSliceReader) -> Result<u64> {
    let mut buf = [0u8; 24];
    let n = reader.len().min(buf.len() - 1);
    reader.read_slice(&mut buf[..n])?;
    // The last byte stays NUL: parsing stops at the first NUL, as in C.
    let s = CStr::from_bytes_until_nul(&buf).map_err(|_| EINVAL)?;
    ffi::parse_u64(s)
}
