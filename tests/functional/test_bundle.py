"""Bundles against the local Hub, through ansible-playbook and the installed collection: the bundle playbook
writes one, hf_bundle_info reads its manifest, hf_carry takes what a host lacks out of it; a damaged or hostile
bundle changes nothing."""

import hashlib
import io
import json
import os
import re
import subprocess
import tarfile

import pytest

from tools import shared_store
from tools.harness import controller_bin, library_snapshot, target_python
from tools.hub.hubserver import COMMIT_A, COMMIT_B, MINILM_REPO

FOLDER = "models--sentence-transformers--all-MiniLM-L6-v2"
LFS_FILE = "model.safetensors"


class Play:
    """Run tasks on localhost with ansible-playbook; each task's registered result is returned."""

    def __init__(self, collections, workdir):
        self.collections = collections
        self.workdir = workdir
        self.count = 0
        self.output = ""

    def env(self):
        return dict(os.environ, ANSIBLE_COLLECTIONS_PATH=self.collections, ANSIBLE_NOCOLOR="1",
                    ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0")

    def __call__(self, *tasks, check=False):
        self.count += 1
        out = self.workdir / ("results-%d.json" % self.count)
        steps = []
        for i, (module, args) in enumerate(tasks):
            # a step runs only when the one before it succeeded, as in the role
            steps.append({"name": "step %d" % i, module: args, "register": "r%d" % i, "ignore_errors": True,
                          "when": "r%d is succeeded" % (i - 1) if i else True})
        steps.append({"name": "save", "ansible.builtin.copy": {
            "content": "{{ [%s] | to_json }}" % ", ".join("r%d" % i for i in range(len(tasks))),
            "dest": str(out)}, "check_mode": False})
        play = [{"hosts": "localhost", "gather_facts": False, "tasks": steps}]
        book = self.workdir / ("play-%d.yml" % self.count)
        book.write_text(json.dumps(play))
        cmd = [controller_bin("ansible-playbook"), "-i", "localhost,", "-c", "local",
               "-e", "ansible_python_interpreter=" + target_python(), str(book)] + (["--check"] if check else [])
        proc = subprocess.run(cmd, capture_output=True, text=True, env=self.env(), cwd=self.workdir, timeout=600,
                              check=False)
        self.output = proc.stdout + proc.stderr
        assert out.exists(), self.output
        return json.loads(out.read_text())

    def bundle_playbook(self, hub, bundle, build_cache, check=False, models=None):
        """ansible-playbook justnews.huggingface.bundle; returns the number of changed tasks (PLAY RECAP)."""
        extra = {"model_cache_bundle": str(bundle), "model_cache_controller_cache": str(build_cache),
                 "model_cache_endpoint": hub.url, "ansible_python_interpreter": target_python()}
        if models:
            extra["model_cache_models"] = models
        cmd = [controller_bin("ansible-playbook"), "justnews.huggingface.bundle", "-e", json.dumps(extra)]
        proc = subprocess.run(cmd + (["--check"] if check else []), capture_output=True, text=True, env=self.env(),
                              cwd=self.workdir, timeout=600, check=False)
        self.output = proc.stdout + proc.stderr
        assert proc.returncode == 0, self.output
        return int(re.search(r"localhost\s*:.*changed=(\d+)", self.output).group(1))


@pytest.fixture
def play(collections_path, tmp_path):
    return Play(collections_path, tmp_path)


@pytest.fixture
def built(hub, play, tmp_path):
    """A bundle of MiniLM at main, written by the bundle playbook."""
    bundle = tmp_path / "out" / "models.tar"
    bundle.parent.mkdir()
    play.bundle_playbook(hub, bundle, tmp_path / "build-cache")
    return bundle


def tree(cache):
    """Everything a user can see in a cache: each entry's kind, link target or content hash, and mode."""
    found = {}
    for dirpath, dirs, names in os.walk(cache):
        for name in dirs + names:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, cache)
            if rel.startswith(".locks") or rel == "CACHEDIR.TAG":
                continue  # lock files are per-run bookkeeping; the role writes the tag in every mode
            st = os.lstat(full)
            if os.path.islink(full):
                found[rel] = ("link", os.readlink(full))
            elif os.path.isdir(full):
                found[rel] = ("dir", oct(st.st_mode & 0o777))
            else:
                with open(full, "rb") as handle:
                    found[rel] = ("file", hashlib.sha256(handle.read()).hexdigest(), oct(st.st_mode & 0o777))
    return found


