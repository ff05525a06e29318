"""hf_agent_env and the role's rollback of the drop-ins, through ansible-playbook and the installed collection: a
drop-in that held a token, replaced, leaves no copy that another user can read, `--diff` shows no token value
(old or new, whatever its shape), and the role's rollback puts the previous drop-in back through the module.

Everything is written below the test's own folder (systemd_dir, token_file, facts_file and backup_dir point there)."""

import copy
import json
import os
import secrets
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from tools.harness import REPO, controller_bin, target_python

UNIT = "justnews@memory.service"
ROLE = REPO / "roles" / "model_cache"


def role_task(file, name):
    """The task `name` of the role's tasks/`file`, as the role runs it."""
    return copy.deepcopy(next(t for t in yaml.safe_load((ROLE / "tasks" / file).read_text()) if t["name"] == name))


class Play:
    """One play on localhost; returns the registered results and keeps the output (with --diff)."""

    def __init__(self, collections, workdir):
        self.collections, self.workdir, self.count, self.output = collections, workdir, 0, ""

    def __call__(self, tasks, play_vars=None, diff=False):
        self.count += 1
        out = self.workdir / ("results-%d.json" % self.count)
        names = [t["register"] for t in tasks if "register" in t]
        tasks = tasks + [{"name": "save", "ansible.builtin.copy": {
            "content": "{{ {%s} | to_json }}" % ", ".join("'%s': %s | default(None)" % (n, n) for n in names),
            "dest": str(out), "mode": "0600"}, "diff": False}]
        book = self.workdir / ("play-%d.yml" % self.count)
        book.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "vars": play_vars or {},
                                     "tasks": tasks}]))
        book.chmod(0o600)  # it holds the token
        cmd = [controller_bin("ansible-playbook"), "-i", "localhost,", "-c", "local",
               "-e", "ansible_python_interpreter=" + target_python(), str(book)] + (["--diff"] if diff else [])
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=self.collections, ANSIBLE_NOCOLOR="1",
                   ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=self.workdir, timeout=300,
                              check=False)
        self.output = proc.stdout + proc.stderr
        assert out.exists(), self.output
        return json.loads(out.read_text())


@pytest.fixture
def play(collections_path, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    return Play(collections_path, work)


@pytest.fixture
def host(tmp_path):
    """The host's paths, below the test's folder."""
    root = tmp_path / "host"
    paths = {"systemd_dir": root / "etc" / "systemd" / "system", "token_file": root / "etc" / "justnews" / "token.env",
             "facts_file": root / "etc" / "ansible" / "facts.d" / "justnews_huggingface.fact",
             "backup_dir": root / "var" / "lib" / "justnews-huggingface" / "dropin-backups"}
    paths["dropin"] = paths["systemd_dir"] / (UNIT + ".d") / "60-hf-cache.conf"
    return paths


def old_dropin(host, token, mode=0o644):
    """A drop-in of an earlier setup that carried the token itself."""
    host["dropin"].parent.mkdir(parents=True)
    text = '[Service]\nEnvironment="HF_HOME=/var/cache/hf"\nEnvironment="HF_TOKEN=%s"\n' % token
    host["dropin"].write_text(text)
    os.chmod(host["dropin"], mode)
    return text


def readable_by_others(folders, *values):
    """Each file below `folders` that another user could read and that holds one of `values`."""
    found = []
    for folder in folders:
        for dirpath, _dirs, files in os.walk(folder):
            for name in files:
                full = os.path.join(dirpath, name)
                st = os.lstat(full)
                data = Path(full).read_bytes() if stat.S_ISREG(st.st_mode) else b""
                if any(v.encode() in data for v in values) and (st.st_uid != 0 or st.st_mode & 0o044):
                    found.append((full, oct(stat.S_IMODE(st.st_mode)), st.st_uid))
    return found


def token():
    return "mirror-" + secrets.token_hex(8)  # a mirror's token: nothing like hf_...


def test_replacing_a_dropin_that_held_a_token_leaves_no_copy_another_user_can_read(play, host):
    old, new = token(), token()
    old_dropin(host, old)
    # and the backup an earlier release left beside it (a hard link, mode 0644) when its run was cut short
    os.link(host["dropin"], str(host["dropin"]) + ".4242.2026-01-31@12:00:00~")
    args = {"units": [UNIT], "hf_home": "/var/cache/hf", "token": new,
            **{k: str(host[k]) for k in ("systemd_dir", "token_file", "facts_file", "backup_dir")}}
    result = play([{"name": "env", "justnews.huggingface.hf_agent_env": args, "register": "r"}], diff=True)["r"]
    assert result["changed"] and not result.get("failed"), play.output
    assert result["removed_backups"] == [str(host["dropin"]) + ".4242.2026-01-31@12:00:00~"]
    # the diff was printed, masked, before and after
    assert "HF_TOKEN=********" in play.output and "EnvironmentFile=-" in play.output, play.output
    assert old not in play.output and new not in play.output
    assert old not in json.dumps(result) and new not in json.dumps(result)
    # the old drop-in's only copy: root's 0600 in the root-only folder, never beside the drop-in or a link to it
    backup = Path(result["dropins"][0]["backup_file"])
    assert backup.parent == host["backup_dir"] and old in backup.read_text()
    st, folder = backup.stat(), backup.parent.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_nlink) == (0o600, 0, 1)
    assert (stat.S_IMODE(folder.st_mode), folder.st_uid) == (0o700, 0)
    assert os.listdir(host["dropin"].parent) == ["60-hf-cache.conf"] and old not in host["dropin"].read_text()
    assert readable_by_others([host["systemd_dir"], host["backup_dir"], host["token_file"].parent], old, new) == []


