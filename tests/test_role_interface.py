"""meta/argument_specs.yml is the single source of each role's variables: defaults and README agree."""

import re
from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[1] / "roles"
ROLE = ROLES / "model_cache"
ROLE_NAMES = ["model_cache", "hub_mirror"]


def spec_options(role="model_cache"):
    spec = yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text())
    return spec["argument_specs"]["main"]["options"]


def readme_rows(role="model_cache"):
    """Variable -> default cell of the README's Role Variables table."""
    rows = {}
    for line in (ROLES / role / "README.md").read_text().splitlines():
        m = re.match(r"^\| `(%s_[a-z_]+)` \| [^|]+ \| (.+?) \| " % role, line)
        if m:
            rows[m.group(1)] = m.group(2).strip().strip("`")
    return rows


def test_every_role_is_checked():
    assert sorted(p.name for p in ROLES.iterdir() if p.is_dir()) == sorted(ROLE_NAMES)


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_defaults_match_argument_specs(role):
    defaults = yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text())
    options = spec_options(role)
    assert sorted(defaults) == sorted(options)
    for name, option in options.items():
        assert defaults[name] == option.get("default"), name


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_every_variable_is_prefixed(role):
    assert all(name.startswith(role + "_") for name in spec_options(role))


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_readme_table_matches_argument_specs(role):
    options = spec_options(role)
    rows = readme_rows(role)
    assert sorted(rows) == sorted(options)
    for name, cell in rows.items():
        assert yaml.safe_load(cell) == options[name].get("default"), (name, cell)


ACTIONS_WITHOUT_MODULE = {"ansible.builtin.set_fact", "ansible.builtin.assert", "ansible.builtin.debug",
                          "ansible.builtin.fail", "ansible.builtin.include_role", "ansible.builtin.include_tasks"}


def tasks_of(tasks, inherited=None):
    """(task, vars it sees from its blocks) for every task, blocks opened."""
    for task in tasks or []:
        seen = dict(inherited or {}, **task.get("vars", {}))
        if "block" in task:
            for part in ("block", "rescue", "always"):
                yield from tasks_of(task.get(part), seen)
        else:
            yield task, seen


def test_every_controller_step_runs_with_the_controller_python():
    """In an execution environment the controller is the container: a module run there must use
    model_cache_controller_python (default ansible_playbook_python), never an interpreter that inventory gives
    every host, localhost included."""
    files = sorted(ROLE.glob("tasks/*.yml")) + sorted((ROLE.parents[1] / "playbooks").glob("*.yml"))
    steps = []
    for path in files:
        plays = yaml.safe_load(path.read_text()) or []
        tasks = [t for play in plays for t in play.get("tasks", [])] if "playbooks" in path.parts else plays
        for task, seen in tasks_of(tasks):
            action = next((k for k in task if "." in k and k.split(".")[0] in ("ansible", "justnews")), None)
            local = task.get("delegate_to") == "localhost" or task.get("connection") == "local" \
                or path.name == "bake.yml" and "tasks" in path.parts
            if local and action not in ACTIONS_WITHOUT_MODULE:
                steps.append((path.name, task["name"]))
                assert "controller_python" in str(seen.get("ansible_python_interpreter")), (path.name, task["name"])
    assert len(steps) >= 8, steps
