"""hf_carry against a hostile cache owner and a damaged controller cache, through ansible-playbook and the installed
collection: a link planted where the next chunk would be written, a staging folder another user owns or could
swap, a hard link among the kept chunks, a controller blob with its size and other bytes. Each test checks the
result and the disk afterwards: nothing written outside, the outside file's owner, mode and content as they were.
Over the local connection, and the planted link once over the podman connection to a test-host container.

The cache's owner (the agents' user) is `nobody` here; the tests run as root, as the modules do."""

import json
import os
import secrets
import shutil
import stat
import subprocess

import pytest

from test_bundle import tree
from test_carry import CHUNK, carry, chunks_in, damage_last_blob, staging_of
from test_carry import controller, play  # noqa: F401 pylint: disable=unused-import  # the fixtures
from tools.harness import REPO, controller_bin
from tools.hub.hubserver import MINILM_REPO

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="acts for the cache's owner (nobody): needs root")

AGENT = 65534
REPO_DIR = "models--" + MINILM_REPO.replace("/", "--")


def owned(path, uid=AGENT, mode=0o755):
    os.chown(path, uid, uid)
    os.chmod(path, mode)


def victim(path, uid=0, mode=0o644, content=b"root's file, not a chunk\n"):
    """A file outside everything the run owns; returns what must not change about it."""
    path.write_bytes(content)
    os.chown(path, uid, uid)
    os.chmod(path, mode)
    return state(path)


def state(path):
    st = os.lstat(path)
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), st.st_nlink, path.read_bytes()


def listing_of(folder):
    """Every entry below `folder` (links by their text, never followed)."""
    found = {}
    for dirpath, dirs, names in os.walk(folder):
        for name in dirs + names:
            full = os.path.join(dirpath, name)
            found[os.path.relpath(full, folder)] = os.readlink(full) if os.path.islink(full) else "dir" \
                if os.path.isdir(full) else "file"
    return found


def stream_id(play, host, seed):
    """The stream the host would get (check mode sends nothing): what an attacker works out from the blob ids."""
    probe = carry(play, host, [seed], check=True, staging_dir=str(host.parent / "probe-only"))
    assert not probe.get("failed"), probe
    return os.path.basename(probe["stream_dir"])


def agents_home(tmp_path):
    """HF_HOME and its hub cache, the agents' user's, as the role leaves them."""
    host = tmp_path / "host"
    (host / "hub").mkdir(parents=True)
    owned(host)
    owned(host / "hub")
    return host


def test_a_link_planted_in_a_staging_folder_inside_hf_home_redirects_nothing(play, controller, tmp_path):
    """The attack on the old layout: the agents' user makes HF_HOME/.incoming and plants a link at the next
    chunk's name (and at the stream's folder). The run refuses staging_dir before a byte is sent."""
    _cache, seed = controller
    host = agents_home(tmp_path)
    sid = stream_id(play, host, seed)
    target = tmp_path / "etc-file"
    before = victim(target)
    theirs = tmp_path / "agents-folder"
    theirs.mkdir()
    owned(theirs)
    incoming = host / ".incoming"
    incoming.mkdir()
    for index in range(16):
        (incoming / ("%s-%06d" % (sid, index))).symlink_to(target)
    (incoming / sid).symlink_to(theirs)
    planted = listing_of(incoming)
    for check in (True, False):
        result = carry(play, host, [seed], check=check, staging_dir=str(incoming))
        assert result.get("failed") and result["error_kind"] == "unsafe_cache", result
        assert "staging_dir %s lies inside hf_home" % incoming in result["msg"], result["msg"]
        assert "/var/lib/justnews-huggingface/incoming" in result["msg"] and result["bytes_sent"] == 0
        assert state(target) == before and os.listdir(theirs) == []
        assert listing_of(incoming) == planted
        assert sorted(os.listdir(host / "hub")) == []


# The other ways (writable by others, a sticky staging_dir, a group's) are unit tests (test_carry_staging.py).
@pytest.mark.parametrize("case", ["staging_owned_by_agent", "parent_is_a_link"])
def test_a_staging_folder_another_user_could_change_is_refused_before_anything_is_sent(
        play, controller, tmp_path, case):
    _cache, seed = controller
    host = tmp_path / "host"
    sid = stream_id(play, host, seed)
    target = tmp_path / "etc-file"
    before = victim(target)
    theirs = tmp_path / "agents-folder"
    theirs.mkdir()
    owned(theirs)
    staging = staging_of(host)
    if case == "parent_is_a_link":
        staging.parent.symlink_to(theirs)  # a link of root's: the connection would follow it, so would a swap
    else:  # a staging folder the agents' user made, with links at the stream's folder and its first chunk
        staging.mkdir(parents=True)
        owned(staging, mode=0o700)
        (staging / ("%s-000000" % sid)).symlink_to(target)
        (staging / sid).symlink_to(theirs)
    planted = listing_of(staging_of(host).parent)
    result = carry(play, host, [seed])
    assert result.get("failed") and result["error_kind"] == "unsafe_cache", result
    assert "staging_dir %s" % staging in result["msg"] and result["bytes_sent"] == 0, result["msg"]
    assert state(target) == before and os.listdir(theirs) == []
    assert listing_of(staging_of(host).parent) == planted
    assert not (host / "hub" / REPO_DIR).exists()