def manifest_of(bundle):
    with tarfile.open(bundle) as tar:
        first = tar.next()
        return first.name, json.loads(tar.extractfile(first).read())


def rewrite(src, dest, manifest=None, member_data=None, extra=()):
    """Copy a bundle, replacing its manifest, some members' bytes (header size kept as given), or adding members."""
    with tarfile.open(src) as old, tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as new:
        for member in old.getmembers():
            data = old.extractfile(member).read()
            if member.name == "manifest.json" and manifest is not None:
                data = json.dumps(manifest).encode()
            if member_data and member.name in member_data:
                data = member_data[member.name](data)
            member.size = len(data)
            new.addfile(member, io.BytesIO(data))
        for member, data in extra:
            new.addfile(member, io.BytesIO(data) if data is not None else None)


def blob_of(manifest, path):
    return next(f["blob"] for f in manifest["models"][0]["files"] if f["path"] == path)


def deploy(play, bundle, staging, cache, check=False):
    """What the role does for a host: read the manifest, then carry the blobs the cache lacks (one probe, one
    checked stream staged in `staging`, each blob moved into the cache)."""
    model = {"repo_id": MINILM_REPO, "revision": "main"}
    inspected = play(("justnews.huggingface.hf_bundle_info", {"path": str(bundle), "models": [model]}))[0]
    if inspected.get("failed"):
        return [inspected]
    carry = {"models": inspected["models"], "source": "bundle", "bundle": str(bundle), "cache_dir": str(cache),
             "staging_dir": str(staging), "free_space_margin": 0}
    return play(("justnews.huggingface.hf_carry", carry), check=check)


def test_build_writes_manifest_and_blobs(hub, built, tmp_path):
    first, manifest = manifest_of(built)
    assert first == "manifest.json"
    assert manifest["format_version"] == 1
    model = manifest["models"][0]
    assert (model["repo_id"], model["repo_type"], model["revision"], model["ref"], model["commit"]) == \
        (MINILM_REPO, "model", "main", "main", COMMIT_B)
    assert set(model["listing"]) == {f["path"] for f in model["files"]}
    cache = tmp_path / "build-cache"
    with tarfile.open(built) as tar:
        names = tar.getnames()
        for f in model["files"]:
            # every file's content, as the build cache serves it, is in the bundle under its blob id
            real = (cache / FOLDER / "snapshots" / COMMIT_B / f["path"]).read_bytes()
            assert hashlib.sha256(real).hexdigest() == f["sha256"]
            assert len(real) == f["size"]
            assert tar.extractfile("blobs/" + f["blob"]).read() == real
            assert all(m.isreg() for m in tar.getmembers())
    assert len(names) == len(set(names)) == 1 + len({f["blob"] for f in model["files"]})


def test_rebuild_with_same_models_leaves_bundle_untouched(hub, play, built, tmp_path):
    before = os.stat(built)
    hub.reset()
    assert play.bundle_playbook(hub, built, tmp_path / "build-cache") == 0
    assert play.bundle_playbook(hub, built, tmp_path / "build-cache", check=True) == 0
    after = os.stat(built)
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (before.st_ino, before.st_mtime_ns, before.st_size)
    assert hub.stats()["requests"].get("get", 0) == 0  # no file downloaded again
    # another revision is a change, and check mode says so without writing
    models = [{"repo_id": MINILM_REPO, "revision": "v1"}]
    assert play.bundle_playbook(hub, built, tmp_path / "build-cache", check=True, models=models) > 0
    assert os.stat(built).st_mtime_ns == before.st_mtime_ns
    assert play.bundle_playbook(hub, built, tmp_path / "build-cache", models=models) > 0
    assert manifest_of(built)[1]["models"][0]["commit"] == COMMIT_A
    assert not [p for p in built.parent.iterdir() if p != built]  # no temporary file left


