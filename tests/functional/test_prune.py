"""hf_prune on real caches that hf_snapshot filled from the test Hub: what an operator finds on disk afterwards."""

import json
import os
import shutil
import stat
import subprocess
import sys
import time

import hashlib

import pytest

from tests.functional.conftest import Runner
from tools import shared_store
from tools.harness import controller_bin, target_python
from tools.hub.hubserver import COMMIT_A, COMMIT_B, GATED_COMMIT, GATED_REPO, MINILM_REPO

FOLDER = "models--sentence-transformers--all-MiniLM-L6-v2"
GATED_FOLDER = "models--justnews-test--gated-minilm"


def fetch_into(hub, collections_path, work, cache, fetches):
    """Fill a cache with hf_snapshot; its LFS files end in the shared store (Xet downloads put them there, and a
    plain-LFS Hub's are moved there with the library's own publish_blob_to_shared_store)."""
    fetch = Runner(collections_path, work)
    for repo_id, revision, token in fetches:
        args = {"repo_id": repo_id, "cache_dir": str(cache), "endpoint": hub.url, "timeout": 120,
                "revision": revision, "free_space_margin": 0}
        if token:
            args["token"] = token
        result = fetch(args)
        assert result["changed"] is True, fetch.output
        folder = "models--" + repo_id.replace("/", "--")
        shared_store.publish(cache, folder)
        time.sleep(1.1)  # the snapshots differ in age
    return cache


@pytest.fixture(scope="module")
def template(hub, collections_path, tmp_path_factory):
    """A cache with COMMIT_A (fetched as tag v1) and, later, COMMIT_B (main), as hf_snapshot leaves it."""
    work = tmp_path_factory.mktemp("prune-template")
    return fetch_into(hub, collections_path, work, work / "hub",
                      [(MINILM_REPO, "v1", None), (MINILM_REPO, "main", None)])


@pytest.fixture(scope="module")
def shared_template(hub, collections_path, tmp_path_factory):
    """COMMIT_A of MiniLM (tag v1) and the gated repository, whose files are the same: one store entry each."""
    work = tmp_path_factory.mktemp("prune-shared")
    return fetch_into(hub, collections_path, work, work / "hub",
                      [(MINILM_REPO, "v1", None), (GATED_REPO, "main", hub.token)])


@pytest.fixture
def cache(template, tmp_path):
    path = tmp_path / "hub"
    shutil.copytree(template, path, symlinks=True)
    return path


class Prune:
    """Run hf_prune through ansible-playbook against the installed collection; returns the task's result."""

    def __init__(self, collections, workdir):
        self.collections, self.workdir, self.count, self.output = collections, workdir, 0, ""

    def __call__(self, args, check=False, diff=False):
        self.count += 1
        out = self.workdir / ("prune-%d.json" % self.count)
        play = [{"hosts": "localhost", "gather_facts": False, "tasks": [
            {"name": "prune", "justnews.huggingface.hf_prune": args, "register": "r", "ignore_errors": True},
            {"name": "save", "ansible.builtin.copy": {"content": "{{ r | to_json }}", "dest": str(out)},
             "check_mode": False, "diff": False}]}]
        book = self.workdir / ("prune-%d.yml" % self.count)
        book.write_text(json.dumps(play))
        cmd = [controller_bin("ansible-playbook"), "-i", "localhost,", "-c", "local",
               "-e", "ansible_python_interpreter=" + target_python(), str(book)]
        cmd += ["--check"] if check else []
        cmd += ["--diff"] if diff else []
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=self.workdir, check=False,
                              env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=self.collections, ANSIBLE_NOCOLOR="1",
                                       ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0"))
        self.output = proc.stdout + proc.stderr
        assert out.exists(), self.output
        return json.loads(out.read_text())


@pytest.fixture
def prune(collections_path, tmp_path):
    return Prune(collections_path, tmp_path)


def blobs_of(cache, commit, folder=FOLDER):
    """The repository blobs (etags) a snapshot's links name, read from the links."""
    snap = cache / folder / "snapshots" / commit
    return {os.path.basename(os.readlink(p)) for p in snap.rglob("*") if p.is_symlink()}


