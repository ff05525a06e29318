"""The collection as Galaxy would ship it: documentation renders, ansible-test sanity and ansible-lint pass."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The tracked files copied to <tmp>/ansible_collections/justnews/huggingface, outside this git tree."""
    root = tmp_path_factory.mktemp("quality")
    dest = root / "ansible_collections" / "justnews" / "huggingface"
    dest.mkdir(parents=True)
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                           capture_output=True).stdout.split(b"\0")
    files = [f for f in files if f and (REPO / f.decode()).exists()]
    subprocess.run(["tar", "-cf", "-", "--null", "-T", "-"], cwd=REPO, check=True, input=b"\0".join(files),
                   stdout=open(root / "c.tar", "wb"))
    subprocess.run(["tar", "-xf", str(root / "c.tar"), "-C", str(dest)], check=True)
    return root, dest


def run(cmd, cwd, **env):
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False,
                          env=dict(os.environ, ANSIBLE_NOCOLOR="1", **env), timeout=1800)
    return proc.returncode, proc.stdout + proc.stderr


def test_ansible_doc_renders(installed):
    root, _dest = installed
    code, out = run([str(BIN / "ansible-doc"), "justnews.huggingface.hf_snapshot"], root,
                    ANSIBLE_COLLECTIONS_PATH=str(root))
    assert code == 0, out
    assert "repo_id" in out and "check_mode" in out
    assert "WARNING" not in out


def test_role_argument_spec_renders(installed):
    root, _dest = installed
    code, out = run([str(BIN / "ansible-doc"), "-t", "role", "justnews.huggingface.model_cache"], root,
                    ANSIBLE_COLLECTIONS_PATH=str(root))
    assert code == 0, out
    assert "model_cache_models" in out


def test_ansible_test_sanity(installed):
    _root, dest = installed
    code, out = run([str(BIN / "ansible-test"), "sanity", "--local", "--requirements", "--python",
                     "%d.%d" % sys.version_info[:2]], dest)
    tail = "\n".join(line for line in out.splitlines() if "ERROR" in line or "FATAL" in line)
    assert code == 0, tail or out[-5000:]


def test_ansible_lint_production(installed):
    root, dest = installed
    code, out = run([str(BIN / "ansible-lint"), "--profile", "production", "--offline", "roles", "playbooks"],
                    dest, ANSIBLE_COLLECTIONS_PATH=str(root))
    assert code == 0, out[-5000:]