def test_a_controller_blob_with_its_size_and_other_bytes_leaves_nothing_of_it_on_the_host(
        play, controller, tmp_path):
    """The largest blob of the controller's cache keeps its size, one byte differs: not a chunk holding a byte of
    it (or its header) leaves the controller; the chunks of the blobs before it are kept for the next run."""
    cache, seed = controller
    host = tmp_path / "host"
    folder = cache / REPO_DIR / "blobs"
    big = max((p for p in folder.iterdir() if not p.name.startswith(".")), key=lambda p: p.stat().st_size)
    path = os.path.realpath(big)
    original = big.read_bytes()
    forged = original[:-1] + bytes([original[-1] ^ 1])
    os.chmod(path, 0o644)
    with open(path, "wb") as handle:
        handle.write(forged)
    failed = carry(play, host, [seed])
    assert failed.get("failed") and failed["error_kind"] == "integrity", failed
    assert big.name in failed["msg"] and "model.safetensors" in failed["msg"]
    staging = staging_of(host)
    held = chunks_in(staging)
    assert failed["chunks_sent"] == len(held)
    sent = b"".join(next(staging.glob("*/" + name)).read_bytes() for name in held)
    assert ("blobs/" + big.name).encode() not in sent
    for offset in range(0, len(forged) - 4096, 1 << 20):  # no 4 KiB of it, at every MiB
        assert forged[offset:offset + 4096] not in sent
    assert not (host / "hub" / REPO_DIR).exists()
    with open(path, "wb") as handle:
        handle.write(original)
    resumed = carry(play, host, [seed])
    assert not resumed.get("failed") and resumed["bytes_held"] == len(held) * 8 * 1024 * 1024, resumed
    assert tree(host / "hub") == tree(cache)


def test_a_hard_link_among_the_kept_chunks_is_removed_never_written_through_or_chowned(play, controller, tmp_path):
    """A kept chunk replaced by a hard link to a file elsewhere (its owner is the agents' user, mode 0640): the
    probe removes the stream's folder and makes it anew, so the put never opens the shared file; the file keeps
    its owner, mode and content, and its other link is gone."""
    cache, seed = controller
    host = tmp_path / "host"
    _last, target_blob, original = damage_last_blob(cache)
    assert carry(play, host, [seed])["error_kind"] == "integrity"
    with open(target_blob, "wb") as handle:
        handle.write(original)
    staging = staging_of(host)
    first = next(staging.glob("*/" + chunks_in(staging)[0]))
    outside = tmp_path / "agents-secret"
    before = victim(outside, uid=AGENT, mode=0o640, content=b"not to be overwritten\n")
    first.unlink()
    os.link(outside, first)
    assert state(outside)[3] == 2
    result = carry(play, host, [seed], owner="nobody", mode="0640")
    assert not result.get("failed") and result["changed"], result
    assert result["bytes_held"] == 0 and result["chunks_sent"] == result["chunks_total"]
    assert state(outside) == before  # one link again, owner, mode and content as they were
    assert not staging.exists()
    ref = "%s/refs/main" % REPO_DIR
    assert tree(host / "hub")[ref][:2] == tree(cache)[ref][:2]


# --- the podman connection -------------------------------------------------------------------------------------

IMAGE = "localhost/justnews-host:trixie"
PODMAN_ENV = dict(os.environ, CONTAINERS_CONF=str(REPO / "containers.conf"))


def podman(*args, check=True):
    return subprocess.run(["podman", *args], capture_output=True, text=True, env=PODMAN_ENV, check=check,
                          timeout=120)


def have_image():
    return shutil.which("podman") is not None and podman("image", "exists", IMAGE, check=False).returncode == 0


@pytest.fixture
def container():
    """A test host booted as the fleet's are (systemd, host networking, runc through containers.conf); removed
    afterwards."""
    name = "jn-carry-" + secrets.token_hex(3)
    podman("run", "-d", "--name", name, "--hostname", name, "--label", "org.justnews.test=carry",
           "--systemd=always", "--network", "host", IMAGE, "/sbin/init")
    try:
        yield name
    finally:
        podman("rm", "-f", "-t", "2", name, check=False)