def size(path):
    """Bytes a path holds itself: a link into the store holds none (its entry is counted on its own)."""
    return os.lstat(path).st_size if os.path.lexists(path) and not os.path.islink(path) else 0


def store_users(cache):
    """{xet hash: {etag links}} over every repository folder of the cache."""
    users = {}
    for folder in os.listdir(cache):
        if folder.startswith("models--"):
            for etag, xet_hash in shared_store.store_links(cache, folder).items():
                users.setdefault(xet_hash, set()).add((folder, etag))
    return users


def expected_freed(cache, gone, stays):
    """Bytes of the blobs only the removed revisions link to, their listings, and the store entries that no
    remaining link leads to."""
    only = set().union(*(blobs_of(cache, c) for c in gone)) - set().union(set(), *(blobs_of(cache, c) for c in stays))
    blobs = cache / FOLDER / "blobs"
    freed = sum(size(blobs / b) for b in only) + sum(size(cache / FOLDER / "trees" / (c + ".json")) for c in gone)
    entries = {h for h, users in store_users(cache).items() if users <= {(FOLDER, b) for b in only}}
    return freed + sum(size(shared_store.entry(cache, h)) for h in entries), only


def verifies_offline(cache, repo_id, commit):
    """huggingface_hub finds the revision offline, and every file reads back with the listing's hash."""
    from huggingface_hub import snapshot_download

    path = snapshot_download(repo_id, revision=commit, cache_dir=str(cache), local_files_only=True)
    folder = "models--" + repo_id.replace("/", "--")
    assert path == str(cache / folder / "snapshots" / commit)
    listing = json.loads((cache / folder / "trees" / (commit + ".json")).read_text())["files"]
    for name, entry in listing.items():
        data = (cache / folder / "snapshots" / commit / name).read_bytes()
        if entry.get("lfs_sha256"):
            assert hashlib.sha256(data).hexdigest() == entry["lfs_sha256"], name
        else:
            assert hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest() == entry["blob_id"], name
    return True


def snapshot_loads(cache, commit):
    """Every file of the snapshot resolves to a blob that is there."""
    snap = cache / FOLDER / "snapshots" / commit
    files = [p for p in snap.rglob("*") if p.is_symlink()]
    return bool(files) and all(p.resolve().is_file() for p in files)


def kept(result, commit):
    return next((k["reasons"] for k in result["kept"] if k["commit"] == commit), None)


def test_an_unreferenced_old_revision_goes_and_frees_exactly_its_own_blobs(cache, prune):
    (cache / FOLDER / "refs" / "v1").unlink()
    freed, only_a = expected_freed(cache, [COMMIT_A], [COMMIT_B])
    assert only_a and freed > 0  # README.md differs between A and B
    args = {"cache_dir": str(cache), "keep": 1}

    checked = prune(args, check=True, diff=True)
    assert checked["changed"] is True, prune.output
    assert [r["commit"] for r in checked["removed_revisions"]] == [COMMIT_A]
    assert checked["freed_bytes"] == freed
    assert (cache / FOLDER / "snapshots" / COMMIT_A).is_dir()  # check mode removed nothing
    assert checked["diff"]["before"][FOLDER]["revisions"] == sorted([COMMIT_A, COMMIT_B])
    assert checked["diff"]["after"][FOLDER]["revisions"] == [COMMIT_B]

    result = prune(args)
    assert result["changed"] is True, prune.output
    assert result["freed_bytes"] == freed
    assert {b["name"] for b in result["removed_blobs"]} == only_a
    assert not (cache / FOLDER / "snapshots" / COMMIT_A).exists()
    assert not (cache / FOLDER / "trees" / (COMMIT_A + ".json")).exists()
    assert not any((cache / FOLDER / "blobs" / b).exists() for b in only_a)
    assert snapshot_loads(cache, COMMIT_B)  # the shared blobs stayed
    assert verifies_offline(cache, MINILM_REPO, COMMIT_B)
    assert set(kept(result, COMMIT_B)) == {"ref main", "recent"}

    again = prune(args)
    assert again["changed"] is False and again["freed_bytes"] == 0 and again["removed_revisions"] == []


