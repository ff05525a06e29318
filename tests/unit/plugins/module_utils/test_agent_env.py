"""_agent_env: the drop-ins, the token file and the facts file are byte for byte what the role wrote before
hf_agent_env (its template rendered with Jinja as Ansible renders it, its facts.yml run by Ansible's own templar;
both kept in previous_role), written atomically with their owner and mode, never through a link, and nothing is
written when one destination is refused."""

import base64
import json
import os
import stat
from pathlib import Path

import pytest
import yaml

from ansible_collections.justnews.huggingface.plugins.module_utils import _agent_env, _errors

# What the role wrote before hf_agent_env (its template and task files, kept here): a host set up by an earlier
# release must see no change.
PREVIOUS = Path(__file__).resolve().parent / "previous_role"
UNIT = "justnews@memory.service"
TOKEN = "hf_s3cretTOKENvalue42"


def model(**kw):
    base = dict(repo_id="org/model", revision="main", commit="c" * 40, files=3, bytes=1024, link=None,
                source="hub", changed=False, downloaded_bytes=0, previous_commit="c" * 40, skipped=False)
    base.update(kw)
    return base


@pytest.fixture
def params(tmp_path):
    return dict(state="present", units=[UNIT], dropin_name="60-hf-cache.conf", systemd_dir=str(tmp_path / "systemd"),
                hf_home="/var/cache/hf", hub_cache=None, offline=True, endpoint="", token="",
                token_file=str(tmp_path / "etc" / "justnews" / "huggingface-token.env"), backup=True,
                backup_dir=str(tmp_path / "var" / "lib" / "justnews-huggingface" / "dropin-backups"),
                facts_file=str(tmp_path / "etc" / "ansible" / "facts.d" / "justnews_huggingface.fact"),
                models=None, now="2026-01-31T12:00:00Z")


def run(params, check_mode=False):
    p = _agent_env.check_params(dict(params))
    return _agent_env.AgentEnv(p, check_mode=check_mode).run()


def dropin(params, unit=UNIT):
    return Path(params["systemd_dir"]) / (unit + ".d") / params["dropin_name"]


def snapshot(root):
    """Every entry below `root`: its kind, mode and bytes, to show that nothing changed."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            data = Path(path).read_bytes() if stat.S_ISREG(st.st_mode) else None
            out[path] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), data)
    return out


# --- the texts are the role's ----------------------------------------------------------------------------------

def test_the_token_file_is_the_tasks_content():
    task = yaml.safe_load((PREVIOUS / "token.yml").read_text())[1]["ansible.builtin.copy"]
    assert _agent_env.token_text(TOKEN) == task["content"].replace("{{ model_cache_token }}", TOKEN).encode()


def role_facts(previous, models, hub_cache, now):
    """The facts file as tasks/facts.yml writes it, rendered by Ansible's own templar."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template

    task = yaml.safe_load((PREVIOUS / "facts.yml").read_text())[1]["block"][1]
    variables = {"__model_cache_models_result": models, "__model_cache_hub_cache": hub_cache,
                 "__model_cache_fact_previous": {} if previous is None else
                 {"content": base64.b64encode(previous).decode()}}
    for name, value in task["vars"].items():
        variables[name] = trust_as_template(value) if isinstance(value, str) else \
            {k: trust_as_template(v) for k, v in value.items()}
    variables["__now"] = now
    return Templar(loader=DataLoader(), variables=variables).template(
        trust_as_template(task["ansible.builtin.copy"]["content"])).encode()


OLD = [model(last_fetched="t0", last_verified="t1")]
FACT_CASES = [
    ("nothing fetched: times kept", [model()], OLD),
    ("fetched: bytes downloaded", [model(changed=True, downloaded_bytes=5)], OLD),
    ("changed but nothing downloaded, same commit", [model(changed=True)], OLD),
    ("commit moved", [model(commit="d" * 40, previous_commit="d" * 40)], OLD),
    ("new model and unicode", [model(), model(repo_id="org/caf\u00e9", link="/srv/l", files="7", bytes=None)], OLD),
    ("no previous file", [model()], None),
    ("no models", [], []),
]


