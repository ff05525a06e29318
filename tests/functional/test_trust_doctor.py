"""hf_doctor against what the cache's owner (the agents' unprivileged user) can plant: links out of the cache,
FIFOs, a slow journal, and tokens of any shape. Each test runs the real module with ansible-playbook and checks
the result, the play's output and the disk afterwards.

systemd does not run on the test host; where a unit is needed, `systemctl` and `journalctl` are scripts on the
module's PATH that print what systemd would (the unit runs as root, so the access check runs as root too).
"""

import hashlib
import json
import os
import shutil
import socket
import stat
import threading
import time

import filelock
import pytest

from tests.functional.test_doctor import FOLDER, doctor, fetch, play, verdicts
from tools import shared_store
from tools.hub.hubserver import MINILM_REPO

UNIT = "justnews@memory.service"


@pytest.fixture(scope="session")
def base_cache(hub, collections_path, tmp_path_factory):
    """One fetched cache (with LFS files in the shared store, as Xet downloads leave them) for every worker of
    the run: the first worker fetches it, the others wait for it. Tests work on copies."""
    shared = tmp_path_factory.getbasetemp().parent
    cache = shared / "trust-doctor-cache" / "hub-cache"
    with filelock.FileLock(str(shared / "trust-doctor-cache.lock")):
        if not (shared / "trust-doctor-cache" / "done").exists():
            work = cache.parent
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            results, output = play(collections_path, work, [fetch(hub, cache)])
            assert results["fetch"]["changed"], output
            shared_store.publish(cache, FOLDER)
            (work / "done").write_text("")
    return cache


@pytest.fixture
def cache(base_cache, tmp_path):
    copy = tmp_path / "hub-cache"
    shutil.copytree(base_cache, copy, symlinks=True)
    return copy


@pytest.fixture
def empty_cache(tmp_path):
    """For the checks of units, files and arguments: a cache folder with no model in it."""
    path = tmp_path / "hub-cache"
    path.mkdir()
    return path


@pytest.fixture
def workdir(tmp_path):
    path = tmp_path / "play"
    path.mkdir()
    return path


def state(top):
    """Every path below `top` with its kind, mode and content (bytes hash, or a link's text): what is on disk."""
    found = {}
    for dirpath, dirs, files in os.walk(top):
        for name in dirs + files:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                what = "link:" + os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as handle:
                    what = hashlib.sha256(handle.read()).hexdigest()
            else:
                what = stat.S_IFMT(st.st_mode)
            found[os.path.relpath(path, top)] = (what, stat.S_IMODE(st.st_mode), st.st_uid)
    return found


def commit_of(cache):
    return (cache / FOLDER / "refs" / "main").read_text().strip()


def outside_secret(tmp_path, text):
    """A root-only file outside the cache that a planted link leads to."""
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    secret = outside / "secret"
    secret.write_text(text)
    secret.chmod(0o600)
    return outside, secret


def run_doctor(collections_path, workdir, task, env=None):
    if env:
        task = dict(task, environment=env)
    started = time.monotonic()
    results, output = play(collections_path, workdir, [task])
    return results["doctor"], output, time.monotonic() - started


def absent(value, result, output):
    assert value not in json.dumps(result), [f for f in result.get("findings", []) if value in json.dumps(f)]
    assert value not in output


# --- links the cache's owner plants ----------------------------------------------------------------------------

PLANTS = ["refs", "listing", "snapshot_folder", "locks_folder", "snapshot_file"]


