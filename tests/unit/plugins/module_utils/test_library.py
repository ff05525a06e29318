"""The guard on the installed huggingface_hub: a release without the parts the modules use fails with a message
naming its version and the tested range, before anything is done."""

import json
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args
from huggingface_hub import file_download
from huggingface_hub.utils import _http
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from ansible_collections.justnews.huggingface.plugins.module_utils import _errors, _library
from ansible_collections.justnews.huggingface.plugins.modules import hf_receive, hf_snapshot

REPO = Path(__file__).resolve().parents[4]


def test_the_tested_huggingface_hub_has_everything():
    assert _library.problems() == []
    assert _library.check() is None


def test_the_tested_range_is_the_one_the_requirements_declare():
    """requirements.txt (controller, execution environment) gives the range; the hosts' pin is inside it."""
    declared = next(Requirement(line) for line in (REPO / "requirements.txt").read_text().splitlines()
                    if line.startswith("huggingface_hub"))
    assert declared.specifier == SpecifierSet(_library.TESTED_RANGE)
    pinned = next(line.split("==")[1] for line in (REPO / "requirements" / "target.txt").read_text().splitlines()
                  if line.startswith("huggingface_hub=="))
    assert SpecifierSet(_library.TESTED_RANGE).contains(pinned)
    assert SpecifierSet(_library.TESTED_RANGE).contains(_library.installed_version())


def expect_named(message, *parts):
    assert "huggingface_hub %s " % _library.installed_version() in message
    assert "tested with huggingface_hub %s" % _library.TESTED_RANGE in message
    for part in parts:
        assert part in message, (part, message)


def test_a_missing_private_helper_is_named(monkeypatch):
    monkeypatch.delattr(_http, "_http_backoff_base")
    expect_named(_library.check(), "huggingface_hub.utils._http._http_backoff_base is missing")


def test_a_changed_signature_is_named(monkeypatch):
    def http_get(url, temp_file, *, resume_size=0, retries=5):  # _nb_retries renamed
        return url, temp_file, resume_size, retries

    def get_hf_file_metadata(address, token=None):  # url renamed
        return address, token

    monkeypatch.setattr(file_download, "http_get", http_get)
    monkeypatch.setattr(file_download, "get_hf_file_metadata", get_hf_file_metadata)
    expect_named(_library.check(),
                 "huggingface_hub.file_download.http_get has no keyword default _nb_retries",
                 "huggingface_hub.file_download.get_hf_file_metadata has no parameter url")


def test_a_missing_module_is_named(monkeypatch):
    monkeypatch.setattr(_library, "REQUIRED", _library.REQUIRED + (
        ("huggingface_hub.utils._no_such_module", "helper", None),))
    expect_named(_library.check(), "huggingface_hub.utils._no_such_module cannot be imported")


@pytest.mark.parametrize("module, args", [
    (hf_snapshot, {"repo_id": "org/name"}),
    (hf_receive, {"phase": "probe", "models": [], "staging_dir": "/nonexistent"}),
])
def test_the_modules_fail_with_the_guard_message_before_doing_anything(module, args, monkeypatch, tmp_path, capsys):
    monkeypatch.delattr(_http, "http_stream_backoff")
    args = dict(args, cache_dir=str(tmp_path / "hub"))
    with patch_module_args(args), pytest.raises(SystemExit):
        module.main()
    result = json.loads(capsys.readouterr().out)
    assert result["failed"] and result["error_kind"] == _errors.MISSING_LIBRARY
    assert result["fix"] == _errors.fix(_errors.MISSING_LIBRARY)
    expect_named(result["msg"], "huggingface_hub.utils._http.http_stream_backoff is missing")
    assert not (tmp_path / "hub").exists()
