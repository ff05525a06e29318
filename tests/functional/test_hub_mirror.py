"""The hub_mirror role's Olah configuration, rendered by the role itself, in front of the test Hub: one copy of the
model from the Hub for any number of clients, and the clients' files equal to the originals.

No systemd here: ansible-playbook runs the role with only its configuration task (tag hub_mirror_config) into a
temporary file, and the test starts olah-cli on that file itself. Olah is installed once per requirements file into
a venv kept between runs (JUSTNEWS_VENV_CACHE, as scripts/setup.sh keeps the controller venvs), from the Olah
wheelhouse of tools/hosts/build-images.sh when it is there, else from PyPI.
"""

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.functional.conftest import Runner
from tools.harness import REPO, controller_bin, target_python
from tools.hub.hubserver import COMMIT_B, MINILM_REPO

ROLE = REPO / "roles" / "hub_mirror"
REQUIREMENTS = REPO / "tools" / "hosts" / "olah-requirements-py311.txt"
VERSION = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())["hub_mirror_version"]
FILE_BYTES = ("get", "bridge", "xorb")  # the test Hub's counters of file bytes: resolver, HTTP bridge, Xet CAS


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def olah():
    """olah-cli of a venv with the role's pinned Olah, built once and reused."""
    key = hashlib.sha256(REQUIREMENTS.read_bytes() + VERSION.encode()).hexdigest()[:12]
    root = Path(os.environ.get("JUSTNEWS_VENV_CACHE", "/var/tmp/justnews-venvs"))
    root.mkdir(parents=True, exist_ok=True)
    venv = root / ("olah-%s-py%d%d" % ((key,) + sys.version_info[:2]))
    cli, done = venv / "bin" / "olah-cli", venv / ".complete"
    with open(root / "olah.lock", "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():  # absent or left half-built by an interrupted run
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            wheels = Path(os.environ.get("JUSTNEWS_IMAGE_CACHE", "/var/tmp/justnews-images")) / "wheelhouse-olah-py311"
            args = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "olah==" + VERSION]
            if sys.version_info[:2] == (3, 11):  # the pins resolve for Python 3.11
                args += ["-c", str(REQUIREMENTS)]
                if any(wheels.glob("olah-%s-*.whl" % VERSION)):
                    args += ["--no-index", "--find-links", str(wheels)]
            subprocess.run(args, check=True, timeout=900)
            done.write_text("olah==%s\n" % VERSION)
    assert cli.exists()
    return cli


