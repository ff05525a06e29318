"""Two sites behind their own mirrors: the Hub's counters after each step of converge and side_effect (records
written by record.yml), the hosts' caches, and the mirrors as an operator inspects them."""

import json
import os
import re
from pathlib import Path

import pytest
import testinfra

import jn_checks as c

RECORD = Path(os.environ.get("SITES_RECORD_DIR", ""))
SITES = 2
MIRRORS = ("mc-sites-mirror-a", "mc-sites-mirror-b")
FILE_BYTES = ("get", "bridge", "xorb")  # the test Hub's file bytes: resolver, HTTP bridge, Xet CAS
MIRROR_UNIT = "hf-mirror.service"
# hub_mirror_environment of the mirrors (molecule.yml, after Molecule's `$$`)
PROXY_SECRET = "sites-proxy-secret-7Q2"
ODD_VALUE = 'a "quoted" $HOME \\back `tick` 100% x'
# What each mirror asks the Hub on a run with nothing to do: the role's probe file, which Olah checks upstream
# with one HEAD on every request, cached or not (the revision comes from its metadata cache); and Olah's own
# connection check, every 5 minutes whoever asks (olah/server.py: check_hf_connection).
PROBE_HEAD = ("HEAD", "/%s/resolve/main/config.json" % c.REPO)
CONNECTION_CHECK = ("HEAD", "/datasets/Salesforce/wikitext/resolve/main/.gitattributes")
CONNECTION_CHECK_EVERY = 300
EXPOSURE_LIMIT = 3.0


def record(name):
    return json.loads((RECORD / (name + ".json")).read_text())


def file_bytes(name):
    sent = record(name)["stats"]["bytes"]
    return {k: sent.get(k, 0) for k in FILE_BYTES}


def one_copy(host):
    snap = c.repo_dir(c.REPO) + "/snapshots/" + c.COMMIT_B
    out = host.check_output("find -L %s -type f -printf '%%s\\n'", snap)
    return sum(int(size) for size in out.split())


def file_size(host, name):
    snap = c.repo_dir(c.REPO) + "/snapshots/" + c.COMMIT_B
    return int(host.check_output("stat -L -c %%s %s/%s", snap, name))


def test_the_hub_sends_one_copy_per_site(host):
    mirrors, first = file_bytes("mirrors"), file_bytes("first")
    # each mirror's probe fetched one small file of the revision, which its site's hosts then got from it
    assert mirrors == {"get": SITES * file_size(host, "config.json"), "bridge": 0, "xorb": 0}, mirrors
    assert sum(first.values()) == SITES * one_copy(host), first
    # Xet off on the hosts: nothing went past the mirrors to the Hub's CAS
    assert first["xorb"] == 0, first


def test_the_second_host_of_a_site_costs_the_hub_nothing():
    assert file_bytes("second") == file_bytes("first")


def test_a_restarted_mirror_serves_from_its_cache():
    assert file_bytes("restart") == file_bytes("second")


def test_a_site_converges_with_the_hub_down():
    down = record("hub_down")
    assert file_bytes("hub_down") == file_bytes("restart")
    assert down["changed"] == [False, False] and down["restarted"] == [], down
    assert {row["host"] for row in down["summary"]} == {"mc-sites-a1", "mc-sites-a2"}
    assert all(row["commit"] == c.COMMIT_B for row in down["summary"]), down["summary"]


def test_corrupt_bytes_from_a_mirror_fail_on_integrity():
    assert "integrity" in record("corrupt")["failure"]
    # the Hub sent commit A's own small files (the weights are B's, already on the host), README.md corrupt: the
    # body the mirror kept and served
    assert file_bytes("corrupt")["get"] > file_bytes("hub_down")["get"]


def test_the_hosts_hold_the_model_from_the_mirror(host):
    assert host.file(c.repo_dir(c.REPO) + "/snapshots/" + c.COMMIT_B).is_directory


