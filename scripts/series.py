#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""The module patch of each series: kvm_vpmu's sources, generated from here.

One patch of patches/<version>/, the module patch, adds arch/x86/kvm/vpmu/
and the lines of KVM's Kconfig, Makefile and asm/kvm_types.h that build
it.  Its commit
message and those hook hunks are written by hand in the patch itself; the
files under arch/x86/kvm/vpmu/ are this repository's (module_files()), as
staged for that kernel: the sources are written for 7.3, and
compat/<version>.patch, where it exists, is what another kernel needs
differently.  They are regenerated here and never edited in the patch.

  series.py generate VER   rewrite the module patch, and the cover letter's
                           shortlog and diffstat, of patches/VER/
  series.py check VER      fail if the committed patches differ from what
                           'generate' would write (the sources drifted)
  series.py module VER     the path of the module patch of patches/VER/
  series.py hooks PATCH    print PATCH without its arch/x86/kvm/vpmu/ files
                           (what kernel.sh applies before it copies the
                           working sources in)
  series.py stage VER DIR  the module's files for kernel VER in DIR (what
                           the module patch adds, as a tree)
"""

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TREE_DIR = "arch/x86/kvm/vpmu/"

# The host build's crate root and KVM emulator (tests/ and benches only) are
# not part of the module.
HOST_ONLY = {"src/model/lib.rs", "src/model/emulator.rs"}


def module_files():
    """The sources Kbuild builds (Kbuild, Kconfig, bindings/ and src/), in
    git's path order.  Read from the file system, so that a copy without
    .git works too; build output has other suffixes or names."""
    out = [f for f in ("Kbuild", "Kconfig") if os.path.isfile(os.path.join(TOP, f))]
    for top in ("bindings", "src"):
        for root, _, names in os.walk(os.path.join(TOP, top)):
            for n in names:
                rel = os.path.relpath(os.path.join(root, n), TOP)
                if (n.endswith((".rs", ".c", ".h")) and not n.endswith(".mod.c")
                        and n != "bindings_generated.rs" and rel not in HOST_ONLY):
                    out.append(rel)
    if "Kbuild" not in out:
        sys.exit(f"series.py: no module sources in {TOP}")
    return sorted(out, key=lambda f: (TREE_DIR + f).encode())


def stage(ver, dest):
    """Copies the module's files for kernel `ver` into `dest` (made empty)."""
    if os.path.exists(dest):
        shutil.rmtree(dest)
    for rel in module_files():
        os.makedirs(os.path.join(dest, os.path.dirname(rel)), exist_ok=True)
        shutil.copy2(os.path.join(TOP, rel), os.path.join(dest, rel))
    compat = os.path.join(TOP, "compat", ver + ".patch")
    if os.path.exists(compat):
        with open(compat) as f:
            r = subprocess.run(["patch", "-d", dest, "-p1", "-s", "--fuzz=0",
                                "--no-backup-if-mismatch", "-r", "-"],
                               stdin=f, capture_output=True, text=True)
        if r.returncode:
            sys.exit(f"series.py: compat/{ver}.patch does not apply to the sources "
                     f"without fuzz; update it:\n{r.stdout}{r.stderr}")


def file_diff(root, rel):
    """A git 'new file' diff of one source, as git format-patch writes it."""
    with open(os.path.join(root, rel), "rb") as f:
        data = f.read()
    blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    path = TREE_DIR + rel
    mode = "100755" if os.access(os.path.join(root, rel), os.X_OK) else "100644"
    text = data.decode()
    lines = text.splitlines()
    out = [f"diff --git a/{path} b/{path}\n", f"new file mode {mode}\n",
           f"index 0000000..{blob[:7]}\n"]
    if not lines:
        return "".join(out)
    out += ["--- /dev/null\n", f"+++ b/{path}\n",
            f"@@ -0,0 +1{'' if len(lines) == 1 else ',%d' % len(lines)} @@\n"]
    out += ["+" + line + "\n" for line in lines]
    if not text.endswith("\n"):
        out.append("\\ No newline at end of file\n")
    return "".join(out)


def split_patch(text):
    """(message up to '---', diffs by path, trailer from the '-- ' line)."""
    head, sep, rest = text.partition("\n---\n")
    if not sep:
        sys.exit("series.py: no '---' line in the module patch")
    body, sep, trailer = rest.rpartition("\n-- \n")
    if not sep:
        sys.exit("series.py: no '-- ' signature line in the module patch")
    diffs = {}
    for chunk in re.split(r"(?m)^(?=diff --git )", body):
        m = re.match(r"diff --git a/(\S+) ", chunk)
        if m:
            diffs[m.group(1)] = chunk if chunk.endswith("\n") else chunk + "\n"
    return head + "\n", diffs, "-- \n" + trailer


def numstat(diff):
    """(added, deleted) lines of one file's diff."""
    add = dele = 0
    in_hunk = False
    for line in diff.splitlines():
        if line.startswith("@@"):
            in_hunk = True
        elif in_hunk and line.startswith("+"):
            add += 1
        elif in_hunk and line.startswith("-"):
            dele += 1
    return add, dele


