#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
#
# The module's layers only look down: every Rust file in src/ names only
# files of its own layer or of layers below it, and no files name each
# other in a loop.  A module's mod.rs is its face (`mod`, `pub use`): what it
# declares and re-exports is not an import.
#
#   scripts/layers.py [--graph]

import os
import re
import sys

TOP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SRC = os.path.join(TOP, "src")

# Bottom first.  A file not matched here fails: a new file needs a layer.
LAYERS = [
    ("model", ["model/"]),
    ("seam", ["ffi/"]),
    ("kernel glue", ["kept.rs", "stats.rs", "soft.rs"]),
    ("executor", ["executor.rs"]),
    ("entry points and self-test", ["entry.rs", "selftest/"]),
    ("crate root", ["kvm_vpmu.rs"]),
]


def layer_of(path):
    for i, (_, prefixes) in enumerate(LAYERS):
        if any(path == p or (p.endswith("/") and path.startswith(p)) for p in prefixes):
            return i
    return None


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def module_file(parts):
    """The file of the module path `parts` under src/, or None."""
    for n in range(len(parts), 0, -1):
        base = "/".join(parts[:n])
        for cand in (base + ".rs", base + "/mod.rs"):
            if os.path.isfile(os.path.join(SRC, cand)):
                return cand
    return None


def module_dir(path):
    """The module path of the module that file `path` is."""
    parts = path[:-3].split("/")
    if parts[-1] == "mod":
        parts = parts[:-1]
    if parts == ["kvm_vpmu"]:
        return []
    return parts


def targets(path, code):
    here = module_dir(path)
    found = set()
    # Paths inside `use` braces are relative to the path before the brace.
    for m in re.finditer(r"\buse\s+([^;]+);", code):
        for full in expand(m.group(1)):
            found.add(full)
    for m in re.finditer(r"\b((?:crate|super)(?:::\w+)+)", code):
        found.add(m.group(1))
    files = set()
    for p in found:
        parts = p.split("::")
        base = list(here)
        if parts[0] == "crate":
            base, parts = [], parts[1:]
        while parts and parts[0] == "super":
            base, parts = base[:-1], parts[1:]
        f = module_file(base + parts) if base + parts else None
        if f and f != path:
            files.add(f)
    return files


def expand(tree):
    tree = re.sub(r"\s+", "", tree)
    m = re.match(r"^(.*?)::\{(.*)\}$", tree)
    if not m:
        return [re.sub(r"\bas\w+$", "", tree.split(" as ")[0])]
    prefix, inner = m.groups()
    items, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    if cur:
        items.append(cur)
    out = []
    for item in items:
        if item == "self":
            out.append(prefix)
        else:
            out.extend(expand(prefix + "::" + item))
    return out


def main():
    files = []
    for root, _, names in os.walk(SRC):
        for n in names:
            if n.endswith(".rs"):
                files.append(os.path.relpath(os.path.join(root, n), SRC))
    bad = False
    edges = {}
    for f in sorted(files):
        if layer_of(f) is None:
            print(f"src/{f}: in no layer (scripts/layers.py)")
            bad = True
            continue
        code = strip_comments(open(os.path.join(SRC, f)).read())
        if f.endswith("mod.rs") or f == "kvm_vpmu.rs":
            # A face: its `mod` and `pub use` lines are not imports.
            code = re.sub(r"\bpub(\([^)]*\))?\s+use\s+[^;]+;", "", code)
        edges[f] = targets(f, code)
    for f, ts in sorted(edges.items()):
        for t in sorted(ts):
            if layer_of(t) is not None and layer_of(t) > layer_of(f):
                print(f"src/{f} ({LAYERS[layer_of(f)][0]}) imports src/{t} "
                      f"({LAYERS[layer_of(t)][0]}), a layer above it")
                bad = True
    # Loops: depth-first search over the graph.
    state = {}

    def visit(f, stack):
        state[f] = 1
        for t in sorted(edges.get(f, ())):
            if state.get(t) == 1:
                loop = stack[stack.index(t):] + [t]
                print("files import each other: " + " -> ".join("src/" + x for x in loop))
                return True
            if state.get(t) is None and visit(t, stack + [t]):
                return True
        state[f] = 2
        return False

    for f in sorted(edges):
        if state.get(f) is None and visit(f, [f]):
            bad = True
            break
    if "--graph" in sys.argv:
        for f, ts in sorted(edges.items()):
            print(f"src/{f} -> " + ", ".join("src/" + t for t in sorted(ts)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