def test_deploy_equals_direct_fetch_without_the_hub(hub, play, built, tmp_path):
    # A deployed blob that is a Xet file on the Hub joins the shared store under the Xet hash computed from it:
    # the layout a fetch from the Hub leaves.
    direct = tmp_path / "direct"
    fetched = play(("justnews.huggingface.hf_snapshot", {"repo_id": MINILM_REPO, "cache_dir": str(direct),
                                                         "endpoint": hub.url}))[0]
    assert fetched["changed"], play.output
    hub.reset()
    cache, staging = tmp_path / "deployed", tmp_path / "staging"
    (carried,) = deploy(play, built, staging, cache)
    assert carried["changed"] and not carried.get("failed") and carried["blobs_sent"] > 1, carried
    assert hub.stats()["total"] == 0
    assert tree(cache) == tree(direct)
    assert (cache / FOLDER / "refs" / "main").read_text() == COMMIT_B
    assert not staging.exists()
    # a second deployment needs nothing from the bundle and changes nothing
    (carried,) = deploy(play, built, staging, cache)
    assert carried["bytes_sent"] == 0 and not carried["changed"] and carried["host_calls"] == 1, carried


def test_bundle_info_reads_the_manifest_in_check_mode_too(play, built):
    model = {"repo_id": MINILM_REPO, "revision": "main"}
    args = {"path": str(built), "models": [model]}
    plain, = play(("justnews.huggingface.hf_bundle_info", args))
    checked, = play(("justnews.huggingface.hf_bundle_info", args), check=True)
    assert not plain["changed"] and not plain.get("failed"), plain
    assert {k: checked[k] for k in ("path", "format_version", "size", "models")} == \
        {k: plain[k] for k in ("path", "format_version", "size", "models")}
    entry = plain["models"][0]
    assert (entry["item"], entry["repo_id"], entry["revision"], entry["commit"], entry["ref"]) == \
        (model, MINILM_REPO, "main", COMMIT_B, "main")
    assert set(entry["listing"]) == set(entry["files"]) and entry["bytes"] > 0
    # without models: the manifest's entries
    whole, = play(("justnews.huggingface.hf_bundle_info", {"path": str(built)}))
    assert [(m["repo_id"], m["commit"]) for m in whole["models"]] == [(MINILM_REPO, COMMIT_B)], whole


def corrupt_member(bundle, out, manifest):
    blob = "blobs/" + blob_of(manifest, LFS_FILE)

    def flip(data):
        middle = len(data) // 2
        return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]
    rewrite(bundle, out, member_data={blob: flip})
    return [LFS_FILE]


def truncate(bundle, out, manifest):
    with tarfile.open(bundle) as tar:
        member = tar.getmember("blobs/" + blob_of(manifest, LFS_FILE))
        cut = member.offset_data + member.size // 2
    with open(bundle, "rb") as src, open(out, "wb") as dst:
        dst.write(src.read(cut))
    return [LFS_FILE]


def lying_sizes(bundle, out, manifest):
    # the manifest and its listing agree with each other, not with the member
    model = manifest["models"][0]
    model["listing"]["config.json"]["size"] += 1
    for f in model["files"]:
        if f["path"] == "config.json":
            f["size"] += 1
    rewrite(bundle, out, manifest=manifest)
    return ["config.json"]


def hostile(kind):
    def make(bundle, out, manifest):
        if kind == "symlink":
            member = tarfile.TarInfo("blobs/" + blob_of(manifest, "config.json"))
            member.type, member.linkname = tarfile.SYMTYPE, "/etc/shadow"
            data = None
        else:
            member = tarfile.TarInfo({"dotdot": "../../evil", "absolute": "/tmp/evil-bundle-member"}[kind])
            data = b"evil"
            member.size = len(data)
        with tarfile.open(bundle) as old, tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as new:
            members = old.getmembers()
            new.addfile(members[0], old.extractfile(members[0]))
            new.addfile(member, io.BytesIO(data) if data else None)  # before the blobs the host needs
            for m in members[1:]:
                new.addfile(m, old.extractfile(m))
        return [member.name]
    return make


