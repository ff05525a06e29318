"""hf_agent_env as Ansible runs it (arguments in, JSON out): changed, check mode and diff mode are exact, the
token appears nowhere in the output, and each failure has its error_kind and fix."""

import json
import os
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.justnews.huggingface.plugins.module_utils import _errors
from ansible_collections.justnews.huggingface.plugins.modules import hf_agent_env

UNIT = "justnews@memory.service"
TOKEN = "hf_moduleTOKENvalue"


@pytest.fixture
def args(tmp_path):
    return {"units": [UNIT], "systemd_dir": str(tmp_path / "systemd"), "hf_home": "/var/cache/hf",
            "token_file": str(tmp_path / "justnews" / "token.env"), "backup_dir": str(tmp_path / "backups"),
            "facts_file": str(tmp_path / "facts.d" / "justnews_huggingface.fact"),
            "models": [{"repo_id": "org/m", "revision": "main", "commit": "a" * 40, "files": 2, "bytes": 9,
                        "link": None, "source": "hub", "changed": True, "downloaded_bytes": 9,
                        "previous_commit": None, "skipped": False}],
            "now": "2026-01-31T12:00:00Z"}


def run(args, capsys, check=False, diff=False):
    args = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
    with patch_module_args(args), pytest.raises(SystemExit):
        hf_agent_env.main()
    out = capsys.readouterr().out
    return json.loads(out), out


def test_a_first_run_then_a_second_one(args, capsys, tmp_path):
    args["token"] = TOKEN
    result, out = run(args, capsys, diff=True)
    assert TOKEN not in out
    assert result["changed"] and result["changed_units"] == [UNIT] and result["token_changed"]
    assert result["facts_changed"] and result["dropins"][0]["created"]
    assert result["token_file"] == {"path": args["token_file"], "changed": True, "state": "present"}
    assert len(result["diff"]) == 3 and "HF_TOKEN=********" in json.dumps(result["diff"])
    dest = tmp_path / "systemd" / (UNIT + ".d") / "60-hf-cache.conf"
    assert result["dropins"][0]["dest"] == str(dest) and "EnvironmentFile=-%s" % args["token_file"] in \
        dest.read_text()
    assert Path(args["token_file"]).read_text().count(TOKEN) == 2
    result, out = run(args, capsys, diff=True)
    assert not result["changed"] and result["diff"] == [] and result["msg"] == "Nothing to change."


def test_check_mode_writes_nothing_and_says_what_would_change(args, capsys, tmp_path):
    args["token"] = TOKEN
    result, out = run(args, capsys, check=True, diff=True)
    assert result["changed"] and result["changed_units"] == [UNIT] and TOKEN not in out
    assert result["msg"].startswith("Would change") and os.listdir(tmp_path) == []


def test_absent_removes_everything(args, capsys, tmp_path):
    args["token"] = TOKEN
    run(args, capsys)
    result, out = run({"state": "absent", "units": args["units"], "systemd_dir": args["systemd_dir"],
                       "token_file": args["token_file"], "facts_file": args["facts_file"]}, capsys, diff=True)
    assert result["changed"] and result["dropins"][0]["removed"] and result["dropins"][0]["dir_removed"]
    assert TOKEN not in out
    assert os.listdir(tmp_path / "systemd") == [] and not os.path.exists(args["token_file"])
    assert not os.path.exists(args["facts_file"])


def test_a_bad_option_fails_with_invalid_argument_and_its_fix(args, capsys, tmp_path):
    args.update(token=TOKEN, units=["../x.service"])
    result, out = run(args, capsys)
    assert result["failed"] and result["error_kind"] == "invalid_argument" and "units" in result["msg"]
    assert result["fix"] == _errors.fix(_errors.INVALID_ARGUMENT) and TOKEN not in out
    args.update(token=TOKEN + "\n", units=[UNIT])
    result, out = run(args, capsys)
    assert "token must not contain a newline" in result["msg"] and TOKEN not in out
    assert os.listdir(tmp_path) == []


def test_a_symlinked_destination_fails_with_unsafe_destination(args, capsys, tmp_path):
    args["token"] = TOKEN
    Path(args["token_file"]).parent.mkdir()
    os.symlink("/etc/shadow", args["token_file"])
    result, out = run(args, capsys)
    assert result["error_kind"] == "unsafe_destination" and args["token_file"] in result["msg"]
    assert result["fix"] == _errors.fix(_errors.UNSAFE_DESTINATION) and TOKEN not in out
    assert not (tmp_path / "systemd").exists() and not (tmp_path / "facts.d").exists()
    assert os.readlink(args["token_file"]) == "/etc/shadow"


def test_the_module_must_run_as_root(args, capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(hf_agent_env.os, "geteuid", lambda: 1000)
    result, _out = run(args, capsys)
    assert result["error_kind"] == "not_root" and os.listdir(tmp_path) == []


def test_an_unexpected_error_is_internal_and_masks_the_token(args, capsys, monkeypatch):
    def boom(*_args, **_kw):
        raise RuntimeError("broke near " + TOKEN)

    args["token"] = TOKEN
    monkeypatch.setattr(hf_agent_env._agent_env, "token_text", boom)  # pylint: disable=protected-access
    result, out = run(args, capsys)
    assert result["error_kind"] == "internal" and TOKEN not in out and "RuntimeError" in result["msg"]


def test_the_documentation_matches_the_argument_spec():
    import yaml

    doc = yaml.safe_load(hf_agent_env.DOCUMENTATION)["options"]
    spec = hf_agent_env.argument_spec()
    assert set(doc) == set(spec)
    for name, option in spec.items():
        assert doc[name]["type"] == option["type"], name
        assert doc[name].get("default") == option.get("default"), name
        assert doc[name].get("required", False) == option.get("required", False), name
        assert doc[name].get("elements") == option.get("elements"), name
        assert doc[name].get("choices") == option.get("choices"), name
    assert spec["token"]["no_log"] is True
