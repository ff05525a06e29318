"""Hub requests and wall time per host: hf_snapshot against the usual alternatives, side by side, in one run.

Everything runs against the local test Hub (tools/hub/hubserver.py); every figure below is measured in this
run, none is typed in. Usage (after scripts/setup.sh):

    .venv/bin/python -m benchmarks.hub_requests [--runs 3]     (from the repository root)

Rows:
  baseline: snapshot_download(main)   what `hf download` in a `command:` task does, run by each playbook run
  baseline: agent loads online        an agent without HF_HUB_OFFLINE, restarted with a warm cache
  hf_snapshot, branch main             the module with revision=main (state=present)
  hf_snapshot, pinned commit           the module with a 40-hex revision
  agent loads offline                  what the role sets up: HF_HUB_OFFLINE=1 against the pre-fetched cache
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tools.harness import install_collection
from tools.hub.hubserver import COMMIT_B, MINILM_REPO, HubServer

os.environ.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost", HF_HUB_DISABLE_TELEMETRY="1")

BIN = Path(sys.executable).parent
# Published anonymous limits per IP and 5 minutes (see the huggingface_hub notes): API and resolver calls.
API_LIMIT, RESOLVER_LIMIT = 500, 3000


def python(code, env):
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(proc.stderr[-2000:])
    return time.monotonic() - started


def module(hub, cache, revision, collections):
    args = "repo_id=%s revision=%s cache_dir=%s endpoint=%s" % (MINILM_REPO, revision, cache, hub.url)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_LOCALHOST_WARNING="0",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="0", ANSIBLE_NOCOLOR="1")
    started = time.monotonic()
    proc = subprocess.run([str(BIN / "ansible"), "localhost", "-c", "local", "-i", "localhost,", "-o",
                           "-e", "ansible_python_interpreter=" + sys.executable,
                           "-m", "justnews.huggingface.hf_snapshot", "-a", args],
                          env=env, capture_output=True, text=True, check=False)
    took = time.monotonic() - started
    line = proc.stdout.strip().splitlines()[-1]
    result = json.loads(line.split("=> ", 1)[1])
    if result.get("failed"):
        raise SystemExit(result.get("msg"))
    return took, result["changed"]


def measure(hub, label, action, runs):
    """Cold run then `runs` warm runs; return requests by kind and seconds."""
    rows = []
    for index in range(runs + 1):
        hub.reset()
        seconds, changed = action()
        stats = hub.stats()["requests"]
        api = stats.get("model_info", 0) + stats.get("tree", 0) + stats.get("refs", 0) + stats.get("other", 0)
        resolver = stats.get("head", 0) + stats.get("get", 0)
        rows.append((index, api, resolver, seconds, changed))
    cold, warm = rows[0], rows[1:]

    def avg(column):
        return sum(r[column] for r in warm) / len(warm)

    if all(r[4] is None for r in warm):
        changed = "n/a"  # a command: task cannot tell; it is always "changed" or always "ok"
    else:
        changed = "yes" if any(r[4] for r in warm) else "no"
    return (label, cold[1], cold[2], avg(1), avg(2), avg(3), changed)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="warm runs per row (default 3)")
    opts = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="jnhf-bench-"))
    collections = install_collection(work / "collections")
    hub = HubServer().start()
    base_env = dict(os.environ, HF_ENDPOINT=hub.url, HF_HOME=str(work / "home"))

    def cache_env(name, **extra):
        return dict(base_env, HF_HUB_CACHE=str(work / name), **extra)

    download = ("from huggingface_hub import snapshot_download\n"
                "snapshot_download(%r, revision='main')\n" % MINILM_REPO)
    load = ("from sentence_transformers import SentenceTransformer\n"
            "SentenceTransformer('all-MiniLM-L6-v2').encode('warm up')\n")

    def flagged(func):
        return lambda: (func(), None)

    rows = [
        measure(hub, "baseline: snapshot_download(main)",
                flagged(lambda: python(download, cache_env("a"))), opts.runs),
        measure(hub, "baseline: agent loads online",
                flagged(lambda: python(load, cache_env("b"))), opts.runs),
        measure(hub, "hf_snapshot, branch main",
                lambda: module(hub, work / "c", "main", collections), opts.runs),
        measure(hub, "hf_snapshot, pinned commit",
                lambda: module(hub, work / "d", COMMIT_B, collections), opts.runs),
    ]
    python(download, cache_env("e"))
    rows.append(measure(hub, "agent loads offline (role's setting)",
                        flagged(lambda: python(load, cache_env("e", HF_HUB_OFFLINE="1"))), opts.runs))
    hub.stop()

    header = ("scenario", "cold API", "cold resolver", "warm API", "warm resolver", "warm s", "warm changed")
    print("%-38s %9s %14s %9s %14s %7s %13s" % header)
    for label, c_api, c_res, w_api, w_res, w_s, changed in rows:
        print("%-38s %9d %14d %9.1f %14.1f %7.2f %13s" % (label, c_api, c_res, w_api, w_res, w_s, changed))
    print()
    print("Warm restarts or re-runs per 5 minutes before the anonymous limits (%d API, %d resolver) bite:"
          % (API_LIMIT, RESOLVER_LIMIT))
    for label, _c_api, _c_res, w_api, w_res, _w_s, _changed in rows:
        fits = min(API_LIMIT / w_api if w_api else float("inf"), RESOLVER_LIMIT / w_res if w_res else float("inf"))
        print("  %-38s %s" % (label, "unlimited (no request)" if fits == float("inf") else "%d" % fits))


if __name__ == "__main__":
    main()
