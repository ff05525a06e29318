"""hf_snapshot against a hostile Hub or mirror, a tampered cache, bad arguments, killed and overlapping runs.

Each test asserts what is on disk afterwards (nothing outside the cache, refs, no partial snapshot, blob
hashes) as well as what the module reported.
"""

import hashlib
import json
import os
import signal
import subprocess
import time

import pytest

from tools import shared_store
from tools.harness import target_python
from tools.hub.hubserver import COMMIT_A, COMMIT_B, MINILM_REPO
from test_hf_snapshot import FOLDER, LFS_FILE, args, offline_embedding

pytestmark = pytest.mark.usefixtures("hub")


def outside_state(tmp_path, cache):
    """Every path under tmp_path that is not the cache or the test runner's own files."""
    found = set()
    for dirpath, dirs, names in os.walk(tmp_path):
        if os.path.abspath(dirpath).startswith(str(cache)):
            dirs[:] = []
            continue
        for name in dirs + names:
            if not name.startswith(("result-", "play-")):
                found.add(os.path.join(dirpath, name))
    return found


def repo_state(cache):
    folder = cache / FOLDER
    ref = folder / "refs" / "main"
    return {"ref": ref.read_text() if ref.exists() else None,
            "trees": sorted(p.name for p in (folder / "trees").glob("*")) if (folder / "trees").exists() else [],
            "snapshots": sorted(p.name for p in (folder / "snapshots").glob("*"))
            if (folder / "snapshots").exists() else []}


def blobs_match_their_names(cache):
    """The cache's invariant: every blob's content hashes to its name (SHA-256 or git blob id)."""
    for blob in (cache / FOLDER / "blobs").iterdir():
        if blob.name.endswith(".incomplete"):
            continue
        data = blob.read_bytes()
        digest = hashlib.sha256(data).hexdigest() if len(blob.name) == 64 else \
            hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        assert digest == blob.name, "blob %s holds other content" % blob.name
    return True


def readme_entry(hub, commit):
    blob = hub.repos[MINILM_REPO]["commits"][commit]["README.md"]
    return {"type": "file", "oid": blob.git_oid, "size": blob.size}


# --- a hostile Hub or mirror -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../../../escape.txt", "/tmp/jn-hf-escape.txt", "1_Pooling/../../../escape.txt",
                                  "./README.md", "a//b.txt"])
def test_a_listed_name_leading_outside_is_refused_before_anything_is_written(hub, cache, run, tmp_path, name):
    run(args(hub, cache, revision=COMMIT_A))  # the listed content already sits in the cache under A
    before = outside_state(tmp_path, cache)
    hub.set_faults([{"kind": "extra_entry", "count": -1, "endpoint": "tree",
                     "value": dict(readme_entry(hub, COMMIT_A), path=name)}])
    result = run(args(hub, cache, revision=COMMIT_B))
    assert result["failed"] is True and result["changed"] is False
    assert result["error_kind"] == "unsafe_listing", result["msg"]
    assert repr(name) in result["msg"]
    assert outside_state(tmp_path, cache) == before and not os.path.lexists("/tmp/jn-hf-escape.txt")
    assert repo_state(cache) == {"ref": COMMIT_A, "trees": [COMMIT_A + ".json"], "snapshots": [COMMIT_A]}


@pytest.mark.parametrize("sha", ["../../x", COMMIT_A[:39], COMMIT_A.upper()])
def test_a_commit_from_the_hub_that_is_not_40_hex_is_refused(hub, cache, run, sha):
    hub.set_faults([{"kind": "sha", "count": -1, "endpoint": "model_info", "value": sha}])
    result = run(args(hub, cache))
    assert result["error_kind"] == "unsafe_listing" and sha in result["msg"]
    assert not (cache / FOLDER).exists() or repo_state(cache) == {"ref": None, "trees": [], "snapshots": []}


@pytest.mark.parametrize("kind, value", [("etag", "../../../../jn-etag-escape"), ("etag", "0" * 40),
                                         ("commit_header", "../../jn-commit-escape")])