@pytest.mark.parametrize("protection, reason", [
    ("ref", "ref v1"), ("pinned", "pinned"), ("pinned_ref", "pinned"), ("link", "link"), ("keep", "recent")])
def test_referenced_pinned_linked_and_recent_revisions_stay(cache, prune, tmp_path, protection, reason):
    args = {"cache_dir": str(cache), "repo_id": MINILM_REPO, "keep": 0}
    if protection != "ref" and protection != "pinned_ref":
        (cache / FOLDER / "refs" / "v1").unlink()
    if protection == "pinned":
        args["pinned"] = [COMMIT_A]
    if protection == "pinned_ref":
        args["pinned"] = ["v1"]
    if protection == "link":
        link = tmp_path / "models" / "memory"
        link.parent.mkdir()
        link.symlink_to(cache / FOLDER / "snapshots" / COMMIT_A)
        args["links"] = [str(link), str(tmp_path / "not-there")]
    if protection == "keep":
        os.utime(cache / FOLDER / "snapshots" / COMMIT_A)  # A is now the most recent
        args["keep"] = 1
    result = prune(args)
    assert result.get("failed") is not True, result.get("msg")
    assert any(r.startswith(reason) for r in kept(result, COMMIT_A)), result["kept"]
    assert snapshot_loads(cache, COMMIT_A) and snapshot_loads(cache, COMMIT_B)
    assert result["changed"] is False and result["freed_bytes"] == 0


def test_a_revision_a_running_process_has_open_stays_until_it_closes(cache, prune):
    (cache / FOLDER / "refs" / "v1").unlink()
    readme = cache / FOLDER / "snapshots" / COMMIT_A / "README.md"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; f = open(sys.argv[1], 'rb');"
                               " print('open', flush=True); time.sleep(120)", str(readme)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        result = prune({"cache_dir": str(cache), "keep": 0})
        assert "open by a running process" in kept(result, COMMIT_A), result["kept"]
        assert result["changed"] is False and readme.resolve().is_file()
    finally:
        holder.kill()
        holder.wait()
    result = prune({"cache_dir": str(cache), "keep": 0})
    assert [r["commit"] for r in result["removed_revisions"]] == [COMMIT_A]
    assert not readme.exists() and snapshot_loads(cache, COMMIT_B)


def test_without_any_protection_everything_of_the_repository_goes_and_nothing_else(cache, prune):
    shutil.rmtree(cache / FOLDER / "refs")
    (cache / FOLDER / "refs").mkdir()
    sentinel = cache / "keep-me.txt"
    sentinel.write_text("not a repository")
    total = sum(size(p) for p in (cache / FOLDER / "blobs").iterdir()) + \
        sum(size(p) for p in (cache / FOLDER / "trees").iterdir())
    entries = store_users(cache)
    assert entries, "the cache has no shared store entries"
    total += sum(size(shared_store.entry(cache, h)) for h in entries)
    checked = prune({"cache_dir": str(cache), "keep": 0}, check=True, diff=True)
    assert checked["freed_bytes"] == total
    assert {e["xet_hash"] for e in checked["removed_store_entries"]} == set(entries)
    assert checked["diff"]["before"]["blobs"]["entries"] == sorted(entries)
    assert all(os.path.isfile(shared_store.entry(cache, h)) for h in entries)  # check mode freed nothing
    result = prune({"cache_dir": str(cache), "keep": 0}, diff=True)
    assert result["freed_bytes"] == total
    assert {(e["xet_hash"], e["size"]) for e in result["removed_store_entries"]} == {
        (e["xet_hash"], e["size"]) for e in checked["removed_store_entries"]}
    assert result["diff"]["after"]["blobs"]["entries"] == []
    assert list((cache / FOLDER / "snapshots").iterdir()) == []
    assert list((cache / FOLDER / "blobs").iterdir()) == []
    for xet_hash in entries:
        assert not os.path.lexists(shared_store.entry(cache, xet_hash))
        assert not os.path.lexists(shared_store.entry(cache, xet_hash) + ".refs")
    assert sentinel.read_text() == "not a repository"
    assert (cache / "blobs" / ".huggingface-shared-blobs").is_file()  # the store itself stays
    assert prune({"cache_dir": str(cache), "keep": 0})["changed"] is False