@pytest.mark.parametrize("name, models, previous", FACT_CASES, ids=[c[0] for c in FACT_CASES])
def test_the_facts_are_the_roles_byte_for_byte(name, models, previous):
    prev = None if previous is None else json.dumps({"cache_dir": "/x", "models": previous}).encode()
    ours = _agent_env.facts_text(_agent_env.facts_data("/var/cache/hf/hub", models,
                                                       _agent_env.previous_models(prev), "2026-01-31T12:00:00Z"))
    assert ours == role_facts(prev, models, "/var/cache/hf/hub", "2026-01-31T12:00:00Z"), name


# --- writes ------------------------------------------------------------------------------------------------------

def test_first_run_creates_everything_root_owned_with_the_modes_then_nothing_changes(params):
    params.update(token=TOKEN, models=[model()])
    result, diffs = run(params)
    assert result["changed"] and result["changed_units"] == [UNIT] and result["token_changed"]
    assert result["facts_changed"] and result["dropins"][0]["created"] and "backup_file" not in result["dropins"][0]
    path = dropin(params)
    assert path.read_bytes() == _agent_env.dropin_text(UNIT, "/var/cache/hf", "/var/cache/hf/hub", True, "", TOKEN,
                                                       params["token_file"])
    for p, mode in ((path, 0o644), (Path(params["token_file"]), 0o600), (Path(params["facts_file"]), 0o644),
                    (path.parent, 0o755), (Path(params["token_file"]).parent, 0o755),
                    (Path(params["facts_file"]).parent, 0o755)):
        st = p.stat()
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (mode, 0, 0), p
    assert len(diffs) == 3
    again, diffs = run(params)
    assert not again["changed"] and again["changed_units"] == [] and diffs == []
    assert not again["dropins"][0]["created"] and not again["token_changed"] and not again["facts_changed"]
    assert sorted(os.listdir(path.parent)) == ["60-hf-cache.conf"]  # no temporary or backup file left


def test_the_token_never_appears_in_the_result_or_the_diff_and_is_masked(params):
    params.update(token=TOKEN)
    result, diffs = run(params)
    assert TOKEN not in json.dumps([result, diffs])
    token_diff = [d for d in diffs if d["after_header"] == params["token_file"]][0]
    assert token_diff["after"] == "# managed by Ansible (justnews.huggingface.model_cache)\nHF_TOKEN=********\n" \
                                  "HF_HUB_TOKEN=********\n"
    assert Path(params["token_file"]).read_text().count(TOKEN) == 2
    params.update(token="hf_another")
    result, diffs = run(params)
    assert result["token_changed"] and "changed_units" in result and result["changed_units"] == []
    assert TOKEN not in json.dumps(diffs) and "hf_another" not in json.dumps([result, diffs])


def test_without_a_token_the_file_is_removed_and_the_dropin_loses_its_environment_file(params):
    params.update(token=TOKEN)
    run(params)
    params.update(token="")
    result, diffs = run(params)
    assert result["token_changed"] and result["token_file"]["state"] == "absent"
    assert not os.path.exists(params["token_file"]) and os.path.isdir(os.path.dirname(params["token_file"]))
    assert "EnvironmentFile" not in dropin(params).read_text() and result["changed_units"] == [UNIT]
    assert TOKEN not in json.dumps(diffs)
    assert run(params)[0]["changed"] is False


def test_check_mode_reports_truthfully_and_writes_nothing(params, tmp_path):
    params.update(token=TOKEN, models=[model()])
    before = snapshot(tmp_path)
    result, diffs = run(params, check_mode=True)
    assert snapshot(tmp_path) == before
    assert result["changed"] and result["changed_units"] == [UNIT] and result["token_changed"]
    assert result["facts_changed"] and len(diffs) == 3
    run(params)
    params.update(endpoint="https://mirror.example")
    before = snapshot(tmp_path)
    result, _diffs = run(params, check_mode=True)
    assert snapshot(tmp_path) == before and result["changed_units"] == [UNIT] and not result["token_changed"]
    params.update(endpoint="")
    assert not run(params, check_mode=True)[0]["changed"]


