#!/usr/bin/env python3
"""Save -> serving in `hookhost dev`, per language: how long from a save that changes the plugin's
reaction until the new version serves (the dev host prints "reloaded version ... in T s (build B s,
load L ms)" once its registry serves it). Warm: the project's first build and one reload are done
before measuring, so the tools' caches are warm, as in a working session. Every save is new
content (a kv key prefix never used before), so each one is a real build and a real load.

    cargo build --release -p hookhost && bash scripts/build-script-plugins.sh
    python3 scripts/bench-dev-loop.py [--saves 5] [--langs rust,js,python]

The baseline, measured in the same run, is the language's own build of the same change alone (what
the merchant would wait for without hookhost): the host's share is the difference.
"""
import argparse
import os
import queue
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
HOOKHOST = os.path.join(TARGET, "release", "hookhost")
EDITS = {  # the file whose kv key each save changes
    "rust": ("src/lib.rs", 'format!("order/{order}")', 'format!("latest/{order}")'),
    "js": ("logic.js", "`order/${order}`", "`latest/${order}`"),
    "python": ("logic.py", 'f"order/{order}"', 'f"latest/{order}"'),
}
RELOADED = re.compile(r"reloaded version (\S+) in ([\d.]+) s \(build ([\d.]+) s, load (\d+) ms\)")


def tool_env():
    env = dict(os.environ)
    env["CARGO_TARGET_DIR"] = TARGET
    env["HOOKHOST_COMPONENTIZE_JS"] = os.path.join(
        ROOT, "tools/js/node_modules/@bytecodealliance/componentize-js/src/cli.js")
    env["HOOKHOST_COMPONENTIZE_PY"] = os.path.join(TARGET, "tools/python/bin/componentize-py")
    return env


def lines_of(process):
    q = queue.Queue()

    def pump():
        for line in process.stdout:
            q.put(line.rstrip("\n"))
        q.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return q


def wait_for(q, pattern, timeout=600):
    deadline = time.monotonic() + timeout
    while True:
        line = q.get(timeout=max(0.1, deadline - time.monotonic()))
        if line is None:
            sys.exit(f"hookhost dev stopped before printing {pattern!r}")
        m = re.search(pattern, line)
        if m:
            return time.monotonic(), m


EDIT_COUNT = [0]


def toggle_edit(lang, project):
    """Changes the kv key's prefix to one never used before (order/ -> k1/ -> k2/ ...): every
    save is new content, so no build is reused."""
    path = os.path.join(project, EDITS[lang][0])
    current = open(path).read()
    EDIT_COUNT[0] += 1
    new = re.sub(r'(["`])(order|k\d+)/(\{order\}|\$\{order\})',
                 lambda m: f"{m.group(1)}k{EDIT_COUNT[0]}/{m.group(3)}", current, count=1)
    assert new != current, f"no key prefix to change in {path}"
    with open(path, "w") as f:
        f.write(new)


def baseline_build(lang, project, env):
    """The language's own build of the same kind of change, as hookhost dev runs it, alone."""
    toggle_edit(lang, project)
    if lang == "rust":
        cmd = ["cargo", "build", "--release", "--target", "wasm32-wasip2", "--quiet"]
    elif lang == "js":
        cmd = ["node", env["HOOKHOST_COMPONENTIZE_JS"], "app.js", "--wit", "wit", "-n", "merchant-plugin",
               "-d", "http", "-d", "fetch-event", "-o", "/tmp/bench-baseline.wasm"]
    else:
        cmd = [env["HOOKHOST_COMPONENTIZE_PY"], "-d", "wit", "-w", "merchant-plugin", "componentize", "app",
               "-p", ".", "-o", "/tmp/bench-baseline.wasm"]
    started = time.monotonic()
    subprocess.run(cmd, cwd=project, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - started


def measure(lang, saves):
    env = tool_env()
    work = tempfile.mkdtemp(prefix=f"bench-dev-{lang}-")
    project = os.path.join(work, "shop-notes")
    subprocess.run([HOOKHOST, "new", "shop-notes", "--lang", lang, "--dir", project], check=True,
                   stdout=subprocess.DEVNULL)
    dev = subprocess.Popen([HOOKHOST, "dev", "--listen", "127.0.0.1:0", project], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        q = lines_of(dev)
        wait_for(q, r"loaded version ")
        path, a, _ = EDITS[lang]
        assert a in open(os.path.join(project, path)).read(), f"{path} has no {a}"
        results = []
        # One warm-up save (not measured), then the measured ones.
        for i in range(saves + 1):
            started = time.monotonic()
            toggle_edit(lang, project)
            at, m = wait_for(q, RELOADED.pattern)
            if i > 0:
                results.append((at - started, float(m.group(3)), int(m.group(4)) / 1000))
        dev.terminate()
        dev.wait(timeout=30)
        baselines = [baseline_build(lang, project, env) for _ in range(3)]
        return results, baselines
    finally:
        if dev.poll() is None:
            dev.kill()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--saves", type=int, default=5)
    parser.add_argument("--langs", default="rust,js,python")
    args = parser.parse_args()
    if not os.path.exists(HOOKHOST):
        sys.exit(f"{HOOKHOST} is missing: cargo build --release -p hookhost")
    targets = {"rust": 2.0, "js": 10.0, "python": 10.0}
    print(f"{'language':<8} {'save -> serving p50':>20} {'max':>7} {'build p50':>10} {'load p50':>9} "
          f"{'own build alone p50':>20} {'target':>7}")
    for lang in args.langs.split(","):
        results, baselines = measure(lang, args.saves)
        total = [r[0] for r in results]
        print(f"{lang:<8} {statistics.median(total):>18.2f} s {max(total):>5.2f} s "
              f"{statistics.median(r[1] for r in results):>8.2f} s {statistics.median(r[2] for r in results):>7.2f} s "
              f"{statistics.median(baselines):>18.2f} s {targets[lang]:>5.0f} s"
              + ("" if statistics.median(total) <= targets[lang] else "  (over)"))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