def test_abandoned_partial_downloads_go_unless_a_download_holds_their_lock_or_they_are_fresh(cache, prune):
    blobs, locks = cache / FOLDER / "blobs", cache / ".locks" / FOLDER
    old, held, fresh = ("%064x.incomplete" % n for n in (1, 2, 3))
    for name in (old, held, fresh):
        (blobs / name).write_bytes(b"x" * 1000)
    for name in (old, held):
        past = time.time() - 7200
        os.utime(blobs / name, (past, past))
    locks.mkdir(parents=True, exist_ok=True)
    lock = os.open(locks / (held.split(".")[0] + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'r+');"
                               " fcntl.flock(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(120)",
                               str(locks / (held.split(".")[0] + ".lock"))], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        args = {"cache_dir": str(cache), "repo_id": MINILM_REPO}
        checked = prune(args, check=True)
        assert [i["file"] for i in checked["removed_incomplete"]] == [old] and checked["freed_bytes"] == 1000
        assert (blobs / old).exists()
        result = prune(args)
        assert result["changed"] is True and result["freed_bytes"] == 1000
        assert not (blobs / old).exists() and (blobs / held).exists() and (blobs / fresh).exists()
        assert prune(args)["changed"] is False
    finally:
        holder.kill()
        holder.wait()
        os.close(lock)
    # The download died: its lock is free, and its partial file goes.
    result = prune({"cache_dir": str(cache), "repo_id": MINILM_REPO})
    assert [i["file"] for i in result["removed_incomplete"]] == [held]


@pytest.mark.parametrize("layout", ["snapshots", "blobs", "snapshot", "repo_folder"])
def test_symlinked_cache_folders_are_refused_and_nothing_is_removed(cache, prune, tmp_path, layout):
    (cache / FOLDER / "refs" / "v1").unlink()
    outside = tmp_path / "outside"
    if layout == "repo_folder":
        shutil.move(str(cache / FOLDER), str(outside))
        (cache / FOLDER).symlink_to(outside)
    else:
        rel = {"snapshots": "snapshots", "blobs": "blobs", "snapshot": "snapshots/" + COMMIT_A}[layout]
        shutil.move(str(cache / FOLDER / rel), str(outside))
        (cache / FOLDER / rel).symlink_to(outside)
    before = sorted(str(p.relative_to(outside)) for p in outside.rglob("*"))
    result = prune({"cache_dir": str(cache), "keep": 0})
    assert result.get("failed") is True and result["error_kind"] == "unsafe_cache", result
    assert result["changed"] is False
    assert sorted(str(p.relative_to(outside)) for p in outside.rglob("*")) == before
    assert (cache / FOLDER).is_symlink() or (cache / FOLDER / "snapshots").exists()


def test_the_prune_playbook_keeps_the_configured_revisions_and_prints_what_it_freed(
        cache, collections_path, tmp_path):
    (cache / FOLDER / "refs" / "v1").unlink()  # A: neither configured, referenced nor linked
    home = tmp_path / "hf-home"
    home.mkdir()
    shutil.move(str(cache), str(home / "hub"))
    cache = home / "hub"
    freed, _only = expected_freed(cache, [COMMIT_A], [COMMIT_B])
    extra = tmp_path / "vars.json"
    extra.write_text(json.dumps({
        "model_cache_hosts": "localhost", "model_cache_dir": str(home), "model_cache_prune_keep": 0,
        "model_cache_models": [{"repo_id": MINILM_REPO, "revision": "main"}],
        "ansible_python_interpreter": target_python()}))

    def playbook(*flags):
        proc = subprocess.run([controller_bin("ansible-playbook"), "-i", "localhost,", "-c", "local",
                               "-e", "@" + str(extra), "justnews.huggingface.prune"] + list(flags),
                              capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path,
                              env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path, ANSIBLE_NOCOLOR="1",
                                       ANSIBLE_LOCALHOST_WARNING="0"))
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout

    out = playbook("--check")
    assert "would free %d bytes" % freed in out and "%s@%s" % (MINILM_REPO, COMMIT_A) in out
    assert (cache / FOLDER / "snapshots" / COMMIT_A).is_dir()
    out = playbook()
    assert "freed %d bytes" % freed in out, out
    assert not (cache / FOLDER / "snapshots" / COMMIT_A).exists() and snapshot_loads(cache, COMMIT_B)
    assert "pinned, ref main" in out
    out = playbook()
    assert "freed 0 bytes" in out and "changed=0" in out