def carry_in(name, collections_path, workdir, seed, staging, check=False):
    """hf_carry to the container over containers.podman.podman; its registered result."""
    out = workdir / ("podman-%s.json" % secrets.token_hex(3))
    task = {"models": [seed], "source": "controller", "cache_dir": "/var/cache/hf/hub", "hf_home": "/var/cache/hf",
            "owner": "justnews", "group": "justnews", "staging_dir": staging, "chunk_size": CHUNK,
            "free_space_margin": 0}
    book = workdir / "podman-play.yml"
    book.write_text(json.dumps([{"hosts": name, "gather_facts": False, "tasks": [
        {"name": "carry", "justnews.huggingface.hf_carry": task, "register": "r", "ignore_errors": True},
        {"name": "save", "ansible.builtin.copy": {"content": "{{ r | to_json }}", "dest": str(out)},
         "delegate_to": "localhost", "check_mode": False, "vars": {"ansible_connection": "local"}}]}]))
    inventory = workdir / "podman-inventory.json"
    inventory.write_text(json.dumps({"all": {"hosts": {name: {
        "ansible_connection": "containers.podman.podman",
        "ansible_python_interpreter": "/opt/justnews/venv/bin/python"}}}}))
    cmd = [controller_bin("ansible-playbook"), "-i", str(inventory), str(book)] + (["--check"] if check else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, timeout=300, check=False,
                          env=dict(PODMAN_ENV, ANSIBLE_COLLECTIONS_PATH=collections_path, ANSIBLE_NOCOLOR="1",
                                   ANSIBLE_HOST_KEY_CHECKING="0"))
    assert out.exists(), proc.stdout + proc.stderr
    return json.loads(out.read_text())


@pytest.mark.skipif(not have_image(), reason="needs podman and the test-host images (tools/hosts/build-images.sh)")
def test_over_podman_a_link_planted_in_hf_home_redirects_nothing(controller, container, collections_path,
                                                                 tmp_path):
    """As over the local connection, with the podman connection's put_file (podman cp, or a copy into the
    container's mounted root that would resolve a planted absolute link on the machine itself): the victim is a
    path that exists both in the container and on the machine, and neither changes. The role's staging folder
    then carries the model."""
    _cache, seed = controller
    target = tmp_path / "victim"
    before = victim(target)

    def sh(script):
        return podman("exec", container, "sh", "-ec", script).stdout

    sh("install -d -o justnews -g justnews -m 0755 /var/cache/hf /var/cache/hf/hub; mkdir -p %s;"
       " printf 'the container file\\n' > %s" % (tmp_path, target))
    sid = os.path.basename(carry_in(container, collections_path, tmp_path, seed, "/var/lib/probe-only",
                                    check=True)["stream_dir"])
    # the agents' user plants links at every chunk name of the next stream, and at the stream's folder
    sh("su -s /bin/sh justnews -c 'mkdir /var/cache/hf/.incoming && cd /var/cache/hf/.incoming &&"
       " for i in $(seq -w 0 15); do ln -s %s %s-0000$i; done && ln -s /etc %s'" % (target, sid, sid))
    planted = sh("ls -l --time-style=+ /var/cache/hf/.incoming")
    refused = carry_in(container, collections_path, tmp_path, seed, "/var/cache/hf/.incoming")
    assert refused.get("failed") and refused["error_kind"] == "unsafe_cache", refused
    assert "staging_dir /var/cache/hf/.incoming lies inside hf_home" in refused["msg"]
    assert refused["bytes_sent"] == 0
    assert state(target) == before
    assert sh("cat %s" % target) == "the container file\n"
    assert sh("ls -l --time-style=+ /var/cache/hf/.incoming") == planted

    done = carry_in(container, collections_path, tmp_path, seed, "/var/lib/justnews-huggingface/incoming")
    assert not done.get("failed") and done["changed"] and done["bytes_sent"] == done["bytes_total"] > 0, done
    assert state(target) == before and sh("cat %s" % target) == "the container file\n"
    assert sh("ls -l --time-style=+ /var/cache/hf/.incoming") == planted
    assert sh("cat /var/cache/hf/hub/%s/refs/main" % REPO_DIR) == seed["commit"]
    assert sh("ls -A /var/lib/justnews-huggingface") == ""
    assert sh("stat -c %%U /var/cache/hf/hub/%s/blobs" % REPO_DIR).strip() == "justnews"
