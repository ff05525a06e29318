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
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tools.harness import REPO
from tools.hub.hubserver import COMMIT_A, COMMIT_B, COMMIT_BROKEN, LARGE_COMMIT, LARGE_REPO, MINILM_REPO, build_repos

# One xdist group: the tests share one fleet and run in file order on one worker, beside the Molecule scenarios.
pytestmark = [pytest.mark.fleet, pytest.mark.xdist_group("fleet-faults"),
              pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed (scripts/setup.sh)")]

BIN = Path(sys.executable).parent
PREFIX = "jn-faults"
IMAGES = Path(os.environ.get("JUSTNEWS_IMAGE_CACHE", "/var/tmp/justnews-images"))
# One port per Memory agent on the shared host network, unused by the Molecule scenarios (180xx, 181xx, 182xx,
# 185xx). The first host runs sentence-transformers (Debian 12), the others the numpy backend (Debian 13).
# Where hf_carry keeps the chunks of a stream until the models are in (the role's staging folder).
STAGING = "/var/lib/justnews-huggingface/incoming"
# The chunks kept there: each stream has a folder of its own, <STAGING>/<stream id>.
CHUNKS_KEPT = "find %s -mindepth 2 -type f 2>/dev/null | wc -l" % STAGING
HOSTS = {"%s-%d" % (PREFIX, i): 18300 + i for i in (1, 2, 3)}
IMAGE = {PREFIX + "-1": ("bookworm", "py311"), PREFIX + "-2": ("trixie", "py313"), PREFIX + "-3": ("trixie", "py313")}
# The third host's cache is a filesystem of its own, small enough to fill (test_cache_filesystem_full).
# It holds both models, justnews-test/large's copy in the shared blob store and one staged copy of it.
SMALL_CACHE_HOST, SMALL_CACHE_SIZE = PREFIX + "-3", "1200m"
LARGE_SIZE = 256 * 1024 * 1024
CACHE = "/var/cache/hf"
REPO_DIR = CACHE + "/hub/models--" + MINILM_REPO.replace("/", "--")
LARGE_DIR = CACHE + "/hub/models--" + LARGE_REPO.replace("/", "--")
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
    out = sh(host, "systemctl show -p MainPID --value %s; readlink %s || true; cat %s/refs/main 2>/dev/null; echo;"
                   " sha256sum %s 2>/dev/null | cut -c1-64 || true" % (UNIT, LINK, REPO_DIR, DROPIN))
    pid, link, ref, dropin = (out.splitlines() + [""] * 4)[:4]
    answer = ready(HOSTS[host]) or {}
    return {"pid": pid, "commit": os.path.basename(link), "ref": ref, "dropin": dropin,
            "ready": answer.get("ready", False), "serving": answer.get("commit")}


def manifest(host, commit, repo_dir=REPO_DIR):
    """{file: (size, sha256)} of the snapshot of `commit` in a host's cache, files followed through their links."""
    out = sh(host, "cd %s/snapshots/%s 2>/dev/null && find -L . -type f -exec sh -c "
                   "'for f; do echo \"$(stat -Lc %%s \"$f\") $(sha256sum < \"$f\" | cut -c1-64) $f\"; done' _ {} +"
                   % (repo_dir, commit), check=False)
    files = {}
    for line in out.splitlines():
        size, digest, name = line.split(" ", 2)
        files[name] = (int(size), digest)
    return files


def data_lost(reference, files):
    """Files (and their bytes) missing, extra or different compared to the Hub's."""
    differ = [n for n in set(reference) | set(files) if reference.get(n) != files.get(n)]
    return len(differ), sum(max(reference.get(n, (0,))[0], files.get(n, (0,))[0]) for n in differ)


class Hub:
    """The test Hub as a process of its own (tools/hub/hub.sh), with its control endpoints."""

    def __init__(self, directory):
        self.dir = directory
        self.launcher = [str(REPO / "tools" / "hub" / "hub.sh")]
        self.env = dict(os.environ, PYTHON=sys.executable, JUSTNEWS_HUB_LARGE_SIZE=str(LARGE_SIZE))
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
        self.references = {}  # commit -> {"./file": (size, sha256)} as the Hub serves it
        self.runs = 0

    def up(self):
        hub_hosts = []
        for name in ("huggingface.co", "hf.co", "cdn-lfs.huggingface.co", "cdn-lfs.hf.co", "cas-bridge.xethub.hf.co"):
            hub_hosts += ["--add-host", name + ":127.0.0.1"]
        for host, port in HOSTS.items():
            env = self.tmp / ("memory-%d.env" % port)
            env.write_text("MEMORY_MODEL_CACHE=/opt/justnews/models/memory\nMEMORY_PORT=%d\n" % port)
            suite, py = IMAGE[host]
            small = ["--mount", "type=tmpfs,destination=%s,tmpfs-size=%s,tmpfs-mode=0755" % (CACHE, SMALL_CACHE_SIZE)]
            podman("rm", "-f", host, check=False)
            podman("run", "-d", "--name", host, "--hostname", host, "--label", "org.justnews.fleet=" + PREFIX,
                   *hub_hosts, "--systemd=always", "--network", "host",
                   *(small if host == SMALL_CACHE_HOST else []),
                   "-v", "%s:/opt/wheelhouse:ro" % (IMAGES / ("wheelhouse-" + py)),
                   "-v", "%s:/etc/justnews/memory.env:ro" % env,
                   "localhost/justnews-host:" + suite, "/sbin/init")
        for host in HOSTS:
            wait_booted(host)

    def down(self):
        podman("rm", "-f", "-t", "5", *HOSTS, check=False)

    def inventory(self, **group_vars):
        hosts = {host: {"model_cache_units": [{"name": UNIT, "ready_port": port}]} for host, port in HOSTS.items()}
        variables = {"ansible_connection": "containers.podman.podman",
                     "model_cache_pip_extra_args": "--no-index --find-links /opt/wheelhouse",
                     "model_cache_endpoint": self.hub.url,
                     "model_cache_ready_timeout": 120,
                     # The small cache of SMALL_CACHE_HOST: the default margin (1G) is larger than its filesystem.
                     "model_cache_free_space_margin": "16M",
                     "model_cache_controller_cache": str(self.tmp / "controller-cache")}
        variables.update(group_vars)
        path = self.tmp / ("inventory-%d.json" % self.runs)
        path.write_text(json.dumps({"justnews": {"hosts": hosts, "vars": variables}}, indent=1))
        return path

    def prefetch(self, commit, on_line=None, kill_when=None, **group_vars):
        """Run the prefetch playbook for `commit`; return (returncode, output). `on_line` sees each output line;
        when it returns True the run is killed there (SIGKILL to its process group, as a controller that dies).
        `kill_when` is asked every 0.2 s while the run lasts, for a moment that prints nothing."""
        self.runs += 1
        group_vars.setdefault("model_cache_models", [{"repo_id": MINILM_REPO, "revision": commit, "link": LINK}])
        env = dict(os.environ, PATH="%s:%s" % (BIN, os.environ["PATH"]),
                   ANSIBLE_COLLECTIONS_PATH=self.collections_path, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
                   ANSIBLE_HOST_KEY_CHECKING="0", NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost",
                   CONTAINERS_CONF=str(REPO / "containers.conf"))
        # The batch size is a play keyword: it must come as an extra variable (inventory variables are not seen).
        batch = json.dumps({"model_cache_serial": group_vars.pop("model_cache_serial", 1)})
        proc = subprocess.Popen([str(BIN / "ansible-playbook"), "-i", str(self.inventory(**group_vars)), "-e", batch,
                                 "justnews.huggingface.prefetch"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, cwd=self.tmp, start_new_session=True)
        lines = []
        killed = threading.Event()

        def watch():
            while proc.poll() is None and not killed.is_set():
                if kill_when():
                    killed.set()
                    os.killpg(proc.pid, signal.SIGKILL)
                    return
                time.sleep(0.2)

        if kill_when:
            threading.Thread(target=watch, daemon=True).start()
        for line in proc.stdout:
            lines.append(line)
            if on_line and on_line(line):
                killed.set()
                os.killpg(proc.pid, signal.SIGKILL)
                break
        if killed.is_set():
            lines.append("[killed by the test]\n")
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

    def drop_own_blobs(self, commit):
        """Remove from every host the blobs only `commit` has (of COMMIT_A and COMMIT_B: README.md), so that its
        next rollout downloads bytes whatever rows ran before."""
        repos = build_repos(LARGE_SIZE)[MINILM_REPO]["commits"]
        other = COMMIT_A if commit == COMMIT_B else COMMIT_B
        own = {b.git_oid for b in repos[commit].values()} - {b.git_oid for b in repos[other].values()}
        for host in HOSTS:
            sh(host, "cd %s/blobs && rm -f %s" % (REPO_DIR, " ".join(sorted(own))))

    def other_commit(self):
        """Of COMMIT_A and COMMIT_B, the one the fleet does not run: the next rollout's target."""
        running = {s["commit"] for s in self.states().values()}
        assert len(running) == 1 and running <= {COMMIT_A, COMMIT_B}, running
        return COMMIT_A if running == {COMMIT_B} else COMMIT_B

    def lost(self, commit, hosts=HOSTS):
        """(files, bytes) that differ from what the Hub serves for `commit`, summed over `hosts`."""
        files = size = 0
        for host in hosts:
            repo_dir = LARGE_DIR if commit == LARGE_COMMIT else REPO_DIR
            n, b = data_lost(self.references[commit], manifest(host, commit, repo_dir))
            files, size = files + n, size + b
        return files, size

    def drop_large(self):
        """Remove justnews-test/large from every host (no agent reads it): its next rollout transfers its 256 MiB."""
        for host in HOSTS:
            sh(host, "rm -rf %s" % LARGE_DIR)

    def large_models(self, running):
        """The model list of a rollout that adds justnews-test/large beside the model the agents run."""
        return [{"repo_id": MINILM_REPO, "revision": running, "link": LINK},
                {"repo_id": LARGE_REPO, "revision": LARGE_COMMIT}]


def failure_text(output, limit=240):
    """The first fatal line of a play (host and message), shortened; "" when nothing failed."""
    for line in output.splitlines():
        if line.startswith(("fatal:", "ERROR!")):
            head, _sep, result = line.partition(" => ")
            try:
                message = json.loads(result).get("msg", result)
            except ValueError:
                message = result
            return ("%s %s" % (head, message))[:limit]
    return ""


COLUMNS = ("fault", "hosts_affected", "reported_as", "recovered_by_rerun", "data_lost_files", "data_lost_bytes",
           "downtime_s")


def table(collected):
    """The rows as a Markdown table: downtime per host in seconds, the first failure line of the play."""
    def cell(row, column):
        value = row.get(column)
        if column == "downtime_s":
            return ", ".join("%s %.1f" % (host.rsplit("-", 1)[-1], s) for host, s in value.items())
        if column == "hosts_affected":
            return ", ".join(value)
        if column == "recovered_by_rerun" and value is None:
            return "not needed: the run completed"
        return str(value).replace("|", "/").replace("\n", " ")
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(row, c) for c in COLUMNS) + " |" for row in collected]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def rows():
    collected = []
    yield collected
    OUTPUT.parent.mkdir(exist_ok=True)
    OUTPUT.write_text(json.dumps(collected, indent=2) + "\n")
    OUTPUT.with_suffix(".md").write_text(table(collected))
    print("\n" + table(collected))


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, collections_path):
    tmp = tmp_path_factory.mktemp("fleet-faults")
    hub = Hub(tmp / "hub")
    fleet = Fleet(tmp, hub, collections_path)
    try:
        fleet.up()
        # What the Hub serves, file by file: the reference every host's snapshot is compared with.
        for repo, commits in ((MINILM_REPO, (COMMIT_A, COMMIT_B)), (LARGE_REPO, (LARGE_COMMIT,))):
            for commit in commits:
                files = build_repos(LARGE_SIZE)[repo]["commits"][commit]
                fleet.references[commit] = {"./" + name: (blob.size, blob.sha256) for name, blob in files.items()}
        # A clean rollout of COMMIT_B to every host: what the first test starts from.
        returncode, output = fleet.prefetch(COMMIT_B, model_cache_serial=1)
        assert returncode == 0, output[-6000:]
        wait_ready()
        assert fleet.lost(COMMIT_B) == (0, 0)
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
    returncode, output = fleet.prefetch(target, model_cache_serial=1, model_cache_hub_concurrency=1,
                                        model_cache_retries=8)
    downtime = poller.downtime()
    retries = sum(1 for entry in fleet.hub.stats()["log"] if entry[2] == 429)
    fleet.hub.reset()
    final = fleet.states()
    files, size = fleet.lost(target)
    rows.append({"fault": "429 storm (6 answers, Retry-After 1), retries 8, hub_concurrency 1, serial 1",
                 "hosts_affected": list(HOSTS), "reported_as": failure_text(output) or "ok",
                 "recovered_by_rerun": None, "data_lost_files": files, "data_lost_bytes": size,
                 "downtime_s": downtime, "retries": retries})
    assert returncode == 0, output[-6000:]
    assert retries == 6
    assert all(s["commit"] == target and s["ready"] for s in final.values()), final
    assert (files, size) == (0, 0)


