"""huggingface_hub's own tools judge the caches the collection fills, in each source mode and after a prune.

`hf cache verify` finds every file of the revision with its checksum and nothing else, `hf cache ls` lists the
revision at the module's `snapshot_path`, the library finds that snapshot offline, and a later Xet download of
another repository with the same content links to the store entry the cache already holds instead of fetching
the bytes again. Every step runs through ansible-playbook against the installed collection.
"""

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tools.harness import controller_bin, target_python
from tools.hub.hubserver import COMMIT_A, COMMIT_B, GATED_COMMIT, GATED_REPO, MINILM_REPO

FOLDER = "models--sentence-transformers--all-MiniLM-L6-v2"
GATED_FOLDER = "models--justnews-test--gated-minilm"
HF = str(Path(target_python()).with_name("hf"))  # the library's CLI, beside the interpreter that runs it
SNAPSHOT = "justnews.huggingface.hf_snapshot"
BUNDLE_INFO = "justnews.huggingface.hf_bundle_info"
XET_MODES = ["hub", "controller", "bundle", "prune"]


class Play:
    """Tasks on localhost through ansible-playbook and the installed collection; each task's registered result.
    A task runs only when the one before it succeeded, as in the role."""

    def __init__(self, collections, workdir):
        self.collections, self.workdir, self.count, self.output = collections, workdir, 0, ""

    def env(self):
        return dict(os.environ, ANSIBLE_COLLECTIONS_PATH=self.collections, ANSIBLE_NOCOLOR="1",
                    ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0")

    def __call__(self, *tasks, check=False):
        self.count += 1
        out = self.workdir / ("results-%d.json" % self.count)
        steps = [{"name": "step %d" % i, module: args, "register": "r%d" % i, "ignore_errors": True,
                  "when": "r%d is succeeded" % (i - 1) if i else True} for i, (module, args) in enumerate(tasks)]
        steps.append({"name": "save", "ansible.builtin.copy": {
            "content": "{{ [%s] | to_json }}" % ", ".join("r%d" % i for i in range(len(tasks))),
            "dest": str(out)}, "check_mode": False})
        book = self.workdir / ("play-%d.yml" % self.count)
        book.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": steps}]))
        self.playbook([str(book)] + (["--check"] if check else []))
        assert out.exists(), self.output
        return json.loads(out.read_text())

    def playbook(self, args):
        cmd = [controller_bin("ansible-playbook"), "-i", "localhost,", "-c", "local",
               "-e", "ansible_python_interpreter=" + target_python()] + args
        proc = subprocess.run(cmd, capture_output=True, text=True, env=self.env(), cwd=self.workdir, timeout=600,
                              check=False)
        self.output = proc.stdout + proc.stderr
        return proc.returncode


def succeeded(result, output):
    assert not result.get("failed") and not result.get("skipped"), (result.get("msg"), output[-3000:])
    return result


def store_link(cache, folder, blob):
    """The library's form of a repository blob that lives in the shared store."""
    path = cache / folder / "blobs" / blob.sha256
    return os.readlink(path) if path.is_symlink() else None


def expected_link(blob):
    return "../../blobs/%s/%s" % (blob.xet_hash[:2], blob.xet_hash)


def xet_files(hub, repo_id, commit):
    files = {name: blob for name, blob in hub.repos[repo_id]["commits"][commit].items() if blob.xet_hash}
    assert files, "%s@%s has no Xet file" % (repo_id, commit)
    return files


class Filled:
    """A cache as one source mode leaves it: where, which revision, and what hf_snapshot returned."""

    def __init__(self, cache, endpoint, commit, result):
        self.cache, self.endpoint, self.commit, self.result = cache, endpoint, commit, result


def fetch_from_hub(play, hub, work):
    """hf_snapshot into an empty cache, straight from the Hub."""
    cache = work / "hub"
    result = succeeded(play((SNAPSHOT, {"repo_id": MINILM_REPO, "cache_dir": str(cache), "endpoint": hub.url,
                                        "free_space_margin": 0}))[0], play.output)
    assert result["changed"] and result["commit"] == COMMIT_B, result
    return Filled(cache, hub.url, COMMIT_B, result)


def fetch_through_controller(play, hub, work):
    """As the role's controller source: one fetch into the controller's cache, then the host receives only the
    blobs its probe names, with ansible.builtin.copy, and hf_snapshot takes them in without the Hub."""
    controller, host, staging = work / "controller", work / "host", work / "staging"
    seed = succeeded(play((SNAPSHOT, {"repo_id": MINILM_REPO, "cache_dir": str(controller), "endpoint": hub.url,
                                      "free_space_margin": 0}))[0], play.output)
    for blob in xet_files(hub, MINILM_REPO, COMMIT_B).values():
        assert store_link(controller, FOLDER, blob) == expected_link(blob)  # what Xet downloads leave
    hub.reset()
    base = {"repo_id": MINILM_REPO, "revision": seed["commit"], "ref": seed["ref"], "listing": seed["listing"],
            "cache_dir": str(host), "free_space_margin": 0}
    probe = succeeded(play((SNAPSHOT, base), check=True)[0], play.output)
    assert probe["missing_blobs"], probe
    staging.mkdir(mode=0o700)
    blobs = os.path.dirname(os.path.dirname(seed["snapshot_path"])) + "/blobs/"
    sends = [("ansible.builtin.copy", {"src": blobs + b["name"], "dest": str(staging / b["name"]), "mode": "0600"})
             for b in probe["missing_blobs"]]
    result = succeeded(play(*sends, (SNAPSHOT, dict(base, blobs_from=str(staging))))[-1], play.output)
    assert result["changed"] and result["commit"] == COMMIT_B, result
    assert hub.stats()["total"] == 0  # the host never asked the Hub
    return Filled(host, hub.url, COMMIT_B, result)


def fetch_from_bundle(play, hub, work):
    """The bundle playbook writes a bundle from its build cache; hf_carry takes what a host lacks out of it."""
    build, bundle, host, staging = work / "build", work / "models.tar", work / "host", work / "staging"
    extra = {"model_cache_bundle": str(bundle), "model_cache_controller_cache": str(build),
             "model_cache_endpoint": hub.url, "model_cache_free_space_margin": 0,
             "model_cache_models": [{"repo_id": MINILM_REPO, "revision": "main"}]}
    assert play.playbook(["-e", json.dumps(extra), "justnews.huggingface.bundle"]) == 0, play.output
    for blob in xet_files(hub, MINILM_REPO, COMMIT_B).values():
        assert store_link(build, FOLDER, blob) == expected_link(blob)  # the bundle was built from the store
    hub.reset()
    model = {"repo_id": MINILM_REPO, "revision": "main"}
    entries = succeeded(play((BUNDLE_INFO, {"path": str(bundle), "models": [model]}))[0], play.output)["models"]
    carry = {"models": entries, "source": "bundle", "bundle": str(bundle), "cache_dir": str(host),
             "staging_dir": str(staging), "free_space_margin": 0}
    carried = succeeded(play(("justnews.huggingface.hf_carry", carry))[0], play.output)
    result = carried["results"][0]
    assert result["changed"] and result["commit"] == COMMIT_B, result
    assert hub.stats()["total"] == 0
    return Filled(host, hub.url, COMMIT_B, result)


def prune_older_revision(play, hub, work):
    """COMMIT_A pinned (recorded as main), then main followed to COMMIT_B; hf_prune keeps one revision."""
    cache = work / "hub"
    args = {"repo_id": MINILM_REPO, "cache_dir": str(cache), "endpoint": hub.url, "free_space_margin": 0}
    first = succeeded(play((SNAPSHOT, dict(args, revision=COMMIT_A)))[0], play.output)
    past = time.time() - 3600  # the pinned revision is the older one
    os.utime(first["snapshot_path"], (past, past))
    fetched = succeeded(play((SNAPSHOT, dict(args, state="latest")))[0], play.output)
    assert fetched["commit"] == COMMIT_B and (cache / FOLDER / "snapshots" / COMMIT_A).is_dir()
    pruned = succeeded(play(("justnews.huggingface.hf_prune", {"cache_dir": str(cache), "keep": 1}))[0],
                       play.output)
    assert [r["commit"] for r in pruned["removed_revisions"]] == [COMMIT_A], pruned
    assert pruned["removed_store_entries"] == []  # COMMIT_B still uses every entry
    assert not (cache / FOLDER / "snapshots" / COMMIT_A).exists()
    return Filled(cache, hub.url, COMMIT_B, fetched)


def fetch_from_plain_lfs_hub(play, hub_lfs, work):
    cache = work / "hub"
    result = succeeded(play((SNAPSHOT, {"repo_id": MINILM_REPO, "cache_dir": str(cache),
                                        "endpoint": hub_lfs.url, "free_space_margin": 0}))[0], play.output)
    assert result["changed"] and result["commit"] == COMMIT_B, result
    return Filled(cache, hub_lfs.url, COMMIT_B, result)


@pytest.fixture(scope="module")
def filled(hub, hub_lfs, collections_path, tmp_path_factory):
    """Each mode's cache, made on first use and then only read (a test that changes one works on a copy)."""
    made = {}
    makers = {"hub": (fetch_from_hub, hub), "controller": (fetch_through_controller, hub),
              "bundle": (fetch_from_bundle, hub), "prune": (prune_older_revision, hub),
              "hub-lfs": (fetch_from_plain_lfs_hub, hub_lfs)}

    def get(mode):
        if mode not in made:
            work = tmp_path_factory.mktemp("library-" + mode)
            maker, server = makers[mode]
            try:
                made[mode] = maker(Play(collections_path, work), server, work)
            except AssertionError as exc:  # made once: each test of a mode that cannot be made fails with it
                made[mode] = exc
        if isinstance(made[mode], AssertionError):
            raise made[mode]
        return made[mode]
    return get


def hf(endpoint, *args):
    proc = subprocess.run([HF] + list(args), capture_output=True, text=True, timeout=300, check=False,
                          env=dict(os.environ, HF_ENDPOINT=endpoint, HF_HUB_DISABLE_TELEMETRY="1"))
    return proc.returncode, proc.stdout, proc.stderr


def library(code, env):
    """Run huggingface_hub in a fresh process, so it reads the HF_* environment given here at import."""
    proc = subprocess.run([target_python(), "-c", code], capture_output=True, text=True, timeout=300, check=False,
                          env=dict(os.environ, HF_HUB_DISABLE_TELEMETRY="1", **env))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("mode", XET_MODES + ["hub-lfs"])
def test_hf_cache_verify_finds_every_file_of_the_revision_with_its_checksum_and_nothing_else(filled, hub, mode):
    got = filled(mode)
    code, out, err = hf(got.endpoint, "cache", "verify", MINILM_REPO, "--revision", got.commit, "--cache-dir",
                        str(got.cache), "--fail-on-missing-files", "--fail-on-extra-files", "--json")
    assert code == 0, out + err
    report = json.loads(out)
    assert report["path"] == got.result["snapshot_path"]
    assert report["checked"] == len(hub.repos[MINILM_REPO]["commits"][got.commit]) == len(got.result["files"])


@pytest.mark.parametrize("mode", XET_MODES + ["hub-lfs"])
def test_hf_cache_ls_lists_the_revision_at_the_modules_snapshot_path(filled, mode):
    got = filled(mode)
    code, out, err = hf(got.endpoint, "cache", "ls", "--revisions", "--json", "--cache-dir", str(got.cache))
    assert code == 0, out + err
    listed = [(e["repo_id"], e["revision"], e["snapshot_path"], e["refs"]) for e in json.loads(out)]
    # one revision, found by the name the agents load it by; after the prune, the other is gone
    assert listed == [(MINILM_REPO, got.commit, got.result["snapshot_path"], ["main"])]


@pytest.mark.parametrize("mode", XET_MODES + ["hub-lfs"])
def test_the_library_offline_finds_the_modules_snapshot(filled, mode):
    got = filled(mode)
    env = {"HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
    for revision in (got.commit, "main"):
        code = ("import huggingface_hub\nprint(huggingface_hub.snapshot_download(%r, revision=%r, cache_dir=%r,"
                " local_files_only=True))" % (MINILM_REPO, revision, str(got.cache)))
        assert library(code, env) == got.result["snapshot_path"]


# A plain-LFS download carries no Xet hash, so the library keeps its blobs out of the store: nothing to reuse.
@pytest.mark.parametrize("mode", XET_MODES)
def test_a_later_download_of_another_repository_with_the_same_files_reuses_the_store_entry(
        filled, hub, mode, tmp_path):
    got = filled(mode)
    cache = tmp_path / "hub"
    shutil.copytree(got.cache, cache, symlinks=True)
    hub.reset()
    code = ("import huggingface_hub\nprint(huggingface_hub.snapshot_download(%r, cache_dir=%r))"
            % (GATED_REPO, str(cache)))
    path = Path(library(code, {"HF_ENDPOINT": hub.url, "HF_TOKEN": hub.token, "HF_XET_CACHE": str(tmp_path / "xet")}))
    assert path == cache / GATED_FOLDER / "snapshots" / GATED_COMMIT
    stats = hub.stats()
    shared = xet_files(hub, GATED_REPO, GATED_COMMIT)
    fetched = [p for _m, p, _s in stats["log"] if "/reconstructions/" in p]
    # how the module left each blob, shown when the library had to download again
    held = {name: store_link(got.cache, FOLDER, blob) for name, blob in shared.items()}
    assert not [p for p in fetched for b in shared.values() if b.xet_hash in p], (fetched, held)
    assert stats["bytes"].get("xorb", 0) == 0 and stats["bytes"].get("bridge", 0) == 0, stats["bytes"]
    for name, blob in shared.items():
        # one copy on disk: the new repository's blob and the module's snapshot lead to the same store entry
        assert store_link(cache, GATED_FOLDER, blob) == expected_link(blob), name
        assert os.path.samefile(path / name, cache / FOLDER / "snapshots" / got.commit / name), name