def render_config(collections_path, workdir, hub_url, port):
    """The role's olah.toml for this upstream and port, written by the role's own task."""
    config = workdir / "olah.toml"
    play = [{"hosts": "localhost", "gather_facts": False, "roles": [{
        "role": "justnews.huggingface.hub_mirror",
        "vars": {"hub_mirror_upstream": hub_url, "hub_mirror_port": port, "hub_mirror_cache_size_limit": "2GB",
                 "hub_mirror_cache_dir": str(workdir / "repos")}}]}]
    book = workdir / "play.yml"
    book.write_text(json.dumps(play))
    proc = subprocess.run(
        [controller_bin("ansible-playbook"), "-i", "localhost,", "-c", "local", "--tags", "hub_mirror_config",
         "-e", "ansible_python_interpreter=" + target_python(), "-e", "__hub_mirror_config=" + str(config),
         str(book)],
        capture_output=True, text=True, timeout=300, check=False, cwd=workdir,
        env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path, ANSIBLE_NOCOLOR="1",
                 ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return config


def get(url, timeout=60):
    with urllib.request.urlopen(url, timeout=timeout) as answer:  # NO_PROXY covers 127.0.0.1 (tests/conftest.py)
        return answer.status


@contextlib.contextmanager
def running(olah, config, workdir, port):
    """olah-cli on `config` until the block ends; yields its URL once it answers the role's probe."""
    home = workdir / "home"
    home.mkdir(exist_ok=True)
    out = workdir / "olah.out"
    log = open(out, "a")  # pylint: disable=consider-using-with
    proc = subprocess.Popen(  # pylint: disable=consider-using-with
        [str(olah), "-c", str(config), "--log-path", str(workdir / "logs")], cwd=workdir, stdout=log,
        stderr=subprocess.STDOUT, env=dict(os.environ, HOME=str(home), NO_PROXY="127.0.0.1,localhost"))
    url = "http://127.0.0.1:%d" % port
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, out.read_text()[-3000:]
            try:
                # the role's probe (Olah answers 500 on /); offline, Olah answers it from its cache
                if get("%s/api/models/%s/revision/main" % (url, MINILM_REPO)) == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, out.read_text()[-3000:]
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def mirror_config(olah, hub, collections_path, tmp_path):
    """(config, port): the role's olah.toml for the test Hub on a free loopback port."""
    port = free_port()
    config = render_config(collections_path, tmp_path, hub.url, port)
    text = config.read_text()
    upstream = hub.url.split("://", 1)[1]
    for line in ('hf-scheme = "http"', 'hf-netloc = "%s"' % upstream, 'hf-lfs-netloc = "%s"' % upstream,
                 'mirror-netloc = "127.0.0.1:%d"' % port, 'host = "127.0.0.1"', "offline = false"):
        assert line in text, (line, text)
    return config, port


@pytest.fixture
def mirror(olah, mirror_config, tmp_path):
    """Olah on a free loopback port, configured by the role for the test Hub; yields its URL."""
    with running(olah, mirror_config[0], tmp_path, mirror_config[1]) as url:
        yield url


def snapshot(url, cache):
    """snapshot_download through the mirror with the real client, Xet off as the hosts behind a mirror have it."""
    code = ("import huggingface_hub\n"
            "print(huggingface_hub.snapshot_download(%r, revision='main', cache_dir=%r))\n" % (MINILM_REPO, str(cache)))
    env = dict(os.environ, HF_ENDPOINT=url, HF_HUB_DISABLE_XET="1", HF_HOME=str(cache.parent / "hf-home"),
               NO_PROXY="127.0.0.1,localhost")
    proc = subprocess.run([target_python(), "-c", code], capture_output=True, text=True, env=env, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return Path(proc.stdout.strip().splitlines()[-1])


def file_bytes(hub):
    counters = hub.stats()["bytes"]
    return {name: counters.get(name, 0) for name in FILE_BYTES}


def test_the_mirror_fetches_each_file_once_and_serves_the_originals(mirror, hub, tmp_path):
    originals = hub.repos[MINILM_REPO]["commits"][COMMIT_B]
    one_copy = sum(blob.size for blob in originals.values())
    hub.reset()

    first = snapshot(mirror, tmp_path / "client-1" / "hub")
    sent = file_bytes(hub)
    assert sum(sent.values()) == one_copy, sent
    assert sent["xorb"] == 0, sent  # nothing bypassed the mirror through the Hub's Xet CAS

    hub.reset()
    second = snapshot(mirror, tmp_path / "client-2" / "hub")
    assert sum(file_bytes(hub).values()) == 0, hub.stats()["bytes"]

    for snap in (first, second):
        assert snap.name == COMMIT_B
        files = {p.relative_to(snap).as_posix(): p for p in snap.rglob("*") if p.is_file()}
        assert sorted(files) == sorted(originals)
        for name, path in files.items():
            assert hashlib.sha256(path.read_bytes()).hexdigest() == originals[name].sha256, name


def test_an_offline_mirror_is_refused_by_the_hosts_integrity_checks(olah, mirror_config, hub, collections_path,
                                                                     tmp_path):
    """Why the role keeps Olah online (roles/hub_mirror/README.md): offline, Olah answers a cached revision with
    the Hub down, but names each small file with an ETag made from the URL, which hf_snapshot refuses."""
    config, port = mirror_config
    with running(olah, config, tmp_path, port) as url:
        snapshot(url, tmp_path / "client-1" / "hub")  # the mirror now holds the revision
    config.write_text(config.read_text().replace("offline = false", "offline = true"))
    hub.reset()
    hub.set_faults([{"kind": "503", "endpoint": "any", "count": -1}])  # the Hub is down
    work = tmp_path / "host"
    work.mkdir()
    cache = work / "hub"
    with running(olah, config, tmp_path, port) as url:
        result = Runner(collections_path, work)({
            "repo_id": MINILM_REPO, "revision": COMMIT_B, "cache_dir": str(cache), "endpoint": url, "xet": False,
            "retries": 0, "timeout": 120, "free_space_margin": 0})
    assert result["failed"] is True and result["error_kind"] == "unsafe_listing", result.get("msg")
    assert "ETag" in result["msg"], result["msg"]
    assert not list(cache.glob("models--*/snapshots/*")) and not list(cache.glob("models--*/refs/*"))
    assert hub.stats()["total"] == 0  # offline, Olah asked the Hub nothing