def test_a_changed_dropin_is_kept_as_a_root_only_copy_in_the_backup_folder(params):
    run(params)
    path = dropin(params)
    old = path.read_bytes()
    params.update(offline=False)
    result, _diffs = run(params)
    backup = Path(result["dropins"][0]["backup_file"])
    assert backup.read_bytes() == old and str(backup.parent) == params["backup_dir"]
    assert result["dropins"][0]["backup_mode"] == "0644"
    st, folder = backup.stat(), backup.parent.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_nlink) == (0o600, 0, 0, 1)
    assert (stat.S_IMODE(folder.st_mode), folder.st_uid) == (0o700, 0)
    assert st.st_ino != path.stat().st_ino and b"HF_HUB_OFFLINE" not in path.read_bytes()
    assert os.listdir(path.parent) == ["60-hf-cache.conf"]  # nothing beside the drop-in
    # the next change keeps only its own backup of this drop-in
    middle = path.read_bytes()
    params.update(offline=True)
    again = Path(run(params)[0]["dropins"][0]["backup_file"])
    assert os.listdir(params["backup_dir"]) == [again.name] and again.read_bytes() == middle
    params.update(backup=False, offline=False)
    assert "backup_file" not in run(params)[0]["dropins"][0]
    assert os.listdir(params["backup_dir"]) == [again.name]


def test_a_wrong_mode_or_owner_is_fixed_and_counts_as_a_change(params):
    params.update(token=TOKEN)
    run(params)
    os.chmod(params["token_file"], 0o644)
    os.chown(dropin(params), 1000, 1000)
    result, diffs = run(params, check_mode=True)
    assert result["token_changed"] and result["changed_units"] == [UNIT]
    assert any("mode 0644" in d["before_header"] and "mode 0600" in d["after_header"] for d in diffs)
    assert TOKEN not in json.dumps(diffs)
    result, _diffs = run(params)
    assert result["token_changed"] and result["changed_units"] == [UNIT]
    assert "backup_file" not in result["dropins"][0]
    assert stat.S_IMODE(os.stat(params["token_file"]).st_mode) == 0o600
    assert (os.stat(dropin(params)).st_uid, os.stat(dropin(params)).st_gid) == (0, 0)
    assert not run(params)[0]["changed"]


def test_absent_removes_the_files_and_the_empty_dot_d_but_keeps_a_non_empty_one(params):
    other = "justnews@scout.service"
    params.update(token=TOKEN, models=[model()], units=[UNIT, other])
    run(params)
    (dropin(params, other).parent / "10-local.conf").write_text("[Service]\n")
    params.update(state="absent")
    result, _diffs = run(params, check_mode=True)
    assert result["changed_units"] == [UNIT, other] and dropin(params).exists()
    assert [d["dir_removed"] for d in result["dropins"]] == [True, False]
    result, _diffs = run(params)
    assert result["changed_units"] == [UNIT, other] and result["token_changed"] and result["facts_changed"]
    assert [d["removed"] for d in result["dropins"]] == [True, True]
    assert not dropin(params).parent.exists()
    assert os.listdir(dropin(params, other).parent) == ["10-local.conf"]
    assert not os.path.exists(params["token_file"]) and not os.path.exists(params["facts_file"])
    again, _diffs = run(params)
    assert not again["changed"]


# --- the trust boundary --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["symlink", "fifo", "directory"])
@pytest.mark.parametrize("which", ["dropin", "token", "facts"])
def test_a_destination_that_is_not_a_regular_file_is_refused_and_nothing_is_written(params, tmp_path, kind, which):
    params.update(token=TOKEN, models=[model()])
    target = {"dropin": dropin(params), "token": Path(params["token_file"]),
              "facts": Path(params["facts_file"])}[which]
    target.parent.mkdir(parents=True)
    secret = tmp_path / "secret"
    secret.write_bytes(b"root only\n")
    if kind == "symlink":
        target.symlink_to(secret)
    elif kind == "fifo":
        os.mkfifo(target)
    else:
        target.mkdir()
    before = snapshot(tmp_path)
    with pytest.raises(_agent_env.Failure) as err:
        run(params)
    assert err.value.kind == _errors.UNSAFE_DESTINATION and str(target) in err.value.msg
    assert {"symlink": "a symlink", "fifo": "a FIFO", "directory": "a directory"}[kind] in err.value.msg
    assert TOKEN not in err.value.msg and snapshot(tmp_path) == before
    params["state"] = "absent"
    with pytest.raises(_agent_env.Failure):
        run(params)
    assert snapshot(tmp_path) == before


