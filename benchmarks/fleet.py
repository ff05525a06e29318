"""Fleet distribution, measured: `hf download` in a command: task against the role's hub and controller modes.

Everything runs against the local test Hub (tools/hub/hub.sh) on a podman fleet of systemd test hosts
(tools/hosts); every figure is measured in this run, none is typed in. Usage (after scripts/setup.sh and
tools/hosts/build-images.sh), from the repository root:

    .venv/bin/python -m benchmarks.fleet [--sizes 1,5,10] [--mirror-sizes 5,10] [--json benchmark-results/fleet.json]
                                         [--skip-throughput] [--skip-agent] [--skip-hub-requests]
    .venv/bin/python -m benchmarks.fleet --only-throughput      (the throughput part alone, a few minutes)
    .venv/bin/python -m benchmarks.fleet --only-fleet           (the fleet part alone, its loopback included)
    .venv/bin/python -m benchmarks.fleet --only-throughput --only-warm --only-carry   (the speed and memory table
                                          against hf download, about 25 minutes; --connections podman,ssh)

Parts, all in the same run:
  fleet       per N and mode, a cold run (empty host caches, empty controller cache) then a warm run (the same
              pinned revision again): Hub requests and bytes (the test Hub's /_test/stats), bytes moved to the
              hosts (the blobs that are new or replaced in each host's cache, summed), wall time of the play.
              Modes: baseline (`hf download --revision <commit> --cache-dir ...` in an ansible.builtin.command
              task on every host), and the playbook justnews.huggingface.prefetch with model_cache_source hub and
              controller (model_cache_units: [], so it fetches and restarts nothing; model_cache_serial 100%,
              the same one batch as the baseline's play).
              Mode mirror, at --mirror-sizes (default 5 and 10): the N hosts are one site behind one caching
              mirror. Before its cold run a fresh container (MIRROR_IMAGE, Python 3.11, the Olah wheelhouse of
              tools/hosts/build-images.sh bookworm mounted) gets the hub_mirror role: Olah from the wheelhouse,
              upstream the test Hub, on 127.0.0.1:MIRROR_PORT; that play's time is reported as the deploy time,
              not in the mode's wall time. Then the prefetch playbook with model_cache_source hub,
              model_cache_endpoint at the mirror, model_cache_xet false and model_cache_read_timeout 60 (as the
              hub_mirror README says), cold then warm; the mirror container
              and its cache are removed after the size's warm run. Its table: Hub requests (in all and per host;
              Olah's own 5-minute connection check left out), Hub file bytes in copies per site, bytes over the
              mirror (the file bytes the hosts' caches gained: every one came through the mirror), wall time
              against the baseline's; and the Hub requests one more host of the site costs (between two sizes).
              The mirror rows add about 5 minutes at N = 5 and 10 on the shared 2-CPU machine (estimated, per
              size: boot and apt lists 0.5 min, deploy 1 min, cold and warm plays 1 min).
              Targets per N: the cold controller play takes one Hub copy, the cold mirror play one copy per site
              (a mirror size without its row is a miss); the warm hub, controller and mirror plays cost no Hub
              request and move no byte, and take within WALL_MAX x the baseline's warm play; the cold controller
              play within WALL_MAX x the cold hub play at N=10 (or the largest N run, said so).
  transfer    per N, the cold controller play's rate end to end (bytes moved to the hosts / the play's wall time,
              which includes the controller's fetch from the Hub and the play's other tasks) beside a loopback
              limit measured right after it: the same blob files, dereferenced, piped by a plain
              `tar -C <controller cache>/models--.../blobs -chf - <blobs> | podman exec -i <host> tar -x` to
              every host of the fleet at once (the play runs them all in one batch with forks 10), timed, then
              removed. They land in LOOPBACK_DIR, on the same filesystem as the hosts' caches (/tmp is a tmpfs in
              a systemd container, which would flatter the limit). Rates in MB/s (10^6 B/s) and MiB/s, and the
              ratio of the two.
  throughput  the module against `hf download`, cold, on this machine, for LARGE_REPO's ~2 GiB file (every 1 MiB
              block distinct: the CAS sends the whole file; a cold Xet download that gets under CAS_MIN of it
              stops the run), on two Hubs at once: Xet storage and plain LFS from the resolver (hub.sh with
              JUSTNEWS_HUB_XET=0). Each step of THROUGHPUT_PLAN runs on both, the first transport alternating:
              module, hf, hf, module at the module's default download_memory (the target rows), the module with
              download_memory=0 around a third hf run, then, to explain a difference, the module on a warm
              cache, the checksum pass alone and snapshot_download alone. Each run in a fresh cgroup
              (benchmarks/procstat.py): peak summed Pss and CPU of every process, the async job included; every
              cold download's files checked against the Hub's ids.
  warm        per connection (podman, ssh with pipelining) and N, the module's warm prefetch play against the
              bare `hf download` task on the same warm caches (target WARM_MAX).
  carry       per connection, hf_carry of LARGE_REPO to one host (cold play less warm play) against a raw tar
              stream of the same blob files over the same connection (target CARRY_MIN, goal CARRY_GOAL).
  agent       time until the real Memory agent (tools/hosts/rootfs/.../memory.py, project venv, warm cache)
              answers /ready while its Hub is unreachable (a 127.0.0.1 listener that never answers, or a closed
              127.0.0.1 port), with and without HF_HUB_OFFLINE=1 (offline: median of three starts).
  hub requests  benchmarks/hub_requests.py, its table printed verbatim.
"""

import argparse
import hashlib
import json
import os
import re
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from benchmarks import procstat
from tools.harness import REPO, install_collection
from tools.hub.hubserver import COMMIT_B, LARGE_COMMIT, LARGE_REPO, MINILM_REPO

BIN = Path(sys.executable).parent
PREFIX = os.environ.get("JUSTNEWS_FLEET_PREFIX", "jn-bench")
AGENT_PORT = 18301
HOST_CACHE = "/var/cache/hf"
HOST_VENV = "/opt/justnews-huggingface/venv"
MODES = ("baseline", "hub", "controller", "mirror")
WARM_CLAIMS = ("hub", "controller", "mirror")  # modes whose warm pinned run is meant to cost nothing
SOME_SIZES = ("mirror",)  # modes run at --mirror-sizes only: judged at the sizes where they ran
MIRROR_SIZES = "5,10"  # default --mirror-sizes
MIRROR_IMAGE = "localhost/justnews-host:bookworm"  # Python 3.11: the Olah wheelhouse's
MIRROR_WHEELHOUSE = "wheelhouse-olah-py311"  # in JUSTNEWS_IMAGE_CACHE, from tools/hosts/build-images.sh bookworm
MIRROR_PORT = 18390  # Olah on 127.0.0.1 (host networking): no scenario, test or agent of the fleet uses it
MIRROR_AGENT_PORT = 18391  # the mirror container's own agent, stopped after boot; its memory.env needs a port
MIRROR_SITES = 1  # the benchmark's N hosts are one site behind one mirror
# Olah's own connection check: a HEAD of this path every 5 minutes whoever asks (olah/server.py). It is not a
# client's request, so the Hub's request counts leave it out (reported apart as hub_checks).
OLAH_CHECK_PATH = "/datasets/Salesforce/wikitext/"
THROUGHPUT_MIN = 0.95
THROUGHPUT_GOAL = 1.0
WALL_MAX = 1.5  # a role play's wall time against the one it is compared with (see evaluate_targets)
WALL_TARGET_N = 10  # the fleet size of the cold controller-against-hub target
LOOPBACK_DIR = "/var/cache/jn-loopback"  # beside HOST_CACHE, so the same filesystem as the carry writes to
MB = 10 ** 6
SSH_PORT = 22150  # host i's sshd on 127.0.0.1:SSH_PORT+i (tools/hosts/ssh.py's own tests start at 22100)
CONNECTIONS = ("podman", "ssh")
WARM_MAX = 1.5  # the module's warm run against the bare hf download task's, per connection and N
CARRY_MIN, CARRY_GOAL = 0.5, 0.8  # hf_carry against the raw tar stream over the same connection
PEAK_MIB_MAX = 512  # the module's peak at its default download_memory (512M)
MIB = 1024 ** 2
os.environ.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost", HF_HUB_DISABLE_TELEMETRY="1",
                  CONTAINERS_CONF=os.environ.get("CONTAINERS_CONF", str(REPO / "containers.conf")))


# --- pure logic (tests/unit/test_fleet_benchmark.py) ------------------------------------------------------------

def ratio(value, base):
    """value / base, None when there is no base to compare with."""
    return None if not base else value / base


def with_ratios(rows):
    """Add ratio_* columns: each mode's figures against the baseline's for the same N and run."""
    base = {(r["n"], r["run"]): r for r in rows if r["mode"] == "baseline"}
    out = []
    for row in rows:
        ref = base.get((row["n"], row["run"]), {})
        out.append(dict(row, **{"ratio_" + k: ratio(row[k], ref.get(k))
                                for k in ("hub_requests", "hub_bytes", "moved_bytes", "seconds")}))
    return out


def evaluate_targets(rows, model_bytes, transports=(), mirror_sizes=(), extra=()):
    """[(target, met, detail)] for the fleet rows, per transport (name, summarise() of its runs, why the uncapped
    rows did not run or None) the throughput_targets, then `extra` (the warm and carry parts' targets) as given.
    mirror_sizes: the sizes at which the mirror mode was to run; one without its cold row is a named miss."""
    targets = []
    for row in sorted((r for r in rows if r["mode"] == "controller" and r["run"] == "cold"), key=lambda r: r["n"]):
        copies = row["hub_file_bytes"] / model_bytes
        targets.append(("controller: one Hub copy at N=%d" % row["n"], row["hub_file_bytes"] == model_bytes,
                        "%.2f copies (%d file bytes, model %d)" % (copies, row["hub_file_bytes"], model_bytes)))
    targets.extend(mirror_copy_targets(rows, model_bytes, mirror_sizes))
    for row in sorted((r for r in rows if r["mode"] in WARM_CLAIMS and r["run"] == "warm"),
                      key=lambda r: (MODES.index(r["mode"]), r["n"])):
        targets.append(("%s: warm pinned run costs nothing at N=%d" % (row["mode"], row["n"]),
                        row["hub_requests"] == 0 and row["moved_bytes"] == 0,
                        "%d Hub requests, %d bytes moved" % (row["hub_requests"], row["moved_bytes"])))
    targets.extend(wall_targets(rows))
    for name, summary, uncapped_why in transports:
        targets.extend(throughput_targets(name, summary, uncapped_why))
    targets.extend(extra)
    return targets