def test_file_headers_that_contradict_the_listing_are_refused(hub, cache, run, tmp_path, kind, value):
    """The library names blobs and snapshot folders after these headers without checking them."""
    run(args(hub, cache, revision=COMMIT_A))
    before = outside_state(tmp_path, cache)
    hub.set_faults([{"kind": kind, "count": -1, "endpoint": "head", "path": "README.md", "value": value}])
    result = run(args(hub, cache, revision=COMMIT_B, retries=0))
    assert result["failed"] is True and result["error_kind"] == "unsafe_listing", result["msg"]
    assert value in result["msg"]
    assert outside_state(tmp_path, cache) == before
    assert not list(cache.parent.rglob("jn-*-escape*"))
    assert repo_state(cache) == {"ref": COMMIT_A, "trees": [COMMIT_A + ".json"], "snapshots": [COMMIT_A]}
    assert blobs_match_their_names(cache)


def test_a_size_lie_is_an_integrity_failure_and_leaves_no_trace(hub, cache, run):
    hub.set_faults([{"kind": "size_lie", "count": -1, "endpoint": "head", "path": "config.json"}])
    result = run(args(hub, cache, revision=COMMIT_A, retries=1))
    assert result["error_kind"] == "integrity", result["msg"]
    assert result["changed"] is False
    assert repo_state(cache) == {"ref": None, "trees": [], "snapshots": []}
    assert blobs_match_their_names(cache)


def test_a_failed_fetch_leaves_no_trace_of_the_new_commit(hub, cache, run):
    run(args(hub, cache, revision=COMMIT_A))
    hub.set_faults([{"kind": "500", "count": -1, "endpoint": "get", "path": "README.md"}])
    result = run(args(hub, cache, revision=COMMIT_B, retries=1))
    assert result["failed"] is True and result["changed"] is False
    assert result["error_kind"] == "server_error" and result["retries_used"] == 1
    assert repo_state(cache) == {"ref": COMMIT_A, "trees": [COMMIT_A + ".json"], "snapshots": [COMMIT_A]}
    assert blobs_match_their_names(cache)
    assert offline_embedding(cache) == 384


# --- a tampered cache --------------------------------------------------------------------------------------

def test_a_tampered_listing_in_the_cache_cannot_remove_files_outside(hub, cache, run, tmp_path):
    run(args(hub, cache, revision=COMMIT_A))
    victim = tmp_path / "victim.txt"
    victim.write_text("must survive")
    tree = cache / FOLDER / "trees" / (COMMIT_A + ".json")
    data = json.loads(tree.read_text())
    data["files"]["../../../../victim.txt"] = {"size": 12, "blob_id": "1" * 40}
    tree.write_text(json.dumps(data))
    result = run(args(hub, cache, revision=COMMIT_A, offline=True))
    assert result["error_kind"] == "unsafe_cache" and "victim.txt" in result["msg"]
    assert victim.read_text() == "must survive"
    assert (cache / FOLDER / "refs" / "main").read_text() == COMMIT_A


def test_a_snapshot_link_pointing_outside_is_replaced_never_followed(hub, cache, run, tmp_path):
    run(args(hub, cache, revision=COMMIT_A))
    victim = tmp_path / "victim.json"
    victim.write_text("{}")
    entry = cache / FOLDER / "snapshots" / COMMIT_A / "config.json"
    entry.unlink()
    entry.symlink_to(victim)
    result = run(args(hub, cache, revision=COMMIT_A, offline=True))
    assert result["changed"] is True and result["downloaded_files"] == []  # relinked from the cached blob
    assert victim.read_text() == "{}"
    assert os.path.realpath(entry).startswith(str(cache / FOLDER / "blobs"))


