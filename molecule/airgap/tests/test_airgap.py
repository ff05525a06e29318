"""A host without any network, filled from a bundle: the agent runs offline, a corrupt bundle changes nothing,
and a bake into an image root on the controller gives the same cache with the image's own ids."""

import hashlib
import json
import os
import stat
from pathlib import Path

import jn_checks as c

AIRGAP = Path(os.environ.get("AIRGAP_DIR", ""))
ROOTFS = AIRGAP / "rootfs"
IMAGE_UID, IMAGE_GID = 4321, 4322


def test_hub_unreachable_from_the_host(host):
    probe = "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)"
    r = host.run("python3 -c %s %s", probe, c.HUB + "/api/models/" + c.REPO)
    assert r.rc != 0, "the air-gapped host reached the test Hub"
    assert host.check_output("ls /sys/class/net").split() == ["lo"]


def test_cache_from_the_bundle(host):
    c.assert_cache_dir(host)
    c.assert_snapshot(host, c.REPO, c.COMMIT_B, "main")
    assert host.file(c.HUB_CACHE + "/CACHEDIR.TAG").is_file
    assert not host.file(c.HF_HOME + "/.incoming").exists  # the staging directory is gone
    assert not host.file("/var/lib/justnews-huggingface/incoming").exists


def test_dropin_offline(host):
    c.assert_dropin(host, endpoint=c.HUB or None, token=False)


def test_agent_ready_offline(host):
    c.assert_unit_env(host)
    c.assert_ready(host, commit=c.COMMIT_B)
    health = c.http_json(host, "http://127.0.0.1:8007/ready")
    assert health.get("ready") is True, health


def test_corrupt_bundle_refused_with_nothing_changed(host):
    record = json.loads((AIRGAP / "refused.json").read_text())
    assert record["msg"] != "the corrupt bundle was accepted"
    assert c.REPO in record["msg"] and "README.md" in record["msg"], record["msg"]
    assert "corrupt_bundle" in record["msg"], record["msg"]
    assert record["before"] == record["after"]  # cache tree and contents, drop-in, agent PID and restarts
    snapshots = host.check_output("ls %s/snapshots", c.repo_dir(c.REPO)).split()
    assert snapshots == [c.COMMIT_B]
    assert not host.file(c.repo_dir(c.REPO) + "/refs/v1").exists


def baked_tree():
    rows = {}
    base = ROOTFS / c.HF_HOME.lstrip("/")
    for dirpath, dirs, names in os.walk(base):
        for name in dirs + names:
            full = Path(dirpath) / name
            st = full.lstat()
            rows[str(full.relative_to(base))] = st
    return rows


def test_bake_ownership_from_the_image(host):  # pylint: disable=unused-argument
    tree = baked_tree()
    repo = "hub/models--" + c.REPO.replace("/", "--")
    assert (ROOTFS / c.HF_HOME.lstrip("/") / repo / "refs" / "main").read_text() == c.COMMIT_B
    assert tree, "nothing was baked"
    for rel, st in tree.items():
        if rel in ("hub/.locks", "hub/CACHEDIR.TAG"):
            assert (st.st_uid, st.st_gid) == (0, 0), rel  # shared entries stay root's, as on a host
            continue
        assert (st.st_uid, st.st_gid) == (IMAGE_UID, IMAGE_GID), (rel, st.st_uid, st.st_gid)
    # the parents the bake created are root's
    assert (ROOTFS / "var").stat().st_uid == 0


def sized(rows):
    """Rows with the size kept for files only: directory sizes differ between filesystems."""
    return {r[:4] + ((r[4],) if r[1] == "f" else ()) for r in rows}


def test_bake_equals_the_host(host):
    """Same paths, kinds, modes, link targets and file contents as the host's cache (owners differ by design)."""
    out = host.check_output("find %s -path '*/.locks/*' -prune -o -printf '%%P|%%y|%%m|%%l|%%s\\n'", c.HF_HOME)
    on_host = {tuple(line.split("|")) for line in out.splitlines() if line.split("|")[0]}
    baked = set()
    for rel, st in baked_tree().items():
        if rel.startswith("hub/.locks/"):
            continue
        full = ROOTFS / c.HF_HOME.lstrip("/") / rel
        kind = "l" if stat.S_ISLNK(st.st_mode) else "d" if stat.S_ISDIR(st.st_mode) else "f"
        baked.add((rel, kind, "%o" % stat.S_IMODE(st.st_mode), os.readlink(full) if kind == "l" else "",
                   str(st.st_size)))
    assert sized(baked) == sized(on_host)
    blobs = ROOTFS / c.HF_HOME.lstrip("/") / ("hub/models--" + c.REPO.replace("/", "--")) / "blobs"
    for blob in blobs.iterdir():
        digest = host.check_output("sha256sum %s", c.repo_dir(c.REPO) + "/blobs/" + blob.name).split()[0]
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == digest, blob.name


def test_bake_dropin_equals_the_host(host):
    baked = ROOTFS / c.DROPIN.lstrip("/")
    st = baked.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o644)
    on_host = host.check_output("sha256sum %s", c.DROPIN).split()[0]
    assert hashlib.sha256(baked.read_bytes()).hexdigest() == on_host, baked.read_text()
    assert "HF_HUB_OFFLINE=1" in baked.read_text() and "EnvironmentFile" not in baked.read_text()