def wall_target(name, row, ref, missing):
    """(name, met, detail): row's wall time within WALL_MAX x ref's; a row that was not measured is a miss, named
    by `missing` (its label, the ref's label)."""
    if row is None or ref is None:
        return (name, False, "not measured: " + ", ".join(m for m, r in zip(missing, (row, ref)) if r is None))
    limit = WALL_MAX * ref["seconds"]
    return (name, row["seconds"] <= limit, "%.1f s against %.1f s (%s; limit %.1f s)"
            % (row["seconds"], ref["seconds"], fmt_ratio(ratio(row["seconds"], ref["seconds"])), limit))


def wall_targets(rows):
    """Wall-time targets: per N run, the warm hub and controller plays within WALL_MAX x the baseline's warm play
    of the same N; the cold controller play within WALL_MAX x the cold hub play at N=WALL_TARGET_N, or at the
    largest N run when that one was not (the name says so)."""
    by_key = {(r["n"], r["mode"], r["run"]): r for r in rows}
    sizes = sorted({r["n"] for r in rows})
    targets = []
    for mode in WARM_CLAIMS:
        ran = sorted({r["n"] for r in rows if r["mode"] == mode}) if mode in SOME_SIZES else sizes
        for n in ran:
            targets.append(wall_target("%s: warm wall time <= %.1fx baseline warm at N=%d" % (mode, WALL_MAX, n),
                                       by_key.get((n, mode, "warm")), by_key.get((n, "baseline", "warm")),
                                       ("%s warm" % mode, "baseline warm")))
    if sizes:
        n = WALL_TARGET_N if WALL_TARGET_N in sizes else sizes[-1]
        where = "N=%d" % n if n == WALL_TARGET_N else "N=%d (the largest N run; the target is at N=%d)" % (
            n, WALL_TARGET_N)
        targets.append(wall_target("controller: cold wall time <= %.1fx hub cold at %s" % (WALL_MAX, where),
                                   by_key.get((n, "controller", "cold")), by_key.get((n, "hub", "cold")),
                                   ("controller cold", "hub cold")))
    return targets


def mirror_copy_targets(rows, model_bytes, mirror_sizes=()):
    """Per N, the cold mirror run's Hub file bytes against one copy of the model per site (the row's `sites`,
    MIRROR_SITES if absent); a size of mirror_sizes without its cold row is a miss, said so."""
    cold = {r["n"]: r for r in rows if r["mode"] == "mirror" and r["run"] == "cold"}
    targets = []
    for n in sorted(set(cold) | set(mirror_sizes)):
        name = "mirror: one Hub copy per site at N=%d" % n
        row = cold.get(n)
        if row is None:
            targets.append((name, False, "not measured: mirror cold"))
            continue
        sites = row.get("sites", MIRROR_SITES)
        targets.append((name, row["hub_file_bytes"] == sites * model_bytes,
                        "%.2f copies for %d site%s (%d file bytes, model %d)"
                        % (row["hub_file_bytes"] / model_bytes, sites, "" if sites == 1 else "s",
                           row["hub_file_bytes"], model_bytes)))
    return targets


def own_checks(stats):
    """Requests in the Hub's log that were Olah's own connection check (OLAH_CHECK_PATH), not a client's."""
    return sum(1 for _method, path, _status in stats.get("log", []) if OLAH_CHECK_PATH in path)


def mirror_summary(rows, deploys, model_bytes):
    """Per N and run of the mirror mode: the deploy's seconds (on the cold line; None when it failed or was not
    timed), Hub requests in all and per host, Hub file bytes in copies per site, bytes over the mirror (the hosts'
    received file bytes: what their caches gained, moved_bytes), wall time against the baseline's of the same N
    and run."""
    by_key = {(r["n"], r["mode"], r["run"]): r for r in rows}
    deployed = {d["n"]: d for d in deploys}
    out = []
    for n, _mode, run in sorted((k for k in by_key if k[1] == "mirror"), key=lambda k: (k[0], k[2])):
        row, base = by_key[(n, "mirror", run)], by_key.get((n, "baseline", run))
        sites = row.get("sites", MIRROR_SITES)
        out.append({"n": n, "run": run, "sites": sites,
                    "deploy_s": deployed.get(n, {}).get("seconds") if run == "cold" else None,
                    "hub_requests": row["hub_requests"], "hub_requests_per_host": row["hub_requests"] / n,
                    "hub_file_bytes": row["hub_file_bytes"],
                    "copies_per_site": row["hub_file_bytes"] / (sites * model_bytes),
                    "over_mirror_bytes": row["moved_bytes"], "seconds": row["seconds"],
                    "baseline_s": base["seconds"] if base else None,
                    "ratio_seconds": ratio(row["seconds"], base["seconds"]) if base else None})
    return out


def marginal_requests(rows):
    """[(n1, n2, requests per added host)]: the cold mirror runs' Hub requests between consecutive sizes, over the
    hosts added. Each cold run starts with an empty mirror, so the mirror's own first fetch cancels out and what is
    left is what one more host of the site costs the Hub (Olah's check per client request)."""
    cold = sorted((r for r in rows if r["mode"] == "mirror" and r["run"] == "cold"), key=lambda r: r["n"])
    return [(a["n"], b["n"], (b["hub_requests"] - a["hub_requests"]) / (b["n"] - a["n"]))
            for a, b in zip(cold, cold[1:]) if b["n"] > a["n"]]


def mirror_table(summary):
    header = ("N", "run", "deploy s", "Hub req", "req/host", "Hub file bytes", "copies/site", "over mirror",
              "wall s", "baseline s", "x wall")
    body = [(m["n"], m["run"], "-" if m["deploy_s"] is None else "%.1f" % m["deploy_s"], m["hub_requests"],
             "%.1f" % m["hub_requests_per_host"], human(m["hub_file_bytes"]), "%.2f" % m["copies_per_site"],
             human(m["over_mirror_bytes"]), "%.1f" % m["seconds"],
             "-" if m["baseline_s"] is None else "%.1f" % m["baseline_s"], fmt_ratio(m["ratio_seconds"]))
            for m in summary]
    return format_table(header, body)


def delivered_file_bytes(stats, xet_sizes):
    """File bytes the Hub delivered, whatever the transport: the resolver's and the HTTP bridge's bodies, and for a
    Xet file its size once per reconstruction the CAS answered (its xorbs travel compressed and deduplicated, so
    their bytes are not the file's). hf_xet asks one reconstruction per file of the model's sizes."""
    total = stats["bytes"].get("get", 0) + stats["bytes"].get("bridge", 0)
    for method, path, status in stats.get("log", []):
        if method == "GET" and "/reconstructions/" in path and status == 200:
            total += xet_sizes.get(path.split("?")[0].rsplit("/", 1)[1], 0)
    return total


