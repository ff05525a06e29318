"""The collection as Galaxy would ship it: the artefact holds the product only, galaxy-importer accepts it, its
documentation renders, ansible-test sanity and ansible-lint pass, and the changelog renders from its fragments.

The artefact's file list and galaxy-importer's and ansible-lint's output are also kept in tests/output/, which
scripts/test.sh prints."""

import hashlib
import json
import os
import re
import subprocess
import sys
import tarfile
from collections import Counter
from pathlib import Path

import pytest
import yaml

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "tests" / "output"

# The artefact's top level: the collection's content, its docs, licence and changelog, and the files that
# meta/execution-environment.yml names. Everything that builds, tests or measures the collection stays out.
TOP_LEVEL = {"FILES.json", "MANIFEST.json", "LICENSE", "README.md", "CHANGELOG.rst", "requirements.txt", "bindep.txt",
             "changelogs", "docs", "meta", "playbooks", "plugins", "roles"}
HARNESS = ("molecule/", "tests/", "tools/", "benchmarks/", "benchmark-results/", "scripts/", "requirements/",
           "build/", "changelogs/fragments/", "galaxy.yml", "pytest.ini", "containers.conf")

# Output of the Python toolchain, not of the collection: the venv's cryptography warns about the DSA code that
# ansible-core imports (ansible-lint repeats it once per process).
TOOLCHAIN_NOISE = ("CryptographyDeprecationWarning", "from cryptography.hazmat")


@pytest.fixture(scope="module")
def installed(collections_path):
    """The collection as Galaxy ships it: the built artefact, installed outside this git tree."""
    root = Path(collections_path)
    return root, root / "ansible_collections" / "justnews" / "huggingface"


@pytest.fixture(scope="module")
def artefact(installed):
    """The tarball that ansible-galaxy built for the installed collection (tools/harness.py)."""
    root, _dest = installed
    return next((root / "dist").glob("justnews-huggingface-*.tar.gz"))


