"""The module's plan decisions, made directly on a cache laid out on disk (no ansible-playbook, no Hub)."""

import fcntl
import hashlib
import json
import os

import pytest

from ansible_collections.justnews.huggingface.plugins.module_utils import _cache, _errors, _hub, _snapshot

REPO_ID = "org/model"
FOLDER = "models--org--model"
COMMIT_A = "a" * 40
COMMIT_B = "b" * 40
FILES_A = {"config.json": b'{"a": 1}\n', "README.md": b"model A\n", "1_Pooling/config.json": b"{}\n"}
FILES_B = dict(FILES_A, **{"README.md": b"model B\n"})


def oid(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def listing(files):
    return {name: {"size": len(data), "blob_id": oid(data)} for name, data in files.items()}


def lay_out(cache, commit, files, ref="main"):
    """A cache as huggingface_hub leaves it after fetching `files` at `commit`."""
    root = cache / FOLDER
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (root / "blobs" / oid(data)).write_bytes(data)
        link = root / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(root / "blobs" / oid(data), link.parent))
    (root / "trees").mkdir(exist_ok=True)
    (root / "trees" / (commit + ".json")).write_text(json.dumps({"format_version": 1, "files": listing(files)}))
    if ref:
        (root / "refs").mkdir(exist_ok=True)
        (root / "refs" / ref).write_text(commit)


class FakeModule:
    def __init__(self, check_mode=False, **params):
        self.params = dict(repo_id=REPO_ID, repo_type="model", revision="main", ref=None, cache_dir=None,
                           endpoint="http://127.0.0.1:9", token=None, allow_patterns=None, ignore_patterns=None,
                           state="present", offline=False, verify_checksums=True, retries=0, timeout=30,
                           owner=None, group=None, mode="0644", link=None, listing=None, blobs_from=None,
                           free_space_margin="1G", staging_dir=None)
        self.params.update(params)
        self.check_mode = check_mode
        self.warnings = []

    def warn(self, text):
        self.warnings.append(text)


class FakeHub:
    """Answers the metadata steps in-process and counts them; a download is never expected here."""

    def __init__(self, commit, files):
        self.commit, self.tree, self.calls = commit, listing(files), []

    def resolve_commit(self, revision):
        self.calls.append(("resolve", revision))
        return self.commit

    def list_tree(self, commit):
        self.calls.append(("tree", commit))
        return self.tree


@pytest.fixture(autouse=True)
def in_process(monkeypatch):
    monkeypatch.setattr(_hub, "run_with_deadline", lambda func, args, seconds: func(*args))


def snapshot(cache, hub=None, **params):
    snap = _snapshot.Snapshot(FakeModule(cache_dir=str(cache), **params))
    snap.hub = hub or FakeHub(COMMIT_A, FILES_A)
    return snap


def test_an_empty_cache_plans_every_file_and_the_listing(tmp_path):
    hub = FakeHub(COMMIT_A, FILES_A)
    plan = snapshot(tmp_path, hub, revision=COMMIT_A).plan()
    assert plan.tree_fetched and plan.missing == sorted(FILES_A) and plan.reusable == []
    assert plan.old_ref is None and plan.changes(None, None)
    assert hub.calls == [("tree", COMMIT_A)]  # a pinned commit needs no resolution
    assert not (tmp_path / FOLDER).exists()  # planning writes nothing


def test_an_upgrade_downloads_only_what_changed(tmp_path):
    lay_out(tmp_path, COMMIT_A, FILES_A)
    plan = snapshot(tmp_path, FakeHub(COMMIT_B, FILES_B), revision=COMMIT_B).plan()
    assert plan.missing == ["README.md"]
    assert plan.reusable == ["1_Pooling/config.json", "config.json"]
    assert plan.old_ref == COMMIT_A and plan.commit == COMMIT_B


def test_a_complete_pinned_cache_plans_nothing_and_asks_nothing(tmp_path):
    lay_out(tmp_path, COMMIT_A, FILES_A)
    hub = FakeHub(COMMIT_A, FILES_A)
    snap = snapshot(tmp_path, hub, revision=COMMIT_A)
    plan = snap.plan()
    assert not plan.changes(snap.repo.snapshot_path(COMMIT_A), None) and hub.calls == []
    assert snap.diff(plan)["before"] == snap.diff(plan)["after"]


def test_a_branch_already_recorded_is_not_looked_up_with_state_present(tmp_path):
    lay_out(tmp_path, COMMIT_A, FILES_A)
    hub = FakeHub(COMMIT_B, FILES_B)
    assert snapshot(tmp_path, hub).plan().commit == COMMIT_A and hub.calls == []
    assert snapshot(tmp_path, hub, state="latest").plan().commit == COMMIT_B
    assert ("resolve", "main") in hub.calls