@pytest.mark.parametrize("damage, kind", [(corrupt_member, "corrupt_bundle"), (truncate, "corrupt_bundle"),
                                          (lying_sizes, "corrupt_bundle"), (hostile("dotdot"), "unsafe_bundle"),
                                          (hostile("absolute"), "unsafe_bundle"), (hostile("symlink"), "unsafe_bundle")],
                         ids=["corrupt-member", "truncated", "manifest-lies-about-size", "dotdot-name",
                              "absolute-name", "symlink-member"])
def test_damaged_bundle_changes_nothing_and_names_the_file(hub, play, built, tmp_path, damage, kind):
    # a host at v1 (COMMIT_A) that needs most of main's files from the bundle
    cache = tmp_path / "host-cache"
    assert play(("justnews.huggingface.hf_snapshot", {"repo_id": MINILM_REPO, "revision": "v1",
                                                      "cache_dir": str(cache), "endpoint": hub.url,
                                                      "allow_patterns": ["*.json", "*.txt"]}))[0]["changed"]
    before = tree(cache)
    bad = tmp_path / "bad.tar"
    named = damage(built, bad, manifest_of(built)[1])
    staging = tmp_path / "staging"
    # the role's way: hf_bundle_info reads the whole bundle and refuses it
    results = deploy(play, bad, staging, cache)
    assert len(results) == 1 and results[0].get("failed"), results
    # hf_carry refuses it on its own, given the entries of the bundle's manifest
    model = {"repo_id": MINILM_REPO, "revision": "main"}
    seeds = play(("justnews.huggingface.hf_bundle_info", {"path": str(built), "models": [model]}))[0]["models"]
    listing = manifest_of(bad)[1]["models"][0]["listing"]
    results.append(play(("justnews.huggingface.hf_carry", {
        "models": [dict(seed, listing=listing) for seed in seeds], "source": "bundle", "bundle": str(bad),
        "cache_dir": str(cache), "staging_dir": str(staging), "free_space_margin": 0}))[0])
    for result in results:
        assert result.get("failed") and result["error_kind"] == kind, result
        msg = result["msg"]
        for name in named:
            assert name in msg, msg
        if result.get("corrupt_files"):
            assert [MINILM_REPO, named[0]] in result["corrupt_files"]
            assert MINILM_REPO in msg
    assert tree(cache) == before
    # only chunks of the stream that went out before the refusal, in the stream's folder, kept for a re-run to
    # resume, never a blob
    assert not staging.exists() or all(re.match(r"^[0-9a-f]{16}$", p.name) and all(
        re.match(r"^[0-9a-f]{16}-[0-9]{6}$", c.name) for c in p.iterdir()) for p in staging.iterdir())
    assert not os.path.lexists("/tmp/evil-bundle-member") and not (tmp_path.parent / "evil").exists()


def test_bundle_without_the_model_is_refused_by_name(play, built):
    inspect = {"path": str(built), "models": [{"repo_id": "acme/other", "revision": "main"}]}
    result = play(("justnews.huggingface.hf_bundle_info", inspect))[0]
    assert result["failed"] and result["error_kind"] == "not_in_bundle"
    assert "acme/other@main" in result["msg"] and MINILM_REPO in result["msg"]