def plant(where, cache, tmp_path):
    """Replace one entry of the cache with a link out of it; (the link's path, the text that must not show)."""
    commit = commit_of(cache)
    repo = cache / FOLDER
    marker = "OUTSIDE-" + hashlib.sha256(where.encode()).hexdigest()[:12]
    if where == "refs":
        outside, secret = outside_secret(tmp_path, "ab" * 20 + "\n")  # a commit the cache does not have
        marker = "ab" * 20
        link = repo / "refs" / "main"
    elif where == "listing":
        tree = json.loads((repo / "trees" / (commit + ".json")).read_text())
        tree["files"][marker + ".bin"] = dict(next(iter(tree["files"].values())))
        outside, secret = outside_secret(tmp_path, json.dumps(tree))
        link = repo / "trees" / (commit + ".json")
    elif where == "snapshot_folder":
        outside, secret = outside_secret(tmp_path, marker)
        (outside / "tree").mkdir()
        (outside / "tree" / (marker + ".json")).write_text(marker)
        secret = outside / "tree"
        link = repo / "snapshots" / commit
    elif where == "locks_folder":
        outside, secret = outside_secret(tmp_path, marker)
        (outside / "locks").mkdir()
        os.mkfifo(outside / "locks" / (marker + ".lock"))
        secret = outside / "locks"
        link = cache / ".locks" / FOLDER
    else:
        outside, secret = outside_secret(tmp_path, marker)
        link = repo / "snapshots" / commit / "config.json"
    if link.is_dir() and not link.is_symlink():
        shutil.rmtree(link)
    elif os.path.lexists(link):
        link.unlink()
    link.symlink_to(secret)
    return link, secret, marker


def test_planted_links_are_named_never_followed(hub, base_cache, tmp_path, workdir, collections_path):
    """One link out of the cache per copy of it, each copy checked by its own task of one play."""
    planted, tasks = {}, []
    for where in PLANTS:
        cache = tmp_path / where / "hub-cache"
        shutil.copytree(base_cache, cache, symlinks=True)
        planted[where] = plant(where, cache, tmp_path / where) + (
            cache, state(tmp_path / where / "outside"), state(cache))
        tasks.append(dict(doctor(hub, cache, reach_hub=False), name="doctor " + where, register=where))
    results, output = play(collections_path, workdir, tasks)

    for where, (link, secret, marker, cache, outside_before, cache_before) in planted.items():
        result = results[where]
        assert result["verdict"] == "fail", (where, result)
        named = [f for f in result["findings"] if f["subject"] == str(link) and f["verdict"] == "fail"]
        assert named, (where, result["findings"])
        assert "link" in named[0]["detail"] and "rm %s" % link in named[0]["fix"], (where, named)
        (model,) = verdicts(result, "model")
        assert model[0] == "fail", (where, model)
        absent(marker, result, output)  # what lies outside the cache is never read into the report
        assert state(tmp_path / where / "outside") == outside_before, where  # the target untouched
        assert state(cache) == cache_before, where  # nothing created, moved or removed in the cache
        assert os.readlink(link) == str(secret), where


# --- FIFOs: nothing waits on them ------------------------------------------------------------------------------

def test_fifos_are_named_never_read_and_the_run_ends_well_within_its_timeout(
        hub, cache, tmp_path, workdir, collections_path):
    commit = commit_of(cache)
    repo = cache / FOLDER
    snapshot = repo / "snapshots" / commit
    fifos = []

    def fifo(path):
        if os.path.lexists(path):
            os.unlink(path)
        os.mkfifo(path, 0o600)
        fifos.append(path)
        return path

    # a plain blob reached through its snapshot link, a store entry, a snapshot entry, a lock, a ref, the token
    config_blob = os.path.normpath(os.path.join(snapshot, os.readlink(snapshot / "config.json")))
    fifo(config_blob)
    links = shared_store.store_links(cache, FOLDER)
    entry = fifo(shared_store.entry(cache, next(iter(links.values()))))
    fifo(snapshot / "tokenizer.json")
    (cache / ".locks" / FOLDER).mkdir(parents=True, exist_ok=True)
    fifo(cache / ".locks" / FOLDER / "planted.lock")
    fifo(repo / "refs" / "fifo")
    (tmp_path / "etc").mkdir()
    token_file = fifo(tmp_path / "etc" / "hf-token.env")
    before = state(tmp_path)

    result, output, took = run_doctor(collections_path, workdir, doctor(
        hub, cache, models=[{"repo_id": MINILM_REPO}, {"repo_id": MINILM_REPO, "revision": "fifo"}],
        reach_hub=False, token_file=str(token_file), token_expected=True, check_timeout=60))

    assert took < 30, (took, output)  # nothing waited for a writer: half check_timeout at most
    findings = result["findings"]
    by_subject = {f["subject"]: f for f in findings if f["verdict"] == "fail"}
    assert "a FIFO" in by_subject[config_blob]["detail"] and "never opened" in by_subject[config_blob]["detail"]
    assert "a FIFO" in by_subject[entry]["detail"]
    assert "a FIFO" in by_subject[str(repo / "refs" / "fifo")]["detail"]
    assert "a FIFO" in by_subject[str(token_file)]["detail"] and "rm it as root" in by_subject[str(token_file)]["fix"]
    (access,) = verdicts(result, "cache")[:1]
    assert access[0] == "fail", access
    assert "planted.lock is a FIFO" in access[2] and "tokenizer.json is not a regular file" in access[2], access
    models = verdicts(result, "model")
    assert [m[0] for m in models] == ["fail", "fail"], models
    assert "did not finish" not in json.dumps(result)
    state_after = state(tmp_path)
    assert {k: v for k, v in state_after.items() if not k.startswith("play")} == \
        {k: v for k, v in before.items() if not k.startswith("play")}
    assert all(stat.S_ISFIFO(os.lstat(p).st_mode) for p in fifos)


