#!/usr/bin/env python3
"""Every public item's docs show it in use: fails listing the items of the
public API (reachable from the crate root, inherent methods and trait
methods included; trait impls, fields and variants not) whose docs have no
code block.

rustdoc's `missing_doc_code_examples` lint skips items re-exported from
private modules (all of this crate's), so this reads rustdoc's JSON instead
(nightly: `cargo +nightly rustdoc -- -Z unstable-options --output-format json`).
"""
import json
import os
import subprocess
import sys

target = os.environ.get("CARGO_TARGET_DIR", "target")
subprocess.run(
    ["cargo", "+nightly", "rustdoc", "-q", "--all-features", "--",
     "-Z", "unstable-options", "--output-format", "json"],
    check=True,
)
doc = json.load(open(os.path.join(target, "doc", "deferral.json")))
index = doc["index"]


def item(i):
    return index.get(str(i))


def hidden(it):
    return any("doc(hidden)" in str(a) for a in it.get("attrs", []))


def has_example(it):
    return "```" in (it.get("docs") or "")


missing = []
seen = set()


def check(it, path):
    key = it["id"]
    if key in seen or hidden(it):
        return
    seen.add(key)
    if not has_example(it):
        missing.append(path)


def walk_module(mod_id, prefix):
    mod = item(mod_id)
    for child_id in mod["inner"]["module"]["items"]:
        child = item(child_id)
        if child is None or hidden(child):
            continue
        kind = next(iter(child["inner"]))
        if kind == "use":
            use = child["inner"]["use"]
            target_item = item(use["id"]) if use.get("id") is not None else None
            if target_item is None:
                continue
            if use.get("is_glob"):
                if next(iter(target_item["inner"])) == "module":
                    walk_module(target_item["id"], prefix)
                continue
            visit(target_item, prefix + [use["name"]])
        else:
            visit(child, prefix + [child["name"]])


def visit(it, path):
    kind = next(iter(it["inner"]))
    name = "::".join(path)
    if kind == "module":
        if it["id"] not in seen:
            seen.add(it["id"])
            walk_module(it["id"], path)
        return
    if kind in ("struct", "enum", "union", "trait", "function", "constant", "static",
                "type_alias", "macro"):
        check(it, name)
    if kind in ("struct", "enum", "union"):
        for impl_id in it["inner"][kind].get("impls", []):
            impl = item(impl_id)
            if impl is None or impl["inner"]["impl"].get("trait") is not None:
                continue  # trait impls are documented by their trait
            if impl["inner"]["impl"].get("is_synthetic") or impl["inner"]["impl"].get("blanket_impl"):
                continue
            for m in impl["inner"]["impl"]["items"]:
                mi = item(m)
                if mi is None or mi.get("visibility") != "public" or hidden(mi):
                    continue
                check(mi, f"{name}::{mi['name']}")
    if kind == "trait":
        for m in it["inner"]["trait"]["items"]:
            mi = item(m)
            if mi is None or hidden(mi):
                continue
            if next(iter(mi["inner"])) == "function":
                check(mi, f"{name}::{mi['name']}")


walk_module(doc["root"], ["deferral"])
if missing:
    print(f"{len(missing)} public items have no code example in their docs:")
    for path in sorted(set(missing)):
        print("  " + path)
    sys.exit(1)
print(f"every public item has a code example ({len(seen)} items checked)")