def consistent(state, commit):
    """The host runs `commit` through and through: the link, and the agent ready and serving it."""
    return state["commit"] == commit and state["ready"] is True and state["serving"] == commit


def untouched_or_done(before, after, target):
    """A host the fault did not hit is either as it was (same agent process, same link) or done."""
    return consistent(after, target) or (after["pid"] == before["pid"] and after["commit"] == before["commit"]
                                         and after["dropin"] == before["dropin"])


def test_cas_hangs_mid_file(fleet, rows):
    # A new 256 MiB model beside the one the agents run: its bytes come from the Xet CAS, whose xorb reads hang
    # (the answer never starts) for the whole run; the first host's fetch is killed at model_cache_timeout.
    running = fleet.states()[PREFIX + "-1"]["commit"]
    fleet.drop_large()
    before = fleet.states()
    fleet.hub.faults({"kind": "hang", "count": -1, "endpoint": "xorb"})
    poller = ReadyPoller()
    poller.start()
    returncode, output = fleet.prefetch(running, model_cache_serial=1, model_cache_timeout=45,
                                        model_cache_models=fleet.large_models(running))
    downtime = poller.downtime()
    hung = sum(1 for entry in fleet.hub.stats()["log"] if "/xorb/" in entry[1] and entry[2] == 0)
    fleet.hub.reset()  # frees the hanging requests
    after = fleet.states()
    first = PREFIX + "-1"
    # Whatever the failed run left in the new model's blobs: each must be a whole file of that commit.
    known = {digest for _size, digest in fleet.references[LARGE_COMMIT].values()}
    listing = "cd %s/blobs 2>/dev/null && ls -A | xargs -r sha256sum; true" % LARGE_DIR
    partial = {h: [line.split()[0] for line in sh(h, listing).splitlines()] for h in HOSTS}

    rerun, rerun_output = fleet.prefetch(running, model_cache_serial=1, model_cache_models=fleet.large_models(running))
    final = fleet.states()
    files, size = fleet.lost(LARGE_COMMIT)
    rows.append({"fault": "Xet CAS hangs on every xorb read (mid-file), timeout 45 s, serial 1",
                 "hosts_affected": [first], "reported_as": failure_text(output),
                 "recovered_by_rerun": rerun == 0, "data_lost_files": files, "data_lost_bytes": size,
                 "downtime_s": downtime, "hung_requests": hung,
                 "others_untouched": all(after[h] == before[h] for h in HOSTS if h != first)})
    assert returncode != 0 and hung > 0, output[-6000:]
    assert first in failure_text(output) and "timeout" in output, output[-6000:]
    for host in HOSTS:  # nothing restarted, no blob of the new model half-written into any cache
        assert after[host]["pid"] == before[host]["pid"] and after[host]["commit"] == before[host]["commit"]
        assert set(partial[host]) <= known, partial
    assert rerun == 0, rerun_output[-6000:]
    # (the re-run restarts the agents: a new model in the cache is a change the agents may read)
    assert all(consistent(final[h], running) for h in HOSTS), final
    assert (files, size) == (0, 0)