# --- units, their environment files and their journal (systemctl and journalctl scripted) ----------------------

def fake_systemd(tmp_path, environment="", env_files=(), journal_lines=(), journal_sleep=0):
    """`systemctl show` and `journalctl` for one active unit running as root; returns the PATH to use."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    show = ["Id=" + UNIT, "LoadState=loaded", "ActiveState=active", "SubState=running", "User=", "MainPID=0",
            "InvocationID=0123abcd", "Environment=" + environment]
    show += ["EnvironmentFiles=%s (ignore_errors=yes)" % f for f in env_files]
    (bin_dir / "show.txt").write_text("\n".join(show) + "\n")
    (bin_dir / "journal.txt").write_text("\n".join(journal_lines) + "\n")
    (bin_dir / "systemctl").write_text("#!/bin/sh\ncat %s\n" % (bin_dir / "show.txt"))
    body = "cat %s\n" % (bin_dir / "journal.txt")
    if journal_sleep:
        body = "echo $$ > %s\nexec sleep %d\n" % (bin_dir / "journal.pid", journal_sleep)
    (bin_dir / "journalctl").write_text("#!/bin/sh\n" + body)
    for name in ("systemctl", "journalctl"):
        (bin_dir / name).chmod(0o755)
    return {"PATH": "%s:%s" % (bin_dir, os.environ["PATH"])}


class EchoMirror:
    """A mirror that answers every request with a broken status line quoting its Authorization header, as a
    misconfigured proxy may: the error text the doctor gets holds the token."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = "http://127.0.0.1:%d" % self.sock.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _addr = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                auth = [line for line in data.split(b"\r\n") if line.lower().startswith(b"authorization:")]
                conn.sendall(b"HTTP/1.1 9x9 you sent " + (auth[0] if auth else b"nothing") + b"\r\n\r\n")

    def close(self):
        self.sock.close()


def test_a_token_of_any_shape_is_masked_everywhere(hub, empty_cache, tmp_path, workdir, collections_path):
    suffix = os.urandom(4).hex()
    token = "s3cr3t-mirror-token-42" + suffix  # a mirror's token: nothing like hf_...
    in_unit = "unit-env-secret-" + suffix
    in_file = "env-file-secret-" + suffix
    etc = tmp_path / "etc"
    etc.mkdir()
    token_file = etc / "hf-token.env"
    token_file.write_text("HF_TOKEN=%s\n" % token)
    token_file.chmod(0o600)
    env_file = etc / "memory.env"
    env_file.write_text("HF_HUB_TOKEN='%s'\nHF_HUB_OFFLINE=1\n" % in_file)
    path = fake_systemd(
        tmp_path, environment="HUGGING_FACE_HUB_TOKEN=%s HF_HUB_OFFLINE=1" % in_unit,
        env_files=[str(token_file), str(env_file)],
        journal_lines=["HTTP Error 429 thrown while requesting HEAD https://mirror/x (Bearer %s)" % token,
                       "LocalEntryNotFoundError: login as %s failed" % in_unit,
                       "Fetching 13 files with token %s" % in_file])
    mirror = EchoMirror()
    before = state(tmp_path / "etc")
    try:
        result, output, _took = run_doctor(collections_path, workdir, doctor(
            hub, empty_cache, endpoint=mirror.url, units=[UNIT], token_file=str(token_file), token_expected=True,
            token=token, expected_env={"HF_HUB_OFFLINE": "1"}), env=path)
    finally:
        mirror.close()

    for value in (token, in_unit, in_file):
        absent(value, result, output)
    (journal,) = verdicts(result, "journal")
    assert journal[0] == "fail" and "Bearer ***" in journal[2] and "login as *** failed" in journal[2], journal
    (hub_finding,) = verdicts(result, "hub")
    assert hub_finding[0] == "fail" and "unreachable" in hub_finding[2] and "***" in hub_finding[2], hub_finding
    token_findings = [f for f in verdicts(result, "token") if f[1] == str(token_file)]
    assert token_findings[0][0] == "warn" and "***" in token_findings[0][2], token_findings
    assert state(tmp_path / "etc") == before


