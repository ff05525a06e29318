"""Operator-style checks shared by the Molecule scenarios' testinfra verifiers."""

import json
import os

# Re-exported for the verifiers: the test Hub defines the repositories and commits once.
from tools.hub.hubserver import COMMIT_A, COMMIT_B, GATED_COMMIT, GATED_REPO, MINILM_REPO as REPO  # noqa: F401 pylint: disable=unused-import

UNIT = "justnews@memory.service"
HF_HOME = "/var/cache/hf"
HUB_CACHE = HF_HOME + "/hub"
DROPIN = "/etc/systemd/system/justnews@memory.service.d/60-hf-cache.conf"
TOKEN_FILE = "/etc/justnews/huggingface-token.env"
READY = "/run/justnews/memory.ready"
VENV_PY = "/opt/justnews-huggingface/venv/bin/python"
HUB = os.environ.get("JUSTNEWS_TEST_HUB", "")


def repo_dir(repo_id):
    return HUB_CACHE + "/models--" + repo_id.replace("/", "--")


def unit_props(host, *props, unit=UNIT):
    out = host.check_output("systemctl show %s -p %s", unit, ",".join(props))
    res = {}
    for line in out.splitlines():
        k, _sep, v = line.partition("=")
        res.setdefault(k, v)
    return res


def main_pid(host, unit=UNIT):
    return int(unit_props(host, "MainPID", unit=unit)["MainPID"])


def proc_environ(host, pid, user="justnews"):
    """The process environment as a dict. Callers must not print token values."""
    # as the unit's user: root in a container lacks CAP_SYS_PTRACE for another user's environ
    raw = host.check_output("runuser -u %s -- cat /proc/%s/environ | tr '\\0' '\\n'", user, str(pid))
    env = {}
    for line in raw.splitlines():
        k, sep, v = line.partition("=")
        if sep:
            env[k] = v
    return env


def http_json(host, url):
    """GET url from inside the host (the test images have no curl)."""
    out = host.check_output("python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())' %s", url)
    return json.loads(out)


def ready(host):
    return json.loads(host.file(READY).content_string)


def assert_cache_dir(host, user="justnews"):
    for path in (HF_HOME, HUB_CACHE):
        d = host.file(path)
        assert d.is_directory, path
        assert (d.user, d.group, d.mode) == (user, user, 0o750), (path, d.user, d.group, oct(d.mode))


def assert_snapshot(host, repo_id, commit, ref="main", user="justnews"):
    base = repo_dir(repo_id)
    assert host.file(base + "/refs/" + ref).content_string.strip() == commit
    snap = host.file(base + "/snapshots/" + commit)
    assert snap.is_directory
    files = host.check_output("find %s -mindepth 1 -printf '%%P\\n'", snap.path).split()
    assert "config.json" in files and "README.md" in files, files
    # every file of the snapshot resolves to a blob owned by the agent's user, who can read it
    bad = host.run("find -L %s -type f ! -user %s", snap.path, user)
    assert bad.rc == 0 and bad.stdout.strip() == "", bad.stdout
    r = host.run("runuser -u %s -- cat %s/config.json", user, snap.path)
    assert r.rc == 0, r.stderr
    assert host.file(base + "/blobs").user == user


def assert_dropin(host, endpoint=None, token=False,
                  other_dropin="/etc/systemd/system/justnews@memory.service.d/20-restart-policy.conf"):
    f = host.file(DROPIN)
    assert f.is_file
    assert (f.user, f.group, f.mode) == ("root", "root", 0o644)
    text = f.content_string
    assert "managed by Ansible (justnews.huggingface.model_cache)" in text
    lines = [ln.strip() for ln in text.splitlines()]
    assert "[Service]" in lines
    assert 'Environment="HF_HOME=%s"' % HF_HOME in lines
    assert 'Environment="HF_HUB_CACHE=%s"' % HUB_CACHE in lines
    assert 'Environment="HF_HUB_OFFLINE=1"' in lines
    assert 'Environment="HF_HUB_DISABLE_TELEMETRY=1"' in lines
    if endpoint:
        assert 'Environment="HF_ENDPOINT=%s"' % endpoint in lines
    assert ("EnvironmentFile=-" + TOKEN_FILE in lines) == token
    assert "HF_TOKEN" not in text and "HF_HUB_TOKEN" not in text
    # the operator's own drop-in is left alone
    assert host.file(other_dropin).is_file


def assert_unit_env(host, token=None, user="justnews"):
    """systemd's view and the running process's view of the environment."""
    show = host.check_output("systemctl show %s -p Environment", UNIT)
    assert "HF_HOME=%s" % HF_HOME in show and "HF_HUB_OFFLINE=1" in show
    assert "HF_TOKEN" not in show
    if token:
        leaked = token in show
        assert not leaked, "the token appears in systemctl show -p Environment (value not shown)"
    assert host.service(UNIT).is_running
    env = proc_environ(host, main_pid(host), user)
    assert env.get("HF_HOME") == HF_HOME
    assert env.get("HF_HUB_CACHE") == HUB_CACHE
    assert env.get("HF_HUB_OFFLINE") == "1"
    assert ("HF_TOKEN" in env) == bool(token)
    if token:
        # compare without letting pytest print the values
        same = env["HF_TOKEN"] == token and env.get("HF_HUB_TOKEN") == token
        assert same, "HF_TOKEN/HF_HUB_TOKEN of the agent differ from the token (values not shown)"


def assert_ready(host, commit=None, link=None):
    r = ready(host)
    assert r["pid"] == main_pid(host)
    assert str(r["offline"]).lower() in ("1", "true"), r["offline"]
    assert r["dim"] == 384
    if link:
        # the agent loaded the folder MEMORY_MODEL_CACHE/<name>, i.e. the role's link
        assert r["source"] == link, r
        assert host.file(link).linked_to == repo_dir(REPO) + "/snapshots/" + commit
    assert r["commit"] == commit, r
    out = host.check_output("systemctl show %s -p ExecMainStartTimestamp --timestamp=unix", UNIT)
    started = int(out.strip().split("@", 1)[1])
    assert host.file(READY).mtime.timestamp() >= started


def assert_no_token_file(host):
    assert not host.file(TOKEN_FILE).exists