def test_the_roles_rollback_puts_the_previous_dropin_back_through_the_module(play, host):
    """The role's own tasks: the write of main.yml, the rollback's put-back and verify.yml's clean-up, with the
    host's paths pointed below the test's folder."""
    old, new = token(), token()
    previous = old_dropin(host, old, mode=0o600)
    internal = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
    play_vars = {
        "model_cache_state": "present", "model_cache_units": [{"name": UNIT}], "model_cache_dir": "/var/cache/hf",
        "model_cache_dropin_name": "60-hf-cache.conf", "model_cache_offline": True, "model_cache_endpoint": "",
        "model_cache_token": new, "model_cache_token_file": str(host["token_file"]), "model_cache_rollback": True,
        "__model_cache_booted": True, "__model_cache_models_result": [],
        "__model_cache_backup_dir": str(host["backup_dir"]), "__model_cache_fact_file": str(host["facts_file"]),
        **{name: internal[name] for name in ("__model_cache_unit_names", "__model_cache_hub_cache", "__model_cache_dropin",
                                             "__model_cache_environment",
                                             "__model_cache_dropins_written")},
    }
    write = role_task("rollout.yml", "Write the agents' Hugging Face environment")
    restore = role_task("rollback.yml", "Put the previous drop-ins back")
    cleanup = role_task("verify.yml", "Remove the previous drop-ins kept for a rollback")
    for task in (write, restore):
        task["justnews.huggingface.hf_agent_env"]["systemd_dir"] = str(host["systemd_dir"])
    restore["register"] = "restored"
    first = play([write], play_vars)
    assert first["__model_cache_env"]["changed"], play.output
    assert "EnvironmentFile=-" in host["dropin"].read_text()
    backup = Path(first["__model_cache_env"]["dropins"][0]["backup_file"])
    assert backup.exists()
    # the units did not come back: the rollback of rollback.yml, then verify.yml's clean-up
    env = first["__model_cache_env"]
    rolled = play([{"name": "record", "ansible.builtin.set_fact": {"__model_cache_env": env}},
                   {"name": "plan", "ansible.builtin.set_fact": {
                       "__model_cache_rollback": {"dropins": "{{ __model_cache_dropins_written }}"}}},
                   restore, cleanup], play_vars)
    assert rolled["restored"]["changed"] and rolled["restored"]["dropins"][0]["restored"], play.output
    assert host["dropin"].read_text() == previous
    st = host["dropin"].stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o600, 0, 0)
    assert not backup.exists() and os.listdir(host["backup_dir"]) == []
    assert os.listdir(host["dropin"].parent) == ["60-hf-cache.conf"]
    assert readable_by_others([host["systemd_dir"], host["backup_dir"], host["token_file"].parent], old, new) == []