def test_a_cache_folder_that_is_a_symlink_out_is_refused(hub, cache, run, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (cache / FOLDER).mkdir(parents=True)
    (cache / FOLDER / "blobs").symlink_to(elsewhere)
    result = run(args(hub, cache, revision=COMMIT_A))
    assert result["error_kind"] == "unsafe_cache" and "blobs" in result["msg"]
    assert list(elsewhere.iterdir()) == []


def test_blobs_a_dead_run_left_unchecked_are_checked_before_use(hub, cache, run):
    """A killed run leaves its record of pending blobs; the next run checks them before anything links them."""
    run(args(hub, cache, revision=COMMIT_A))
    readme = os.path.realpath(cache / FOLDER / "snapshots" / COMMIT_A / "README.md")
    name = os.path.basename(readme)
    with open(readme, "ab") as handle:
        handle.write(b"tampered")
    (cache / FOLDER / "refs" / "main").unlink()
    (cache / ".locks" / FOLDER / "hf_snapshot.pending").write_text(json.dumps([name]))
    result = run(args(hub, cache, revision=COMMIT_A))
    assert result["changed"] is True and result["downloaded_files"] == ["README.md"]
    assert blobs_match_their_names(cache)
    assert not (cache / ".locks" / FOLDER / "hf_snapshot.pending").exists()


# --- bad arguments -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("extra, words", [
    ({"ref": "../../../escape"}, "ref"),
    ({"ref": "refs/../../x"}, "ref"),
    ({"revision": "../x"}, "revision"),
    ({"revision": "main\nx"}, "revision"),
    ({"revision": "v1.lock"}, "revision"),
    ({"repo_id": "../etc/passwd"}, "repo_id"),
    ({"repo_id": "a--b/c"}, "repo_id"),
    ({"mode": "4755"}, "setuid"),
    ({"mode": "2750"}, "setuid"),
    ({"mode": "1777"}, "sticky"),
])
def test_bad_arguments_are_refused_before_any_request_or_write(hub, cache, run, extra, words):
    result = run(args(hub, cache, **extra))
    assert result["failed"] is True and result["error_kind"] == "invalid_argument", result["msg"]
    assert words in result["msg"]
    assert hub.stats()["total"] == 0
    assert not cache.exists()


def test_a_link_inside_the_cache_is_refused(hub, cache, run):
    run(args(hub, cache, revision=COMMIT_A))
    target = cache / FOLDER / "snapshots" / COMMIT_A / "config.json"
    result = run(args(hub, cache, revision=COMMIT_A, link=str(target)))
    assert result["error_kind"] == "invalid_argument" and "outside the cache" in result["msg"]
    assert os.path.islink(target) and blobs_match_their_names(cache)
    assert offline_embedding(cache) == 384


def test_absent_removes_a_link_only_when_it_leads_into_this_repository(hub, cache, run, tmp_path):
    run(args(hub, cache, revision=COMMIT_A))
    foreign = tmp_path / "foreign"
    foreign.symlink_to(tmp_path)
    result = run(args(hub, cache, state="absent", link=str(foreign)))
    assert result["changed"] is True and not (cache / FOLDER).exists()
    assert os.path.islink(foreign)


def test_ownership_and_mode_stay_inside_the_repository_folder(hub, cache, run):
    cache.mkdir()
    cache.chmod(0o1777)
    run(args(hub, cache, revision=COMMIT_A, mode="0640", owner="nobody"))
    (cache / ".locks").chmod(0o1777)
    tag = cache / "CACHEDIR.TAG"
    tag.write_text("Signature: 8a477f597d28d172789f06886806bc55\n")
    tag.chmod(0o600)
    result = run(args(hub, cache, revision=COMMIT_A, mode="0644", owner="nobody"))
    assert result["changed"] is True
    assert oct(cache.stat().st_mode & 0o7777) == oct(0o1777)
    assert oct((cache / ".locks").stat().st_mode & 0o7777) == oct(0o1777)
    assert oct(tag.stat().st_mode & 0o777) == oct(0o600) and tag.stat().st_uid == 0
    assert oct((cache / FOLDER).stat().st_mode & 0o7777) == oct(0o755)


def test_a_cache_dir_that_is_a_file_is_named_without_a_traceback(hub, cache, run):
    cache.write_text("not a directory")
    result = run(args(hub, cache))
    assert result["error_kind"] == "cache_dir_invalid" and str(cache) in result["msg"]
    assert "Traceback" not in run.output and "Errno" not in result["msg"]
    assert hub.stats()["total"] == 0


def test_a_read_only_cache_dir_is_named_before_any_request(hub, run, tmp_path):
    mount = tmp_path / "ro"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(mount)], check=False).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        result = run(args(hub, mount / "hub"))
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
    assert result["error_kind"] == "not_writable" and "read-only" in result["msg"] and str(mount) in result["msg"]
    assert hub.stats()["total"] == 0