def test_cas_drops_connections_mid_file(fleet, rows):
    # The CAS sends half of a xorb range, then resets the connection, three times: the client's retries carry on.
    running = fleet.states()[PREFIX + "-1"]["commit"]
    fleet.drop_large()
    before = fleet.states()
    fleet.hub.faults({"kind": "reset", "count": 3, "endpoint": "xorb"})
    poller = ReadyPoller()
    poller.start()
    returncode, output = fleet.prefetch(running, model_cache_serial=1, model_cache_models=fleet.large_models(running))
    downtime = poller.downtime()
    xorb_reads = sum(1 for entry in fleet.hub.stats()["log"] if "/xorb/" in entry[1])
    fleet.hub.reset()
    if returncode != 0:
        rerun, rerun_output = fleet.prefetch(running, model_cache_serial=1,
                                             model_cache_models=fleet.large_models(running))
    else:
        rerun, rerun_output = None, ""
    final = fleet.states()
    files, size = fleet.lost(LARGE_COMMIT)
    rows.append({"fault": "Xet CAS resets the connection halfway through 3 xorb reads, serial 1",
                 "hosts_affected": list(HOSTS), "reported_as": failure_text(output) or "ok",
                 "recovered_by_rerun": None if rerun is None else rerun == 0, "data_lost_files": files,
                 "data_lost_bytes": size, "downtime_s": downtime, "xorb_reads": xorb_reads})
    assert returncode == 0 or rerun == 0, (output + rerun_output)[-6000:]
    assert all(consistent(final[h], running) for h in HOSTS), final
    assert (files, size) == (0, 0)