def test_a_store_entry_another_repository_links_to_stays_and_still_verifies(shared_template, prune, tmp_path):
    cache = tmp_path / "hub"
    shutil.copytree(shared_template, cache, symlinks=True)
    shutil.rmtree(cache / FOLDER / "refs")  # MiniLM: nothing protects COMMIT_A any more
    (cache / FOLDER / "refs").mkdir()
    shared = {h for h, users in store_users(cache).items() if {f for f, _e in users} == {FOLDER, GATED_FOLDER}}
    assert shared, "the two repositories share no store entry"

    result = prune({"cache_dir": str(cache), "repo_id": MINILM_REPO, "keep": 0})
    assert result.get("failed") is not True, result.get("msg")
    assert [r["commit"] for r in result["removed_revisions"]] == [COMMIT_A]
    assert result["removed_store_entries"] == []  # every entry of COMMIT_A is also the gated repository's
    assert not (cache / FOLDER / "snapshots" / COMMIT_A).exists()
    assert all(os.path.isfile(shared_store.entry(cache, h)) for h in shared)
    assert verifies_offline(cache, GATED_REPO, GATED_COMMIT)

    # Once the gated repository goes too, nothing links to the entries: they are freed, with their bytes.
    shutil.rmtree(cache / GATED_FOLDER / "refs")
    (cache / GATED_FOLDER / "refs").mkdir()
    sizes = {h: size(shared_store.entry(cache, h)) for h in shared}
    result = prune({"cache_dir": str(cache), "keep": 0})
    assert {e["xet_hash"]: e["size"] for e in result["removed_store_entries"]} == sizes
    assert not any(os.path.lexists(shared_store.entry(cache, h)) for h in shared)


def test_hostile_store_entries_and_links_are_reported_and_never_followed(cache, prune, tmp_path):
    (cache / FOLDER / "refs" / "v1").unlink()
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret"
    secret.write_text("root's file")
    links = shared_store.store_links(cache, FOLDER)
    only_a = blobs_of(cache, COMMIT_A) - blobs_of(cache, COMMIT_B)
    # a blob of COMMIT_A that leaves the store, and a FIFO in place of an entry nothing else uses
    foreign = cache / FOLDER / "blobs" / sorted(only_a)[0]
    foreign.unlink()
    foreign.symlink_to(secret)
    fifo_hash = "ab" * 32
    os.makedirs(cache / "blobs" / "ab", exist_ok=True)
    os.mkfifo(shared_store.entry(cache, fifo_hash))
    with open(shared_store.entry(cache, next(iter(links.values()))) + ".refs", "a") as handle:
        handle.write("../../../outside/secret\n")

    result = prune({"cache_dir": str(cache), "keep": 0})
    assert result.get("failed") is not True, result.get("msg")
    assert [r["commit"] for r in result["removed_revisions"]] == [COMMIT_A]
    refused = {r["path"]: r for r in result["refused"]}
    assert str(foreign) in refused and "rm" in refused[str(foreign)]["fix"]
    assert "a FIFO" in refused[shared_store.entry(cache, fifo_hash)]["reason"]
    assert any("outside/secret" in r["reason"] for r in result["refused"])
    assert secret.read_text() == "root's file" and foreign.is_symlink()
    assert stat.S_ISFIFO(os.lstat(shared_store.entry(cache, fifo_hash)).st_mode)
    assert verifies_offline(cache, MINILM_REPO, COMMIT_B)
    assert "left" in prune.output and "alone" in prune.output  # warned as well