def test_env_files_that_are_fifos_or_links_in_the_cache_are_not_read(
        hub, empty_cache, tmp_path, workdir, collections_path):
    outside, secret = outside_secret(tmp_path, "HF_HUB_OFFLINE=0\nHF_TOKEN=root-only-secret-value\n")
    fifo = tmp_path / "memory.env"
    os.mkfifo(fifo)
    planted = empty_cache / "agent.env"  # the start script sources a file in a folder the cache's owner writes
    planted.symlink_to(secret)
    path = fake_systemd(tmp_path, environment="HF_HUB_OFFLINE=1", env_files=[str(fifo)])
    before = state(tmp_path)

    result, output, took = run_doctor(collections_path, workdir, doctor(
        hub, empty_cache, reach_hub=False, units=[UNIT], sourced_files=[str(planted)], journal=False,
        check_timeout=60, expected_env={"HF_HUB_OFFLINE": "1"}), env=path)

    assert took < 30, took
    named = {f[1]: f for f in verdicts(result, "environment")}
    assert named[str(fifo)][0] == "fail" and "a FIFO" in named[str(fifo)][2], named
    assert named[str(planted)][0] == "fail" and "symlink" in named[str(planted)][2], named
    assert "rm it as root" in named[str(planted)][3]
    assert UNIT not in named, named  # neither file was read: the unit's own HF_HUB_OFFLINE=1 stands
    absent("root-only-secret-value", result, output)
    after = state(tmp_path)
    assert {k: v for k, v in after.items() if not k.startswith(("play", "bin"))} == \
        {k: v for k, v in before.items() if not k.startswith(("play", "bin"))}


def test_a_hung_journalctl_is_killed_at_check_timeout(hub, empty_cache, tmp_path, workdir, collections_path):
    path = fake_systemd(tmp_path, environment="HF_HUB_OFFLINE=1", journal_sleep=300)
    result, output, took = run_doctor(collections_path, workdir, doctor(
        hub, empty_cache, reach_hub=False, units=[UNIT], check_timeout=3, expected_env={"HF_HUB_OFFLINE": "1"}),
        env=path)

    assert took < 30, (took, output)
    (journal,) = verdicts(result, "journal")
    assert journal[0] == "fail" and "did not finish within 3 s" in journal[2] and journal[3], journal
    pid = int((tmp_path / "bin" / "journal.pid").read_text())
    assert not os.path.exists("/proc/%d" % pid) or "Z" in open("/proc/%d/stat" % pid).read().split()[2]


# --- the module's own failures -----------------------------------------------------------------------------------

def test_every_failure_has_an_error_kind_and_a_fix(hub, empty_cache, workdir, collections_path):
    tasks = [dict(doctor(hub, empty_cache, models=[{"repo_id": "../etc"}]), register="bad_model", name="bad model"),
             dict(doctor(hub, empty_cache, check_timeout=0), register="bad_timeout", name="bad timeout"),
             dict(doctor(hub, empty_cache, models=[{"repo_id": MINILM_REPO, "ref": "../../../etc/passwd"}]),
                  register="bad_ref", name="bad ref")]
    before = state(empty_cache)
    results, output = play(collections_path, workdir, tasks)
    for name in ("bad_model", "bad_timeout", "bad_ref"):
        result = results[name]
        assert result["failed"] and result["error_kind"] == "invalid_argument", (name, result)
        assert result["fix"] and result["msg"], (name, result)
    assert "check_timeout" in results["bad_timeout"]["msg"]
    assert state(empty_cache) == before