def human(n):
    """Bytes as B/KiB/MiB/GiB with three significant digits."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return ("%d %s" % (n, unit)) if unit == "B" else ("%.3g %s" % (n, unit))
        n /= 1024
    return None


def fmt_ratio(value):
    return "-" if value is None else "%.2fx" % value


def format_table(header, rows):
    """Left-aligned first column, right-aligned others, widths from the content."""
    cells = [list(map(str, header))] + [list(map(str, r)) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                     .rstrip() for r in cells)


def fleet_table(rows):
    header = ("mode", "N", "run", "Hub req", "Hub bytes", "moved to hosts", "wall s",
              "x req", "x Hub bytes", "x moved", "x wall")
    body = [(r["mode"], r["n"], r["run"], r["hub_requests"], human(r["hub_bytes"]), human(r["moved_bytes"]),
             "%.1f" % r["seconds"], fmt_ratio(r["ratio_hub_requests"]), fmt_ratio(r["ratio_hub_bytes"]),
             fmt_ratio(r["ratio_moved_bytes"]), fmt_ratio(r["ratio_seconds"]))
            for r in sorted(rows, key=lambda r: (r["n"], MODES.index(r["mode"]), r["run"]))]
    return format_table(header, body)


def transfer_rates(rows, loopbacks):
    """Per N, the cold controller play's rate end to end (bytes moved to the hosts / the play's wall time) beside
    the loopback of the same N ({n, bytes, seconds, ...} from Plays.loopback); rates in bytes/s, None when a figure
    is missing."""
    loops = {lb["n"]: lb for lb in loopbacks}
    out = []
    for row in sorted((r for r in rows if r["mode"] == "controller" and r["run"] == "cold"), key=lambda r: r["n"]):
        loop = loops.get(row["n"], {})
        e2e = ratio(row["moved_bytes"], row["seconds"])
        limit = ratio(loop.get("bytes"), loop.get("seconds")) if not loop.get("error") else None
        out.append({"n": row["n"], "moved_bytes": row["moved_bytes"], "seconds": row["seconds"],
                    "bytes_per_s": e2e, "loopback": loop or None, "loopback_bytes_per_s": limit,
                    "ratio": ratio(e2e, limit) if e2e is not None else None})
    return out


def fmt_rate(value, unit):
    return "-" if value is None else "%.1f" % (value / unit)


def transfer_table(rates):
    header = ("N", "moved to hosts", "play s", "MB/s", "MiB/s", "loopback bytes", "loopback s", "MB/s", "MiB/s",
              "x loopback")
    body = []
    for t in rates:
        loop = t["loopback"] or {}
        body.append((t["n"], human(t["moved_bytes"]), "%.1f" % t["seconds"], fmt_rate(t["bytes_per_s"], MB),
                     fmt_rate(t["bytes_per_s"], MIB), human(loop["bytes"]) if loop.get("bytes") else "-",
                     "%.2f" % loop["seconds"] if loop.get("seconds") else "-",
                     fmt_rate(t["loopback_bytes_per_s"], MB), fmt_rate(t["loopback_bytes_per_s"], MIB),
                     fmt_ratio(t["ratio"])))
    return format_table(header, body)


def targets_text(targets):
    return "\n".join("%-7s %s: %s" % ("met" if met else "MISSED", name, detail) for name, met, detail in targets)


# --- the test Hub ----------------------------------------------------------------------------------------------

class Hub:
    """The test Hub as its own process (hub.sh), so that serving does not share this process's GIL; Xet storage
    as huggingface.co serves it, or plain LFS from the resolver (xet=False)."""

    def __init__(self, work, xet=True):
        self.dir = work / ("hub" if xet else "hub-http")
        self.url = run([str(REPO / "tools/hub/hub.sh"), "start", str(self.dir)],
                       env=dict(os.environ, JUSTNEWS_HUB_XET="1" if xet else "0")).strip()

    def stats(self):
        with urllib.request.urlopen(self.url + "/_test/stats", timeout=30) as resp:
            return json.load(resp)

    def reset(self):
        urllib.request.urlopen(urllib.request.Request(self.url + "/_test/reset", method="POST"), timeout=30).close()

    def counters(self, xet_sizes):
        stats = self.stats()
        checks = own_checks(stats)
        return {"hub_requests": stats["total"] - checks, "hub_checks": checks,
                "hub_bytes": sum(stats["bytes"].values()),
                "hub_file_bytes": delivered_file_bytes(stats, xet_sizes), "hub_by_kind": stats["requests"]}

    def xet_sizes(self, repo, revision):
        """Xet hash -> file size from the listing; empty when the Hub serves plain LFS."""
        url = "%s/api/models/%s/tree/%s?recursive=true" % (self.url, repo, revision)
        with urllib.request.urlopen(url, timeout=30) as resp:
            return {e["xetHash"]: e["size"] for e in json.load(resp) if e.get("xetHash")}

    def listing(self, repo, revision):
        """The files of a revision as the Hub lists them (path, size, oid, lfs)."""
        url = "%s/api/models/%s/tree/%s?recursive=true" % (self.url, repo, revision)
        with urllib.request.urlopen(url, timeout=30) as resp:
            return [e for e in json.load(resp) if e["type"] == "file"]

    def model_bytes(self, repo, revision):
        url = "%s/api/models/%s/tree/%s?recursive=true" % (self.url, repo, revision)
        with urllib.request.urlopen(url, timeout=30) as resp:
            return sum(e["size"] for e in json.load(resp) if e["type"] == "file")

    def stop(self):
        run([str(REPO / "tools/hub/hub.sh"), "stop", str(self.dir)])


def run(argv, env=None, check=True):
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if check and proc.returncode:
        raise SystemExit("%s failed (%d):\n%s%s" % (" ".join(argv[:4]), proc.returncode, proc.stdout[-3000:],
                                                    proc.stderr[-3000:]))
    return proc.stdout


# --- the fleet -------------------------------------------------------------------------------------------------

class Fleet:
    """jn-bench-1..N started as tools/hosts/fleet.sh does, each with its own agent port; removed by fleet.sh down."""

    def __init__(self, work, image):
        self.work, self.image, self.names = work, image, []
        self.ssh_vars, self.ssh_argv = {}, {}
        cache = Path(os.environ.get("JUSTNEWS_IMAGE_CACHE", "/var/tmp/justnews-images"))
        self.wheelhouse = cache / ("wheelhouse-py313" if "trixie" in image else "wheelhouse-py311")

    def up(self, count):
        self.down()
        self.ssh_vars, self.ssh_argv = {}, {}
        for i in range(1, count + 1):
            name = "%s-%d" % (PREFIX, i)
            env = self.work / ("memory-%d.env" % i)
            env.write_text("MEMORY_MODEL_CACHE=/opt/justnews/models/memory\nMEMORY_PORT=%d\n" % (AGENT_PORT + i - 1))
            self.start(name, self.image, {self.wheelhouse: "/opt/wheelhouse", env: "/etc/justnews/memory.env"})
            self.names.append(name)
        for name in self.names:
            self.wait_booted(name)
        # The distribution figures need no agent; a host's agent, which fails without a model, would restart in
        # a loop, load the machine and hold its port.
        for name in self.names:
            run(["podman", "exec", name, "systemctl", "stop", "justnews@memory.service"], check=False)

    @staticmethod
    def start(name, image, mounts):
        """Start one systemd container of the fleet (its label, host networking, the Hub's names on loopback) with
        {host path: container path} mounted read-only."""
        hub_hosts = [a for h in ("huggingface.co", "hf.co", "cdn-lfs.huggingface.co", "cdn-lfs.hf.co",
                                 "cas-bridge.xethub.hf.co") for a in ("--add-host", h + ":127.0.0.1")]
        volumes = [a for src, dst in mounts.items() for a in ("-v", "%s:%s:ro" % (src, dst))]
        run(["podman", "run", "-d", "--name", name, "--hostname", name, "--label", "org.justnews.fleet=" + PREFIX]
            + hub_hosts + ["--systemd=always", "--network", "host"] + volumes + [image, "/sbin/init"])

    @staticmethod
    def wait_booted(name, limit=180):
        deadline = time.monotonic() + limit
        while run(["podman", "exec", name, "systemctl", "is-system-running"], check=False).strip() \
                not in ("running", "degraded"):
            if time.monotonic() > deadline:
                raise SystemExit("%s did not boot within %d s" % (name, limit))
            time.sleep(1)

    def down(self):
        run([str(REPO / "tools/hosts/fleet.sh"), "down"], env=dict(os.environ, JUSTNEWS_FLEET_PREFIX=PREFIX))

    def sh(self, name, script):
        return run(["podman", "exec", name, "sh", "-c", script])

    def blobs(self, name):
        """{(path, inode, mtime): size} of every blob in the host's cache."""
        out = self.sh(name, "find %s/hub -path '*/blobs/*' -type f -printf '%%p %%i %%T@ %%s\\n' 2>/dev/null || true"
                      % HOST_CACHE)
        return {tuple(line.split()[:3]): int(line.split()[3]) for line in out.splitlines() if line.strip()}

    def inventory(self, count, connection="podman"):
        """The first `count` hosts over podman exec, or over SSH (enable_ssh first: sshd per host, pipelining on)."""
        path = self.work / ("inventory-%s-%d.ini" % (connection, count))
        if connection == "ssh":
            lines = ["%s %s\n" % (n, " ".join("%s=%s" % (k, shlex.quote(str(v))) for k, v in self.ssh_vars[n].items()))
                     for n in self.names[:count]]
        else:
            lines = ["%s ansible_connection=containers.podman.podman\n" % n for n in self.names[:count]]
        path.write_text("[bench]\n" + "".join(lines) + "[bench:vars]\nansible_python_interpreter=/usr/bin/python3\n")
        return path

    def enable_ssh(self):
        """sshd on 127.0.0.1:SSH_PORT+i in host i with the run's key (tools/hosts/ssh.py). Returns None, or why
        SSH is not available here (the SSH rows are then named misses)."""
        try:
            from tools.hosts import ssh  # pylint: disable=import-outside-toplevel
        except ImportError:
            return "tools/hosts/ssh.py is not in this checkout"
        try:
            key = ssh.keypair(self.work)
            for i, name in enumerate(self.names, 1):
                if name not in self.ssh_vars:
                    self.ssh_vars[name] = ssh.enable(name, SSH_PORT + i, key)
            self.ssh_argv = {name: ssh.ssh_argv(v["ansible_port"], key) for name, v in self.ssh_vars.items()}
        except (RuntimeError, ValueError, OSError, subprocess.SubprocessError) as exc:
            return "sshd in the test hosts: %s" % exc
        return None

    def pipe_argv(self, name, connection, script):
        """argv that runs `script` on host `name` with stdin from the controller, over the connection."""
        if connection == "ssh":
            return self.ssh_argv[name] + [script]
        return ["podman", "exec", "-i", name, "sh", "-c", script]


# --- the site's mirror ------------------------------------------------------------------------------------------

class Mirror:
    """The site's mirror for the mirror mode: one more container (MIRROR_IMAGE, the Olah wheelhouse mounted at
    /opt/wheelhouse-olah) that the hub_mirror role turns into Olah on 127.0.0.1:MIRROR_PORT in front of the test
    Hub. Deployed per size before the mode's cold run and removed, with its cache, after its warm run."""

    name = PREFIX + "-mirror"
    url = "http://127.0.0.1:%d" % MIRROR_PORT
    wheel_dir = "/opt/wheelhouse-olah"

    def __init__(self, work, hub, env, image=MIRROR_IMAGE):
        self.work, self.hub, self.env, self.image = work, hub, env, image
        cache = Path(os.environ.get("JUSTNEWS_IMAGE_CACHE", "/var/tmp/justnews-images"))
        self.wheelhouse = cache / MIRROR_WHEELHOUSE
        self.inventory = work / "inventory-mirror.ini"
        self.inventory.write_text("[mirror]\n%s ansible_connection=containers.podman.podman\n"
                                  "[mirror:vars]\nansible_python_interpreter=/usr/bin/python3\n" % self.name)
        self.refresh = work / "mirror-apt.yml"
        # Unmeasured: the test images ship no apt lists, and the role installs python3-packaging when it is missing
        # (as the model_cache role does on the hosts, whose task refreshes the lists itself).
        self.refresh.write_text("- name: Refresh the package lists of the mirror host\n  hosts: mirror\n"
                                "  gather_facts: false\n  become: true\n  tasks:\n"
                                "    - name: apt update\n      ansible.builtin.apt:\n        update_cache: true\n")
        self.deploy = work / "mirror.yml"
        self.deploy.write_text("- name: The site's mirror\n  hosts: mirror\n  gather_facts: false\n  become: true\n"
                               "  roles:\n    - role: justnews.huggingface.hub_mirror\n")
        self.vars = work / "vars-mirror-host.json"
        self.vars.write_text(json.dumps({
            "hub_mirror_upstream": hub.url, "hub_mirror_wheelhouse": self.wheel_dir,
            "hub_mirror_listen_address": "127.0.0.1", "hub_mirror_port": MIRROR_PORT,
            "hub_mirror_public_url": self.url, "hub_mirror_cache_size_limit": "2GB"}))

    def missing(self):
        """Why the mirror cannot be deployed here, or None."""
        if not any(self.wheelhouse.glob("olah-*.whl")):
            return ("no Olah wheels in %s: run tools/hosts/build-images.sh bookworm (it downloads them), or pass "
                    "--mirror-sizes ''" % self.wheelhouse)
        if subprocess.run(["podman", "image", "exists", self.image], capture_output=True, check=False).returncode:
            return "no image %s: run tools/hosts/build-images.sh bookworm, or pass --mirror-sizes ''" % self.image
        return None

    def play(self, playbook):
        """Run one playbook on the mirror host; its wall time in seconds."""
        started = time.monotonic()
        proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(self.inventory), "-e", "@%s" % self.vars,
                               str(playbook)], env=self.env, capture_output=True, text=True, check=False)
        took = time.monotonic() - started
        with (self.work / "plays.log").open("a") as out:
            out.write("=== mirror %s rc=%d %.1fs\n%s\n%s\n"
                      % (playbook.name, proc.returncode, took, proc.stdout, proc.stderr))
        if proc.returncode:
            raise SystemExit("the mirror's play %s failed, see %s:\n%s"
                             % (playbook.name, self.work / "plays.log", proc.stdout[-3000:]))
        return took

    def up(self, count):
        """A fresh mirror host with an empty cache, then the hub_mirror role on it: {n, boot_s, seconds} (seconds:
        the role's play, which installs Olah from the wheelhouse, starts it and has it answer a revision from the
        Hub)."""
        self.down()
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", MIRROR_PORT)) == 0:
                raise SystemExit("port %d is in use: the mirror could not listen on it" % MIRROR_PORT)
        env = self.work / "memory-mirror.env"
        env.write_text("MEMORY_MODEL_CACHE=/opt/justnews/models/memory\nMEMORY_PORT=%d\n" % MIRROR_AGENT_PORT)
        started = time.monotonic()
        Fleet.start(self.name, self.image, {self.wheelhouse: self.wheel_dir, env: "/etc/justnews/memory.env"})
        Fleet.wait_booted(self.name)
        # a mirror host runs no agent: the image's would only fail and restart beside Olah
        run(["podman", "exec", self.name, "systemctl", "disable", "--now", "justnews@memory.service"], check=False)
        boot = time.monotonic() - started
        self.play(self.refresh)
        return {"n": count, "boot_s": boot, "seconds": self.play(self.deploy)}

    def down(self):
        run(["podman", "rm", "-f", "-t", "10", self.name], check=False)