def test_cache_filesystem_full_on_one_host(fleet, rows):
    target = fleet.other_commit()
    fleet.drop_snapshot(target)
    fleet.drop_own_blobs(target)
    victim = SMALL_CACHE_HOST
    # Leave 1 MiB free on the victim's cache filesystem.
    sh(victim, "free=$(df -B1 --output=avail %s | tail -1); fallocate -l $((free - 1048576)) %s/filler"
               % (CACHE, CACHE))
    before = fleet.states()
    poller = ReadyPoller()
    poller.start()
    returncode, output = fleet.prefetch(target, model_cache_serial=1)
    downtime = poller.downtime()
    after = fleet.states()
    sh(victim, "rm -f %s/filler" % CACHE)

    rerun, rerun_output = fleet.prefetch(target, model_cache_serial=1)
    final = fleet.states()
    files, size = fleet.lost(target)
    others = [h for h in HOSTS if h != victim]
    rows.append({"fault": "cache filesystem of one host full (1 MiB free), serial 1",
                 "hosts_affected": [victim], "reported_as": failure_text(output),
                 "recovered_by_rerun": rerun == 0 and all(consistent(s, target) for s in final.values()),
                 "data_lost_files": files, "data_lost_bytes": size, "downtime_s": downtime,
                 "others_untouched_or_done": all(untouched_or_done(before[h], after[h], target) for h in others)})
    assert returncode != 0, output[-6000:]
    assert victim in failure_text(output), output[-6000:]
    assert after[victim]["pid"] == before[victim]["pid"] and consistent(after[victim], before[victim]["commit"])
    for host in others:
        assert untouched_or_done(before[host], after[host], target), (host, before[host], after[host])
    assert rerun == 0, rerun_output[-6000:]
    assert all(consistent(s, target) for s in final.values()), final
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
    returncode, output = fleet.prefetch(target, model_cache_serial=1, model_cache_hub_concurrency=1)
    stopped.set()
    watcher.join()
    after = {h: host_state(h) for h in HOSTS if h != victim}
    podman("start", victim)
    wait_booted(victim)
    wait_ready()
    downtime = poller.downtime()
    back = host_state(victim)
    others = [h for h in HOSTS if h != victim]

    rerun, rerun_output = fleet.prefetch(target, model_cache_serial=1)
    final = fleet.states()
    files, size = fleet.lost(target)
    rows.append({"fault": "host stopped (podman stop) at the Hub's first request, then started; serial 1",
                 "hosts_affected": [victim], "reported_as": failure_text(output),
                 "recovered_by_rerun": rerun == 0 and all(consistent(s, target) for s in final.values()),
                 "data_lost_files": files, "data_lost_bytes": size, "downtime_s": downtime,
                 "others_untouched_or_done": all(untouched_or_done(before[h], after[h], target) for h in others)})
    assert returncode != 0, output[-6000:]
    assert victim in failure_text(output), output[-6000:]
    # The play stops (max_fail_percentage 0): each other host is either left as it was or done, never between.
    for host in others:
        assert untouched_or_done(before[host], after[host], target), (host, before[host], after[host])
    # The victim came back on what it ran before.
    assert consistent(back, before[victim]["commit"]), (before[victim], back)
    assert rerun == 0, rerun_output[-6000:]
    assert all(consistent(s, target) for s in final.values()), final
    assert (files, size) == (0, 0)


