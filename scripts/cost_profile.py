#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Where the cost suite's instructions go (scripts/cost-profile.sh).

    cost_profile.py KOUT LABEL:PROFILE:LOG:KVM_KO LABEL:PROFILE:LOG:KVM_KO

Each PROFILE is tests/bench/tb_insns.c's output for one boot of the cost
suite that ran one part (a policy, or KVM's own path), LOG that boot's
console.  Blocks are named after the function they start in: the
kernel's from KOUT/System.map (the cost suite boots without KASLR); a
module's from its .ko, placed where its functions' entries best match the
blocks that ran (the test kernels have no kallsyms to tell).  Prints, per
function, the instructions its blocks executed per reprogram in each boot
(reprograms: the sum of the cost lines' counts) and the difference,
largest first.
"""
import bisect
import collections
import re
import subprocess
import sys

MODULES = ("arch/x86/kvm/kvm-amd.ko", "arch/x86/kvm/vpmu/kvm_vpmu.ko")
MODULE_AREA = 0xffffffffa0000000
PAGE = 4096


def ko_functions(path, name):
    """(offset in the module's text, name) of each function of a .ko, laid
    out as the module loader lays out its executable sections."""
    sections = []
    out = subprocess.run(["readelf", "-SW", path], capture_output=True,
                         text=True, check=True).stdout
    for line in out.splitlines():
        m = re.match(r"\s*\[\s*\d+\]\s+(\S+)\s+\S+\s+[0-9a-f]+\s+[0-9a-f]+\s+"
                     r"([0-9a-f]+)\s+[0-9a-f]+\s+(\S*)\s+\d+\s+\d+\s+(\d+)", line)
        if m and "A" in m[3] and "X" in m[3] and not m[1].startswith(".init"):
            sections.append((m[1], int(m[2], 16), int(m[4]) or 1))
    offset, size = {}, 0
    for sec, sec_size, align in sections:
        offset[sec] = (size + align - 1) // align * align
        size = offset[sec] + sec_size
    funcs = []
    out = subprocess.run(["objdump", "-t", path], capture_output=True,
                         text=True, check=True).stdout
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 6 and f[-4] == "F" and f[-3] in offset:
            funcs.append((offset[f[-3]] + int(f[0], 16), f"{name}:{f[-1]}"))
    return funcs


def module_base(funcs, starts):
    """The page-aligned base at which most function entries start a block."""
    votes = collections.Counter()
    entries = {o for o, _ in funcs}
    for v in starts:
        for o in entries:
            if (v - o) % PAGE == 0:
                votes[v - o] += 1
    return votes.most_common(1)[0][0]


def demangle(name):
    """The path of a Rust symbol (v0 mangling), without generic arguments:
    enough to tell the functions apart."""
    prefix, _, sym = name.rpartition(":")
    m = re.match(r"_R[A-Za-z]*?C(?:s[0-9A-Za-z]*_)?(\d.*)$", sym)
    if not m:
        return name
    rest, parts = m[1], []
    while rest[:1].isdigit():
        digits = re.match(r"\d+", rest)[0]
        start = len(digits) + (rest[len(digits)] == "_")
        parts.append(rest[start:start + int(digits)])
        rest = rest[start + int(digits):]
    return (prefix + ":" if prefix else "") + "::".join(parts)


def profile(kout, prof, log, kvm_ko):
    blocks = []
    with open(prof) as f:
        for line in f:
            vaddr, insns, runs = line.split()
            blocks.append((int(vaddr, 16), int(insns), int(runs)))
    syms = []
    with open(f"{kout}/System.map") as f:
        for line in f:
            addr, kind, name = line.split()[:3]
            if kind in "tTwW":
                syms.append((int(addr, 16), name))
    starts = {v for v, _, _ in blocks if v >= MODULE_AREA}
    # The reference is loaded as kvm, in kvm.ko's place: named so.
    for ko, name in [(kvm_ko, "kvm")] + [(m, m.rsplit("/", 1)[-1][:-3].replace("-", "_"))
                                          for m in MODULES]:
        funcs = ko_functions(f"{kout}/{ko}", name)
        base = module_base(funcs, starts)
        syms += [(base + o, n) for o, n in funcs]
    syms.sort()
    addrs = [a for a, _ in syms]
    insns = collections.Counter()
    for vaddr, n, runs in blocks:
        i = bisect.bisect_right(addrs, vaddr) - 1
        insns[demangle(syms[i][1]) if i >= 0 else "?"] += n * runs
    reprograms = 0
    with open(log, errors="replace") as f:
        for line in f:
            m = re.search(r"^# cost/.*; reprograms (\d+),", line)
            if m:
                reprograms += int(m[1])
    return insns, reprograms


def main():
    kout = sys.argv[1]
    runs = []
    for arg in sys.argv[2:4]:
        label, prof, log, kvm_ko = arg.split(":")
        insns, reprograms = profile(kout, prof, log, kvm_ko)
        if not reprograms:
            sys.exit(f"cost_profile.py: no cost lines in {log}")
        runs.append((label, insns, reprograms))
    (la, a, ra), (lb, b, rb) = runs
    print(f"instructions per reprogram: {la} ({ra} reprograms) and {lb} ({rb}), "
          f"by the function their blocks start in")
    print(f"{la:>10} {lb:>10} {'difference':>10}  function")
    total_a = sum(a.values()) / ra
    total_b = sum(b.values()) / rb
    rows = sorted(set(a) | set(b), key=lambda k: -abs(a[k] / ra - b[k] / rb))
    shown = 0.0
    for k in rows:
        d = a[k] / ra - b[k] / rb
        if abs(d) < 1:
            break
        shown += d
        print(f"{a[k] / ra:10.1f} {b[k] / rb:10.1f} {d:+10.1f}  {k}")
    print(f"{total_a:10.1f} {total_b:10.1f} {total_a - total_b:+10.1f}  "
          f"the whole boot ({shown:+.1f} in the lines above)")


if __name__ == "__main__":
    main()
