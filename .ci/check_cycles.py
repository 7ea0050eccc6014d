#!/usr/bin/env python3
"""Top-level module graph of src/ (every `crate::X` path, test code excluded) and its cycles."""
import os, re, sys
root = sys.argv[1] if len(sys.argv) > 1 else "src"
mods = {}
for dp, _, fs in os.walk(root):
    for f in fs:
        if not f.endswith(".rs"): continue
        p = os.path.join(dp, f); rel = os.path.relpath(p, root)
        top = rel.split(os.sep)[0].removesuffix(".rs")
        if top in ("lib", "main"): continue
        text = open(p).read()
        text = re.split(r"#\[cfg\(test\)\]\s*mod tests", text)[0]
        if rel.split(os.sep)[-1] == "tests.rs": continue
        deps = mods.setdefault(top, set())
        for m in re.finditer(r"crate::(\w+)", text):
            if m.group(1) != top: deps.add(m.group(1))
        for m in re.finditer(r"use crate::\{([^}]*)\}", text):
            for name in re.findall(r"(?:^|,)\s*(\w+)", m.group(1)):
                if name != top: deps.add(name)
# cycles via Tarjan SCC
idx, low, st, on, sccs, n = {}, {}, [], set(), [], [0]
def sc(v):
    idx[v] = low[v] = n[0]; n[0] += 1; st.append(v); on.add(v)
    for w in mods.get(v, ()):
        if w not in mods: continue
        if w not in idx: sc(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], idx[w])
    if low[v] == idx[v]:
        c = []
        while True:
            w = st.pop(); on.discard(w); c.append(w)
            if w == v: break
        if len(c) > 1: sccs.append(sorted(c))
for v in sorted(mods):
    if v not in idx: sc(v)
for v in sorted(mods): print(f"{v:10} -> {' '.join(sorted(d for d in mods[v] if d in mods))}")
print("cycles:", sccs or "none")
sys.exit(1 if sccs else 0)
