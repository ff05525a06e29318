"""The doctor's reading of systemd, environment files and journals, with systemd and the Hub answered by fakes."""

import os

from ansible_collections.justnews.huggingface.plugins.module_utils import _doctor, _errors, _systemd

UNIT = "justnews@memory.service"
EXPECTED = {"HF_HOME": "/var/cache/hf", "HF_HUB_CACHE": "/var/cache/hf/hub", "HF_HUB_OFFLINE": "1",
            "HF_TOKEN": "<unset>"}


def show(env_files, environment='HF_HOME=/var/cache/hf HF_HUB_CACHE=/var/cache/hf/hub HF_HUB_OFFLINE=1'):
    lines = ["Id=" + UNIT, "LoadState=loaded", "ActiveState=active", "SubState=running", "User=adra",
             "MainPID=4242", "InvocationID=0123abcd", "Environment=" + environment]
    lines += ["EnvironmentFiles=%s (ignore_errors=yes)" % f for f in env_files]
    return "\n".join(lines) + "\n"


def doctor(tmp_path, env_files, process_env=None, journal="", http_get=None, **params):
    p = dict(cache_dir=str(tmp_path / "hub"), models=[], units=[{"name": UNIT}], agent_ports={}, ready_urls={},
             expected_env=EXPECTED, managed_env=sorted(EXPECTED), sourced_files=[], endpoint="http://127.0.0.1:9",
             reach_hub=False, token_file=None, token_expected=False, verify_checksums=True, journal=True, timeout=1)
    p.update(params)

    def run_command(argv):
        if argv[0] == "systemctl":
            return 0, show(env_files), ""
        if argv[0] == "journalctl":
            assert "_SYSTEMD_INVOCATION_ID=0123abcd" in argv  # only the journal since the last start
            return 0, journal, ""
        raise AssertionError(argv)

    def as_user(user, func, *args):
        assert user == "adra"  # the unit's User=, never root
        if func is _systemd.process_environment:
            return [[4242, {k: (process_env or {}).get(k) for k in args[1]}]]
        return []

    def no_route(url, timeout, token=None, proxy=False):
        return None, {}, "no route"

    return _doctor.Doctor(p, run_command, as_user, http_get or no_route).run()


def by_check(findings, check):
    return [f for f in findings if f["check"] == check]


def test_parse_show_keeps_every_environment_file_and_quoted_values():
    props = _systemd.parse_show(show(["/etc/justnews/global.env", "/etc/justnews/memory.env"],
                                     environment='A=1 "B=two words"'))
    assert props["EnvironmentFiles"] == ["/etc/justnews/global.env", "/etc/justnews/memory.env"]
    assert props["Environment"] == {"A": "1", "B": "two words"}
    assert props["User"] == "adra"


def test_read_env_file_reads_what_a_start_script_sources(tmp_path):
    env = tmp_path / "memory.env"
    env.write_text("# comment\nexport HF_HUB_OFFLINE=0\nHF_HOME='/srv/hf'\nMEMORY_PORT=8007\nnot a line\n")
    assert _systemd.read_env_file(str(env)) == {"HF_HUB_OFFLINE": "0", "HF_HOME": "/srv/hf", "MEMORY_PORT": "8007"}
    assert _systemd.read_env_file(str(tmp_path / "absent.env")) is None


def test_healthy_unit_and_process(tmp_path):
    os.makedirs(tmp_path / "hub")
    healthy = {"HF_HOME": "/var/cache/hf", "HF_HUB_CACHE": "/var/cache/hf/hub", "HF_HUB_OFFLINE": "1"}
    findings = doctor(tmp_path, [], process_env=healthy)
    env = by_check(findings, "environment")
    assert [f["verdict"] for f in env] == ["ok"], env
    assert [f["verdict"] for f in by_check(findings, "journal")] == ["ok"]


def test_the_readiness_url_is_worked_out_from_the_units_entry_as_hf_units_does(tmp_path):
    asked = []

    def http_get(url, timeout, token=None, proxy=False):
        asked.append((url, proxy))
        return 200, {}, '{"ready": false}' if url.endswith("/loading") else '{"ready": true}'

    units = [_systemd.unit_entries([UNIT])[0]]
    findings = doctor(tmp_path, [], process_env=EXPECTED, http_get=http_get, units=units,
                      agent_ports=dict(_systemd.AGENT_PORTS))
    assert asked == [("http://127.0.0.1:8007/ready", False)]  # memory's port; a local URL, no proxy
    assert by_check(findings, "unit")[0]["verdict"] == "ok"
    findings = doctor(tmp_path, [], process_env=EXPECTED, http_get=http_get,
                      units=_systemd.unit_entries([{"name": UNIT, "ready_port": 9000, "ready_path": "/loading"}]))
    assert asked[-1] == ("http://127.0.0.1:9000/loading", False)
    assert by_check(findings, "unit")[0]["verdict"] == "fail"
    doctor(tmp_path, [], process_env=EXPECTED, http_get=http_get,
           units=_systemd.unit_entries([{"name": UNIT, "ready_command": "true"}, {"name": "b.service", "ready": False}]))
    assert len(asked) == 2  # a command or ready: false: active is all the doctor checks


