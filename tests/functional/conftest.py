"""Run the hf_snapshot module the way users do: ansible-playbook, against the installed collection artefact."""

import json
import os
import subprocess

import pytest

from tools.harness import controller_bin, target_python


class Runner:
    def __init__(self, collections, workdir):
        self.collections = collections
        self.workdir = workdir
        self.count = 0
        self.output = ""
        self.wrapper_output = ""

    def _command(self, args, check=False, diff=False, verbosity=0, env=None):
        """The ansible-playbook command, its environment and the file that will hold the task's result."""
        self.count += 1
        out = self.workdir / ("result-%d.json" % self.count)
        play = [{
            "hosts": "localhost",
            "gather_facts": False,
            "tasks": [
                {"name": "hf_snapshot", "justnews.huggingface.hf_snapshot": args, "register": "r",
                 "ignore_errors": True},
                {"name": "save", "ansible.builtin.copy": {"content": "{{ r | to_json }}", "dest": str(out)},
                 "check_mode": False, "diff": False},
            ],
        }]
        book = self.workdir / ("play-%d.yml" % self.count)
        book.write_text(json.dumps(play))
        book.chmod(0o600)
        cmd = [controller_bin("ansible-playbook"), "-i", "localhost,", "-c", "local",
               "-e", "ansible_python_interpreter=" + target_python(), str(book)]
        if check:
            cmd.append("--check")
        if diff:
            cmd.append("--diff")
        if verbosity:
            cmd.append("-" + "v" * verbosity)
        environ = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=self.collections, ANSIBLE_NOCOLOR="1",
                       ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
        environ.update(env or {})
        return cmd, environ, out

    def __call__(self, args, check=False, diff=False, verbosity=0, env=None, timeout=300, wrapper=None):
        """Run one hf_snapshot task on localhost; return its result (the run's output is in .output)."""
        cmd, environ, out = self._command(args, check, diff, verbosity, env)
        proc = subprocess.run((wrapper or []) + cmd, capture_output=True, text=True, env=environ, timeout=timeout,
                              cwd=self.workdir, check=False)
        self.output = proc.stdout + proc.stderr
        self.wrapper_output = proc.stdout
        assert out.exists(), self.output
        return json.loads(out.read_text())

    def start(self, args, env=None):
        """Start one hf_snapshot task in the background; returns a Background to wait on."""
        cmd, environ, out = self._command(args, env=env)
        log = open(out.with_suffix(".log"), "w")  # pylint: disable=consider-using-with
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=environ, cwd=self.workdir)
        return Background(proc, out, log)


class Background:
    def __init__(self, proc, out, log):
        self.proc, self.out, self.log = proc, out, log

    def result(self, timeout=300):
        self.proc.wait(timeout)
        self.log.close()
        output = self.out.with_suffix(".log").read_text()
        assert self.out.exists(), output
        return json.loads(self.out.read_text())


@pytest.fixture
def run(collections_path, tmp_path):
    return Runner(collections_path, tmp_path)


@pytest.fixture
def cache(tmp_path):
    path = tmp_path / "hub-cache"
    return path
