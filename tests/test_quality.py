"""The collection as Galaxy would ship it: documentation renders, ansible-test sanity and ansible-lint pass."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def installed(collections_path):
    """The collection as Galaxy ships it: the built artefact, installed outside this git tree."""
    root = Path(collections_path)
    return root, root / "ansible_collections" / "justnews" / "huggingface"


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


def test_the_artefact_declares_what_an_execution_environment_needs(installed):
    """ansible-builder reads meta/execution-environment.yml of the installed collection; the files it names ship
    (galaxy.yml's build_ignore keeps them), and the huggingface_hub the tests pin is in the declared range."""
    from packaging.requirements import Requirement

    _root, dest = installed
    meta = yaml.safe_load((dest / "meta" / "execution-environment.yml").read_text())
    assert meta["version"] == 3
    assert meta["dependencies"] == {"python": "requirements.txt", "system": "bindep.txt"}
    for name in meta["dependencies"].values():
        assert (dest / name).is_file(), name
    wanted = {r.name.lower().replace("-", "_"): r for r in (
        Requirement(line) for line in (dest / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#"))}
    assert set(wanted) == {"huggingface_hub", "hf_xet"}
    repo = Path(__file__).resolve().parents[1]
    tested = next(line.split("==")[1] for line in (repo / "requirements" / "target.txt").read_text().splitlines()
                  if line.startswith("huggingface_hub=="))
    assert wanted["huggingface_hub"].specifier.contains(tested), (tested, wanted["huggingface_hub"])
    assert any(line.strip() and not line.startswith("#") for line in (dest / "bindep.txt").read_text().splitlines())


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


def test_changelog_is_generated_from_the_fragments(tmp_path):
    """antsibull-changelog lints the fragments and renders the release of galaxy.yml's (semantic) version."""
    repo = Path(__file__).resolve().parents[1]
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=repo, check=True,
                           capture_output=True).stdout.split(b"\0")
    subprocess.run(["tar", "-cf", str(tmp_path / "c.tar"), "--null", "-T", "-"], cwd=repo, check=True,
                   input=b"\0".join(f for f in files if f and (repo / f.decode()).exists()))
    copy = tmp_path / "copy"
    copy.mkdir()
    subprocess.run(["tar", "-xf", str(tmp_path / "c.tar"), "-C", str(copy)], check=True)
    version = yaml.safe_load((copy / "galaxy.yml").read_text())["version"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), version
    fragments = {f.name: yaml.safe_load(f.read_text()) for f in (copy / "changelogs" / "fragments").glob("*.yml")}
    env = {"PATH": "%s:%s" % (BIN, os.environ["PATH"])}
    code, out = run([str(BIN / "antsibull-changelog"), "lint"], copy, **env)
    assert code == 0 and not out.strip(), out
    code, out = run([str(BIN / "antsibull-changelog"), "release", "--version", version], copy, **env)
    assert code == 0, out
    text = " ".join((copy / "CHANGELOG.rst").read_text().split())
    assert "v%s" % version in text
    for name, sections in fragments.items():
        for entries in sections.values():
            for entry in entries if isinstance(entries, list) else [entries]:
                assert " ".join(entry.split())[:60] in text, (name, entry)
    assert "justnews.huggingface.hf_snapshot" in text and "model_cache" in text


def test_every_trust_boundary_row_names_a_test_that_exists():
    """docs/trust-boundary.md promises a test per hostile input: each row's last column names test functions
    (`file::function`, under tests/functional unless the path says otherwise) that must exist."""
    repo = Path(__file__).resolve().parents[1]
    rows, header = [], None
    for line in (repo / "docs" / "trust-boundary.md").read_text().splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if header is None:
            header = cells
        elif not set(cells) <= {"---"} and header[-1] == "Test":
            rows.append((cells[0], cells[-1]))
    assert len(rows) >= 30, rows
    missing = []
    for what, cell in rows:
        names = re.findall(r"`([\w/.]+\.py)::(\w+)(?:\[[^\]`]*\])?`", cell)
        if not names:
            missing.append((what, "no test named"))
        for path, func in names:
            source = repo / "tests" / (path if "/" in path else "functional/" + path)
            if not source.exists() or not re.search(r"^\s*def %s\(" % func, source.read_text(), re.M):
                missing.append((what, "%s::%s" % (path, func)))
    assert not missing, missing