def test_a_unit_that_is_neither_a_name_nor_an_entry_is_refused():
    for value in ([{"ready_url": "http://x"}], [{"name": UNIT, "colour": "red"}], [7]):
        try:
            _systemd.unit_entries(value)
        except _errors.Failure as exc:
            assert exc.kind == _errors.INVALID_ARGUMENT and "units[0]" in exc.msg
        else:
            raise AssertionError(value)


def test_env_file_that_overrides_the_drop_in_is_named_with_its_fix(tmp_path):
    override = tmp_path / "memory.env"
    override.write_text("HF_HUB_OFFLINE=0\nMEMORY_PORT=8007\n")
    findings = doctor(tmp_path, ["/etc/justnews/global.env", str(override)],
                      process_env={"HF_HOME": "/var/cache/hf", "HF_HUB_CACHE": "/var/cache/hf/hub",
                                   "HF_HUB_OFFLINE": "0"})
    unit = by_check(findings, "environment")[0]
    assert unit["verdict"] == "fail"
    assert "HF_HUB_OFFLINE=0 set by %s" % override in unit["detail"]
    assert "remove HF_HUB_OFFLINE from %s" % override in unit["fix"]


def test_process_started_before_the_drop_in_needs_a_restart(tmp_path):
    findings = doctor(tmp_path, [], process_env={"HF_HOME": "/var/cache/hf"})
    process = [f for f in by_check(findings, "environment") if "pid 4242" in f["subject"]][0]
    assert process["verdict"] == "fail"
    assert "HF_HUB_OFFLINE=<unset>" in process["detail"]
    assert process["fix"].startswith("systemctl restart " + UNIT)


def test_token_values_are_never_shown(tmp_path):
    findings = doctor(tmp_path, [], process_env={"HF_TOKEN": "hf_secretvalue123"},
                      expected_env=dict(EXPECTED, HF_TOKEN="<unset>"))
    text = repr(findings)
    assert "hf_secretvalue123" not in text
    assert "HF_TOKEN=<set>" in text


def test_journal_counts_downloads_rate_limits_and_offline_errors(tmp_path):
    journal = "\n".join([
        "2026-11-26 justnews.memory INFO model=all-MiniLM-L6-v2 HF_HUB_OFFLINE=0",
        "Fetching 13 files: 100%|##########| 13/13 [00:01<00:00, 9.1it/s]",
        "HTTP Error 429 thrown while requesting HEAD http://127.0.0.1:1/x/resolve/main/config.json",
        "huggingface_hub.errors.LocalEntryNotFoundError: Cannot find an appropriate cached snapshot folder",
        "login with hf_abcdefgh12345 failed",
        "justnews.memory WARNING Hugging Face Hub login failed (OfflineModeIsEnabled); continuing",
    ])
    journal_finding = by_check(doctor(tmp_path, [], journal=journal), "journal")[0]
    assert journal_finding["verdict"] == "fail"
    assert "1 download line(s), 1 rate-limit line(s), 1 offline error(s)" in journal_finding["detail"]
    assert "hf_abcdefgh12345" not in repr(journal_finding)


def test_select_follows_allow_and_ignore_patterns():
    tree = {"config.json": {}, "onnx/model.onnx": {}, "model.safetensors": {}, "pytorch_model.bin": {}}
    assert _doctor.select(tree, None, ["onnx/", "*.bin"]) == ["config.json", "model.safetensors"]
    assert _doctor.select(tree, ["*.json"], None) == ["config.json"]


def test_worst_verdict():
    assert _doctor.worst([_doctor.finding("a", "b", "ok", ""), _doctor.finding("a", "b", "warn", "")]) == "warn"
    assert _doctor.worst([]) == "skip"


# --- a model's files through the shared blob store ------------------------------------------------------------

COMMIT = "c" * 40


def store_cache(tmp_path, files):
    """A cache as huggingface_hub leaves it after Xet downloads: every file's content a store entry, the
    repository's blob a relative link to it, the listing and refs/main as hf_snapshot writes them."""
    import hashlib
    import json
    from ansible_collections.justnews.huggingface.plugins.module_utils import _cache, _store
    cache = tmp_path / "hub"
    repo = _cache.RepoCache(str(cache), "org/name")
    os.makedirs(os.path.join(str(cache), "blobs"))
    (cache / "blobs" / _store.MARKER).write_text("1\n")
    listing = {}
    for path, data in files.items():
        sha = hashlib.sha256(data).hexdigest()
        xet_hash = hashlib.sha256(b"xet" + data).hexdigest()
        entry = _store.entry_path(str(cache), xet_hash)
        os.makedirs(os.path.dirname(entry), exist_ok=True)
        with open(entry, "wb") as handle:
            handle.write(data)
        os.makedirs(repo.blobs, exist_ok=True)
        os.symlink(_store.link_target(xet_hash), os.path.join(repo.blobs, sha))
        link = os.path.join(repo.root, "snapshots", COMMIT, path)
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(os.path.relpath(os.path.join(repo.blobs, sha), os.path.dirname(link)), link)
        listing[path] = {"size": len(data), "blob_id": hashlib.sha1(b"x").hexdigest(), "lfs_sha256": sha}
    os.makedirs(os.path.join(repo.root, "refs"))
    (cache / repo.folder_name / "refs" / "main").write_text(COMMIT)
    os.makedirs(os.path.join(repo.root, "trees"))
    (cache / repo.folder_name / "trees" / (COMMIT + ".json")).write_text(
        json.dumps({"format_version": 1, "files": listing}))
    return cache, repo