def diffstat(stats, created):
    """git's --stat --summary layout for {path: (added, deleted)}."""
    width = max(len(p) for p in stats)
    most = max(a + d for a, d in stats.values())
    digits = len(str(most))
    # git's graph: what fits in 80 columns, scaled when a file has more.
    room = max(80 - width - digits - 6, 6)
    out = []
    for p in sorted(stats, key=str.encode):
        a, d = stats[p]
        if most > room:
            ga = -(-a * room // most) if a else 0
            gd = -(-d * room // most) if d else 0
        else:
            ga, gd = a, d
        out.append(f" {p:<{width}} | {a + d:>{digits}} {'+' * ga}{'-' * gd}".rstrip() + "\n")
    add = sum(a for a, _ in stats.values())
    dele = sum(d for _, d in stats.values())
    summary = f" {len(stats)} file{'s' if len(stats) != 1 else ''} changed"
    if add:
        summary += f", {add} insertion{'s' if add != 1 else ''}(+)"
    if dele:
        summary += f", {dele} deletion{'s' if dele != 1 else ''}(-)"
    out.append(summary + "\n")
    out += [f" create mode 100644 {p}\n" for p in sorted(created, key=str.encode)]
    return "".join(out)


def series_paths(ver):
    d = os.path.join(TOP, "patches", ver)
    if not os.path.isdir(d):
        sys.exit(f"series.py: no series patches/{ver}/")
    names = sorted(n for n in os.listdir(d) if n.endswith(".patch"))
    return d, names


def is_module_patch(path):
    """Whether `path` is the patch that adds the module (its Kconfig line)."""
    return "\n+source \"arch/x86/kvm/vpmu/Kconfig\"\n" in open(path).read()


def module_patch(ver):
    d, names = series_paths(ver)
    found = [os.path.join(d, n) for n in names if is_module_patch(os.path.join(d, n))]
    if len(found) != 1:
        sys.exit(f"series.py: patches/{ver}/ has {len(found)} patches that add {TREE_DIR}")
    return found[0]


def generated(ver):
    """{path: text} of the module patch and the cover letter, regenerated."""
    d, names = series_paths(ver)
    module = module_patch(ver)
    head, diffs, trailer = split_patch(open(module).read())
    hooks = {p: t for p, t in diffs.items() if not p.startswith(TREE_DIR)}
    with tempfile.TemporaryDirectory() as tmp:
        stage(ver, tmp)
        files = {TREE_DIR + f: file_diff(tmp, f) for f in module_files()}
    diffs = {**hooks, **files}
    stats = {p: numstat(t) for p, t in diffs.items()}
    # The message is kept; the diffstat after it is the files'.
    patch = (head + "---\n" + diffstat(stats, files) + "\n"
             + "".join(diffs[p] for p in sorted(diffs, key=str.encode)) + trailer)
    out = {module: patch}

    cover = os.path.join(d, names[0])
    if names[0].startswith("0000-"):
        total, created = {}, set()
        for n in names[1:]:
            if os.path.join(d, n) == module:
                continue
            for p, t in split_patch(open(os.path.join(d, n)).read())[1].items():
                a, dl = numstat(t)
                pa, pd = total.get(p, (0, 0))
                total[p] = (pa + a, pd + dl)
                if "\nnew file mode " in t.split("@@", 1)[0]:
                    created.add(p)
        for p, (a, dl) in stats.items():
            pa, pd = total.get(p, (0, 0))
            total[p] = (pa + a, pd + dl)
        created |= set(files)
        text = open(cover).read()
        # The shortlog: each patch's subject, in order.
        subjects = []
        for n in names[1:]:
            m = re.search(r"(?m)^Subject: \[PATCH [^]]*\] (.*(?:\n .*)*)",
                          open(os.path.join(d, n)).read())
            subjects.append("  " + " ".join(m.group(1).split()) + "\n")
        m = re.search(r"(?m)^(\S.* \()\d+(\):\n)(?:  .*\n)+", text)
        if not m:
            sys.exit(f"series.py: no shortlog in {cover}")
        text = (text[:m.start()] + m.group(1) + str(len(subjects)) + m.group(2)
                + "".join(subjects) + text[m.end():])
        # The cover letter's diffstat, with its create lines: from the first
        # ' path | n' line to the signature.
        m = re.search(r"(?ms)^ \S+ +\| +\d+.*?(?=^-- \n)", text)
        if not m:
            sys.exit(f"series.py: no diffstat in {cover}")
        stat = diffstat(total, created) + "\n"
        out[cover] = text[:m.start()] + stat + text[m.end():]
    return out


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "module":
        print(module_patch(sys.argv[2]))
    elif len(sys.argv) == 4 and sys.argv[1] == "stage":
        stage(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 3 and sys.argv[1] == "hooks":
        head, diffs, trailer = split_patch(open(sys.argv[2]).read())
        sys.stdout.write(head + "---\n" + "".join(
            t for p, t in sorted(diffs.items()) if not p.startswith(TREE_DIR)) + trailer)
    elif len(sys.argv) == 3 and sys.argv[1] in ("generate", "check"):
        stale = []
        for path, text in generated(sys.argv[2]).items():
            if open(path).read() != text:
                stale.append(os.path.relpath(path, TOP))
                if sys.argv[1] == "generate":
                    with open(path, "w") as f:
                        f.write(text)
        if sys.argv[1] == "check" and stale:
            sys.exit("series.py: out of date with the sources, run "
                     f"'scripts/series.py generate {sys.argv[2]}': {' '.join(stale)}")
        for path in stale:
            print(f"series.py: wrote {path}")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