def test_a_dot_d_folder_that_is_a_symlink_is_refused(params, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    Path(params["systemd_dir"]).mkdir()
    dropin(params).parent.symlink_to(elsewhere)
    before = snapshot(tmp_path)
    with pytest.raises(_agent_env.Failure) as err:
        run(params)
    assert err.value.kind == _errors.UNSAFE_DESTINATION and "a symlink" in err.value.msg
    assert str(dropin(params).parent) in err.value.msg
    assert snapshot(tmp_path) == before and os.listdir(elsewhere) == []


@pytest.mark.parametrize("change, words", [
    ({"units": ["../../etc/passwd"]}, "units: '../../etc/passwd' is not a systemd unit name"),
    ({"units": ["a/b.service"]}, "is not a systemd unit name"),
    ({"units": ["x.service\n[Service]"]}, "is not a systemd unit name"),
    ({"units": ["memory"]}, "is not a systemd unit name"),
    ({"hf_home": "/srv/hf\nExecStartPre=/bin/evil"}, "hf_home must not contain a newline"),
    ({"hub_cache": "/srv/hub\0"}, "hub_cache must not contain a newline"),
    ({"endpoint": "https://x\r\n"}, "endpoint must not contain a newline"),
    ({"token_file": "/etc/t\n"}, "token_file must not contain a newline"),
    ({"token": TOKEN + "\nHF_HOME=/tmp"}, "token must not contain a newline"),
    ({"dropin_name": "60-hf.conf\n"}, "dropin_name must be a file name ending in .conf"),
    ({"dropin_name": "../60.conf"}, "dropin_name must be a file name ending in .conf"),
    ({"dropin_name": "60-hf"}, "dropin_name must be a file name ending in .conf"),
    ({"hf_home": None}, "hf_home is required"),
    ({"hf_home": "relative"}, "hf_home must be an absolute path"),
    ({"now": "yesterday"}, "now must be a UTC time"),
    ({"models": [{"commit": "x"}]}, "models[0] must be a model's fetch result"),
])
def test_bad_values_are_refused_naming_the_option(params, tmp_path, change, words):
    params.update(change)
    with pytest.raises(_agent_env.Failure) as err:
        run(params)
    assert err.value.kind == _errors.INVALID_ARGUMENT and words in err.value.msg
    assert TOKEN not in err.value.msg and os.listdir(tmp_path) == []


# --- the facts -------------------------------------------------------------------------------------------------

def facts(params):
    return json.loads(Path(params["facts_file"]).read_text())


def test_facts_keep_their_times_when_nothing_was_fetched_and_move_with_the_commit(params):
    params.update(models=[model(changed=True, downloaded_bytes=10, previous_commit=None)])
    run(params)
    assert facts(params)["models"][0]["last_fetched"] == "2026-01-31T12:00:00Z"
    params.update(models=[model()], now="2026-02-01T00:00:00Z")
    result, _diffs = run(params)
    assert not result["facts_changed"]
    assert facts(params)["models"][0]["last_verified"] == "2026-01-31T12:00:00Z"
    params.update(models=[model(commit="d" * 40, previous_commit="d" * 40)])
    result, _diffs = run(params)
    assert result["facts_changed"] and facts(params)["models"][0]["last_fetched"] == "2026-02-01T00:00:00Z"


def test_facts_are_not_written_when_a_model_was_skipped_or_none_given(params):
    params.update(models=[model(), {"skipped": True, "changed": False}])
    result, _diffs = run(params)
    assert not result["facts_changed"] and not os.path.exists(params["facts_file"])
    assert result["facts"]["skipped"] == "a model was skipped"
    params.update(models=None)
    assert run(params)[0]["facts"] == {"path": params["facts_file"], "changed": False,
                                       "skipped": "models not given"}


def test_a_previous_facts_file_that_is_not_json_counts_as_none(params):
    Path(params["facts_file"]).parent.mkdir(parents=True)
    Path(params["facts_file"]).write_text("{not json")
    params.update(models=[model()])
    result, diffs = run(params)
    assert result["facts_changed"] and facts(params)["models"][0]["last_fetched"] == "2026-01-31T12:00:00Z"
    assert diffs[0]["before"] == "{not json"


def test_no_units_writes_no_dropin_and_still_the_token_and_facts(params, tmp_path):
    # model_cache_units: [] is a fetch-only rollout (a benchmark, an image without units): no drop-in, no error.
    params.update(units=[], token=TOKEN, models=[])
    result, _diffs = run(params)
    assert result["dropins"] == [] and result["changed_units"] == []
    assert result["token_file"]["state"] == "present"
    assert not (tmp_path / "systemd").exists() or not list((tmp_path / "systemd").iterdir())
    assert run(params)[0]["changed"] is False


# --- secrets in drop-ins and their backups ----------------------------------------------------------------------

MIRROR_TOKEN = "mirror-0ld-s3cret"  # a mirror's token: not shaped like a Hub token


@pytest.mark.parametrize("line, secret", [
    ('Environment="HF_TOKEN=%s"', MIRROR_TOKEN),
    ("Environment=HF_HUB_TOKEN=%s", MIRROR_TOKEN),
    ("Environment='HUGGINGFACE_HUB_TOKEN=%s'", "two words"),
    ('Environment="HF_HOME=/srv/hf" HUGGING_FACE_HUB_TOKEN="%s" "X=1"', "quoted in the middle"),
    ('Environment="HF_HOME=/srv/hf" \\\n  "HF_TOKEN=%s"', MIRROR_TOKEN),
    ("ExecStart=/usr/bin/env MIRROR_API_KEY=%s agent", "k3y-value"),
    ('Environment="S3_SECRET_ACCESS=%s"', "s3cr3t/with=equals"),
])
def test_every_secret_assignment_of_a_drop_in_is_masked_whatever_its_quoting(line, secret):
    text = "[Service]\n" + line % secret + '\nEnvironment="HF_HUB_OFFLINE=1"\n'
    found = set()
    masked = _agent_env.mask_assignments(text, found)
    assert secret not in masked and _agent_env.MASK in masked
    assert secret in found
    assert 'Environment="HF_HUB_OFFLINE=1"' in masked and masked.startswith("[Service]\n")


def test_ordinary_settings_are_left_readable():
    text = _agent_env.dropin_text(UNIT, "/srv/hf", "/srv/hf/hub", True, "https://mirror", TOKEN, "/etc/t.env")
    assert _agent_env.mask_assignments(text.decode()) == text.decode()


def old_dropin_with_a_token(params, token=MIRROR_TOKEN, mode=0o644):
    """A drop-in of an earlier release that carried the token itself, readable by everyone."""
    path = dropin(params)
    path.parent.mkdir(parents=True)
    path.write_text('[Service]\nEnvironment="HF_HOME=/var/cache/hf"\nEnvironment="HF_TOKEN=%s"\n' % token)
    os.chmod(path, mode)
    return path


def readable_by_others_holding(roots, *secrets):
    """Every file below `roots` that a user other than root could read and that holds one of `secrets`."""
    found = []
    for root in roots:
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                full = os.path.join(dirpath, name)
                st = os.lstat(full)
                data = Path(full).read_bytes() if stat.S_ISREG(st.st_mode) else b""
                if any(s.encode() in data for s in secrets) and (st.st_uid != 0 or st.st_mode & 0o044):
                    found.append((full, oct(st.st_mode), st.st_uid))
    return found


def test_replacing_a_dropin_that_held_a_token_leaves_it_readable_nowhere(params):
    path = old_dropin_with_a_token(params)
    params.update(token="new-mirror-token-2")
    result, diffs = run(params)
    backup = Path(result["dropins"][0]["backup_file"])
    assert MIRROR_TOKEN.encode() in backup.read_bytes()  # kept for the rollback, root's only
    assert readable_by_others_holding([path.parent, params["backup_dir"], os.path.dirname(params["token_file"])],
                                      MIRROR_TOKEN, "new-mirror-token-2") == []
    assert os.listdir(path.parent) == ["60-hf-cache.conf"]
    text = json.dumps([result, diffs])
    assert MIRROR_TOKEN not in text and "new-mirror-token-2" not in text
    before = [d for d in diffs if d["before_header"] == str(path)][0]["before"]
    assert 'Environment="HF_TOKEN=********"' in before


def test_the_diff_masks_old_and_new_token_values_of_any_shape_everywhere(params):
    params.update(token="first-token-value")
    run(params)
    path = dropin(params)
    path.write_text(path.read_text() + "# copied by hand: first-token-value\nEnvironment=HF_HUB_TOKEN=x1y\n"
                    'Environment="MIRROR_AUTH=hf_abc123def456"\n')
    params.update(token="second-token-value", endpoint="https://mirror.example")
    result, diffs = run(params, check_mode=True)
    text = json.dumps([result, diffs])
    # a value too short to be masked wherever it appears is still masked where it is assigned
    for value in ("first-token-value", "second-token-value", "HF_HUB_TOKEN=x1y", "hf_abc123def456"):
        assert value not in text, value
    assert len(diffs) == 2  # the token file and the drop-in


@pytest.mark.parametrize("flaw", ["symlink", "writable", "owner", "loose"])
def test_an_unsafe_backup_folder_is_refused_and_nothing_is_written(params, tmp_path, flaw):
    run(params)
    backups = Path(params["backup_dir"])
    outside = tmp_path / "outside"
    outside.mkdir(mode=0o700)
    if flaw == "symlink":
        backups.parent.mkdir(parents=True)
        backups.symlink_to(outside)
        where = backups
    elif flaw == "writable":
        backups.parent.mkdir(parents=True)
        os.chmod(backups.parent, 0o777)  # not sticky: another user could swap the folder
        where = backups.parent
    elif flaw == "owner":
        backups.mkdir(parents=True, mode=0o700)
        os.chown(backups, 1000, 1000)
        where = backups
    else:
        backups.mkdir(parents=True)
        os.chmod(backups, 0o755)
        where = backups
    params.update(offline=False)
    before = snapshot(tmp_path)
    with pytest.raises(_agent_env.Failure) as err:
        run(params)
    assert err.value.kind == _errors.UNSAFE_DESTINATION and "backup_dir" in err.value.msg
    assert str(where) in err.value.msg
    assert snapshot(tmp_path) == before and os.listdir(outside) == []


def test_a_sticky_world_writable_folder_above_the_backups_is_accepted(params, tmp_path):
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    params.update(backup_dir=str(sticky / "backups"))
    run(params)
    params.update(offline=False)
    result, _diffs = run(params)
    assert Path(result["dropins"][0]["backup_file"]).parent == sticky / "backups"
    assert stat.S_IMODE((sticky / "backups").stat().st_mode) == 0o700


def test_a_dropin_too_large_to_keep_is_refused_before_anything_is_written(params, tmp_path):
    path = dropin(params)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"#" * (_agent_env.READ_LIMIT + 1))
    before = snapshot(tmp_path)
    with pytest.raises(_agent_env.Failure) as err:
        run(params)
    assert err.value.kind == _errors.UNSAFE_DESTINATION and str(path) in err.value.msg
    assert snapshot(tmp_path) == before


