"""Fleet-level faults: a real rollout of the prefetch playbook on three systemd containers against the test Hub,
with one fault injected per test while it runs. Each test records one row (what happened, what the play said,
whether a re-run recovers, data lost, agent downtime); the table is printed at the end and written to
tests/output/fleet-faults.json.

The tests share one fleet and one Hub and run in file order, each starting where the previous one left the fleet:
run them with `-p no:randomly` (tests/fleet/README.md).
"""

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tools.harness import REPO
from tools.hub.hubserver import COMMIT_A, COMMIT_B, COMMIT_BROKEN, MINILM_REPO

pytestmark = [pytest.mark.fleet,
              pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed (scripts/setup.sh)")]

BIN = Path(sys.executable).parent
PREFIX = "jn-faults"
IMAGE = "localhost/justnews-host:bookworm"
WHEELHOUSE = Path(os.environ.get("JUSTNEWS_IMAGE_CACHE", "/var/tmp/justnews-images")) / "wheelhouse-py311"
# One port per Memory agent on the shared host network, unused by the Molecule scenarios (180xx, 181xx, 182xx).
HOSTS = {"%s-%d" % (PREFIX, i): 18300 + i for i in (1, 2, 3)}
REPO_DIR = "/var/cache/hf/hub/models--" + MINILM_REPO.replace("/", "--")
LINK = "/opt/justnews/models/memory/all-MiniLM-L6-v2"
DROPIN = "/etc/systemd/system/justnews@memory.service.d/60-hf-cache.conf"
UNIT = "justnews@memory.service"
OUTPUT = REPO / "tests" / "output" / "fleet-faults.json"


def podman(*args, check=True, timeout=120):
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=check, timeout=timeout)


def sh(host, script, check=True):
    """Run a shell script in a fleet container; return its stdout."""
    return podman("exec", host, "sh", "-c", script, check=check).stdout