def test_blobs_a_dead_run_left_unchecked_are_not_reused(tmp_path):
    lay_out(tmp_path, COMMIT_A, FILES_A, ref=None)
    (tmp_path / FOLDER / "snapshots" / COMMIT_A / "README.md").unlink()
    (tmp_path / ".locks" / FOLDER).mkdir(parents=True)
    (tmp_path / ".locks" / FOLDER / _cache.PENDING_NAME).write_text(json.dumps([oid(FILES_A["README.md"])]))
    plan = snapshot(tmp_path, revision=COMMIT_A).plan()
    assert plan.reusable == [] and plan.missing == ["README.md"] and plan.unverified


def test_an_orphaned_partial_download_is_planned_for_removal_unless_its_lock_is_held(tmp_path):
    lay_out(tmp_path, COMMIT_A, FILES_A)
    etag = "c" * 40
    (tmp_path / FOLDER / "blobs" / (etag + ".0123abcd.incomplete")).write_bytes(b"x")
    assert snapshot(tmp_path, revision=COMMIT_A).plan().orphans == [etag + ".0123abcd.incomplete"]
    (tmp_path / ".locks" / FOLDER).mkdir(parents=True)
    with open(tmp_path / ".locks" / FOLDER / (etag + ".lock"), "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert snapshot(tmp_path, revision=COMMIT_A).plan().orphans == []


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/./b", "a/../../b"])
def test_a_hostile_listing_fails_the_plan_before_anything_is_written(tmp_path, name):
    hub = FakeHub(COMMIT_A, FILES_A)
    hub.tree[name] = {"size": 1, "blob_id": "1" * 40}
    with pytest.raises(_errors.Failure) as info:
        snapshot(tmp_path, hub, revision=COMMIT_A).plan()
    assert info.value.kind == _errors.UNSAFE_LISTING and repr(name) in info.value.msg
    assert not (tmp_path / FOLDER).exists()


def test_ownership_is_planned_only_for_the_repository_folders(tmp_path):
    lay_out(tmp_path, COMMIT_A, FILES_A)
    tmp_path.chmod(0o1777)
    snap = snapshot(tmp_path, revision=COMMIT_A, mode="0640")
    pending = snap.plan().ownership
    assert pending and all(p.startswith(str(tmp_path / FOLDER)) for p in pending)


def test_check_mode_plans_without_locking_or_writing(tmp_path):
    lay_out(tmp_path, COMMIT_A, FILES_A)
    snap = _snapshot.Snapshot(FakeModule(check_mode=True, cache_dir=str(tmp_path), revision=COMMIT_B))
    snap.hub = FakeHub(COMMIT_B, FILES_B)
    result = snap.run()
    assert result["changed"] is True and result["downloaded_files"] == ["README.md"]
    assert not (tmp_path / ".locks").exists() and not (tmp_path / FOLDER / "trees" / (COMMIT_B + ".json")).exists()


def blobs_dir(tmp_path, files):
    source = tmp_path / "incoming"
    source.mkdir()
    for data in files.values():
        (source / oid(data)).write_bytes(data)
    return source


def test_a_listing_and_blobs_from_another_cache_need_no_hub(tmp_path):
    cache = tmp_path / "cache"
    hub = FakeHub(COMMIT_A, FILES_A)
    snap = snapshot(cache, hub, revision=COMMIT_A, listing=listing(FILES_A),
                    blobs_from=str(blobs_dir(tmp_path, FILES_A)))
    result = snap.run()
    assert result["changed"] is True and hub.calls == []
    assert result["downloaded_bytes"] == sum(len(d) for d in FILES_A.values())
    assert (cache / FOLDER / "refs" / "main").read_text() == COMMIT_A
    for name, data in FILES_A.items():
        assert (cache / FOLDER / "snapshots" / COMMIT_A / name).read_bytes() == data
    again = snapshot(cache, hub, revision=COMMIT_A, listing=listing(FILES_A), blobs_from=str(tmp_path)).run()
    assert again["changed"] is False and again["missing_blobs"] == []


def test_missing_blobs_name_what_a_host_lacks(tmp_path):
    lay_out(tmp_path / "cache", COMMIT_A, FILES_A)
    snap = snapshot(tmp_path / "cache", revision=COMMIT_B, listing=listing(FILES_B))
    assert snap.plan().missing_blobs == [{"name": oid(FILES_B["README.md"]), "size": len(FILES_B["README.md"]),
                                          "files": ["README.md"]}]


@pytest.mark.parametrize("damage", ["corrupt", "symlink", "missing"])
def test_a_bad_blob_offered_changes_nothing(tmp_path, damage):
    cache = tmp_path / "cache"
    source = blobs_dir(tmp_path, FILES_A)
    victim = source / oid(FILES_A["README.md"])
    if damage == "corrupt":
        victim.write_bytes(b"not the README")
    elif damage == "symlink":
        (tmp_path / "elsewhere").write_bytes(FILES_A["README.md"])
        victim.unlink()
        victim.symlink_to(tmp_path / "elsewhere")
    else:
        victim.unlink()
    snap = snapshot(cache, revision=COMMIT_A, listing=listing(FILES_A), blobs_from=str(source))
    with pytest.raises(_errors.Failure) as info:
        snap.run()
    kind = {"corrupt": _errors.INTEGRITY, "symlink": _errors.INTEGRITY, "missing": _errors.INCOMPLETE}[damage]
    assert info.value.kind == kind and oid(FILES_A["README.md"]) in info.value.msg
    assert not (cache / FOLDER / "refs").exists() or not list((cache / FOLDER / "refs").iterdir())
    assert not (cache / FOLDER / "snapshots" / COMMIT_A).exists()
    assert not (cache / FOLDER / "trees" / (COMMIT_A + ".json")).exists()
    assert not list((cache / FOLDER / "blobs").glob("*.incomplete"))
    assert oid(FILES_A["README.md"]) not in os.listdir(cache / FOLDER / "blobs")


def test_a_listing_that_contradicts_the_cache_is_refused(tmp_path):
    lay_out(tmp_path, COMMIT_A, FILES_A)
    altered = listing(dict(FILES_A, **{"README.md": b"other\n"}))
    with pytest.raises(_errors.Failure) as info:
        snapshot(tmp_path, revision=COMMIT_A, listing=altered).plan()
    assert info.value.kind == _errors.INTEGRITY


def test_a_listing_needs_a_pinned_commit(tmp_path):
    with pytest.raises(_errors.Failure) as info:
        snapshot(tmp_path, listing=listing(FILES_A))
    assert info.value.kind == _errors.INVALID_ARGUMENT and "revision" in info.value.msg


# --- download_memory and the checksums taken while the bytes arrived --------------------------------------------

@pytest.mark.parametrize("value, cap", [("512M", 512 * 1024 ** 2), ("1G", 1024 ** 3), ("0", 0),
                                        (None, 512 * 1024 ** 2), ("2GiB", 2 * 1024 ** 3), ("64M", 64 * 1024 ** 2)])
def test_download_memory_is_a_size_or_zero(tmp_path, value, cap):
    assert snapshot(tmp_path, download_memory=value).memory == cap


@pytest.mark.parametrize("value", ["32M", "lots", "-1", "1000"])
def test_a_download_memory_too_small_or_not_a_size_names_the_option(tmp_path, value):
    with pytest.raises(_errors.Failure) as failure:
        snapshot(tmp_path, download_memory=value)
    assert failure.value.kind == _errors.INVALID_ARGUMENT and "download_memory" in failure.value.msg


def identity(cache, name):
    st = os.stat(cache / FOLDER / "blobs" / oid(FILES_A[name]))
    return [st.st_dev, st.st_ino, st.st_size]


def test_files_hashed_while_written_are_not_read_again_and_the_rest_are(tmp_path, monkeypatch):
    lay_out(tmp_path, COMMIT_A, FILES_A)
    snap = snapshot(tmp_path, revision=COMMIT_A)
    tree, read = listing(FILES_A), []
    real_verify = snap.repo.verify
    monkeypatch.setattr(snap.repo, "verify", lambda c, paths, t: read.extend(paths) or real_verify(c, paths, t))
    hashed = {oid(FILES_A["config.json"]): [oid(FILES_A["config.json"])] + identity(tmp_path, "config.json"),
              # a digest of another file than the one linked now (the library linked a store entry instead)
              oid(FILES_A["README.md"]): [oid(FILES_A["README.md"]), 0, 0, 8]}
    snap.check_content(COMMIT_A, sorted(FILES_A), tree, hashed)
    assert snap.result["verified_while_downloading"] == 1
    assert sorted(read) == ["1_Pooling/config.json", "README.md"]


def test_a_digest_that_is_not_the_listings_is_confirmed_by_reading_the_file(tmp_path):
    lay_out(tmp_path, COMMIT_A, FILES_A)
    snap = snapshot(tmp_path, revision=COMMIT_A)
    name = oid(FILES_A["README.md"])
    wrong = {name: ["f" * 40] + identity(tmp_path, "README.md")}
    # the file is sound (a follower that read a hole would see this): it passes on the read, not on the digest
    snap.check_content(COMMIT_A, ["README.md"], listing(FILES_A), wrong)
    assert snap.result["verified_while_downloading"] == 0
    (tmp_path / FOLDER / "blobs" / name).write_bytes(b"model X\n")
    with pytest.raises(_errors.Failure) as failure:
        snap.check_content(COMMIT_A, ["README.md"], listing(FILES_A), wrong)
    assert failure.value.kind == _errors.INTEGRITY and failure.value.extra["corrupt_files"] == ["README.md"]
    assert "checksum mismatch" in failure.value.msg and not (tmp_path / FOLDER / "blobs" / name).exists()
