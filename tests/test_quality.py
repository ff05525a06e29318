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


# The managed hosts' Pythons the README claims: the controller's runs every sanity test, each of the others the tests
# that ansible-test runs per Python (SanityMultipleVersion: compile and import).
HOST_PYTHONS = ("3.10", "3.11", "3.12", "3.13")
PER_PYTHON_TESTS = ("compile", "import")


def find_python(version):
    """A working pythonX.Y: the one on PATH, else pyenv's (PYENV_ROOT, ~/.pyenv) or uv's newest of that version.
    A candidate counts only when it runs and is that version (a pyenv shim of a version not selected fails)."""
    import glob  # pylint: disable=import-outside-toplevel
    import shutil  # pylint: disable=import-outside-toplevel

    name = "python" + version
    candidates = [shutil.which(name)]
    for root in (os.environ.get("PYENV_ROOT"), os.path.expanduser("~/.pyenv")):
        if root:
            candidates += glob.glob(os.path.join(root, "versions", version + ".*", "bin", name))
    candidates += glob.glob(os.path.expanduser("~/.local/share/uv/python/cpython-%s.*/bin/%s" % (version, name)))
    patch = re.compile(r"%s\.(\d+)" % re.escape(version))
    ordered = candidates[:1] + sorted(candidates[1:], key=lambda path: -int((patch.findall(path) or [0])[-1]))
    for candidate in filter(None, ordered):
        try:
            proc = subprocess.run([candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                  capture_output=True, text=True, timeout=60, check=False)
        except OSError:
            continue
        if proc.returncode == 0 and proc.stdout.strip() == version:
            return candidate
    return None


def sanity_results(folder):
    """{junit name: skip reason or None} of the results ansible-test --junit wrote (e.g. 'compile-python-3.10')."""
    import xml.etree.ElementTree as ET  # pylint: disable=import-outside-toplevel

    results = {}
    for path in sorted(Path(folder).glob("*.xml")):
        for case in ET.parse(str(path)).getroot().iter("testcase"):
            skipped = case.find("skipped")
            results[case.get("name")] = None if skipped is None else (skipped.text or skipped.get("message") or "")
    return results


def test_ansible_test_sanity(installed, tmp_path):
    """Every sanity test on the controller's Python, compile and import on each other Python the README claims for
    managed hosts (those this ansible-test knows); each has to run: none skipped, shellcheck included."""
    import shutil  # pylint: disable=import-outside-toplevel
    import time  # pylint: disable=import-outside-toplevel

    from ansible_test._util.target.common import constants  # pylint: disable=import-outside-toplevel

    _root, dest = installed
    controller = "%d.%d" % sys.version_info[:2]
    known = constants.REMOTE_ONLY_PYTHON_VERSIONS + constants.CONTROLLER_PYTHON_VERSIONS
    others = [v for v in HOST_PYTHONS if v != controller and v in known]
    print("ansible-test sanity: every test on Python %s; %s on %s%s" % (
        controller, " and ".join(PER_PYTHON_TESTS), ", ".join(others),
        "; not %s, which this ansible-core does not manage" % ", ".join(sorted(set(HOST_PYTHONS) - set(known)))
        if set(HOST_PYTHONS) - set(known) else ""))
    found = {version: find_python(version) for version in others}
    missing = sorted(version for version, path in found.items() if path is None)
    assert not missing, (
        "ansible-test sanity needs Python %s (compile and import on every Python the README claims for managed"
        " hosts), which this machine lacks: install it so that %s is on PATH or under ~/.pyenv/versions (e.g."
        " pyenv install %s)" % (", ".join(missing), ", ".join("python" + v for v in missing), " ".join(missing)))
    # Only pythonX.Y of each interpreter on PATH, ahead of everything (pyenv's shims included): ansible-test finds
    # them by that name.
    pythons = tmp_path / "pythons"
    pythons.mkdir()
    for version, path in found.items():
        (pythons / ("python" + version)).symlink_to(path)
    env = {"PATH": "%s:%s" % (pythons, os.environ["PATH"])}
    junit = dest / "tests" / "output" / "junit"
    runs = [("%s, every test" % controller, ["--python", controller])]
    runs += [("%s, %s" % (version, " and ".join(PER_PYTHON_TESTS)),
              ["--python", version] + [arg for test in PER_PYTHON_TESTS for arg in ("--test", test)])
             for version in others]
    shutil.rmtree(junit, ignore_errors=True)
    for label, args in runs:
        started = time.monotonic()
        code, out = run([str(BIN / "ansible-test"), "sanity", "--local", "--requirements", "--junit"] + args, dest,
                        **env)
        print("ansible-test sanity on Python %s: %.0f s" % (label, time.monotonic() - started))
        tail = "\n".join(line for line in out.splitlines() if "ERROR" in line or "FATAL" in line)
        assert code == 0, tail or out[-5000:]
        # A test skipped for a missing Python or virtualenv says so; one skipped for a missing tool (shellcheck)
        # says only that the program was not found.
        skipped = [line for line in out.splitlines() if "Skipping sanity test" in line
                   or re.search(r'Required program ".*" not found', line)]
        assert not skipped, sorted(set(skipped))
    results = sanity_results(junit)
    expected = ["shellcheck"] + ["%s-python-%s" % (test, version) for test in PER_PYTHON_TESTS
                                 for version in [controller] + others]
    assert [name for name in expected if name not in results] == [], sorted(results)
    assert {name: results[name] for name in expected if results[name] is not None} == {}
    # Other tests may find nothing to check (pslint: no PowerShell), never skip for another reason.
    assert {name: why for name, why in results.items() if why not in (None, "No tests applicable.")} == {}


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