def report(name, text):
    """Keep a check's output in tests/output/<name>, which scripts/test.sh prints, and return it."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    (OUTPUT / name).write_text(text)
    print(text)
    return text


def checked(out):
    """(the lines of a tool's output that warn or fail, the output less the toolchain's noise and a line that says
    how many lines of it were left out)."""
    kept = [line for line in out.splitlines() if not any(noise in line for noise in TOOLCHAIN_NOISE)]
    flagged = [line for line in kept
               if re.search(r"^(WARNING|ERROR|CRITICAL)\b|\[(WARNING|ERROR|DEPRECATION WARNING)\]|Traceback|Warning:",
                            line.strip())]
    dropped = len(out.splitlines()) - len(kept)
    if dropped:
        kept.append("(%d line(s) of the toolchain's own warnings left out: %s)" % (dropped, ", ".join(TOOLCHAIN_NOISE)))
    return flagged, "\n".join(kept) + "\n"


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


def test_the_artefact_holds_the_product_only(artefact):
    """No test or harness file ships; the licence, the changelog, the runtime metadata and every tracked file of
    the content folders do."""
    with tarfile.open(artefact) as tar:
        files = sorted(m.name for m in tar.getmembers() if not m.isdir())
    tops = Counter(name.split("/")[0] for name in files)
    report("artefact-files.txt", "%s: %d files; top level: %s\n%s\n" % (
        artefact.name, len(files), ", ".join("%s (%d)" % (top, n) if n > 1 else top for top, n in sorted(tops.items())),
        "\n".join(files)))
    assert set(tops) <= TOP_LEVEL, sorted(set(tops) - TOP_LEVEL)
    harness = [name for name in files if name.startswith(HARNESS)
               or any(part.startswith(".") or part == "__pycache__" for part in name.split("/"))
               or name.endswith((".pyc", ".tar.gz"))]
    assert not harness, harness
    shipped = set(files)
    for name in ("LICENSE", "README.md", "meta/runtime.yml", "meta/execution-environment.yml", "requirements.txt",
                 "bindep.txt", "changelogs/changelog.yaml"):
        assert name in shipped, name
    if (REPO / "CHANGELOG.rst").exists():  # from the first release on (antsibull-changelog release)
        assert "CHANGELOG.rst" in shipped
    tracked = subprocess.run(["git", "ls-files", "roles", "plugins", "playbooks", "meta", "docs"], cwd=REPO, check=True,
                             capture_output=True, text=True).stdout.split()
    assert tracked and not set(tracked) - shipped, sorted(set(tracked) - shipped)
    with tarfile.open(artefact) as tar:
        licence = tar.extractfile("LICENSE").read().decode()
    assert "GNU GENERAL PUBLIC LICENSE" in licence and "Version 3, 29 June 2007" in licence
    assert licence.rstrip().endswith("<https://www.gnu.org/licenses/why-not-lgpl.html>.")  # the full text


def importer_venv():
    """The venv scripts/setup.sh builds for galaxy-importer, keyed by its pinned requirements."""
    key = hashlib.sha256((REPO / "requirements" / "importer.txt").read_bytes()).hexdigest()[:12]
    return Path(os.environ.get("JUSTNEWS_VENV_CACHE", "/var/tmp/justnews-venvs")) / ("importer-" + key)


def test_galaxy_importer_accepts_the_artefact(artefact, tmp_path):
    """galaxy-importer, the checks Galaxy runs on an upload (the artefact's metadata and files, every plugin's
    documentation through ansible-doc, ansible-lint's production profile on the whole collection, the changelog,
    the tags), finds no error and no warning. tests/galaxy-importer.cfg keeps it off containers and the network."""
    venv = importer_venv()
    assert (venv / ".complete").exists(), "no galaxy-importer venv at %s: run scripts/setup.sh" % venv
    env = dict(os.environ, PATH="%s:%s" % (venv / "bin", os.environ["PATH"]), ANSIBLE_NOCOLOR="1", NO_COLOR="1",
               GALAXY_IMPORTER_CONFIG=str(REPO / "tests" / "galaxy-importer.cfg"))
    env.pop("ANSIBLE_COLLECTIONS_PATH", None)
    proc = subprocess.run([str(venv / "bin" / "python"), "-m", "galaxy_importer.main", str(artefact)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=900, check=False)
    out = proc.stdout + proc.stderr
    flagged, shown = checked(out)
    report("galaxy-importer.log", "galaxy-importer on %s: exit %d, %d warning or error line(s)\n%s" % (
        artefact.name, proc.returncode, len(flagged), shown))
    assert proc.returncode == 0 and "Importer processing completed successfully" in out, out[-5000:]
    assert not flagged, flagged
    result = json.loads((tmp_path / "importer_result.json").read_text())
    found = {(c["content_type"], c["content_name"]): c for c in result["docs_blob"]["contents"]}
    for module in sorted(REPO.glob("plugins/modules/*.py")):
        assert found[("module", module.stem)]["doc_strings"], module.stem
    for role in sorted(REPO.glob("roles/*/")):
        assert ("role", role.name) in found, role.name
    for playbook in sorted(REPO.glob("playbooks/*.yml")):
        assert ("playbook", playbook.name) in found, playbook.name
    assert result["requires_ansible"] == yaml.safe_load((REPO / "meta" / "runtime.yml").read_text())["requires_ansible"]


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


def is_shell_script(path):
    if not path.is_file() or path.is_symlink():
        return False
    if path.suffix in (".sh", ".bash"):
        return True
    with open(path, "rb") as handle:
        first = handle.readline(200)
    return first.startswith(b"#!") and re.search(rb"\b(ba)?sh\b", first) is not None


def test_shell_scripts_pass_shellcheck():
    """Every shell script of the checkout (the harness's and CI's, none of which ships) is clean for shellcheck."""
    import shutil  # pylint: disable=import-outside-toplevel

    tool = shutil.which("shellcheck")
    assert tool, "shellcheck is not installed: scripts/setup.sh installs Debian's package"
    files = subprocess.run(["git", "ls-files"], cwd=REPO, check=True, capture_output=True, text=True).stdout.split()
    scripts = sorted(name for name in files if is_shell_script(REPO / name))
    assert ".ci/run" in scripts and "scripts/test.sh" in scripts, scripts
    code, out = run([tool, "--external-sources", "--source-path=SCRIPTDIR"] + scripts, REPO)
    print("shellcheck: %d scripts, exit %d" % (len(scripts), code))
    assert code == 0, out[-5000:]


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
    # The artefact ships no shell script today (test_shell_scripts_pass_shellcheck checks the checkout's); should
    # one ship, ansible-test's shellcheck must have run on it.
    shipped_shell = any(is_shell_script(path) for path in dest.rglob("*") if "tests" not in path.relative_to(dest).parts)
    expected = (["shellcheck"] if shipped_shell else []) + [
        "%s-python-%s" % (test, version) for test in PER_PYTHON_TESTS for version in [controller] + others]
    assert [name for name in expected if name not in results] == [], sorted(results)
    assert {name: results[name] for name in expected if results[name] is not None} == {}
    # Other tests may find nothing to check (pslint: no PowerShell), never skip for another reason.
    assert {name: why for name, why in results.items() if why not in (None, "No tests applicable.")} == {}


def test_ansible_lint_production(installed):
    """ansible-lint's production profile on the installed artefact as a whole (roles, playbooks, plugins, meta,
    docs): no violation and no warning."""
    root, dest = installed
    code, out = run([str(BIN / "ansible-lint"), "--profile", "production", "--offline", "--nocolor"], dest,
                    ANSIBLE_COLLECTIONS_PATH=str(root), NO_COLOR="1",
                    PATH="%s:%s" % (BIN, os.environ["PATH"]))
    flagged, shown = checked(out)
    report("ansible-lint.log", "ansible-lint --profile production on the installed artefact: exit %d, %d warning "
           "line(s)\n%s" % (code, len(flagged), shown))
    assert code == 0, out[-5000:]
    assert re.search(r"Passed: 0 failure\(s\), 0 warning\(s\)", out), out[-5000:]
    assert not flagged, flagged


# Sections that describe a change against an earlier release, which a first release does not have.
AGAINST_A_RELEASE = {"breaking_changes", "deprecated_features", "removed_features", "security_fixes", "bugfixes"}


def changelog_lists(text):
    """{"Modules": {...}, "Roles": {...}, "Playbooks": {...}}: the names in CHANGELOG.rst's generated "New ..." lists,
    over every release."""
    lists = {"Modules": set(), "Roles": set(), "Playbooks": set()}
    for kind, body in re.findall(r"^New (Modules|Roles|Playbooks)\n-+\n(.*?)(?=\n\S[^\n]*\n[-=]{3,}\n|\Z)", text,
                                 re.M | re.S):
        lists[kind] |= set(re.findall(r"^- justnews\.huggingface\.(\w+) - ", body, re.M))
    return lists


def test_changelog_is_generated_from_the_fragments(tmp_path):
    """antsibull-changelog lints the fragments and changelogs/changelog.yaml, in a copy of the git tree.

    Before galaxy.yml's version is released, a trial `antsibull-changelog release` renders the fragments (every
    entry appears); a first release has no section that compares it with an earlier one, and no entry that
    repeats the "New Modules/Roles/Playbooks" lists, which antsibull-changelog makes from the plugins'
    `version_added` and the `add object.*` sections. After the release (README.md, "Releasing"), changelog.yaml holds
    the version, its fragments are gone, and CHANGELOG.rst is exactly what `antsibull-changelog generate` makes.
    Either way, every module, role and playbook is in a "New ..." list of the release notes."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                           capture_output=True).stdout.split(b"\0")
    subprocess.run(["tar", "-cf", str(tmp_path / "c.tar"), "--null", "-T", "-"], cwd=REPO, check=True,
                   input=b"\0".join(f for f in files if f and (REPO / f.decode()).exists()))
    copy = tmp_path / "copy"
    copy.mkdir()
    subprocess.run(["tar", "-xf", str(tmp_path / "c.tar"), "-C", str(copy)], check=True)
    version = yaml.safe_load((copy / "galaxy.yml").read_text())["version"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), version
    fragments = {f.name: yaml.safe_load(f.read_text()) for f in (copy / "changelogs" / "fragments").glob("*.y*ml")}
    env = {"PATH": "%s:%s" % (BIN, os.environ["PATH"])}
    code, out = run([str(BIN / "antsibull-changelog"), "lint"], copy, **env)
    assert code == 0 and not out.strip(), out
    code, out = run([str(BIN / "antsibull-changelog"), "lint-changelog-yaml", "--strict", "changelogs/changelog.yaml"],
                    copy, **env)
    assert code == 0 and not out.strip(), out
    releases = yaml.safe_load((copy / "changelogs" / "changelog.yaml").read_text()).get("releases") or {}
    committed = (copy / "CHANGELOG.rst").read_text() if (copy / "CHANGELOG.rst").exists() else None
    if committed is not None or releases:
        code, out = run([str(BIN / "antsibull-changelog"), "generate"], copy, **env)
        assert code == 0, out
        assert committed == (copy / "CHANGELOG.rst").read_text(), (
            "CHANGELOG.rst is not what `antsibull-changelog generate` makes from changelogs/changelog.yaml")

    if version in releases:
        consumed = set(releases[version].get("fragments") or [])
        assert not consumed & set(fragments), sorted(consumed & set(fragments))
        assert not fragments, (
            "galaxy.yml's version %s is released: raise it before adding fragments %s" % (version, sorted(fragments)))
        text = committed
    else:
        for name, sections in fragments.items():
            if not releases:
                assert not AGAINST_A_RELEASE & set(sections), (name, "a first release changes nothing earlier")
            for section, entries in sections.items():
                if section.startswith("add "):
                    continue
                for entry in entries if isinstance(entries, list) else [entries]:
                    assert not re.search(r"\bnew (module|action plugin|role|playbook)\b", entry, re.I), (
                        name, "the New ... lists come from the plugins' docs and add object.* sections", entry)
        code, out = run([str(BIN / "antsibull-changelog"), "release", "--version", version], copy, **env)
        assert code == 0, out
        text = (copy / "CHANGELOG.rst").read_text()
        # changelog.yaml ships in the artefact, where ansible-lint's yaml rule reads it (changelog_nice_yaml).
        code, out = run([str(BIN / "ansible-lint"), "--offline", "--nocolor", "--profile", "production",
                         "changelogs/changelog.yaml"], copy, NO_COLOR="1", **env)
        assert code == 0, out[-5000:]
        flat = " ".join(text.split())
        assert "v%s" % version in flat
        for name, sections in fragments.items():
            for section, entries in sections.items():
                for entry in entries if isinstance(entries, list) else [entries]:
                    if section.startswith("add "):
                        entry = "justnews.huggingface.%(name)s - %(description)s" % entry
                    assert " ".join(entry.split())[:60] in flat, (name, entry)
    print(text)
    lists = changelog_lists(text)
    content = {"Modules": {p.stem for p in (REPO / "plugins" / "modules").glob("*.py")},
               "Roles": {p.name for p in (REPO / "roles").iterdir() if p.is_dir()},
               "Playbooks": {p.stem for p in (REPO / "playbooks").glob("*.yml")}}
    for kind, names in content.items():
        # A module is listed in the release its documentation's version_added names, a role in the one of its
        # argument spec's or of an `add object.role` fragment, a playbook in the one of its `add object.playbook`.
        assert lists[kind] == names, ("New %s" % kind, "missing", sorted(names - lists[kind]),
                                      "unknown", sorted(lists[kind] - names))


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