def wait_booted(host, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = podman("exec", host, "systemctl", "is-system-running", check=False).stdout.strip()
        if state in ("running", "degraded"):
            return
        time.sleep(1)
    raise AssertionError("%s did not boot within %d s" % (host, timeout))


def ready(port):
    """The agent's /ready answer, or None when nothing answers."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/ready" % port, timeout=2) as answer:
            return json.load(answer)
    except (OSError, ValueError):
        return None


def wait_ready(timeout=240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all((ready(port) or {}).get("ready") for port in HOSTS.values()):
            return
        time.sleep(1)
    raise AssertionError("agents not ready: %s" % {h: ready(p) for h, p in HOSTS.items()})


def host_state(host):
    """What a rollout may change on a host: the agent's process, the model link, refs/main, the drop-in."""
    out = sh(host, "systemctl show -p MainPID --value %s; readlink %s || true; cat %s/refs/main 2>/dev/null || true;"
                   " sha256sum %s 2>/dev/null | cut -c1-64 || true" % (UNIT, LINK, REPO_DIR, DROPIN))
    pid, link, ref, dropin = (out.splitlines() + [""] * 4)[:4]
    return {"pid": pid, "commit": os.path.basename(link), "ref": ref, "dropin": dropin,
            "ready": (ready(HOSTS[host]) or {}).get("ready", False)}


def manifest(host, commit):
    """{file: (size, sha256)} of the snapshot of `commit` in a host's cache, files followed through their links."""
    out = sh(host, "cd %s/snapshots/%s 2>/dev/null && find -L . -type f -exec sh -c "
                   "'for f; do echo \"$(stat -Lc %%s \"$f\") $(sha256sum < \"$f\" | cut -c1-64) $f\"; done' _ {} +"
                   % (REPO_DIR, commit), check=False)
    files = {}
    for line in out.splitlines():
        size, digest, name = line.split(" ", 2)
        files[name] = (int(size), digest)
    return files


def data_lost(reference, files):
    """Files (and their bytes) missing, extra or different compared to a clean host's snapshot."""
    differ = [n for n in set(reference) | set(files) if reference.get(n) != files.get(n)]
    return len(differ), sum(max(reference.get(n, (0,))[0], files.get(n, (0,))[0]) for n in differ)


class Hub:
    """The test Hub as a process of its own (tools/hub/hub.sh), with its control endpoints."""

    def __init__(self, directory):
        self.dir = directory
        self.launcher = [str(REPO / "tools" / "hub" / "hub.sh")]
        self.env = dict(os.environ, PYTHON=sys.executable)
        self.url = subprocess.run(self.launcher + ["start", str(directory)], env=self.env, check=True,
                                  capture_output=True, text=True, timeout=300).stdout.strip()

    def control(self, name, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + "/_test/" + name, data=data,
                                         method="GET" if name == "stats" else "POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.load(answer)

    def faults(self, *rules):
        self.control("faults", {"faults": list(rules)})

    def reset(self):
        self.control("reset", {})

    def stats(self):
        return self.control("stats")

    def stop(self):
        subprocess.run(self.launcher + ["stop", str(self.dir)], env=self.env, check=False, timeout=60)


class ReadyPoller(threading.Thread):
    """Polls every agent's /ready every 0.5 s during a run; downtime is the time a host's agent was not ready."""

    INTERVAL = 0.5

    def __init__(self):
        super().__init__(daemon=True)
        self.stopped = threading.Event()
        self.down = dict.fromkeys(HOSTS, 0)

    def run(self):
        while not self.stopped.wait(self.INTERVAL):
            for host, port in HOSTS.items():
                if not (ready(port) or {}).get("ready"):
                    self.down[host] += 1

    def downtime(self):
        self.stopped.set()
        self.join()
        return {host: samples * self.INTERVAL for host, samples in self.down.items()}


class Fleet:
    def __init__(self, tmp, hub, collections_path):
        self.tmp, self.hub, self.collections_path = tmp, hub, collections_path
        self.references = {}  # commit -> manifest of a clean host's snapshot
        self.runs = 0

    def up(self):
        hub_hosts = []
        for name in ("huggingface.co", "hf.co", "cdn-lfs.huggingface.co", "cdn-lfs.hf.co", "cas-bridge.xethub.hf.co"):
            hub_hosts += ["--add-host", name + ":127.0.0.1"]
        for host, port in HOSTS.items():
            env = self.tmp / ("memory-%d.env" % port)
            env.write_text("MEMORY_MODEL_CACHE=/opt/justnews/models/memory\nMEMORY_PORT=%d\n" % port)
            podman("rm", "-f", host, check=False)
            podman("run", "-d", "--name", host, "--hostname", host, "--label", "org.justnews.fleet=" + PREFIX,
                   *hub_hosts, "--systemd=always", "--network", "host",
                   "-v", "%s:/opt/wheelhouse:ro" % WHEELHOUSE, "-v", "%s:/etc/justnews/memory.env:ro" % env,
                   IMAGE, "/sbin/init")
        for host in HOSTS:
            wait_booted(host)

    def down(self):
        podman("rm", "-f", "-t", "5", *HOSTS, check=False)

    def inventory(self, **group_vars):
        hosts = {host: {"model_cache_units": [{"name": UNIT, "ready_port": port}]} for host, port in HOSTS.items()}
        variables = {"ansible_connection": "containers.podman.podman",
                     "model_cache_pip_extra_args": "--no-index --find-links /opt/wheelhouse",
                     "model_cache_endpoint": self.hub.url,
                     "model_cache_ready_timeout": 120}
        variables.update(group_vars)
        path = self.tmp / ("inventory-%d.json" % self.runs)
        path.write_text(json.dumps({"justnews": {"hosts": hosts, "vars": variables}}, indent=1))
        return path

    def prefetch(self, commit, on_line=None, **group_vars):
        """Run the prefetch playbook for `commit`; return (returncode, output). `on_line` sees each output line."""
        self.runs += 1
        group_vars.setdefault("model_cache_models", [{"repo_id": MINILM_REPO, "revision": commit, "link": LINK}])
        env = dict(os.environ, PATH="%s:%s" % (BIN, os.environ["PATH"]),
                   ANSIBLE_COLLECTIONS_PATH=self.collections_path, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
                   ANSIBLE_HOST_KEY_CHECKING="0", NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost",
                   CONTAINERS_CONF=str(REPO / "containers.conf"))
        proc = subprocess.Popen([str(BIN / "ansible-playbook"), "-i", str(self.inventory(**group_vars)),
                                 "justnews.huggingface.prefetch"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, cwd=self.tmp)
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if on_line:
                on_line(line)
        output = "".join(lines)
        returncode = proc.wait(timeout=60)
        (REPO / "tests" / "output").mkdir(exist_ok=True)
        (REPO / "tests" / "output" / ("fleet-faults-run-%d.log" % self.runs)).write_text(output)
        return returncode, output

    def states(self):
        return {host: host_state(host) for host in HOSTS}

    def drop_snapshot(self, commit):
        """Make `commit` new to every host again (its files stay in the cache as blobs): without its snapshot and
        the cache's own listing of it, the next rollout of it asks the Hub."""
        for host in HOSTS:
            assert host_state(host)["commit"] != commit, "%s runs %s: its snapshot stays" % (host, commit)
            sh(host, "rm -rf %s/snapshots/%s %s/trees/%s.json" % (REPO_DIR, commit, REPO_DIR, commit))

    def other_commit(self):
        """Of COMMIT_A and COMMIT_B, the one the fleet does not run: the next rollout's target."""
        running = {s["commit"] for s in self.states().values()}
        assert len(running) == 1 and running <= {COMMIT_A, COMMIT_B}, running
        return COMMIT_A if running == {COMMIT_B} else COMMIT_B

    def reference(self, commit, host):
        self.references[commit] = manifest(host, commit)
        assert self.references[commit], "no snapshot of %s on %s" % (commit, host)

    def lost(self, commit):
        """(files, bytes) that differ from a clean host's snapshot of `commit`, summed over the fleet."""
        files = size = 0
        for host in HOSTS:
            n, b = data_lost(self.references[commit], manifest(host, commit))
            files, size = files + n, size + b
        return files, size


def failure_text(output, limit=240):
    """The first fatal line of a play (host and message), shortened; "" when nothing failed."""
    for line in output.splitlines():
        if line.startswith(("fatal:", "ERROR!")):
            head, _, result = line.partition(" => ")
            try:
                message = json.loads(result).get("msg", result)
            except ValueError:
                message = result
            return ("%s %s" % (head, message))[:limit]
    return ""


@pytest.fixture(scope="module")
def rows():
    collected = []
    yield collected
    OUTPUT.parent.mkdir(exist_ok=True)
    OUTPUT.write_text(json.dumps(collected, indent=2) + "\n")
    columns = ("fault", "hosts_affected", "reported_as", "recovered_by_rerun", "data_lost_files",
               "data_lost_bytes", "downtime_s")
    print("\n" + " | ".join(columns))
    for row in collected:
        print(" | ".join(str(row.get(c)) for c in columns))


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, collections_path):
    tmp = tmp_path_factory.mktemp("fleet-faults")
    hub = Hub(tmp / "hub")
    fleet = Fleet(tmp, hub, collections_path)
    try:
        fleet.up()
        # A clean rollout of COMMIT_A to every host: the starting point, and the reference for COMMIT_A.
        returncode, output = fleet.prefetch(COMMIT_A, model_cache_serial=3)
        assert returncode == 0, output[-6000:]
        wait_ready()
        fleet.reference(COMMIT_A, PREFIX + "-1")
        # Then COMMIT_B, the same way: the reference for COMMIT_B, and what the first test starts from.
        returncode, output = fleet.prefetch(COMMIT_B, model_cache_serial=3)
        assert returncode == 0, output[-6000:]
        wait_ready()
        fleet.reference(COMMIT_B, PREFIX + "-1")
        hub.reset()
        yield fleet
    finally:
        fleet.down()
        hub.stop()


def test_broken_model_rolls_back_first_host(fleet, rows):
    before = fleet.states()
    assert {s["commit"] for s in before.values()} == {COMMIT_B}, before

    poller = ReadyPoller()
    poller.start()
    returncode, output = fleet.prefetch(COMMIT_BROKEN, model_cache_serial=1, model_cache_ready_timeout=40)
    downtime = poller.downtime()
    after = fleet.states()

    first, others = PREFIX + "-1", [h for h in HOSTS if h != PREFIX + "-1"]
    assert returncode != 0, output[-6000:]
    # The first host is back on COMMIT_B: link, refs/main, drop-in, and its agent ready.
    assert after[first]["commit"] == COMMIT_B and after[first]["ref"] == before[first]["ref"], after[first]
    assert after[first]["dropin"] == before[first]["dropin"], (before[first], after[first])
    assert after[first]["ready"] is True, after[first]
    assert COMMIT_B in output and COMMIT_BROKEN in output, output[-6000:]
    for host in others:
        assert after[host] == before[host], (host, before[host], after[host])

    rerun, rerun_output = fleet.prefetch(COMMIT_B, model_cache_serial=1)
    files, size = fleet.lost(COMMIT_B)
    rows.append({"fault": "model the agent cannot load (COMMIT_BROKEN after COMMIT_B), serial 1",
                 "hosts_affected": [first], "reported_as": failure_text(output),
                 "recovered_by_rerun": rerun == 0, "data_lost_files": files, "data_lost_bytes": size,
                 "downtime_s": downtime})
    assert rerun == 0, rerun_output[-6000:]
    assert (files, size) == (0, 0)


def test_hub_500_between_batches(fleet, rows):
    # The commit the fleet does not run, made new to it again, so that its rollout asks the Hub.
    target = fleet.other_commit()
    fleet.drop_snapshot(target)
    before = fleet.states()
    banners = []

    def on_line(line):
        # Each batch of a serial play starts with the play's banner: from the second one on, the Hub fails.
        if line.startswith("PLAY [Pre-fetch"):
            banners.append(line)
            if len(banners) == 2:
                fleet.hub.faults({"kind": "500", "count": -1, "endpoint": "any"})

    poller = ReadyPoller()
    poller.start()
    returncode, output = fleet.prefetch(target, on_line=on_line, model_cache_serial=1, model_cache_retries=1,
                                        model_cache_timeout=60)
    downtime = poller.downtime()
    served_500 = sum(1 for entry in fleet.hub.stats()["log"] if entry[2] == 500)
    fleet.hub.reset()
    after = fleet.states()

    first, second, third = HOSTS
    assert len(banners) >= 2, output[-6000:]
    assert returncode != 0, output[-6000:]
    assert served_500 > 0
    assert after[first]["commit"] == target and after[first]["ready"] is True, after[first]
    # The host whose fetch failed and the host never reached are left as they were.
    for host in (second, third):
        assert after[host] == before[host], (host, before[host], after[host])

    rerun, rerun_output = fleet.prefetch(target, model_cache_serial=1)
    final = fleet.states()
    files, size = fleet.lost(target)
    rows.append({"fault": "Hub answers 500 to everything from the second batch on, serial 1",
                 "hosts_affected": [second], "reported_as": failure_text(output),
                 "recovered_by_rerun": rerun == 0 and all(s["commit"] == target for s in final.values()),
                 "data_lost_files": files, "data_lost_bytes": size, "downtime_s": downtime,
                 "hub_500_answers": served_500})
    assert rerun == 0, rerun_output[-6000:]
    assert all(s["commit"] == target and s["ready"] for s in final.values()), final
    assert (files, size) == (0, 0)


def test_429_storm_with_hub_concurrency_1(fleet, rows):
    target = fleet.other_commit()
    fleet.drop_snapshot(target)
    # A storm: the next 6 requests, whatever they ask for, are answered 429 with Retry-After: 1; the hosts retry
    # up to 8 times (with the default 3, 12 such answers failed the first host: tests/fleet/README.md).
    fleet.hub.faults({"kind": "429", "count": 6, "endpoint": "any", "retry_after": 1})
    poller = ReadyPoller()
    poller.start()
    returncode, output = fleet.prefetch(target, model_cache_serial=3, model_cache_hub_concurrency=1,
                                        model_cache_retries=8)
    downtime = poller.downtime()
    retries = sum(1 for entry in fleet.hub.stats()["log"] if entry[2] == 429)
    fleet.hub.reset()
    final = fleet.states()
    files, size = fleet.lost(target)
    rows.append({"fault": "429 storm (6 answers, Retry-After 1), retries 8, hub_concurrency 1, serial 3",
                 "hosts_affected": list(HOSTS), "reported_as": failure_text(output) or "ok",
                 "recovered_by_rerun": None, "data_lost_files": files, "data_lost_bytes": size,
                 "downtime_s": downtime, "retries": retries})
    assert returncode == 0, output[-6000:]
    assert retries == 6
    assert all(s["commit"] == target and s["ready"] for s in final.values()), final
    assert (files, size) == (0, 0)


def test_host_stopped_mid_play(fleet, rows):
    target = fleet.other_commit()
    fleet.drop_snapshot(target)
    victim = PREFIX + "-2"
    before = fleet.states()
    stopped = threading.Event()

    def stop_on_first_request():
        # The hosts fetch one at a time (hub_concurrency 1): the victim is stopped as soon as the Hub sees the
        # rollout's first request, while the fleet's fetches are under way.
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and not stopped.is_set():
            if fleet.hub.stats()["total"] > 0:
                podman("stop", "-t", "5", victim, check=False)
                stopped.set()
                return
            time.sleep(0.2)

    watcher = threading.Thread(target=stop_on_first_request, daemon=True)
    watcher.start()
    poller = ReadyPoller()
    poller.start()
    returncode, output = fleet.prefetch(target, model_cache_serial=3, model_cache_hub_concurrency=1)
    stopped.set()
    watcher.join()
    podman("start", victim)
    wait_booted(victim)
    wait_ready()
    downtime = poller.downtime()
    after = fleet.states()
    others = [h for h in HOSTS if h != victim]

    rerun, rerun_output = fleet.prefetch(target, model_cache_serial=3)
    final = fleet.states()
    files, size = fleet.lost(target)
    rows.append({"fault": "host stopped (podman stop) at the Hub's first request, serial 3, hub_concurrency 1",
                 "hosts_affected": [victim], "reported_as": failure_text(output),
                 "recovered_by_rerun": rerun == 0 and all(s["commit"] == target for s in final.values()),
                 "data_lost_files": files, "data_lost_bytes": size, "downtime_s": downtime,
                 "others_completed": all(after[h]["commit"] == target for h in others)})
    assert returncode != 0, output[-6000:]
    assert victim in failure_text(output), output[-6000:]
    for host in others:
        assert after[host]["commit"] == target and after[host]["ready"], (host, before[host], after[host])
    assert rerun == 0, rerun_output[-6000:]
    assert all(s["commit"] == target and s["ready"] for s in final.values()), final
    assert (files, size) == (0, 0)