# --- one retry layer that tells the truth ------------------------------------------------------------------

def test_a_refused_connection_is_reported_within_a_minute_with_defaults(cache, run):
    started = time.monotonic()
    result = run({"repo_id": MINILM_REPO, "cache_dir": str(cache), "endpoint": "http://127.0.0.1:9"})
    assert result["error_kind"] == "unreachable" and "127.0.0.1:9" in result["msg"]
    assert result["retries_used"] == 5 and "6 attempt(s)" in result["msg"]
    assert time.monotonic() - started < 60


def test_an_http_date_retry_after_on_a_file_download_is_honoured(hub, cache, run):
    hub.set_faults([{"kind": "429", "count": 1, "endpoint": "get", "path": COMMIT_A + "/config.json",
                     "retry_after": "date", "seconds": 4}])
    result = run(args(hub, cache, revision=COMMIT_A))
    assert result.get("failed") is not True, result.get("msg")
    assert result["retries_used"] == 1
    assert result["elapsed"] >= 3
    statuses = [s for method, path, s in hub.stats()["log"]
                if method == "GET" and path.endswith(COMMIT_A + "/config.json")]
    assert statuses == [429, 200]  # one retry, by the module: the library made no attempt of its own
    assert blobs_match_their_names(cache)


def test_a_wait_longer_than_the_timeout_is_rate_limited_not_timeout(hub, cache, run):
    hub.set_faults([{"kind": "429", "count": -1, "endpoint": "model_info", "retry_after": "600"}])
    result = run(args(hub, cache, timeout=20))
    assert result["error_kind"] == "rate_limited" and result["retry_after"] == 600
    assert "the Hub asked to wait 600s" in result["msg"]
    assert result["elapsed"] < 20


def test_a_permanent_server_error_with_a_short_timeout_is_a_server_error(hub, cache, run):
    hub.set_faults([{"kind": "500", "count": -1, "endpoint": "any"}])
    # 20 s: room for slow answers on a loaded machine, still short of the backoff's next wait
    result = run(args(hub, cache, timeout=20))
    assert result["error_kind"] == "server_error", result["msg"]
    assert "no time left for retry" in result["msg"] and "asked" not in result["msg"]
    assert result["retries_used"] >= 2


# --- killed and overlapping runs ---------------------------------------------------------------------------

def module_processes(root, mark=None):
    """{pid: ppid} of the processes under `root` that run the hf_snapshot module (the module, its download child).
    With `mark`, those whose environment holds it instead: the download runs as an async job, which async_wrapper
    detaches from ansible-playbook."""
    table = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as handle:
                cmdline = handle.read()
            with open("/proc/%s/stat" % pid) as handle:
                ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            if mark is not None:
                with open("/proc/%s/environ" % pid, "rb") as handle:
                    if mark.encode() not in handle.read().split(b"\0"):
                        continue
        except OSError:
            continue
        table[int(pid)] = (ppid, cmdline)
    if mark is not None:
        return {pid: ppid for pid, (ppid, cmdline) in table.items()
                if b"AnsiballZ_hf_snapshot" in cmdline and b"python" in cmdline.split(b"\0")[0]
                and b"async_wrapper" not in cmdline}
    found, frontier = {}, {root}
    while frontier:  # walk down from the ansible-playbook process: other tests run modules at the same time
        children = {pid for pid, (ppid, _c) in table.items() if ppid in frontier}
        for pid in children:
            cmdline = table[pid][1]
            if b"AnsiballZ_hf_snapshot" in cmdline and b"python" in cmdline.split(b"\0")[0]:
                found[pid] = table[pid][0]
        frontier = children
    return found


def wait_for(predicate, seconds, what):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for " + what
        time.sleep(0.1)


def downloading(hub, name):
    return any(m == "GET" and p.endswith("/" + name) for m, p, _s in hub.stats()["log"])