# --- state restored: the rollback -------------------------------------------------------------------------------

def restore(params, entries, check_mode=False):
    p = dict(params, state="restored", backups=entries)
    return run(p, check_mode=check_mode)


def test_restored_puts_the_previous_dropin_back_with_its_mode_and_removes_the_backup(params, tmp_path):
    path = old_dropin_with_a_token(params, mode=0o600)
    old = path.read_bytes()
    other = "justnews@scout.service"
    params.update(units=[UNIT, other])
    written, _diffs = run(params)
    assert [d["created"] for d in written["dropins"]] == [False, True]
    backup = Path(written["dropins"][0]["backup_file"])
    assert written["dropins"][0]["backup_mode"] == "0600"
    before = snapshot(tmp_path)
    planned, diffs = restore(params, written["dropins"], check_mode=True)
    assert snapshot(tmp_path) == before and planned["changed_units"] == [UNIT, other]
    assert MIRROR_TOKEN not in json.dumps([planned, diffs])
    result, _diffs = restore(params, written["dropins"])
    assert result["changed_units"] == [UNIT, other]
    assert [(d["restored"], d["removed"]) for d in result["dropins"]] == [(True, False), (False, True)]
    assert path.read_bytes() == old
    st = path.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o600, 0, 0)
    assert not backup.exists() and os.listdir(params["backup_dir"]) == []
    assert not dropin(params, other).exists()


