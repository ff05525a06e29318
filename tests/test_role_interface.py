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


def entry_points(role="model_cache"):
    return yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]


SHARED_KEYS = ("type", "elements", "choices", "no_log", "options")


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_a_variable_means_the_same_in_every_entry_point(role):
    """An entry point that takes a variable of `main` takes it with the same type, choices and suboptions (so a
    typo in a model's or unit's key fails there too), and the same default unless it requires the variable."""
    specs = entry_points(role)
    main = specs["main"]["options"]
    for name, spec in specs.items():
        for option, value in spec["options"].items():
            if option not in main:
                continue
            for key in SHARED_KEYS:
                assert value.get(key) == main[option].get(key), (name, option, key)
            if not value.get("required"):
                assert value.get("default") == main[option].get("default"), (name, option)


MISSPELT = {"model_cache_models": {"repo_id": "org/name", "revison": "main"},
            "model_cache_units": {"name": "justnews@memory.service", "ready_pth": "/health"}}


@pytest.mark.parametrize("entry_point, variable", [(name, variable) for name, spec in entry_points().items()
                                                   for variable in sorted(MISSPELT) if variable in spec["options"]])
def test_a_misspelt_key_of_a_model_or_unit_fails_the_validation(entry_point, variable):
    """What Ansible does with the entry point's argument spec before the role's first task (validate_argument_spec)."""
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

    options = entry_points()[entry_point]["options"]
    entry = MISSPELT[variable]
    given = {name: option["default"] for name, option in options.items() if "default" in option}
    given.update({name: "x" for name, option in options.items() if option.get("required")})
    assert not ArgumentSpecValidator(options).validate(given).error_messages, entry_point
    given[variable] = [entry]
    errors = ArgumentSpecValidator(options).validate(given).error_messages
    assert errors and any(sorted(set(entry) - {"repo_id", "name"})[0] in error for error in errors), errors


NAME_RE = re.compile(r"(?<![\w])(model_cache_[a-z_]+)")
INTERNAL_RE = re.compile(r"(?<![\w])(__model_cache_[a-z_]+)")


def read_by(text, internal, seen=None):
    """The role variables that `text` reads, following the internal variables of vars/main.yml it uses."""
    seen = set() if seen is None else seen
    names = set(NAME_RE.findall(text))
    for name in set(INTERNAL_RE.findall(text)) - seen:
        seen.add(name)
        if name in internal:
            names |= read_by(yaml.safe_dump(internal[name]), internal, seen)
    return names


def set_by(text):
    """The model_cache_ variables that tasks set themselves (facts and registered results)."""
    data = yaml.safe_load(text) or []
    found = set()

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("ansible.builtin.set_fact", "set_fact") and isinstance(value, dict):
                    found.update(k for k in value if NAME_RE.fullmatch(k))
                elif key == "register" and isinstance(value, str) and NAME_RE.fullmatch(value):
                    found.add(value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(data)
    return found


ENTRY_FILES = {"prune": ["prune.yml"], "doctor": ["doctor.yml"], "bake": ["bake.yml"], "bundle": ["bundle.yml"]}


@pytest.mark.parametrize("entry_point", sorted(ENTRY_FILES))
def test_every_variable_an_entry_point_reads_is_in_its_argument_spec(entry_point):
    """Validated and documented: nothing an entry point reads comes from main's defaults without being said."""
    internal = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
    texts = [(ROLE / "tasks" / name).read_text() for name in ENTRY_FILES[entry_point]]
    read = set().union(*(read_by(text, internal) for text in texts))
    made = set().union(*(set_by(text) for text in texts[:1]))
    assert read - made - set(entry_points()[entry_point]["options"]) == set()


def playbook_variables():
    """The model_cache_ variables the playbooks read that no role entry point takes, and that no task sets."""
    options = set().union(*(set(spec["options"]) for spec in entry_points().values()))
    made = set().union(*(set_by(p.read_text()) for p in (ROLE / "tasks").glob("*.yml")))
    names = set()
    for path in sorted((ROLES.parent / "playbooks").glob("*.yml")):
        text = path.read_text()
        names |= set(NAME_RE.findall("\n".join(line for line in text.splitlines()
                                               if not line.lstrip().startswith("#")))) - set_by(text)
    return names - options - made


def test_the_readme_documents_every_playbook_variable_in_one_table():
    """The playbooks' own variables (hosts, batch size, reports, bundle and bake hosts) are in the README's
    playbook table, and that table lists nothing else."""
    text = (ROLES.parent / "README.md").read_text()
    section = text.split("\n## Playbooks\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(model_cache_[a-z_]+)` \|", section, re.M)
    assert len(rows) == len(set(rows)), rows
    assert sorted(rows) == sorted(playbook_variables())


def test_the_role_reads_the_models_records_by_name():
    """model_cache_result.models is the modules' records (module_utils/_record.py), read by name: no record rebuilt
    as YAML text, no nested item (tests/unit/plugins/module_utils/test_record.py checks the records' keys)."""
    internal = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
    assert "__model_cache_models_yaml" not in internal and "__model_cache_fetch_results" not in internal
    for path in sorted(ROLE.rglob("*.yml")):
        text = path.read_text()
        assert "item.item" not in text and ("from_yaml" not in text or path.name == "doctor.yml"), path.name