def test_image_root_ids_and_paths_come_from_the_image(play, tmp_path):
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\njustnews:x:4321:4322::/home/j:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\njustnews:x:4322:\nagents:x:4400:\n")
    args = {"image_root": str(root), "owner": "justnews",
            "paths": {"hf_home": "/var/cache/hf", "hub_cache": "/var/cache/hf/hub"}}
    result = play(("justnews.huggingface.hf_image_root", args))[0]
    assert (result["uid"], result["gid"]) == (4321, 4322), result
    assert result["paths"] == {"hf_home": str(root / "var/cache/hf"), "hub_cache": str(root / "var/cache/hf/hub")}
    assert result["image_root"] == str(root) and not result["changed"] and result["written"] == []
    assert play(("justnews.huggingface.hf_image_root", dict(args, group="agents")))[0]["gid"] == 4400
    # a symlink in the image that leads out of it, and the controller's own root, are refused
    (root / "var").symlink_to("/var")
    result = play(("justnews.huggingface.hf_image_root", args))[0]
    assert result["failed"] and result["error_kind"] == "unsafe_image_root" and "var" in result["msg"]
    result = play(("justnews.huggingface.hf_image_root", dict(args, image_root="/")))[0]
    assert result["failed"] and "root directory" in result["msg"]
    result = play(("justnews.huggingface.hf_image_root", dict(args, image_root=str(tmp_path / "missing"))))[0]
    assert result["failed"] and "does not exist" in result["msg"]
    # hf_bundle takes no operation (and no image_root): it writes bundles only
    result = play(("justnews.huggingface.hf_bundle", {"operation": "build", "path": str(tmp_path / "b.tar"),
                                                      "cache_dir": str(tmp_path), "snapshots": [],
                                                      "image_root": str(root)}))[0]
    assert result["failed"] and "operation" in result["msg"]


def test_a_bundle_from_a_shared_store_cache_deploys_as_the_library_reads(hub, play, tmp_path):
    build_cache = tmp_path / "build-cache"
    fetched = play(("justnews.huggingface.hf_snapshot", {"repo_id": MINILM_REPO, "cache_dir": str(build_cache),
                                                         "endpoint": hub.url}))[0]
    assert fetched["changed"], play.output
    links = shared_store.publish(build_cache, FOLDER)
    bundle = tmp_path / "out" / "models.tar"
    bundle.parent.mkdir()
    play.bundle_playbook(hub, bundle, build_cache)
    _first, manifest = manifest_of(bundle)
    with tarfile.open(bundle) as tar:
        assert all(m.isreg() for m in tar.getmembers())
        for etag, xet_hash in links.items():
            data = tar.extractfile("blobs/" + etag).read()
            assert hashlib.sha256(data).hexdigest() == etag
            assert data == open(shared_store.entry(build_cache, xet_hash), "rb").read()
    assert {f["blob"] for f in manifest["models"][0]["files"]} >= set(links)
    hub.reset()
    cache, staging = tmp_path / "deployed", tmp_path / "staging"
    (carried,) = deploy(play, bundle, staging, cache)
    assert carried["changed"] and not carried.get("failed"), carried
    imported = carried["results"][0]
    assert hub.stats()["total"] == 0
    for etag in links:
        blob = cache / FOLDER / "blobs" / etag
        xet_hash = hub.repos[MINILM_REPO]["commits"][COMMIT_B][LFS_FILE].xet_hash
        assert os.readlink(blob) == "../../blobs/%s/%s" % (xet_hash[:2], xet_hash)
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == etag
    assert library_snapshot(cache, COMMIT_B) == imported["snapshot_path"]


def test_a_store_entry_changed_in_the_build_cache_is_refused_by_build(hub, play, tmp_path):
    build_cache = tmp_path / "build-cache"
    play(("justnews.huggingface.hf_snapshot", {"repo_id": MINILM_REPO, "cache_dir": str(build_cache),
                                               "endpoint": hub.url}))
    links = shared_store.publish(build_cache, FOLDER)
    entry = shared_store.entry(build_cache, next(iter(links.values())))
    os.chmod(entry, 0o644)
    with open(entry, "r+b") as handle:
        handle.write(b"\0" * 16)
    bundle = tmp_path / "models.tar"
    model = {"repo_id": MINILM_REPO, "commit": COMMIT_B, "ref": "main", "revision": "main",
             "listing": json.loads(json.dumps(play(("justnews.huggingface.hf_snapshot", {
                 "repo_id": MINILM_REPO, "cache_dir": str(build_cache), "revision": COMMIT_B,
                 "endpoint": "http://127.0.0.1:9"}))[0]["listing"]))}
    result = play(("justnews.huggingface.hf_bundle", {"path": str(bundle),
                                                      "cache_dir": str(build_cache), "snapshots": [model]}))[0]
    assert result["failed"] and result["error_kind"] == "integrity", result
    assert not bundle.exists() and os.listdir(tmp_path / "build-cache")