def test_restored_leaves_a_dropin_whose_owner_or_mode_only_changed(params):
    run(params)
    os.chmod(dropin(params), 0o640)
    written, _diffs = run(params)
    assert written["changed_units"] == [UNIT] and "backup_file" not in written["dropins"][0]
    result, _diffs = restore(params, written["dropins"])
    assert not result["changed"] and result["dropins"] == [] and dropin(params).exists()


@pytest.mark.parametrize("change, words", [
    (lambda e, p: dict(e, backup_file="/etc/shadow"), "is not a backup of"),
    (lambda e, p: dict(e, backup_file=os.path.join(p["backup_dir"], "..", os.path.basename(e["backup_file"]))),
     "is not a backup of"),
    (lambda e, p: dict(e, unit="justnews@other.service"), "for a unit of units"),
    (lambda e, p: dict(e, dest="/etc/systemd/system/x.service.d/60-hf-cache.conf"), "give the same systemd_dir"),
    (lambda e, p: dict(e, backup_mode="rw"), "backup_mode must be octal"),
])
def test_restored_refuses_a_backup_it_did_not_keep_for_that_dropin(params, tmp_path, change, words):
    run(params)
    params.update(offline=False)
    written, _diffs = run(params)
    before = snapshot(tmp_path)
    with pytest.raises(_agent_env.Failure) as err:
        restore(params, [change(written["dropins"][0], params)])
    assert err.value.kind == _errors.INVALID_ARGUMENT and words in err.value.msg
    assert snapshot(tmp_path) == before


