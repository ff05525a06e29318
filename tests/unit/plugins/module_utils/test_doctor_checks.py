"""The doctor's reading of systemd, environment files and journals, with systemd and the Hub answered by fakes."""

import os

from ansible_collections.justnews.huggingface.plugins.module_utils import _doctor

UNIT = "justnews@memory.service"
EXPECTED = {"HF_HOME": "/var/cache/hf", "HF_HUB_CACHE": "/var/cache/hf/hub", "HF_HUB_OFFLINE": "1",
            "HF_TOKEN": "<unset>"}


def show(env_files, environment='HF_HOME=/var/cache/hf HF_HUB_CACHE=/var/cache/hf/hub HF_HUB_OFFLINE=1'):
    lines = ["Id=" + UNIT, "LoadState=loaded", "ActiveState=active", "SubState=running", "User=adra",
             "MainPID=4242", "InvocationID=0123abcd", "Environment=" + environment]
    lines += ["EnvironmentFiles=%s (ignore_errors=yes)" % f for f in env_files]
    return "\n".join(lines) + "\n"


def doctor(tmp_path, env_files, process_env=None, journal="", **params):
    p = dict(cache_dir=str(tmp_path / "hub"), models=[], units=[UNIT], ready_urls={}, expected_env=EXPECTED,
             managed_env=sorted(EXPECTED), sourced_files=[], endpoint="http://127.0.0.1:9", reach_hub=False,
             token_file=None, token_expected=False, verify_checksums=True, journal=True, timeout=1)
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
        if func is _doctor.process_environment:
            return [[4242, {k: (process_env or {}).get(k) for k in args[1]}]]
        return []

    return _doctor.Doctor(p, run_command, as_user, lambda url, token: (None, {}, "no route")).run()


def by_check(findings, check):
    return [f for f in findings if f["check"] == check]


def test_parse_show_keeps_every_environment_file_and_quoted_values():
    props = _doctor.parse_show(show(["/etc/justnews/global.env", "/etc/justnews/memory.env"],
                                    environment='A=1 "B=two words"'))
    assert props["EnvironmentFiles"] == ["/etc/justnews/global.env", "/etc/justnews/memory.env"]
    assert props["Environment"] == {"A": "1", "B": "two words"}
    assert props["User"] == "adra"


def test_read_env_file_reads_what_a_start_script_sources(tmp_path):
    env = tmp_path / "memory.env"
    env.write_text("# comment\nexport HF_HUB_OFFLINE=0\nHF_HOME='/srv/hf'\nMEMORY_PORT=8007\nnot a line\n")
    assert _doctor.read_env_file(str(env)) == {"HF_HUB_OFFLINE": "0", "HF_HOME": "/srv/hf", "MEMORY_PORT": "8007"}
    assert _doctor.read_env_file(str(tmp_path / "absent.env")) is None


def test_healthy_unit_and_process(tmp_path):
    os.makedirs(tmp_path / "hub")
    healthy = {"HF_HOME": "/var/cache/hf", "HF_HUB_CACHE": "/var/cache/hf/hub", "HF_HUB_OFFLINE": "1"}
    findings = doctor(tmp_path, [], process_env=healthy)
    env = by_check(findings, "environment")
    assert [f["verdict"] for f in env] == ["ok"], env
    assert [f["verdict"] for f in by_check(findings, "journal")] == ["ok"]


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
