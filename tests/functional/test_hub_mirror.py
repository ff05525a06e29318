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
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.functional.conftest import Runner
from tools.harness import REPO, controller_bin, target_python
from tools.hub.hubserver import COMMIT_B, GATED_COMMIT, GATED_REPO, MINILM_REPO

ROLE = REPO / "roles" / "hub_mirror"
REQUIREMENTS = REPO / "tools" / "hosts" / "olah-requirements-py311.txt"
VERSION = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())["hub_mirror_version"]
FILE_BYTES = ("get", "bridge", "xorb")  # the test Hub's counters of file bytes: resolver, HTTP bridge, Xet CAS
# huggingface.co's gate: anyone sees a gated repository's model info and listings, only its files need the token
OPEN_GATE = {"kind": "open_gate", "endpoint": "any", "count": -1}
# Every route Olah serves a file by, shared with the sites scenario's hosts
_SPEC = importlib.util.spec_from_file_location("gated_routes",
                                               REPO / "molecule" / "sites" / "files" / "gated_routes.py")
gated_routes = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(gated_routes)


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


def run_role(collections_path, workdir, tags, role_vars, extra=()):
    """The hub_mirror role limited to `tags`, on this machine; returns the finished process."""
    play = [{"hosts": "localhost", "gather_facts": False, "roles": [{
        "role": "justnews.huggingface.hub_mirror", "vars": role_vars}]}]
    book = workdir / ("play-%s.yml" % tags)
    book.write_text(json.dumps(play))
    return subprocess.run(
        [controller_bin("ansible-playbook"), "-i", "localhost,", "-c", "local", "--tags", tags,
         "-e", "ansible_python_interpreter=" + target_python(), *extra, str(book)],
        capture_output=True, text=True, timeout=300, check=False, cwd=workdir,
        env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path, ANSIBLE_NOCOLOR="1",
                 ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0"))


def render_config(collections_path, workdir, hub_url, port):
    """The role's olah.toml for this upstream and port, written by the role's own task."""
    config = workdir / "olah.toml"
    proc = run_role(collections_path, workdir, "hub_mirror_config", {
        "hub_mirror_upstream": hub_url, "hub_mirror_port": port, "hub_mirror_cache_size_limit": "2GB",
        "hub_mirror_cache_dir": str(workdir / "repos")}, ["-e", "__hub_mirror_config=" + str(config)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return config


def run_probe(collections_path, workdir, hub_url, port):
    """The role's probe alone (tag hub_mirror_probe), as after a start, against the Olah on `port`."""
    return run_role(collections_path, workdir, "hub_mirror_probe", {
        "hub_mirror_upstream": hub_url, "hub_mirror_port": port, "hub_mirror_probe_timeout": 60,
        "hub_mirror_probe": {"repo_id": MINILM_REPO, "revision": "main", "file": "config.json"}},
        ["-e", "__hub_mirror_booted=true"])


def get(url, timeout=60):
    with urllib.request.urlopen(url, timeout=timeout) as answer:  # NO_PROXY covers 127.0.0.1 (tests/conftest.py)
        return answer.status


@contextlib.contextmanager
def running(olah, config, workdir, port, read_only=None):
    """olah-cli on `config` until the block ends; yields its URL once it answers the role's probe. `read_only`: a
    folder that Olah sees read-only, as the role's unit sets it (ReadOnlyPaths=), by a read-only bind mount in a
    mount namespace of its own (needs root, as the unit's sandbox does)."""
    home = workdir / "home"
    home.mkdir(exist_ok=True)
    out = workdir / "olah.out"
    log = open(out, "a")  # pylint: disable=consider-using-with
    command = [str(olah), "-c", str(config), "--log-path", str(workdir / "logs")]
    if read_only is not None:
        command = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                   'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0" && exec "$@"',
                   str(read_only)] + command
    proc = subprocess.Popen(  # pylint: disable=consider-using-with
        command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
        env=dict(os.environ, HOME=str(home), NO_PROXY="127.0.0.1,localhost"))
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


def snapshot(url, cache, repo=MINILM_REPO, token=None):
    """snapshot_download through the mirror with the real client, Xet off as the hosts behind a mirror have it."""
    code = ("import huggingface_hub\n"
            "print(huggingface_hub.snapshot_download(%r, revision='main', cache_dir=%r))\n" % (repo, str(cache)))
    env = dict(os.environ, HF_ENDPOINT=url, HF_HUB_DISABLE_XET="1", HF_HOME=str(cache.parent / "hf-home"),
               NO_PROXY="127.0.0.1,localhost")
    env.pop("HF_TOKEN", None)
    if token:
        env["HF_TOKEN"] = token
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


def test_the_probe_fails_naming_the_route_when_the_mirror_serves_no_file(mirror, mirror_config, hub,
                                                                         collections_path, tmp_path):
    """An upstream that lacks POST paths-info (another mirror, not the Hub): Olah answers the revision, which the
    probe used to take for health, and 501 for every file. The probe asks for a file too and names the route."""
    hub.set_faults([{"kind": "501", "endpoint": "paths_info", "count": -1}])
    route = "/%s/resolve/main/config.json" % MINILM_REPO
    assert get("%s/api/models/%s/revision/main" % (mirror, MINILM_REPO)) == 200
    with pytest.raises(urllib.error.HTTPError) as answer:
        get(mirror + route)
    assert answer.value.code == 501

    failed = run_probe(collections_path, tmp_path, hub.url, mirror_config[1])
    out = failed.stdout + failed.stderr
    assert failed.returncode != 0, out[-3000:]
    for words in ("not GET " + route, "status 501", "POST /api/models/%s/paths-info/" % MINILM_REPO,
                  "hub_mirror_upstream", "hub_mirror_probe.file"):
        assert words in out, (words, out[-3000:])

    hub.set_faults([])  # the upstream answers paths-info: the same mirror passes
    passed = run_probe(collections_path, tmp_path, hub.url, mirror_config[1])
    assert passed.returncode == 0, (passed.stdout + passed.stderr)[-3000:]


def fetch(url, token=None, method="GET"):
    """(status, body) of one request, errors included."""
    request = urllib.request.Request(url, method=method,
                                     headers={"Authorization": "Bearer " + token} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=300) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def gated_listing(hub):
    files = hub.repos[GATED_REPO]["commits"][GATED_COMMIT]
    return files, [{"path": name, "lfs": blob.sha256 if blob.lfs else None, "xet": blob.xet_hash}
                   for name, blob in sorted(files.items())]


def test_olah_alone_serves_a_gated_file_to_anyone_after_a_token_holder_fetched_it_by_its_xet_route(mirror, hub):
    """Why the role keeps Olah's lfs/ folder read-only: with huggingface.co's gate (anyone may see a gated
    repository, only its files need the token), Olah's content-addressed Xet route authorizes a caller by the
    repository's visibility and serves its cache to a caller with no token."""
    hub.set_faults([OPEN_GATE])
    files, _listing = gated_listing(hub)
    weights = files["model.safetensors"]
    resolve = "%s/%s/resolve/main/model.safetensors" % (mirror, GATED_REPO)
    assert fetch(resolve, method="HEAD")[0] == 401  # the resolve route asks the Hub with the caller's token
    assert fetch(resolve, hub.token, method="HEAD")[0] == 200  # Olah learns where the object comes from
    xet_route = "%s/xet-bridge-us/0000/%s" % (mirror, weights.xet_hash)
    assert fetch(xet_route, hub.token)[0] == 200  # a token holder fetches it there: Olah keeps it
    status, body = fetch(xet_route)
    assert status == 200 and hashlib.sha256(body).hexdigest() == weights.sha256


def test_a_host_without_the_token_gets_no_byte_of_a_gated_repository_another_host_fetched(
        olah, mirror_config, hub, tmp_path):
    """The role's mirror (lfs/ root's and read-only to Olah, as its unit sets it) with huggingface.co's gate: host A
    fetches the gated repository with its token, and asks for its LFS file by the content-addressed routes too;
    host B asks for every file by every route Olah serves, with no token and with a wrong one."""
    if os.geteuid() != 0:
        pytest.skip("the read-only folder is a bind mount in a mount namespace, as systemd makes it: root only")
    config, port = mirror_config
    lfs = tmp_path / "repos" / "lfs"
    lfs.mkdir(parents=True)
    hub.set_faults([OPEN_GATE])
    files, listing = gated_listing(hub)
    contents = {name: b"".join(blob.chunks()) for name, blob in files.items()}
    with running(olah, config, tmp_path, port, read_only=lfs) as url:
        snap = snapshot(url, tmp_path / "host-a" / "hub", repo=GATED_REPO, token=hub.token)
        got = {p.relative_to(snap).as_posix(): p.read_bytes() for p in snap.rglob("*") if p.is_file()}
        assert got == contents  # A has the repository, through the resolve route
        content_routes = [path for entry in listing for path in gated_routes.content_paths(entry)]
        assert content_routes
        for path in content_routes:
            assert fetch(url + path, hub.token)[0] >= 400, path  # nothing there, nothing kept
        answers = [(method, path, token, *fetch(url + path, token, method))
                   for token in (None, "hf_wrong_token_of_host_b")
                   for path in gated_routes.routes(GATED_REPO, GATED_COMMIT, listing)
                   for method in ("HEAD", "GET")]
    leaked = [(method, path, status, name) for method, path, _token, status, body in answers for name, content in
              contents.items() if body and (content in body or (len(body) >= 64 and body in content))]
    assert leaked == []
    assert [a[:4] for a in answers if a[3] < 300 and a[0] == "GET"] == []
    assert not list(lfs.iterdir())