def test_killing_the_module_kills_its_download_and_the_next_run_completes(hub_lfs, cache, run):
    hub = hub_lfs  # throttled and failed on the resolver's GET: the plain-HTTP transport
    hub.set_faults([{"kind": "throttle", "count": -1, "endpoint": "get", "path": LFS_FILE, "value": 2_000_000}])
    mark = "JUSTNEWS_TEST_RUN=%s" % cache
    job = run.start(args(hub, cache, revision=COMMIT_A), env={"JUSTNEWS_TEST_RUN": str(cache)})
    wait_for(lambda: downloading(hub, LFS_FILE) and len(module_processes(job.proc.pid, mark)) >= 2, 120,
             "the download")
    procs = module_processes(job.proc.pid, mark)
    module = next(pid for pid, ppid in procs.items() if ppid not in procs)
    child = next(pid for pid, ppid in procs.items() if ppid == module)
    os.kill(module, signal.SIGKILL)
    killed = time.monotonic()
    wait_for(lambda: not os.path.exists("/proc/%d" % child) or
             open("/proc/%d/stat" % child).read().rsplit(")", 1)[1].split()[0] == "Z", 5, "the child to die")
    assert time.monotonic() - killed < 1.5
    job.proc.wait(60)  # ansible-playbook is not held up by an orphan that keeps its output open
    job.log.close()
    assert (cache / FOLDER / "refs" / "main").exists() is False
    hub.set_faults([])
    result = run(args(hub, cache, revision=COMMIT_A))
    assert result["changed"] is True and LFS_FILE in result["downloaded_files"], result.get("msg")
    assert not list((cache / FOLDER / "blobs").glob("*.incomplete"))
    assert blobs_match_their_names(cache)
    assert offline_embedding(cache) == 384


def test_a_second_run_waits_for_the_first_and_finds_the_work_done(hub_lfs, cache, run):
    hub = hub_lfs  # throttled and failed on the resolver's GET: the plain-HTTP transport
    hub.set_faults([{"kind": "throttle", "count": -1, "endpoint": "get", "path": LFS_FILE, "value": 8_000_000}])
    first = run.start(args(hub, cache, revision=COMMIT_A))
    wait_for(lambda: downloading(hub, LFS_FILE), 120, "the first download")
    second = run.start(args(hub, cache, revision=COMMIT_A))
    one, two = first.result(), second.result()
    assert one["changed"] is True and one.get("failed") is not True, one.get("msg")
    assert two["changed"] is False and two.get("failed") is not True, two.get("msg")
    assert two["lock_wait"] > 1 and two["downloaded_files"] == []
    gets = [p for m, p, s in hub.stats()["log"] if m == "GET" and p.endswith("/" + LFS_FILE)]
    assert len(gets) == 1
    assert blobs_match_their_names(cache)


def test_a_run_waiting_on_the_lock_stops_at_its_timeout(hub_lfs, cache, run):
    hub = hub_lfs  # throttled and failed on the resolver's GET: the plain-HTTP transport
    hub.set_faults([{"kind": "throttle", "count": -1, "endpoint": "get", "path": LFS_FILE, "value": 4_000_000}])
    first = run.start(args(hub, cache, revision=COMMIT_A))
    wait_for(lambda: downloading(hub, LFS_FILE), 120, "the first download")
    waiting = run(args(hub, cache, revision=COMMIT_A, timeout=3))
    assert waiting["error_kind"] == "locked" and "timeout" in waiting["msg"]
    assert first.result()["changed"] is True


