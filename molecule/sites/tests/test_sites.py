"""Two sites behind their own mirrors: the Hub's counters after each step of converge and side_effect (records
written by record.yml), and the hosts' caches."""

import json
import os
from pathlib import Path

import jn_checks as c

RECORD = Path(os.environ.get("SITES_RECORD_DIR", ""))
SITES = 2
FILE_BYTES = ("get", "bridge", "xorb")  # the test Hub's file bytes: resolver, HTTP bridge, Xet CAS


def record(name):
    return json.loads((RECORD / (name + ".json")).read_text())


def file_bytes(name):
    sent = record(name)["stats"]["bytes"]
    return {k: sent.get(k, 0) for k in FILE_BYTES}


def one_copy(host):
    snap = c.repo_dir(c.REPO) + "/snapshots/" + c.COMMIT_B
    out = host.check_output("find -L %s -type f -printf '%%s\\n'", snap)
    return sum(int(size) for size in out.split())


def test_the_hub_sends_one_copy_per_site(host):
    mirrors, first = file_bytes("mirrors"), file_bytes("first")
    assert sum(mirrors.values()) == 0, mirrors  # the mirrors' probe asks for metadata only
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