def model_doctor(cache):
    p = dict(cache_dir=str(cache), models=[{"repo_id": "org/name", "repo_type": "model", "revision": "main"}],
             units=[], agent_ports={}, ready_urls={}, expected_env={}, managed_env=[], sourced_files=[],
             endpoint="http://127.0.0.1:9",
             reach_hub=False, token_file=None, token_expected=False, verify_checksums=True, journal=False, timeout=1)
    return _doctor.Doctor(p, None, lambda user, func, *args: [], None)


def test_a_model_in_the_store_verifies_through_its_links(tmp_path):
    cache, _repo = store_cache(tmp_path, {"model.safetensors": b"weights" * 100, "config.json": b"{}"})
    doctor = model_doctor(cache)
    doctor.check_model(doctor.p["models"][0])
    (model,) = doctor.findings
    assert model["verdict"] == "ok" and "2 files" in model["detail"] and "checksums verified" in model["detail"]


def test_corrupt_store_content_fails_its_checksum(tmp_path):
    from ansible_collections.justnews.huggingface.plugins.module_utils import _store
    cache, repo = store_cache(tmp_path, {"model.safetensors": b"weights"})
    xet_hash = _store.link_hash(os.path.join(repo.blobs, os.listdir(repo.blobs)[0]))
    with open(_store.entry_path(str(cache), xet_hash), "r+b") as handle:
        handle.write(b"W")
    doctor = model_doctor(cache)
    doctor.check_model(doctor.p["models"][0])
    assert doctor.findings[0]["verdict"] == "fail" and "content does not match" in doctor.findings[0]["detail"]


def test_dangling_foreign_and_fifo_are_each_named_with_a_fix(tmp_path):
    from ansible_collections.justnews.huggingface.plugins.module_utils import _store
    files = {"dangling.bin": b"gone", "foreign.bin": b"elsewhere", "fifo.bin": b"pipe", "outside.bin": b"snap",
             "ok.json": b"{}"}
    cache, repo = store_cache(tmp_path, files)
    secret = tmp_path / "secret"
    secret.write_text("root's")
    snap = os.path.join(repo.root, "snapshots", COMMIT)

    def blob_of(name):
        return os.path.join(snap, os.readlink(os.path.join(snap, name)))

    def entry_of(name):
        return _store.entry_path(str(cache), _store.link_hash(os.path.normpath(blob_of(name))))

    os.unlink(entry_of("dangling.bin"))
    foreign = os.path.normpath(blob_of("foreign.bin"))
    os.unlink(foreign)
    os.symlink(str(secret), foreign)
    fifo = entry_of("fifo.bin")
    os.unlink(fifo)
    os.mkfifo(fifo)  # reading it would hang the doctor
    os.unlink(os.path.join(snap, "outside.bin"))
    os.symlink(str(secret), os.path.join(snap, "outside.bin"))

    doctor = model_doctor(cache)
    doctor.check_model(doctor.p["models"][0])
    model = [f for f in doctor.findings if f["check"] == "model"][0]
    assert model["verdict"] == "fail" and "4 of 5 files missing" in model["detail"]
    blobs = {f["subject"]: f for f in doctor.findings if f["check"] == "blob"}
    dangling = os.path.normpath(blob_of("dangling.bin"))
    assert set(blobs) == {dangling, foreign, fifo, os.path.join(snap, "outside.bin")}
    assert "dangling link" in blobs[dangling]["detail"] and "rm %s" % dangling in blobs[dangling]["fix"]
    assert "foreign link" in blobs[foreign]["detail"] and str(secret) in blobs[foreign]["detail"]
    assert "foreign link" in blobs[os.path.join(snap, "outside.bin")]["detail"]
    assert "a FIFO" in blobs[fifo]["detail"] and "rm %s" % fifo in blobs[fifo]["fix"]
    assert all("justnews.huggingface.prefetch" in f["fix"] for f in blobs.values())
    assert secret.read_text() == "root's"


def test_the_access_check_does_not_hang_on_a_fifo(tmp_path):
    cache = tmp_path / "hub"
    snap = cache / "models--org--name" / "snapshots" / COMMIT
    snap.mkdir(parents=True)
    os.mkfifo(snap / "model.bin")
    problems = _doctor.access_problems(str(cache), ["models--org--name"], {"models--org--name": COMMIT})
    assert problems == ["models--org--name/snapshots/%s/model.bin is not a regular file" % COMMIT]
