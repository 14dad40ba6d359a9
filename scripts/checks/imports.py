#!/usr/bin/env python3
"""Checks the Rust sources' shape: no two files import each other (directly or in a loop), and
no file is over the line limit.

An edge A -> B means file A names something defined in file B: a `use` (re-exports included),
or a path in code that starts with `crate::`, `super::`, `self::` or a child module's name.
Paths are resolved module by module to the file that defines the item, following `pub use`
re-exports, so `use crate::engine::ConfigSwitch` points at `engine/active.rs`, where the type
is, not at the `engine/mod.rs` that re-exports it. `mod x;` declarations are not edges.

Usage: scripts/checks/imports.py [ROOT]   (exit 1 and a list of problems on failure)
"""

import re
import sys
from pathlib import Path

MAX_LINES = 500
FOLLOW_REEXPORTS = False
IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip(text):
    """The code with comments, strings and char literals blanked (line structure kept)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and (i == 0 or not re.match(r"\w", text[i - 1])):
            m = re.match(r'r(#*)"', text[i:])
            end = '"' + m.group(1)
            j = text.find(end, i + len(m.group(0)))
            j = n if j < 0 else j + len(end)
            out.append('""' + re.sub(r"[^\n]", " ", text[i + 2:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('"' + re.sub(r"[^\n]", " ", text[i + 1:j]) + '"')
            i = j + 1
        elif c == "'":
            m = re.match(r"'(\\.[^']*|[^\\'])'", text[i:])
            if m:
                out.append("' '" + " " * (len(m.group(0)) - 3))
                i += len(m.group(0))
            else:  # a lifetime
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


class Module:
    def __init__(self, path, file, parent):
        self.path = path  # tuple of names from the crate root
        self.file = file  # the file that holds its items
        self.parent = parent
        self.children = {}  # name -> Module
        self.reexports = {}  # name -> (module, path tuple) for `pub use`


def module_file(dir_, name, path_attr):
    if path_attr:
        return dir_ / path_attr
    for cand in (dir_ / f"{name}.rs", dir_ / name / "mod.rs"):
        if cand.exists():
            return cand
    return None


def expand(tree):
    """`a::{b, c::{d as e}}` -> [((a, b), b), ((a, c, d), e)]: every path with its local name."""
    toks = re.findall(IDENT + r"|::|[{},*]", tree)
    pos = 0

    def peek():
        return toks[pos] if pos < len(toks) else None

    def take():
        nonlocal pos
        pos += 1
        return toks[pos - 1]

    def tree_at(prefix):
        out = []
        segs = list(prefix)
        while True:
            t = peek()
            if t is None:
                if len(segs) > len(prefix):
                    out.append((tuple(segs), segs[-1]))
                return out
            if t == "{":
                take()
                while peek() not in (None, "}"):
                    out.extend(tree_at(tuple(segs)))
                    if peek() == ",":
                        take()
                take()
                return out
            if t == "::":
                take()
                continue
            if t in (",", "}"):
                if len(segs) > len(prefix):
                    out.append((tuple(segs), segs[-1]))
                return out
            take()
            if t == "as":
                alias = take()
                out.append((tuple(segs), alias))
                return out
            segs.append(t)

    return tree_at(())


class Crate:
    def __init__(self, root_file):
        self.modules = {}
        self.files = {}  # file -> Module
        self.root = self.load(root_file, (), None)

    def load(self, file, path, parent):
        mod = Module(path, file, parent)
        self.modules[path] = mod
        self.files[file] = mod
        code = strip(file.read_text())
        # Child modules declared in this file (not inline ones: their items stay in this file).
        for m in re.finditer(r'((?:#\[[^\]]*\]\s*)*)(?:pub(?:\([^)]*\))?\s+)?mod\s+(' + IDENT + r')\s*;', code):
            attrs, name = m.group(1), m.group(2)
            pa = re.search(r'path\s*=\s*"([^"]*)"', strip_keep_strings(file.read_text(), m.start(), m.end()))
            dir_ = file.parent if file.name in ("mod.rs", "lib.rs", "main.rs") or parent is None else file.parent / file.stem
            if pa:
                dir_ = file.parent
            child_file = module_file(dir_, name, pa.group(1) if pa else None)
            if child_file is None or child_file in self.files:
                continue
            mod.children[name] = self.load(child_file, path + (name,), mod)
        return mod


def strip_keep_strings(text, start, end):
    # The attribute text before a `mod` declaration, strings intact (for #[path = "..."]).
    line_start = text.rfind("\n", 0, max(0, start - 200))
    return text[max(0, line_start):end]


def resolve(crate, mod, segs, seen=None):
    """The module (and so file) that defines what `segs`, seen from `mod`, names."""
    if not segs:
        return mod
    seen = seen or set()
    head = segs[0]
    if head == "crate":
        cur, rest = crate.root, segs[1:]
    elif head == "self":
        cur, rest = mod, segs[1:]
    elif head == "super":
        cur, rest = mod, segs
        while rest and rest[0] == "super":
            cur = cur.parent or cur
            rest = rest[1:]
        if rest and rest[0] == "self":
            rest = rest[1:]
    elif head in mod.children:
        cur, rest = mod, segs
    else:
        return None  # another crate, std, or a local item
    while rest and rest[0] in cur.children:
        cur = cur.children[rest[0]]
        rest = rest[1:]
    if FOLLOW_REEXPORTS and rest and rest[0] in cur.reexports and (cur.file, rest[0]) not in seen:
        seen.add((cur.file, rest[0]))
        target_mod, target_path = cur.reexports[rest[0]]
        found = resolve(crate, target_mod, target_path, seen)
        return found or cur
    return cur


def use_paths(code):
    """(is_pub, [(path tuple, local name)], start, end) per `use` declaration."""
    out = []
    for m in re.finditer(r"\b(pub(?:\([^)]*\))?\s+)?use\s+([^;]+);", code):
        out.append((bool(m.group(1)), expand(m.group(2)), m.start(), m.end()))
    return out


def crate_edges(crate):
    edges = {}
    # Pass 1: re-exports, so that pass 2 can follow them.
    for mod in list(crate.modules.values()):
        code = strip(mod.file.read_text())
        for is_pub, named, _, _ in use_paths(code):
            if not is_pub:
                continue
            for segs, name in named:
                if not segs or segs[-1] in ("*", "self"):
                    continue
                mod.reexports[name] = (mod, segs)
    for mod in crate.modules.values():
        code = strip(mod.file.read_text())
        targets = set()
        spans = []
        for _, named, s, e in use_paths(code):
            spans.append((s, e))
            for segs, _ in named:
                segs = tuple(x for x in segs if x != "*")
                if segs and segs[-1] == "self":
                    segs = segs[:-1]
                t = resolve(crate, inline_scope(crate, mod, code, s), segs)
                if t is not None:
                    targets.add(t.file)
        # Paths in code: crate::, super::, self:: and child modules.
        starts = ["crate", "super", "self"] + list(mod.children)
        pat = re.compile(r"(?<![\w:])((?:" + "|".join(map(re.escape, starts)) + r")(?:::" + IDENT + r")+)")
        for m in pat.finditer(code):
            if any(s <= m.start() < e for s, e in spans):
                continue
            segs = tuple(m.group(1).split("::"))
            t = resolve(crate, inline_scope(crate, mod, code, m.start()), segs)
            if t is not None:
                targets.add(t.file)
        targets.discard(mod.file)
        # A module and its own submodules are one unit: a child names its parent's items and the
        # parent declares and re-exports the child's. Only files that are not ancestors of each
        # other count.
        mine = set(ancestors(mod))
        edges[mod.file] = {t for t in targets if t not in mine and mod.file not in set(ancestors(crate.files[t]))}
        # Re-exports (`pub use child::X`) only name things; they do not make the file depend on
        # them. (Descendants are excluded above anyway.)
    return edges


def ancestors(mod):
    out = []
    m = mod.parent
    while m is not None:
        out.append(m.file)
        m = m.parent
    return out


class Inline:
    """An inline `mod x { ... }` seen as a module whose items live in the enclosing file."""

    def __init__(self, parent, name):
        self.parent = parent
        self.file = parent.file
        self.children = {}
        self.reexports = {}
        self.path = parent.path + (name,)


def inline_scope(crate, mod, code, offset):
    """The module a position of `code` is in: `mod` or an inline module nested in it."""
    stack = []
    depth = 0
    pending = None
    for m in re.finditer(r"\bmod\s+(" + IDENT + r")\s*\{|[{}]", code[:offset]):
        tok = m.group(0)
        if tok.startswith("mod"):
            stack.append((m.group(1), depth))
            depth += 1
        elif tok == "{":
            depth += 1
        else:
            depth -= 1
            if stack and stack[-1][1] == depth:
                stack.pop()
    scope = mod
    for name, _ in stack:
        scope = Inline(scope, name)
    return scope


def cycles(edges):
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(edges):
        if v not in index:
            visit(v)
    return out


def crate_roots(root):
    roots = []
    for manifest in sorted(root.rglob("Cargo.toml")):
        if "target" in manifest.parts or any(p.startswith(".") for p in manifest.relative_to(root).parts):
            continue
        base = manifest.parent
        for name in ("src/lib.rs", "src/main.rs"):
            if (base / name).exists():
                roots.append(base / name)
        for sub in ("tests", "examples", "benches"):
            d = base / sub
            if d.is_dir():
                roots.extend(sorted(d.glob("*.rs")))
                roots.extend(sorted(p for p in d.glob("*/main.rs")))
    return roots


def check(root):
    root = Path(root).resolve()
    problems = []
    all_edges = {}
    for r in crate_roots(root):
        crate = Crate(r)
        for f, ts in crate_edges(crate).items():
            all_edges.setdefault(f, set()).update(ts)
    for comp in cycles(all_edges):
        names = [str(p.relative_to(root)) for p in comp]
        problems.append("files import each other: " + " <-> ".join(names))
    for f in sorted(root.rglob("*.rs")):
        rel = f.relative_to(root)
        if rel.parts[0] == "target" or any(p.startswith(".") for p in rel.parts):
            continue
        n = len(f.read_text().splitlines())
        if n > MAX_LINES:
            problems.append(f"{rel}: {n} lines (limit {MAX_LINES})")
    return problems, all_edges


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[2]
    problems, _ = check(root)
    for p in problems:
        print(p)
    if problems:
        sys.exit(1)
    print("imports: no mutual imports; every Rust file within", MAX_LINES, "lines")


if __name__ == "__main__":
    main()
