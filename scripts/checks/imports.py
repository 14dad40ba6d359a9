#!/usr/bin/env python3
"""Checks the shape of the Rust sources: no two files import each other, directly or in a loop,
and no file is longer than MAX_LINES.

An edge A -> B means that file A names a module that lives in file B: in a `use` declaration,
or in a path in code that starts with `crate::`, `super::`, `self::` or a submodule's name.
Paths are resolved module by module to the file of the deepest module they name (`use
crate::engine::queue::Job` points at `engine/queue.rs`; `use super::Runtime` at the parent's
file). A module's file and the files of its own submodules are one unit: a child naming its
parent's items and a parent declaring and re-exporting its children are not edges. Everything
else is, so two sibling files that need each other (or three in a ring) are reported.

Usage: scripts/checks/imports.py [ROOT]    (prints the problems and exits 1 when there are any)
"""

import re
import sys
from pathlib import Path

MAX_LINES = 500
IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip(text):
    """`text` with comments, strings and char literals blanked out (lines kept in place)."""
    out, i, n = [], 0, len(text)
    blank = lambda s: re.sub(r"[^\n]", " ", s)  # noqa: E731
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
            out.append(blank(text[i:j]))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and (i == 0 or not re.match(r"\w", text[i - 1])):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            j = text.find('"' + hashes, i + 2 + len(hashes))
            j = n if j < 0 else j + 1 + len(hashes)
            out.append(blank(text[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(blank(text[i:j + 1]))
            i = j + 1
        elif c == "'" and (m := re.match(r"'(\\.[^']*|[^\\'])'", text[i:])):
            out.append(blank(m.group(0)))
            i += len(m.group(0))
        else:  # code, or the quote of a lifetime
            out.append(c)
            i += 1
    return "".join(out)


def expand(tree):
    """The paths of a use tree: `a::{b, c::{d as e, self}}` -> [(a, b), (a, c, d), (a, c)]
    (a rename keeps the original path, a glob or `self` its module)."""
    toks = re.findall(IDENT + r"|::|[{},*]", tree)
    pos = 0

    def branch(prefix):
        nonlocal pos
        segs, out = list(prefix), []
        while pos < len(toks):
            t = toks[pos]
            pos += 1
            if t == "{":
                while pos < len(toks) and toks[pos] != "}":
                    out.extend(branch(segs))
                    if pos < len(toks) and toks[pos] == ",":
                        pos += 1
                pos += 1
                return out
            if t in (",", "}"):
                pos -= 1
                break
            if t == "as":
                pos += 1
                break
            if t not in ("::", "*", "self"):
                segs.append(t)
        if len(segs) > len(prefix) or prefix:
            out.append(tuple(segs))
        return out

    return [p for p in branch(()) if p]


def use_trees(code):
    """`(paths, start, end)` of every `use` declaration in stripped `code`."""
    return [(expand(m.group(1)), m.start(), m.end()) for m in re.finditer(r"\buse\s+([^;]+);", code)]


class Module:
    """A module whose items live in `file` (inline modules count as their enclosing file's)."""

    def __init__(self, file, parent):
        self.file = file
        self.parent = parent
        self.children = {}

    def ancestors(self):
        m, out = self.parent, []
        while m is not None:
            out.append(m.file)
            m = m.parent
        return out


def load(file, parent, files):
    """The module tree declared from `file` (`mod x;`, `#[path = "..."] mod x;`)."""
    mod = Module(file, parent)
    files[file] = mod
    text = file.read_text()
    code = strip(text)
    owns_dir = file.name in ("mod.rs", "lib.rs", "main.rs") or parent is None
    for m in re.finditer(r"(?:pub(?:\([^)]*\))?\s+)?mod\s+(" + IDENT + r")\s*;", code):
        name = m.group(1)
        attrs = text[text.rfind("\n", 0, max(0, m.start() - 1)) + 1:m.start()]
        path = re.search(r'#\[path\s*=\s*"([^"]*)"\]', attrs)
        if path:
            child = file.parent / path.group(1)
        else:
            base = file.parent if owns_dir else file.parent / file.stem
            child = next((c for c in (base / f"{name}.rs", base / name / "mod.rs") if c.exists()), None)
        if child is not None and child not in files:
            mod.children[name] = load(child, mod, files)
    return mod


def scope_at(mod, code, offset):
    """The module a position of `code` is in: `mod`, or an inline module (`mod x { ... }`)
    nested in it, as a stand-in whose items are `mod`'s file's."""
    stack, depth = [], 0
    for m in re.finditer(r"\bmod\s+" + IDENT + r"\s*\{|[{}]", code[:offset]):
        if m.group(0) == "}":
            depth -= 1
            if stack and stack[-1] == depth:
                stack.pop()
        else:
            if m.group(0) != "{":
                stack.append(depth)
            depth += 1
    scope = mod
    for _ in stack:
        inline = Module(mod.file, scope)
        scope = inline
    return scope


def resolve(root, mod, segs):
    """The module `segs`, seen from `mod`, names the items of (`None`: another crate or a local
    name)."""
    head = segs[0]
    if head == "crate":
        cur, rest = root, segs[1:]
    elif head in ("self", "super"):
        cur, rest = mod, segs
        while rest and rest[0] in ("self", "super"):
            if rest[0] == "super":
                cur = cur.parent or cur
            rest = rest[1:]
    elif head in mod.children:
        cur, rest = mod, segs
    else:
        return None
    while rest and rest[0] in cur.children:
        cur, rest = cur.children[rest[0]], rest[1:]
    return cur


def crate_edges(root_file):
    files = {}
    root = load(root_file, None, files)
    edges = {}
    for file, mod in files.items():
        code = strip(file.read_text())
        targets, spans = set(), []
        for paths, start, end in use_trees(code):
            spans.append((start, end))
            scope = scope_at(mod, code, start)
            targets.update(t.file for t in (resolve(root, scope, p) for p in paths if p) if t)
        heads = ["crate", "super", "self"] + list(mod.children)
        path_re = re.compile(r"(?<![\w:])((?:" + "|".join(map(re.escape, heads)) + r")(?:::" + IDENT + r")+)")
        for m in path_re.finditer(code):
            if not any(s <= m.start() < e for s, e in spans):
                t = resolve(root, scope_at(mod, code, m.start()), tuple(m.group(1).split("::")))
                if t:
                    targets.add(t.file)
        # A module and its own submodules are one unit.
        unit = set(mod.ancestors()) | {file}
        edges[file] = {t for t in targets if t not in unit and file not in files[t].ancestors()}
    return edges


def cycles(edges):
    """Strongly connected components of more than one file (Tarjan)."""
    index, low, on, stack, out = {}, {}, set(), [], []
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = len(index)
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


def sources(root):
    """Every `.rs` file outside target/ and hidden directories."""
    for f in sorted(root.rglob("*.rs")):
        rel = f.relative_to(root)
        if rel.parts[0] != "target" and not any(p.startswith(".") for p in rel.parts):
            yield f, rel


def crate_roots(root):
    """Every crate root of every package: the library, the binary, each test, example, bench."""
    for manifest in sorted(root.rglob("Cargo.toml")):
        rel = manifest.relative_to(root)
        if rel.parts[0] == "target" or any(p.startswith(".") for p in rel.parts):
            continue
        base = manifest.parent
        yield from (base / n for n in ("src/lib.rs", "src/main.rs") if (base / n).exists())
        for sub in ("tests", "examples", "benches"):
            if (base / sub).is_dir():
                yield from sorted((base / sub).glob("*.rs"))
                yield from sorted((base / sub).glob("*/main.rs"))


def check(root):
    """The problems under `root`, and the import edges found."""
    root = Path(root).resolve()
    edges = {}
    for r in crate_roots(root):
        for f, ts in crate_edges(r).items():
            edges.setdefault(f, set()).update(ts)
    problems = [
        "files import each other: " + " <-> ".join(str(p.relative_to(root)) for p in comp)
        for comp in cycles(edges)
    ]
    for f, rel in sources(root):
        n = len(f.read_text().splitlines())
        if n > MAX_LINES:
            problems.append(f"{rel}: {n} lines (limit {MAX_LINES})")
    return problems, edges


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[2]
    problems, _ = check(root)
    for p in problems:
        print(p)
    if problems:
        sys.exit(1)
    print(f"imports: no two files import each other; every Rust file within {MAX_LINES} lines")


if __name__ == "__main__":
    main()
