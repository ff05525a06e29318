"""meta/argument_specs.yml is the single source of model_cache's variables: defaults and README agree."""

import re
from pathlib import Path

import yaml

ROLE = Path(__file__).resolve().parents[1] / "roles" / "model_cache"


def spec_options():
    spec = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())
    return spec["argument_specs"]["main"]["options"]


def readme_rows():
    """Variable -> default cell of the README's Role Variables table."""
    rows = {}
    for line in (ROLE / "README.md").read_text().splitlines():
        m = re.match(r"^\| `(model_cache_[a-z_]+)` \| [^|]+ \| (.+?) \| ", line)
        if m:
            rows[m.group(1)] = m.group(2).strip().strip("`")
    return rows


def test_defaults_match_argument_specs():
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    options = spec_options()
    assert sorted(defaults) == sorted(options)
    for name, option in options.items():
        assert defaults[name] == option.get("default"), name


def test_every_variable_is_prefixed():
    assert all(name.startswith("model_cache_") for name in spec_options())


def test_readme_table_matches_argument_specs():
    options = spec_options()
    rows = readme_rows()
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