# --- one play ---------------------------------------------------------------------------------------------------

class Plays:
    def __init__(self, work, hub, fleet, collections):
        self.work, self.hub, self.fleet = work, hub, fleet
        self.last_output = ""
        self.controller_cache = work / "controller-cache" / "hub"
        self.xet_sizes = hub.xet_sizes(MINILM_REPO, COMMIT_B)
        self.env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_FORKS="10",
                        ANSIBLE_NOCOLOR="1", ANSIBLE_HOST_KEY_CHECKING="0", ANSIBLE_RETRY_FILES_ENABLED="0")
        self.baseline = work / "baseline.yml"
        self.baseline.write_text(
            "- name: Download the model on every host, as people do today\n"
            "  hosts: bench\n  gather_facts: false\n  tasks:\n"
            "    - name: hf download\n      ansible.builtin.command:\n"
            "        argv: [%s/bin/hf, download, %s, --revision, %s, --cache-dir, %s/hub]\n"
            "      environment:\n        HF_ENDPOINT: %s\n        HF_HUB_DISABLE_TELEMETRY: '1'\n"
            % (HOST_VENV, MINILM_REPO, COMMIT_B, HOST_CACHE, hub.url))

    def role_vars(self, mode, models):
        """The prefetch playbook's variables for a role mode: hub and controller against the Hub; mirror is
        model_cache_source hub with the endpoint at the site's mirror and Xet off (every byte through it)."""
        path = self.work / ("vars-%s.json" % mode)
        role = {
            "model_cache_hosts": "bench", "model_cache_serial": "100%",
            "model_cache_source": "hub" if mode == "mirror" else mode,
            # No units, so no owner to read from them: the agents' user, as their units would give.
            "model_cache_units": [], "model_cache_owner": "justnews", "model_cache_group": "justnews",
            "model_cache_models": models, "model_cache_endpoint": self.hub.url,
            "model_cache_controller_cache": str(self.controller_cache),
            "model_cache_pip_extra_args": "--no-index --find-links /opt/wheelhouse"}
        if mode == "mirror":
            role.update(model_cache_endpoint=Mirror.url, model_cache_xet=False, model_cache_read_timeout=60)
        path.write_text(json.dumps(role))
        return path

    def playbook(self, mode, count, models=None, connection="podman", profile=False):
        """Run one play on the first `count` hosts over `connection`; return its wall time in seconds."""
        if mode == "baseline":
            argv = [str(self.baseline)]
        else:
            models = [{"repo_id": MINILM_REPO, "revision": COMMIT_B}] if models is None else models
            argv = ["justnews.huggingface.prefetch", "-e", "@%s" % self.role_vars(mode, models)]
        log = self.work / "plays.log"
        started = time.monotonic()
        env = dict(self.env, ANSIBLE_PIPELINING="1") if connection == "ssh" else dict(self.env)
        if profile:  # the per-task times of the play, for a miss's explanation
            env["ANSIBLE_CALLBACKS_ENABLED"] = "ansible.posix.profile_tasks"
        proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(self.fleet.inventory(count, connection))]
                              + argv, env=env, capture_output=True, text=True, check=False)
        took = time.monotonic() - started
        self.last_output = proc.stdout
        with log.open("a") as out:
            out.write("=== %s N=%d over %s rc=%d %.1fs\n%s\n%s\n"
                      % (mode, count, connection, proc.returncode, took, proc.stdout, proc.stderr))
        if proc.returncode:
            raise SystemExit("the %s play on %d hosts failed, see %s:\n%s" % (mode, count, log, proc.stdout[-3000:]))
        return took

    def prepare(self, count):
        """Unmeasured: build the role's venv (huggingface_hub and its `hf` CLI) on every host, fetch nothing."""
        self.playbook("hub", count, models=[])

    def cold(self, count):
        for name in self.fleet.names[:count]:
            self.fleet.sh(name, "rm -rf %s" % HOST_CACHE)
        run(["rm", "-rf", str(self.controller_cache.parent)])

    def measure(self, mode, count, label):
        hosts = self.fleet.names[:count]
        before = {h: self.fleet.blobs(h) for h in hosts}
        self.hub.reset()
        seconds = self.playbook(mode, count)
        counters = self.hub.counters(self.xet_sizes)
        moved = 0
        for host in hosts:
            moved += sum(size for key, size in self.fleet.blobs(host).items() if key not in before[host])
        row = dict(counters, mode=mode, n=count, run=label, moved_bytes=moved, seconds=seconds)
        if mode == "mirror":
            row["sites"] = MIRROR_SITES
        return row

    def loopback(self, count, repo=MINILM_REPO, connection="podman"):
        """The loopback limit of the carry, at once to the first `count` hosts as the play's one batch with forks
        10 carries: the model's blob files in the controller's cache (symlinks into its shared store
        dereferenced, so the same bytes the carry sends), piped by tar into `podman exec -i <host> tar -x` under
        LOOPBACK_DIR, timed from the first start to the last exit, then removed. Never raises: a failure is
        returned as {"error": ...} so that the tables and targets are still printed."""
        hosts = self.fleet.names[:count]
        blobs = self.controller_cache / ("models--" + repo.replace("/", "--")) / "blobs"
        result = {"n": count, "hosts": len(hosts), "dir": LOOPBACK_DIR, "connection": connection}
        try:
            names = sorted(os.listdir(blobs))
            per_host = sum(os.stat(blobs / name).st_size for name in names)  # follows the store's links
        except OSError as exc:
            return dict(result, error="no blobs in the controller's cache: %s" % exc)
        if not names:
            return dict(result, error="no blobs in %s" % blobs)
        result.update(files=len(names), bytes_per_host=per_host, bytes=per_host * len(hosts))
        clean = ["podman", "exec"]
        try:
            for host in hosts:
                run(clean + [host, "rm", "-rf", LOOPBACK_DIR])
            procs = []
            started = time.monotonic()
            for host in hosts:
                # pylint: disable-next=consider-using-with
                tar = subprocess.Popen(["tar", "-C", str(blobs), "-chf", "-", "--"] + names,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                # pylint: disable-next=consider-using-with
                unpack = subprocess.Popen(self.fleet.pipe_argv(host, connection, "mkdir -p %s && exec tar -C %s -xf -"
                                                               % (LOOPBACK_DIR, LOOPBACK_DIR)),
                                          stdin=tar.stdout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                tar.stdout.close()  # the pipe is the unpacker's now: tar sees it close if the unpacker dies
                procs.append((host, tar, unpack))
            errors = []
            for host, tar, unpack in procs:
                unpack_err = unpack.communicate()[1]
                tar_err = tar.communicate()[1]
                if tar.returncode or unpack.returncode:
                    errors.append("%s: tar %d, podman exec tar %d: %s%s" % (
                        host, tar.returncode, unpack.returncode, tar_err.decode(errors="replace")[-500:],
                        unpack_err.decode(errors="replace")[-500:]))
            result["seconds"] = time.monotonic() - started
            received = 0
            for host in hosts:
                out = self.fleet.sh(host, "find %s -type f -printf '%%s\\n'" % LOOPBACK_DIR)
                received += sum(int(line) for line in out.split())
            result["received"] = received
            if errors:
                result["error"] = "; ".join(errors)
            elif received != result["bytes"]:
                result["error"] = "the hosts received %d bytes, not %d" % (received, result["bytes"])
        except (OSError, SystemExit) as exc:
            result["error"] = str(exc)
        finally:
            for host in hosts:
                run(clean + [host, "rm", "-rf", LOOPBACK_DIR], check=False)
        return result


# --- warm runs and the carry, over podman and over SSH ---------------------------------------------------------

PROFILE_LINE = re.compile(r"^(.+?) -{3,} (\d+\.\d+)s$")


def profile_tasks(output, top=5):
    """[(task, seconds)] of ansible.posix.profile_tasks' recap in a play's output, slowest first."""
    found = []
    for line in output.splitlines():
        match = PROFILE_LINE.match(line.strip())
        if match:
            found.append((match.group(1).strip(), float(match.group(2))))
    return sorted(found, key=lambda t: -t[1])[:top]


def warm_targets(rows):
    """[(target, met, detail)]: per connection and N, the mean of the module's warm plays within WARM_MAX x the
    mean of the bare hf download task's; a row that could not run is a named miss (its `error`)."""
    targets = []
    for r in rows:
        name = "warm run <= %.1fx the bare hf download task over %s at N=%d" % (WARM_MAX, r["connection"], r["n"])
        if r.get("error"):
            targets.append((name, False, "not measured: " + r["error"]))
            continue
        module, base = statistics.mean(r["module_s"]), statistics.mean(r["baseline_s"])
        slow = "; slowest tasks: " + ", ".join("%s %.1f s" % t for t in r.get("tasks", [])) if r.get("tasks") else ""
        targets.append((name, module <= WARM_MAX * base, "%.1f s against %.1f s (%s; runs %s against %s)%s" % (
            module, base, fmt_ratio(ratio(module, base)), " ".join("%.1f" % x for x in r["module_s"]),
            " ".join("%.1f" % x for x in r["baseline_s"]), slow)))
    return targets


def carry_rates(row):
    """The carry's rate (bytes over the cold play's wall time less the warm play's: the play's other work is in
    both), its end-to-end rate (bytes over the cold play's wall time) and the raw stream's, in bytes/s, and their
    ratios; None where a figure is missing."""
    carry_s = row["cold_s"] - row["warm_s"] if row.get("cold_s") is not None and row.get("warm_s") is not None \
        else None
    carry = ratio(row.get("bytes"), carry_s) if carry_s and carry_s > 0 else None
    end = ratio(row.get("bytes"), row.get("cold_s"))
    raw = ratio(row.get("raw_bytes"), row.get("raw_s")) if not row.get("raw_error") else None
    return {"carry_s": carry_s, "carry": carry, "end_to_end": end, "raw": raw,
            "ratio": ratio(carry, raw) if carry else None, "ratio_end_to_end": ratio(end, raw) if end else None}


def carry_targets(rows):
    """[(target, met, detail)]: per connection, hf_carry's rate >= CARRY_MIN x the raw stream's (goal CARRY_GOAL)."""
    targets = []
    for row in rows:
        name = "carry >= %.1fx the raw tar stream over %s" % (CARRY_MIN, row["connection"])
        if row.get("error") or row.get("raw_error"):
            targets.append((name, False, "not measured: " + (row.get("error") or row.get("raw_error"))))
            continue
        r = carry_rates(row)
        targets.append((name, r["ratio"] is not None and r["ratio"] >= CARRY_MIN, (
            "%s (goal %.1fx): carry %s MB/s (%s in %.1f s: cold play %.1f s less warm play %.1f s), raw stream %s "
            "MB/s; end to end %s MB/s, %s") % (
            fmt_ratio(r["ratio"]), CARRY_GOAL, fmt_rate(r["carry"], MB), human(row["bytes"]),
            r["carry_s"] or 0, row["cold_s"], row["warm_s"], fmt_rate(r["raw"], MB), fmt_rate(r["end_to_end"], MB),
            fmt_ratio(r["ratio_end_to_end"]))))
    return targets


def warm_table(rows):
    header = ("connection", "N", "module warm s", "bare hf task s", "x", "load")
    body = [(r["connection"], r["n"], " ".join("%.1f" % x for x in r.get("module_s", [])) or "-",
             " ".join("%.1f" % x for x in r.get("baseline_s", [])) or "-",
             fmt_ratio(ratio(statistics.mean(r["module_s"]), statistics.mean(r["baseline_s"])))
             if r.get("module_s") and r.get("baseline_s") else "-",
             "%.1f" % r["load"] if r.get("load") is not None else "-") for r in rows]
    return format_table(header, body)


def carry_table(rows):
    header = ("connection", "bytes", "cold s", "warm s", "carry s", "carry MB/s", "raw s", "raw MB/s", "x raw",
              "e2e MB/s", "x raw e2e", "load")
    body = []
    for row in rows:
        r = carry_rates(row)
        body.append((row["connection"], human(row["bytes"]) if row.get("bytes") else "-",
                     "%.1f" % row["cold_s"] if row.get("cold_s") is not None else "-",
                     "%.1f" % row["warm_s"] if row.get("warm_s") is not None else "-",
                     "%.1f" % r["carry_s"] if r["carry_s"] is not None else "-", fmt_rate(r["carry"], MB),
                     "%.1f" % row["raw_s"] if row.get("raw_s") else "-", fmt_rate(r["raw"], MB),
                     fmt_ratio(r["ratio"]), fmt_rate(r["end_to_end"], MB), fmt_ratio(r["ratio_end_to_end"]),
                     "%.1f" % row["load"] if row.get("load") is not None else "-"))
    return format_table(header, body)


def warm_part(plays, sizes, connections, ssh_why):
    """Per connection and N: the module's warm prefetch play (model_cache_source hub, the model already in the
    hosts' caches) against the bare `hf download` task on the same warm caches, alternating baseline, module,
    module, baseline. The caches are filled once, unmeasured."""
    largest = max(sizes)
    plays.cold(largest)
    plays.playbook("hub", largest)
    plays.playbook("baseline", largest)
    rows = []
    for connection in connections:
        for n in sizes:
            row = {"connection": connection, "n": n, "module_s": [], "baseline_s": [], "load": os.getloadavg()[0]}
            if connection == "ssh" and ssh_why:
                rows.append(dict(row, error=ssh_why))
                continue
            try:
                for mode in ("baseline", "hub", "hub", "baseline"):
                    seconds = plays.playbook(mode, n, connection=connection, profile=mode == "hub")
                    row["module_s" if mode == "hub" else "baseline_s"].append(seconds)
                    if mode == "hub":  # the module's last play: its per-task times
                        row["tasks"] = profile_tasks(plays.last_output)
            except SystemExit as exc:
                row["error"] = str(exc)[:500]
            rows.append(row)
            print("  warm over %-6s N=%-2d module %s s, bare task %s s%s" % (
                connection, n, " ".join("%.1f" % x for x in row["module_s"]),
                " ".join("%.1f" % x for x in row["baseline_s"]),
                "  " + row["error"][:200] if row.get("error") else ""), flush=True)
    return rows


def carry_part(plays, connections, ssh_why):
    """Per connection, to the first host: the controller-mode prefetch of LARGE_REPO with the controller's cache
    warm (filled by an unmeasured first play) and the host's cache empty (the carry sends every blob), then the
    same play warm (nothing to send); the difference is the carry. Beside it the raw stream of the same blob
    files: `tar -ch | <connection> tar -x`."""
    models = [{"repo_id": LARGE_REPO, "revision": LARGE_COMMIT}]
    host = plays.fleet.names[0]
    large_dir = "%s/hub/models--%s" % (HOST_CACHE, LARGE_REPO.replace("/", "--"))
    rows = []
    primed = False
    for connection in connections:
        row = {"connection": connection, "load": os.getloadavg()[0]}
        if connection == "ssh" and ssh_why:
            rows.append(dict(row, error=ssh_why))
            continue
        try:
            if not primed:  # the controller's cache: filled once, not measured
                plays.playbook("controller", 1, models=models, connection=connection)
                primed = True
            plays.fleet.sh(host, "rm -rf %s" % large_dir)
            before = plays.fleet.blobs(host)
            row["cold_s"] = plays.playbook("controller", 1, models=models, connection=connection)
            row["bytes"] = sum(size for key, size in plays.fleet.blobs(host).items() if key not in before)
            row["warm_s"] = plays.playbook("controller", 1, models=models, connection=connection)
            plays.fleet.sh(host, "rm -rf %s" % large_dir)
            loop = plays.loopback(1, repo=LARGE_REPO, connection=connection)
            row.update(raw_bytes=loop.get("bytes"), raw_s=loop.get("seconds"), raw_error=loop.get("error"))
        except SystemExit as exc:
            row["error"] = str(exc)[:500]
        rows.append(row)
        r = carry_rates(row)
        print("  carry over %-6s %s" % (connection, row["error"][:300] if row.get("error") else
                                        "%s, cold %.1f s, warm %.1f s, carry %s MB/s, raw %s MB/s" % (
                                            human(row.get("bytes") or 0), row["cold_s"], row["warm_s"],
                                            fmt_rate(r["carry"], MB), fmt_rate(r["raw"], MB))), flush=True)
    return rows


# --- throughput and memory on this machine ---------------------------------------------------------------------

# Each step is run once per transport. The target rows alternate module and hf download so a drift of the
# machine's load hits both tools alike: module, hf, hf, module at the module's default memory cap, then the
# module uncapped (download_memory=0) around a third hf run. The rest explain a difference: the module's fixed
# cost on a warm cache, the checksum pass alone over the downloaded file, and the library call the module makes
# (snapshot_download) in a bare interpreter, without Ansible or the module's checks.
MODULE = "module"
UNCAPPED = "module, download_memory=0"
HF = "hf download"
THROUGHPUT_PLAN = (
    (MODULE, "module", True),
    (HF, "hf", True),
    (HF, "hf", True),
    (MODULE, "module", True),
    (UNCAPPED, "module_uncapped", True),
    (HF, "hf", True),
    (UNCAPPED, "module_uncapped", True),
    ("module, warm cache (no download)", "module", False),
    ("sha256 of the file (checksum pass alone)", "sha256", False),
    ("snapshot_download alone", "snapshot_download", True),
)
TRANSPORTS = (("xet", "Xet"), ("http", "plain HTTP"))
CAS_MIN = 0.9  # the least share of the file the CAS must send per cold download, or the data deduplicates
SHA256_CODE = ("import hashlib, os, sys\n"
               "digest, fd = hashlib.sha256(), os.open(sys.argv[1], os.O_RDONLY)\n"
               "for chunk in iter(lambda: os.read(fd, 4 << 20), b''):\n"
               "    digest.update(chunk)\n"
               "print(digest.hexdigest())\n")
SNAPSHOT_CODE = ("import sys\nfrom huggingface_hub import snapshot_download\n"
                 "snapshot_download(sys.argv[1], cache_dir=sys.argv[2])\n")


def interleave(steps, transports):
    """[(step, transport)]: every step on every transport, one after the other, the transport that goes first
    alternating from step to step, so neither is always the one that follows the other's page cache and load."""
    order = []
    for index in range(steps):
        ahead = transports if index % 2 == 0 else tuple(reversed(transports))
        order.extend((index, transport) for transport in ahead)
    return order


def served_by(requests, bytes_by_kind, file_bytes):
    """How the Hub served a run, from its counters: the CAS (Xet), the HTTP bridge, the resolver, or nothing."""
    if requests.get("xorb"):
        return "xet"
    if requests.get("bridge"):
        return "bridge"
    if bytes_by_kind.get("get", 0) >= file_bytes:
        return "resolver"
    return "cache" if not bytes_by_kind.get("get") else "partial"


def mean_of(runs, tool, key="seconds"):
    values = [r[key] for r in runs if r["tool"] == tool and r.get(key) is not None]
    return statistics.mean(values) if values else None


def peak_of(runs, tool):
    return max((r["peak_pss"] for r in runs if r["tool"] == tool), default=0)


def cas_check(file_bytes, sent):
    """(met, detail): every cold Xet download got at least CAS_MIN of the file's size from the CAS (xorb bytes);
    less means the test data deduplicates and the Xet figures would measure local writes."""
    if not sent:
        return False, "no cold Xet download measured"
    low = min(sent)
    return low >= CAS_MIN * file_bytes, "%s to %s per cold download, %.0f%% of the %s file at the least" % (
        human(low), human(max(sent)), 100.0 * low / file_bytes, human(file_bytes))


def summarise(runs, file_bytes=None):
    """One transport's figures: the target ratios (mean MiB/s of the module, at its default cap and uncapped,
    over that of hf download), peaks and CPU of every process per tool, the CAS bytes per cold download, the
    checksum failures, and where the module's extra time goes."""
    speed = {t: mean_of(runs, t, "bytes_per_s") for t in (MODULE, UNCAPPED, HF)}
    module_s, hf_s = mean_of(runs, MODULE), mean_of(runs, HF)
    cold = [r for r in runs if r["bytes_per_s"]]
    return {
        "ratio": ratio(speed[MODULE], speed[HF]) if speed[MODULE] else None,
        "ratio_uncapped": ratio(speed[UNCAPPED], speed[HF]) if speed[UNCAPPED] else None,
        "module_peak": peak_of(runs, MODULE), "uncapped_peak": peak_of(runs, UNCAPPED), "hf_peak": peak_of(runs, HF),
        "module_cpu_s": mean_of(runs, MODULE, "host_cpu_s"), "uncapped_cpu_s": mean_of(runs, UNCAPPED, "host_cpu_s"),
        "hf_cpu_s": mean_of(runs, HF, "host_cpu_s"),
        "module_s": module_s, "hf_s": hf_s,
        "gap_s": module_s - hf_s if module_s is not None and hf_s is not None else None,
        "module_own_s": mean_of(runs, MODULE, "module_elapsed"),
        "warm_s": mean_of(runs, "module, warm cache (no download)"),
        "checksum_s": mean_of(runs, "sha256 of the file (checksum pass alone)"),
        "snapshot_download_s": mean_of(runs, "snapshot_download alone"),
        "snapshot_download_ratio": ratio(hf_s, mean_of(runs, "snapshot_download alone")),
        "cas_sent": [r["hub_bytes"].get("xorb", 0) for r in cold if r.get("via") == "xet"],
        "hub_bytes_per_download": max((sum(r.get("hub_bytes", {}).values()) for r in cold), default=None),
        "sha_checked": sum(1 for r in cold if r.get("sha_ok") is not None),
        "sha_failed": [r["tool"] for r in cold if r.get("sha_ok") is False],
        "cold_runs": len(cold),
        "file_bytes": file_bytes,
    }


def breakdown_text(name, summary):
    """One transport's gap between the module and hf download, in the measured parts that explain it."""
    s = summary

    def sec(value):
        return "-" if value is None else "%.1f s" % value
    sent = s.get("hub_bytes_per_download")
    return ("%s: the Hub sent %s per cold download; module %s (its own elapsed %s; the rest is ansible's start and "
            "its polling of the job), hf download %s, gap %s; checksum pass alone %s, module on a warm cache %s; "
            "snapshot_download alone %s hf download; CPU of every process, module %s, uncapped %s, hf download %s"
            % (name, "-" if sent is None else human(sent), sec(s["module_s"]), sec(s["module_own_s"]),
               sec(s["hf_s"]), "-" if s["gap_s"] is None else "%+.1f s" % s["gap_s"], sec(s["checksum_s"]),
               sec(s["warm_s"]), fmt_ratio(s["snapshot_download_ratio"]), sec(s["module_cpu_s"]),
               sec(s["uncapped_cpu_s"]), sec(s["hf_cpu_s"])))


def throughput_targets(name, summary, uncapped_why=None):
    """[(target, met, detail)] of one transport: throughput at the default cap and uncapped, the module's peak
    at its default cap, every file's SHA-256, and on Xet the CAS's share of the file."""
    s = summary
    targets = []
    for label, key, why in (("at its default download_memory", "ratio", None),
                            ("uncapped (download_memory=0)", "ratio_uncapped", uncapped_why)):
        value = s.get(key)
        detail = ("not measured: " + why) if why and value is None else (
            "%s (goal %.2fx)" % (fmt_ratio(value), THROUGHPUT_GOAL))
        targets.append(("module throughput %s >= %.2fx hf download on %s" % (label, THROUGHPUT_MIN, name),
                        value is not None and value >= THROUGHPUT_MIN, detail))
    peak = s.get("module_peak", 0)
    targets.append(("module peak memory at its default download_memory <= %d MiB on %s" % (PEAK_MIB_MAX, name),
                    0 < peak <= PEAK_MIB_MAX * MIB,
                    ("%.0f MiB (hf download %.0f MiB, uncapped module %.0f MiB; summed Pss of every process of the "
                     "run's cgroup, the controller's apart)" % (peak / MIB, s.get("hf_peak", 0) / MIB,
                                                               s.get("uncapped_peak", 0) / MIB))
                    if peak else "not observed"))
    cold, checked = s.get("cold_runs", 0), s.get("sha_checked", 0)
    targets.append(("every file's SHA-256 checked after each cold download on %s" % name,
                    cold > 0 and checked == cold and not s.get("sha_failed"),
                    "%d of %d cold downloads checked%s" % (checked, cold, "; mismatch after: " + ", ".join(
                        s["sha_failed"]) if s.get("sha_failed") else "")))
    if s.get("via_xet", name == "Xet"):
        met, detail = cas_check(s.get("file_bytes") or 0, s.get("cas_sent"))
        targets.append(("the CAS sent >= %d%% of the file per cold download on %s" % (CAS_MIN * 100, name),
                        met, detail))
    return targets


def throughput_table(result):
    """The plan's rows, one line per step, each transport's figures side by side."""
    names = [name for key, name in TRANSPORTS if key in result["transports"]]
    header = ["tool"]
    for name in names:
        header += [name + " s", "MiB/s", "peak MiB", "anon MiB", "CPU s", "via", "load"]
    body = []
    for index, (label, _kind, _cold) in enumerate(THROUGHPUT_PLAN):
        line = [label]
        for key, _name in TRANSPORTS:
            if key not in result["transports"]:
                continue
            r = next((r for r in result["transports"][key]["runs"] if r["step"] == index), None)
            if r is None:
                line += ["-"] * 7
                continue
            line += ["%.1f" % r["seconds"], "%.0f" % (r["bytes_per_s"] / MIB) if r["bytes_per_s"] else "-",
                     "%.0f" % (r["peak_pss"] / MIB) if r["peak_pss"] else "-",
                     "%.0f" % (r["peak_anon"] / MIB) if r.get("peak_anon") else "-",
                     "%.1f" % r["host_cpu_s"] if r.get("host_cpu_s") is not None else "-", r["via"],
                     "%.1f" % r["load"] if r.get("load") is not None else "-"]
        body.append(line)
    return format_table(header, body)


def big_file(cache):
    """The downloaded large file itself, in the shared store or the repository's blobs: the largest regular file."""
    found = [os.path.join(root, name) for root, _dirs, files in os.walk(cache) for name in files]
    found = [path for path in found if not os.path.islink(path)]
    if not found:
        raise SystemExit("no file under %s after the download" % cache)
    return max(found, key=os.path.getsize)


def file_digest(path, algorithm, prefix=b""):
    digest = hashlib.new(algorithm, prefix)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(4 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def snapshot_mismatches(snapshot, listing):
    """Files of the Hub's listing whose downloaded copy under `snapshot` is missing or differs: LFS files by
    their SHA-256 (lfs.oid), others by their git blob id."""
    bad = []
    for entry in listing:
        path = Path(snapshot) / entry["path"]
        if not path.is_file():
            bad.append(entry["path"] + " (missing)")
        elif entry.get("lfs"):
            if file_digest(path, "sha256") != entry["lfs"]["oid"]:
                bad.append(entry["path"])
        elif file_digest(path, "sha1", b"blob %d\0" % path.stat().st_size) != entry["oid"]:
            bad.append(entry["path"])
    return bad


UNCAPPED_WHY = "hf_snapshot of this checkout has no download_memory option"


def has_download_memory():
    """Whether hf_snapshot of this checkout has the download_memory option."""
    text = (REPO / "plugins/modules/hf_snapshot.py").read_text()
    return "\n  download_memory:" in text


def throughput(work, hubs, collections):
    """Run THROUGHPUT_PLAN on each transport's Hub ({key: Hub}), interleaved; figures per transport. Each run in
    a fresh cgroup (benchmarks/procstat.py); after each cold download every file is checked against the Hub's
    listing, and a cold Xet download that got less than CAS_MIN of the file from the CAS stops the run."""
    size = hubs["xet"].model_bytes(LARGE_REPO, "main")
    listing = hubs["xet"].listing(LARGE_REPO, "main")
    uncapped = has_download_memory()
    base = dict(os.environ, HF_HOME=str(work / "tp-home"), ANSIBLE_COLLECTIONS_PATH=str(collections),
                ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0", ANSIBLE_NOCOLOR="1",
                ANSIBLE_PIPELINING="0", ANSIBLE_DEPRECATION_WARNINGS="0")

    def command(kind, hub, cache):
        if kind in ("module", "module_uncapped"):
            args = "repo_id=%s revision=main cache_dir=%s endpoint=%s" % (LARGE_REPO, cache, hub.url)
            if kind == "module_uncapped":
                args += " download_memory=0"
            return [str(BIN / "ansible"), "localhost", "-c", "local", "-i", "localhost,", "-o",
                    "-e", "ansible_python_interpreter=" + sys.executable,
                    "-m", "justnews.huggingface.hf_snapshot", "-a", args]
        if kind == "hf":
            return [str(BIN / "hf"), "download", LARGE_REPO, "--cache-dir", str(cache)]
        if kind == "snapshot_download":
            return [sys.executable, "-c", SNAPSHOT_CODE, LARGE_REPO, str(cache)]
        return [sys.executable, "-c", SHA256_CODE, big_file(cache)]

    result = {"file_bytes": size, "uncapped": uncapped, "transports": {key: {"runs": []} for key in hubs},
              "memory": "peak of summed Pss (and of Pss_Anon) over every process of the run's cgroup v2, polled "
                        "every 20 ms; page cache of written files not counted; the ansible CLI's own processes "
                        "(the controller) apart"}
    for index, key in interleave(len(THROUGHPUT_PLAN), tuple(hubs)):
        label, kind, cold = THROUGHPUT_PLAN[index]
        if kind == "module_uncapped" and not uncapped:
            continue
        hub, cache = hubs[key], work / ("tp-cache-" + key)
        if cold:
            run(["rm", "-rf", str(cache)])
        argv = command(kind, hub, cache)
        hub.reset()
        load = os.getloadavg()[0]
        m = procstat.measured(argv, dict(base, HF_ENDPOINT=hub.url), controller=kind.startswith("module"))
        if m["returncode"] or '"failed": true' in m["stdout"]:
            raise SystemExit("%s failed:\n%s%s" % (label, m["stdout"][-3000:], m["stderr"][-3000:]))
        stats = hub.stats()
        own = None
        if kind.startswith("module"):  # the module's own account of its run, without ansible's start
            own = json.loads(m["stdout"].strip().splitlines()[-1].split("=> ", 1)[1]).get("elapsed")
        via = "-" if kind == "sha256" else served_by(stats["requests"], stats["bytes"], size)
        sha_ok = None
        if cold:
            snapshot = cache / ("models--" + LARGE_REPO.replace("/", "--")) / "snapshots" / LARGE_COMMIT
            bad = snapshot_mismatches(snapshot, listing)
            sha_ok = not bad
            if bad:
                print("  SHA-256 MISMATCH after %s on %s: %s" % (label, key, ", ".join(bad)), flush=True)
            if via == "xet" and stats["bytes"].get("xorb", 0) < CAS_MIN * size:
                raise SystemExit("the CAS sent %s for a cold download of the %s file (under %d%%): the test data "
                                 "deduplicates, so the Xet figures would measure local writes; see "
                                 "tools/hub/hubserver.py large_block" % (
                                     human(stats["bytes"].get("xorb", 0)), human(size), CAS_MIN * 100))
        result["transports"][key]["runs"].append({
            "step": index, "tool": label, "seconds": m["seconds"], "bytes_per_s": size / m["seconds"] if cold else None,
            "peak_pss": m["peak_pss"], "peak_anon": m["peak_anon"], "cpu_s": m["cpu_s"],
            "host_cpu_s": m["host_cpu_s"], "controller_pss": m["controller_pss"], "processes": m["processes"],
            "stragglers": m["stragglers"], "memory_peak": m["memory_peak"], "module_elapsed": own,
            "hub_requests": stats["requests"], "hub_bytes": stats["bytes"], "load": load, "via": via,
            "sha_ok": sha_ok})
        print("  %-10s %-42s %6.1f s  peak %5.0f MiB  CPU %5.1f s  %s  (load average %.2f at its start)"
              % (dict(TRANSPORTS)[key], label, m["seconds"], m["peak_pss"] / MIB, m["host_cpu_s"],
                 "CAS sent %s" % human(stats["bytes"]["xorb"]) if via == "xet" else via, load), flush=True)
    for key in hubs:
        run(["rm", "-rf", str(work / ("tp-cache-" + key))])
        result["transports"][key].update(summarise(result["transports"][key]["runs"], size))
    return result


# --- agent start with the Hub unreachable ----------------------------------------------------------------------

def silent_listener():
    """A 127.0.0.1 port that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    held = []

    def accept():
        while True:
            try:
                held.append(sock.accept()[0])
            except OSError:
                return
    threading.Thread(target=accept, daemon=True).start()
    return sock, held


def closed_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def start_agent(agent, env, limit):
    """Seconds until the agent's /ready says ready; None if it did not within `limit` or exited first."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", AGENT_PORT)) == 0:
            raise SystemExit("port %d is in use: the agent could not listen on it" % AGENT_PORT)
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(agent)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        while time.monotonic() - started < limit and proc.poll() is None:
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/ready" % AGENT_PORT, timeout=2) as resp:
                    if json.load(resp).get("ready") is True:
                        return time.monotonic() - started
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        if proc.poll() is not None:
            raise SystemExit("the agent exited (%d) before it was ready" % proc.returncode)
        return None
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def agent_start(work, hub, collections, limit):
    cache = work / "agent-cache"
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_LOCALHOST_WARNING="0",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
    run([str(BIN / "ansible"), "localhost", "-c", "local", "-i", "localhost,", "-o",
         "-e", "ansible_python_interpreter=" + sys.executable, "-m", "justnews.huggingface.hf_snapshot",
         "-a", "repo_id=%s revision=main cache_dir=%s endpoint=%s" % (MINILM_REPO, cache, hub.url)], env=env)
    agent = REPO / "tools/hosts/rootfs/opt/justnews/agents/memory.py"
    listener, held = silent_listener()
    hubs = {"silent listener": "http://127.0.0.1:%d" % listener.getsockname()[1],
            "closed port": "http://127.0.0.1:%d" % closed_port()}
    results = []
    for where, url in hubs.items():
        for offline in (True, False):
            env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING", "TRANSFORMERS_"))}
            env.update(HF_ENDPOINT=url, HF_HOME=str(work / "agent-home"), HF_HUB_CACHE=str(cache),
                       MEMORY_PORT=str(AGENT_PORT), MEMORY_READY_FILE="", HF_HUB_DISABLE_TELEMETRY="1")
            if offline:
                env["HF_HUB_OFFLINE"] = "1"
            # offline starts take seconds: three of them, against the machine's noise; online ones once
            times = [start_agent(agent, env, limit) for _attempt in range(3 if offline else 1)]
            results.append({"hub": where, "offline": offline, "runs": times,
                            "seconds": statistics.median(times) if None not in times else None})
    listener.close()
    for conn in held:
        conn.close()
    return results


PARTS = ("fleet", "throughput", "warm", "carry", "agent", "hub_requests")


def selected_parts(only, skip):
    """The parts to run: those given by --only-* (all when none is), less those given by --skip-*."""
    chosen = [p for p in PARTS if only.get(p)] or list(PARTS)
    return [p for p in chosen if not skip.get(p)]


# --- main --------------------------------------------------------------------------------------------------------

def main():  # pylint: disable=too-many-locals,too-many-statements
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,5,10", help="fleet sizes N (default 1,5,10)")
    parser.add_argument("--mirror-sizes", default=MIRROR_SIZES,
                        help="the sizes among --sizes at which the mirror mode runs (default %s; '' for none)"
                        % MIRROR_SIZES)
    parser.add_argument("--mirror-image", default=MIRROR_IMAGE,
                        help="image of the mirror host, with the Python of the Olah wheelhouse (default %s)"
                        % MIRROR_IMAGE)
    parser.add_argument("--image", default="localhost/justnews-host:trixie")
    parser.add_argument("--json", default=str(REPO / "benchmark-results/fleet.json"), help="where to write the figures")
    for part in PARTS:
        parser.add_argument("--skip-" + part.replace("_", "-"), action="store_true")
        parser.add_argument("--only-" + part.replace("_", "-"), action="store_true",
                            help="run this part (several --only-* run their parts together, in one run)")
    parser.add_argument("--connections", default=",".join(CONNECTIONS),
                        help="connections of the warm and carry parts (default %s)" % ",".join(CONNECTIONS))
    parser.add_argument("--agent-limit", type=float, default=300, help="seconds to wait for /ready (default 300)")
    parser.add_argument("--keep", action="store_true", help="leave the containers running")
    opts = parser.parse_args()
    chosen = selected_parts({p: getattr(opts, "only_" + p) for p in PARTS}, {p: getattr(opts, "skip_" + p)
                                                                               for p in PARTS})
    for part in PARTS:
        setattr(opts, "skip_" + part, part not in chosen)
    connections = [c for c in opts.connections.split(",") if c.strip()]
    if set(connections) - set(CONNECTIONS):
        parser.error("--connections: one or more of %s" % ",".join(CONNECTIONS))
    sizes = sorted({int(s) for s in opts.sizes.split(",") if s.strip()})
    if any(n < 1 or n > 10 for n in sizes):
        raise SystemExit("--sizes: each N must be 1..10 (agent ports %d-%d)" % (AGENT_PORT, AGENT_PORT + 9))
    wanted = {int(s) for s in opts.mirror_sizes.split(",") if s.strip()}
    mirror_sizes = [] if opts.skip_fleet else sorted(wanted & set(sizes))
    if wanted - set(sizes) and not opts.skip_fleet:
        print("--mirror-sizes: %s not among --sizes, not run" % ",".join(map(str, sorted(wanted - set(sizes)))))

    load_start = os.getloadavg()
    print("fleet benchmark, %s; load average at start: %.2f %.2f %.2f (%d CPUs)"
          % (time.strftime("%Y-%m-%d %H:%M:%S %Z"), *load_start, os.cpu_count()), flush=True)
    work = Path(tempfile.mkdtemp(prefix="jnhf-fleet-"))
    collections = install_collection(work / "collections")
    hub = Hub(work)
    result = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "sizes": sizes, "mirror_sizes": mirror_sizes,
              "image": opts.image, "mirror_image": opts.mirror_image,
              "load_start": load_start, "model": {"repo_id": MINILM_REPO, "revision": COMMIT_B}}
    model_bytes = result["model"]["bytes"] = hub.model_bytes(MINILM_REPO, COMMIT_B)
    rows, loopbacks, deploys, tput, agent, hub_http, fleet_used = [], [], [], None, None, None, False
    warm_rows, carry_rows = [], []
    fleet = Fleet(work, opts.image)
    plays = Plays(work, hub, fleet, collections)
    mirror = None
    try:
        if not opts.skip_fleet:
            if mirror_sizes:
                mirror = Mirror(work, hub, plays.env, opts.mirror_image)
                why = mirror.missing()
                if why:
                    raise SystemExit("mirror mode: " + why)
            print("starting %d hosts (%s) ..." % (max(sizes), opts.image), flush=True)
            fleet_used = True
            fleet.up(max(sizes))
            plays.prepare(max(sizes))
            for count in sizes:
                for mode in MODES:
                    if mode == "mirror":
                        if count not in mirror_sizes:
                            continue
                        try:
                            deploys.append(mirror.up(count))
                        except SystemExit as exc:  # the other modes' rows and targets are still printed
                            deploys.append({"n": count, "error": str(exc)})
                            print("  N=%-2d mirror     deploy failed: %s" % (count, str(exc)[:2000]), flush=True)
                            mirror.down()
                            continue
                        d = deploys[-1]
                        print("  N=%-2d mirror     deployed: %.1f s (its host booted in %.1f s before)"
                              % (count, d["seconds"], d["boot_s"]), flush=True)
                    plays.cold(count)
                    for label in ("cold", "warm"):
                        rows.append(plays.measure(mode, count, label))
                        r = rows[-1]
                        print("  N=%-2d %-10s %s: %d Hub requests, %s from the Hub, %s moved, %.1f s"
                              % (count, mode, label, r["hub_requests"], human(r["hub_bytes"]),
                                 human(r["moved_bytes"]), r["seconds"]), flush=True)
                    if mode == "mirror" and not opts.keep:  # the mirror and its cache go with the size's runs
                        mirror.down()
                    if mode == "controller":  # its cache still holds the blobs the cold run carried
                        loopbacks.append(plays.loopback(count))
                        lb = loopbacks[-1]
                        done = "failed: " + lb["error"] if lb.get("error") else "%s to %d hosts at once, %.2f s" % (
                            human(lb["bytes"]), lb["hosts"], lb["seconds"])
                        print("  N=%-2d loopback   %s" % (count, done), flush=True)
        if not (opts.skip_warm and opts.skip_carry):
            if not fleet_used:
                print("starting %d hosts (%s) ..." % (max(sizes), opts.image), flush=True)
                fleet_used = True
                fleet.up(max(sizes))
                plays.prepare(max(sizes))
            ssh_why = fleet.enable_ssh() if "ssh" in connections else None
            if ssh_why:
                print("  no SSH rows: " + ssh_why, flush=True)
            if not opts.skip_warm:
                print("warm runs against the bare hf download task, over %s ..." % " and ".join(connections),
                      flush=True)
                warm_rows = warm_part(plays, sizes, connections, ssh_why)
            if not opts.skip_carry:
                print("the carry of %s against the raw stream, over %s ..." % (LARGE_REPO, " and ".join(connections)),
                      flush=True)
                carry_rows = carry_part(plays, connections, ssh_why)
        if not opts.skip_throughput:
            # A second Hub serves the same repositories as plain LFS, so both transports run side by side.
            hub_http = Hub(work, xet=False)
            print("throughput on %s, Xet (%s) and plain HTTP (%s) ..." % (LARGE_REPO, hub.url, hub_http.url),
                  flush=True)
            tput = throughput(work, {"xet": hub, "http": hub_http}, collections)
        if not opts.skip_agent:
            print("agent start with the Hub unreachable ...", flush=True)
            agent = agent_start(work, hub, collections, opts.agent_limit)
    finally:
        hub.stop()
        if hub_http is not None:
            hub_http.stop()
        if fleet_used and not opts.keep:
            if mirror is not None:
                mirror.down()
            fleet.down()

    hub_requests = None
    if not opts.skip_hub_requests:
        hub_requests = run([sys.executable, "-m", "benchmarks.hub_requests"],
                           env=dict(os.environ, PYTHONPATH=str(REPO)))

    rows = with_ratios(rows)
    print()
    if rows:
        print("Fleet: %s@%s (%s, %d files' bytes = one copy); %s; plays in one batch, forks 10."
              % (MINILM_REPO, COMMIT_B[:12], human(model_bytes), model_bytes, opts.image))
        print(fleet_table(rows))
        print("(Hub req/bytes: the test Hub's counters for the play; moved to hosts: bytes of the blobs new or "
              "replaced in the hosts' caches, summed; x: against the baseline for the same N and run.)")
        print()
    mirrored = mirror_summary(rows, deploys, model_bytes)
    if mirrored or deploys:
        print("Site mirror (hub_mirror: Olah on %s, %s, upstream the test Hub; %d site for the N hosts; "
              "model_cache_source hub, model_cache_endpoint at it, model_cache_xet false, "
              "model_cache_read_timeout 60):"
              % (Mirror.url, opts.mirror_image, MIRROR_SITES))
        print(mirror_table(mirrored))
        print("(deploy s: the hub_mirror play on a fresh mirror host, Olah installed from its wheelhouse, started and "
              "answering one revision, not counted in the wall time; Hub req: the test Hub's counters for the play, "
              "without Olah's own connection checks; copies/site: Hub file bytes over one copy of the model per site; "
              "over mirror: the file bytes the hosts' caches gained, all of which came through the mirror; x wall: "
              "against the baseline's play of the same N and run.)")
        for n1, n2, per_host in marginal_requests(rows):
            print("Hub requests per added host of the site, cold, between N=%d and N=%d: %.1f "
                  "(benchmarks/fleet_simulation.py: MIRROR_RESOLVER_PER_FILE x files + MIRROR_API_PER_HOST; "
                  "the JSON's rows split them by kind, hub_by_kind)" % (n1, n2, per_host))
        for d in deploys:
            if d.get("error"):
                print("mirror at N=%d not deployed: %s" % (d["n"], d["error"][:500]))
        print()
    transfer = transfer_rates(rows, loopbacks)
    if transfer:
        print("Controller transfer, cold: end to end against a loopback limit of the same bytes, same hosts:")
        print(transfer_table(transfer))
        print("(end to end: bytes moved to the hosts / the cold controller play's wall time, which includes the "
              "controller's fetch from the Hub, the probe and the play's other tasks; loopback: the same blob files "
              "by `tar -ch | podman exec -i <host> tar -x` into %s on every host at once, as the play's one batch "
              "with forks 10, timed, then removed; MB = 10^6 bytes, MiB = 2^20; x loopback: end to end / "
              "loopback.)" % LOOPBACK_DIR)
        for t in transfer:
            if t["loopback"] and t["loopback"].get("error"):
                print("loopback at N=%d failed: %s" % (t["n"], t["loopback"]["error"]))
        print()
    if tput:
        print("Throughput on this machine, %s (%s), each step on Xet and on plain HTTP in turn:"
              % (LARGE_REPO, human(tput["file_bytes"])))
        print(throughput_table(tput))
        print("(s: wall time of the whole command, interpreter and ansible start included; MiB/s: file size / s, "
              "cold runs only; peak MiB: %s; anon MiB: the same for Pss_Anon; CPU s: cpu.stat usage_usec of the "
              "cgroup, every process until the last exits, less the controller's; via: what the test Hub's counters "
              "show served the run; load: 1-minute load average at the run's start; every cold download's files "
              "checked against the Hub's SHA-256 and git ids.)" % tput["memory"])
        if not tput["uncapped"]:
            print("(no %r rows: %s)" % (UNCAPPED, UNCAPPED_WHY))
        for key, name in TRANSPORTS:
            summary = tput["transports"][key]
            print("ratio on %s, mean MiB/s over hf download's: module %s, module uncapped %s; peak of every process: "
                  "module %.0f MiB, uncapped %.0f MiB, hf download %.0f MiB"
                  % (name, fmt_ratio(summary["ratio"]), fmt_ratio(summary["ratio_uncapped"]),
                     summary["module_peak"] / MIB, summary["uncapped_peak"] / MIB, summary["hf_peak"] / MIB))
        sent = tput["transports"].get("xet", {}).get("cas_sent")
        if sent:
            print("CAS bytes per cold Xet download: %s (file %s)" % (", ".join(human(b) for b in sent),
                                                                  human(tput["file_bytes"])))
        for key, name in TRANSPORTS:
            print(breakdown_text(name, tput["transports"][key]))
        print()
    if warm_rows:
        print("Warm run (model_cache_source hub, the model in every host's cache) against the bare `hf download` "
              "task on the same caches, per connection and N; plays alternate bare, module, module, bare:")
        print(warm_table(warm_rows))
        print("(s: each play's wall time, ansible-playbook start included; x: mean of the module's over mean of "
              "the bare task's; ssh: ansible_connection ssh with pipelining, sshd per host from tools/hosts/ssh.py; "
              "load: 1-minute load average at the row's start.)")
        print()
    if carry_rows:
        print("Carry (model_cache_source controller, %s to one host, the controller's cache warm) against the raw "
              "stream of the same blob files over the same connection:" % LARGE_REPO)
        print(carry_table(carry_rows))
        print("(carry s: the cold play less the warm play, which does all the rest; raw: `tar -ch <blobs> | "
              "<connection> tar -x` into %s; e2e: bytes over the whole cold play; MB = 10^6 bytes.)" % LOOPBACK_DIR)
        print()
    if agent:
        print("Memory agent start (project venv, warm cache) until /ready answers, Hub unreachable:")
        print(format_table(("Hub", "HF_HUB_OFFLINE", "seconds to ready (median)", "runs"),
                           [(a["hub"], "1" if a["offline"] else "unset",
                             "%.1f" % a["seconds"] if a["seconds"] is not None else
                             "not ready in %.0f s" % opts.agent_limit,
                             " ".join("-" if t is None else "%.1f" % t for t in a["runs"])) for a in agent]))
        print()
    if hub_requests:
        print("benchmarks.hub_requests (per host, one machine):")
        print(hub_requests.rstrip())
        print()
    extra_targets = warm_targets(warm_rows) + carry_targets(carry_rows)
    targets = evaluate_targets(rows, model_bytes, [
        (name, tput["transports"][key], None if tput["uncapped"] else UNCAPPED_WHY)
        for key, name in TRANSPORTS] if tput else (), mirror_sizes, extra_targets)
    print("Targets:")
    print(targets_text(targets))
    load_end = os.getloadavg()
    print("load average at end: %.2f %.2f %.2f" % load_end)
    result.update(fleet=rows, transfer=transfer, mirror={"deploys": deploys, "rows": mirrored,
                                                         "marginal_requests": marginal_requests(rows)},
                  throughput=tput, warm=warm_rows, carry=carry_rows, agent=agent, hub_requests=hub_requests,
                  load_end=load_end, targets=[{"target": n, "met": m, "detail": d} for n, m, d in targets])
    out = Path(opts.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("written: %s" % out)
    return 0 if all(m for _n, m, _d in targets) else 1


if __name__ == "__main__":
    sys.exit(main())