def test_the_warm_run_asks_the_hub_only_each_mirrors_probe_file_and_olahs_connection_check():
    """Whatever the machine's load: the run with nothing to do sends the Hub exactly one HEAD of the probe file
    per mirror, and Olah's connection check no more often than its 5 minutes allow in the time it took."""
    cold, warm = record("second"), record("second.latest")
    asked = [tuple(entry[:2]) for entry in warm["stats"]["log"][len(cold["stats"]["log"]):]]
    checks = asked.count(CONNECTION_CHECK)
    elapsed = warm["time"] - cold["time"]
    assert asked.count(PROBE_HEAD) == len(MIRRORS), asked
    assert checks <= len(MIRRORS) * (int(elapsed // CONNECTION_CHECK_EVERY) + 1), (checks, elapsed)
    assert len(asked) == len(MIRRORS) + checks, asked


def mirror_host(name):
    return testinfra.get_host("podman://" + name)


@pytest.mark.parametrize("name", MIRRORS)
def test_the_mirrors_proxy_credentials_are_in_a_root_only_file_not_in_systemctl_show(name):
    mirror = mirror_host(name)
    env_file = mirror.file("/etc/hf-mirror/hf-mirror.env")
    assert (env_file.user, env_file.group, env_file.mode) == ("root", "root", 0o600)
    unit = mirror.file("/etc/systemd/system/" + MIRROR_UNIT)
    assert unit.mode == 0o644 and "EnvironmentFile=/etc/hf-mirror/hf-mirror.env" in unit.content_string
    shown = mirror.run("runuser -u nobody -- systemctl show %s", MIRROR_UNIT)
    assert shown.rc == 0 and "EnvironmentFiles=/etc/hf-mirror/hf-mirror.env" in shown.stdout, shown.stderr
    for text in (unit.content_string, shown.stdout):
        assert PROXY_SECRET not in text and "SITES_ODD_VALUE" not in text
    # and Olah has them, byte for byte
    env = c.proc_environ(mirror, c.main_pid(mirror, unit=MIRROR_UNIT), user="root")
    assert env.get("HTTPS_PROXY") == "http://mirror:%s@127.0.0.1:9" % PROXY_SECRET
    assert env.get("SITES_ODD_VALUE") == ODD_VALUE, env.get("SITES_ODD_VALUE")


@pytest.mark.parametrize("name", MIRRORS)
def test_each_mirror_is_confined(name):
    mirror = mirror_host(name)
    report = mirror.check_output("systemd-analyze security --no-pager %s", MIRROR_UNIT)
    exposure = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", report).group(1))
    print("%s: systemd-analyze security %s: exposure %.1f" % (name, MIRROR_UNIT, exposure))
    assert exposure <= EXPOSURE_LIMIT, report
    # in force, not only written: the process as the kernel shows it
    pid = c.main_pid(mirror, unit=MIRROR_UNIT)
    status = dict(line.split(":", 1) for line in mirror.file("/proc/%d/status" % pid).content_string.splitlines())
    assert status["NoNewPrivs"].strip() == "1" and status["Seccomp"].strip() == "2", status
    assert int(status["CapBnd"], 16) == 0 and int(status["CapEff"], 16) == 0, status
    mounts = {fields[4]: fields[5] for fields in
              (line.split() for line in mirror.file("/proc/%d/mountinfo" % pid).content_string.splitlines())}
    for path in ("/", "/var/cache/hf-mirror/lfs"):
        assert "ro" in mounts[path].split(","), (path, mounts.get(path))
    assert "rw" in mounts["/var/cache/hf-mirror"].split(",")
    lfs = mirror.file("/var/cache/hf-mirror/lfs")
    assert (lfs.user, lfs.mode) == ("root", 0o755) and lfs.listdir() == []


def test_a_host_without_the_token_gets_no_byte_of_a_gated_repository_another_host_fetched():
    gated = record("gated")
    files = gated["host_a"]["files"]
    assert len(files) == 13 and all(f["size"] > 0 for f in files.values()), files  # A got the repository
    assert [e for e in gated["host_a"]["listing"] if e["xet"]], gated["host_a"]["listing"]
    # A's own requests by the content-addressed routes: no object there, none kept (their cache is read-only)
    assert all(status >= 400 for status in gated["host_a"]["content_routes"].values()), gated["host_a"]
    hashes = {f["sha256"] for f in files.values()}
    heads = {f["head"] for f in files.values()}
    answers = gated["host_b"]
    assert len({a["path"] for a in answers}) >= 4 * len(files), len(answers)
    leaked = [a for a in answers if a["sha256"] in hashes or (a["size"] and a["head"] in heads)]
    assert leaked == [], leaked
    assert not [a for a in answers if a["status"] < 300 and a["method"] == "GET"], answers
    assert not [a for a in answers if a["path"] == "/repos" and a["names_repo"]], answers