def test_controller_killed_mid_transfer(fleet, rows):
    # model_cache_source controller: the controller fetches justnews-test/large once, then streams its 256 MiB to
    # each host in chunks (hf_carry); the controller's run is killed (SIGKILL, its whole process group) once the
    # first host holds two chunks, mid-stream. The re-run must resume: send only the chunks the host lacks.
    running = fleet.states()[PREFIX + "-1"]["commit"]
    first = PREFIX + "-1"
    fleet.drop_large()
    shutil.rmtree(fleet.tmp / "controller-cache", ignore_errors=True)
    before = fleet.states()
    seen = []

    def banner(line):
        if "Carry the models to the host" in line:
            seen.append(time.monotonic())
        return False

    # Looked at through the container's mounted root: a podman exec per look is slower than the stream itself.
    staging = Path(subprocess.run(["podman", "mount", first], capture_output=True, text=True,
                                  check=True).stdout.strip() + STAGING)

    def mid_stream():
        return bool(seen) and sum(1 for path in staging.glob("*/*") if path.is_file()) >= 2

    poller = ReadyPoller()
    poller.start()
    # 256 chunks of 1 MiB: with 64 MiB chunks the whole stream could land between two looks.
    returncode, output = fleet.prefetch(running, on_line=banner, kill_when=mid_stream, model_cache_serial=1,
                                        model_cache_source="controller", model_cache_chunk_size="1M",
                                        model_cache_models=fleet.large_models(running))
    downtime = poller.downtime()
    after = fleet.states()
    # Bytes the killed run left on each host: the chunks in the role's staging folder (kept for the re-run), and
    # Ansible's remote temporary folders.
    left = "du -sbc %s /root/.ansible/tmp 2>/dev/null | tail -1 | cut -f1" % STAGING
    staged = {h: int(sh(h, left).strip() or 0) for h in HOSTS}
    chunks = int(sh(first, CHUNKS_KEPT).strip() or 0)
    snapshots = {h: sh(h, "ls %s/snapshots 2>/dev/null || true" % LARGE_DIR).split() for h in HOSTS}

    rerun, rerun_output = fleet.prefetch(running, model_cache_serial=1, model_cache_source="controller",
                                         model_cache_chunk_size="1M", model_cache_models=fleet.large_models(running))
    final = fleet.states()
    leftovers = {h: sh(h, "ls -A %s 2>/dev/null | wc -l" % STAGING).strip() for h in HOSTS}
    ansible_tmp = {h: int(sh(h, "du -sb /root/.ansible/tmp 2>/dev/null | cut -f1").strip() or 0) for h in HOSTS}
    files, size = fleet.lost(LARGE_COMMIT)
    rows.append({"fault": "controller's run killed (SIGKILL) mid-stream of 256 MiB to the first host, controller "
                          "mode, serial 1",
                 "hosts_affected": list(HOSTS),
                 "reported_as": "killed: nothing reported; bytes left per host: %s (%d chunks kept on %s for the "
                                "re-run); after the re-run, in Ansible's remote tmp: %s"
                                % (staged, chunks, first, ansible_tmp),
                 "recovered_by_rerun": rerun == 0, "data_lost_files": files, "data_lost_bytes": size,
                 "downtime_s": downtime})
    assert seen and "[killed by the test]" in output, output[-6000:]
    # Nothing the agents use changed, and no snapshot of the half-sent model appeared.
    for host in HOSTS:
        assert after[host] == before[host], (host, before[host], after[host])
        assert snapshots[host] == [], snapshots
    assert chunks >= 2, staged
    assert rerun == 0, rerun_output[-6000:]
    assert all(consistent(final[h], running) for h in HOSTS), final
    # The re-run took the kept chunks in and removed the staging folder.
    assert leftovers == dict.fromkeys(HOSTS, "0"), leftovers
    assert (files, size) == (0, 0)