def test_an_agent_downloading_at_the_same_moment_is_not_disturbed(hub, cache, run, tmp_path):
    """Another huggingface_hub process holds its own download locks; its partial files are not orphans."""
    hub.set_faults([{"kind": "throttle", "count": -1, "endpoint": "get", "path": LFS_FILE, "value": 8_000_000}])
    code = ("import sys\nfrom huggingface_hub import snapshot_download\n"
            "print(snapshot_download(%r, revision=%r, cache_dir=%r, endpoint=%r))\n"
            % (MINILM_REPO, COMMIT_A, str(cache), hub.url))
    agent = subprocess.Popen([target_python(), "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    wait_for(lambda: list((cache / FOLDER / "blobs").glob("*.incomplete")) if (cache / FOLDER / "blobs").exists()
             else False, 120, "the agent's partial download")
    result = run(args(hub, cache, revision=COMMIT_A))
    _out, err = agent.communicate(timeout=300)
    assert agent.returncode == 0, err[-3000:]
    assert result.get("failed") is not True, result.get("msg")
    assert blobs_match_their_names(cache)
    assert offline_embedding(cache) == 384


# --- the shared blob store of Xet downloads ---------------------------------------------------------------

def _outside_stats(tmp_path, cache):
    """Owner and mode of every path outside the cache; size and mtime of every file (an append shows)."""
    stats = {p: os.lstat(p) for p in outside_state(tmp_path, cache) if p != str(cache)}
    return {p: (st.st_uid, st.st_mode) + ((st.st_size, st.st_mtime_ns) if not os.path.isdir(p) else ())
            for p, st in stats.items()}


def _point_blob(blob, target):
    blob.unlink()
    os.symlink(target, blob)


def _hostile_store(case, cache, blob, xet_hash, victim, elsewhere):
    """Tamper with the store as its owner could; `victim` outside the cache holds the entry's very bytes."""
    entry = shared_store.entry(cache, xet_hash)
    prefix = os.path.dirname(entry)
    if case == "absolute link":
        _point_blob(blob, str(victim))
    elif case == "link leading out":
        _point_blob(blob, os.path.relpath(victim, blob.parent))
    elif case == "link to a FIFO in the store":
        os.unlink(entry)
        os.mkfifo(entry)
    elif case == "symlinked prefix folder":
        os.rename(prefix, elsewhere / xet_hash[:2])
        os.symlink(elsewhere / xet_hash[:2], prefix)
    elif case == "symlinked store folder":
        os.rename(cache / "blobs", elsewhere / "blobs")
        os.symlink(elsewhere / "blobs", cache / "blobs")
    elif case == "dangling link":
        os.unlink(entry)
    elif case == "wrong prefix":
        wrong = cache / "blobs" / "00"
        wrong.mkdir(exist_ok=True)
        (wrong / xet_hash).write_bytes(victim.read_bytes())
        _point_blob(blob, "../../blobs/00/" + xet_hash)


@pytest.mark.parametrize("case", ["absolute link", "link leading out", "link to a FIFO in the store",
                                  "symlinked prefix folder", "symlinked store folder", "dangling link",
                                  "wrong prefix"])
def test_a_hostile_store_link_is_never_followed_and_is_fetched_anew(hub, cache, run, tmp_path, case):
    run(args(hub, cache, revision=COMMIT_A))
    links = shared_store.publish(cache, FOLDER)
    etag = next(name for name in links if (cache / FOLDER / "snapshots" / COMMIT_A / LFS_FILE).resolve().name
                in (name, links[name]))
    blob = cache / FOLDER / "blobs" / etag
    victim = tmp_path / "victim.bin"
    victim.write_bytes(open(shared_store.entry(cache, links[etag]), "rb").read())
    victim.chmod(0o600)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _hostile_store(case, cache, blob, links[etag], victim, elsewhere)
    outside_before = _outside_stats(tmp_path, cache)

    offline = run(args(hub, cache, revision=COMMIT_A, offline=True), timeout=120)
    assert offline["failed"] is True and offline["error_kind"] == "incomplete", offline
    assert LFS_FILE in offline["missing_files"]

    result = run(args(hub, cache, revision=COMMIT_A, owner="nobody", mode="0600"), timeout=300)
    assert result["changed"] is True and result["downloaded_files"] == [LFS_FILE], result.get("msg")
    # nothing outside the cache was touched: not its owner, not its mode, not its bytes
    assert _outside_stats(tmp_path, cache) == outside_before
    assert hashlib.sha256(victim.read_bytes()).hexdigest() == etag
    # the snapshot's file is the right content, reached inside the cache
    served = cache / FOLDER / "snapshots" / COMMIT_A / LFS_FILE
    assert os.path.realpath(served).startswith(os.path.realpath(cache) + os.sep)
    assert not os.path.realpath(served).startswith(str(elsewhere))
    assert hashlib.sha256(served.read_bytes()).hexdigest() == etag
    assert run(args(hub, cache, revision=COMMIT_A, owner="nobody", mode="0600", offline=True))["changed"] is False