def test_restored_refuses_a_backup_of_another_dropin(params, tmp_path):
    other = "justnews@scout.service"
    params.update(units=[UNIT, other])
    run(params)
    params.update(offline=False)
    written, _diffs = run(params)
    swapped = dict(written["dropins"][0], backup_file=written["dropins"][1]["backup_file"])
    with pytest.raises(_agent_env.Failure) as err:
        restore(params, [swapped])
    assert err.value.kind == _errors.INVALID_ARGUMENT and "is not a backup of" in err.value.msg


@pytest.mark.parametrize("plant", ["symlink", "hardlink", "missing"])
def test_restored_never_reads_a_backup_swapped_for_a_link(params, tmp_path, plant):
    run(params)
    params.update(offline=False)
    written, _diffs = run(params)
    backup = Path(written["dropins"][0]["backup_file"])
    secret = tmp_path / "secret"
    secret.write_text("[Service]\nExecStartPre=/bin/evil\n")
    backup.unlink()
    if plant == "symlink":
        backup.symlink_to(secret)
    elif plant == "hardlink":
        os.link(secret, backup)
    current = dropin(params).read_bytes()
    with pytest.raises(_agent_env.Failure) as err:
        restore(params, written["dropins"])
    kind = _errors.INVALID_ARGUMENT if plant == "missing" else _errors.UNSAFE_DESTINATION
    assert err.value.kind == kind and str(backup) in err.value.msg
    assert dropin(params).read_bytes() == current and b"evil" not in dropin(params).read_bytes()


def test_backups_are_read_only_with_state_restored(params):
    params.update(backups=[{"unit": UNIT}])
    with pytest.raises(_agent_env.Failure) as err:
        run(params)
    assert err.value.kind == _errors.INVALID_ARGUMENT and "state=restored" in err.value.msg


def test_backups_an_earlier_release_left_beside_a_dropin_are_removed_without_a_restart(params, tmp_path):
    run(params)
    path = dropin(params)
    # what the earlier release's backup looked like: a hard link to the replaced drop-in, readable by everyone
    left = [path.parent / "60-hf-cache.conf.4242.2026-01-31@12:00:00~",
            path.parent / "60-hf-cache.conf.4242.2026-01-31@12:00:00.1~"]
    old = tmp_path / "old.conf"
    old.write_text('[Service]\nEnvironment="HF_TOKEN=%s"\n' % MIRROR_TOKEN)
    os.chmod(old, 0o644)
    for name in left:
        os.link(old, name)
    operator = path.parent / "10-local.conf~"  # not a name the module gives: left alone
    operator.write_text("x")
    result, _diffs = run(params, check_mode=True)
    assert sorted(result["removed_backups"]) == sorted(str(p) for p in left) and result["changed"]
    assert all(p.exists() for p in left) and "Would remove 2" in _agent_env.AgentEnv(
        params, check_mode=True).message(result)
    result, _diffs = run(params)
    assert result["changed"] and result["changed_units"] == [] and not result["token_changed"]
    assert sorted(os.listdir(path.parent)) == ["10-local.conf~", "60-hf-cache.conf"]
    assert old.read_text().count(MIRROR_TOKEN) == 1  # only the links went
    assert not run(params)[0]["changed"]
