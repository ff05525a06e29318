"""Every module's documentation holds what its code does: each key a result can carry is in RETURN (and RETURN
names no key that nothing returns), the attributes come from the collection's fragments, the action group of
meta/runtime.yml is the one the modules document, and ansible-doc renders every module without a warning.

The keys are found by reading the source (ast), not by a list kept here: a key added to a result without its
RETURN entry fails test_every_result_key_is_documented."""

import ast
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[4]
PLUGINS = REPO / "plugins"
PACKAGE = "ansible_collections.justnews.huggingface.plugins"
COLLECTION = "justnews.huggingface"
MODULES = sorted(p.stem for p in (PLUGINS / "modules").glob("*.py"))

# Keys Ansible itself documents for every module (Common Return Values); RETURN need not repeat them.
COMMON = frozenset(("changed", "failed", "msg", "diff", "invocation", "warnings", "deprecations", "exception",
                    "skipped"))
# Names that hold a result (or a part of one, such as the `extra` of a failure) in the plugins' source.
RESULT_NAMES = frozenset(("result", "out", "failed", "extra", "stats"))
# Calls whose keyword arguments become keys of the result.
EMITTERS = frozenset(("exit_json", "fail_json", "fail", "fail_with", "Failure", "named_failure"))
# Keys of a Failure's extra that the module turns into a result key of another name (files: bad_files or
# corrupt_files) or leaves out (discard, path: what the message names).
FAILURE_ONLY = frozenset(("files", "discard", "path"))
# Where a module's result is built besides plugins/modules/<name>.py and plugins/action/<name>.py: the
# module_utils whose code makes the top-level keys (not those that only fill a nested value).
RESULT_UTILS = {
    "hf_agent_env": ("_agent_env",),
    "hf_bundle": ("_bundle",),
    "hf_bundle_info": ("_bundle",),
    "hf_prune": ("_prune",),
    "hf_receive": ("_receive",),
    "hf_snapshot": ("_snapshot",),
    "hf_units": ("_units",),
}
# Modules that only report: check mode is their normal run, diff mode has nothing to show.
INFO_MODULES = ("hf_bundle_info", "hf_doctor", "hf_units")


def _name(node):
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _dict_keys(node):
    """The constant keys of a dict display or of a dict(...) call."""
    if isinstance(node, ast.Dict):
        return {k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
    if isinstance(node, ast.Call) and _name(node.func) == "dict":
        return {k.arg for k in node.keywords if k.arg}
    return set()


def _targets(node):
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    for target in targets:
        if isinstance(target, (ast.Tuple, ast.List)):
            yield from target.elts
        else:
            yield target


def producers(trees):
    """Functions whose return value is taken as a result: `result = checks.run()`, `result.update(inspect(p))`."""
    names = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and \
                    any(_name(t) in RESULT_NAMES for t in _targets(node)):
                names.add(_name(node.value.func))
            elif isinstance(node, ast.Call) and _name(node.func) == "update" and \
                    _name(node.func.value) in RESULT_NAMES:
                names.update(_name(a.func) for a in node.args if isinstance(a, ast.Call))
    return names - {None, "dict"}


def result_keys(trees):
    """{key: line} of every top-level key the source puts into a result."""
    found = {}
    functions = producers(trees)

    def add(keys, node):
        for key in keys:
            found.setdefault(key, node.lineno)

    for tree in trees:
        loops = {}  # `for key in ("a", "b"): failed[key] = ...`: the loop variable's constant values
        for node in ast.walk(tree):
            if isinstance(node, ast.For) and isinstance(node.target, ast.Name) and \
                    isinstance(node.iter, (ast.Tuple, ast.List)):
                values = {e.value for e in node.iter.elts if isinstance(e, ast.Constant)}
                for inner in ast.walk(node):
                    if isinstance(inner, ast.Subscript) and isinstance(inner.slice, ast.Name) and \
                            inner.slice.id == node.target.id:
                        loops[id(inner)] = values
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = _name(node.func)
                if func in EMITTERS or (func == "update" and _name(node.func.value) in RESULT_NAMES):
                    add((k.arg for k in node.keywords if k.arg and not (func == "Failure" and k.arg in FAILURE_ONLY)),
                        node)
                if func == "update" and _name(node.func.value) in RESULT_NAMES:
                    for arg in node.args:
                        add(_dict_keys(arg), node)
            elif isinstance(node, (ast.Assign, ast.AugAssign)):
                for target in _targets(node):
                    if isinstance(target, ast.Subscript) and _name(target.value) in RESULT_NAMES:
                        if isinstance(target.slice, ast.Constant):
                            add([target.slice.value], node)
                        add(loops.get(id(target), ()), node)
                    elif _name(target) in RESULT_NAMES:
                        add(_dict_keys(node.value), node)
            elif isinstance(node, ast.FunctionDef) and node.name in functions:
                for ret in ast.walk(node):
                    if isinstance(ret, ast.Return) and ret.value is not None:
                        add(_dict_keys(ret.value), ret)
    return found


def sources(module):
    paths = [PLUGINS / "modules" / (module + ".py"), PLUGINS / "module_utils" / "_errors.py"]
    paths += [PLUGINS / "module_utils" / (name + ".py") for name in RESULT_UTILS.get(module, ())]
    action = PLUGINS / "action" / (module + ".py")
    if action.exists():
        paths.append(action)
    return paths


def returned(module):
    """The top-level keys `module` can return, Ansible's common ones left out."""
    found = result_keys([ast.parse(p.read_text()) for p in sources(module)])
    return {k: v for k, v in found.items() if k not in COMMON}


def plugin_doc(module, name):
    return yaml.safe_load(getattr(importlib.import_module("%s.modules.%s" % (PACKAGE, module)), name))


def test_the_scan_sees_every_way_a_key_enters_a_result():
    source = '''
result = {"a": 1}
self.result["b"] = 2
result.update(c=3, **more)
result.update({"d": 4})
out["e"], problem = fetch()
r = dict(nested="not a result")
module.exit_json(f=6, **result)
_errors.fail(module, kind, msg, g=7)
raise Failure("m", kind, h=8)
for key in ("i", "j"):
    if key in res:
        failed[key] = res[key]
result = checks.run()
class Checks:
    def run(self):
        return dict(k=9)
def other():
    return {"not_a_result": 0}
'''
    assert set(result_keys([ast.parse(source)])) == set("abcdefghijk")


@pytest.mark.parametrize("module", MODULES)
def test_every_result_key_is_documented(module):
    documented = set(plugin_doc(module, "RETURN") or {})
    keys = returned(module)
    missing = {k: line for k, line in keys.items() if k not in documented}
    assert not missing, "%s returns keys its RETURN lacks (key: line): %s" % (module, missing)
    stale = documented - set(keys) - COMMON
    assert not stale, "%s documents keys that nothing returns: %s" % (module, sorted(stale))


def test_every_file_that_builds_a_result_belongs_to_a_module():
    """A new module_utils file that puts keys into a result must be read for its module (RESULT_UTILS)."""
    claimed = {p for module in MODULES for p in sources(module)}
    for path in sorted(PLUGINS.glob("*/*.py")):
        if path not in claimed and path.parent.name in ("module_utils", "action"):
            assert not result_keys([ast.parse(path.read_text())]), path


@pytest.fixture(scope="module")
def docs(tmp_path_factory):
    """What ansible-doc shows of every module (fragments merged), and what it printed on stderr."""
    root = tmp_path_factory.mktemp("collections")
    (root / "ansible_collections" / "justnews").mkdir(parents=True)
    (root / "ansible_collections" / "justnews" / "huggingface").symlink_to(REPO)
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-doc"), "--json"]
                          + ["%s.%s" % (COLLECTION, m) for m in MODULES],
                          capture_output=True, text=True, check=False, timeout=300,
                          env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(root), ANSIBLE_NOCOLOR="1"))
    assert proc.returncode == 0, proc.stderr
    return {name.split(".")[-1]: value["doc"] for name, value in json.loads(proc.stdout).items()}, proc.stderr


def test_ansible_doc_renders_every_module_without_a_warning(docs):
    found, stderr = docs
    assert sorted(found) == MODULES
    assert "WARNING" not in stderr and "ERROR" not in stderr, stderr


@pytest.mark.parametrize("module", MODULES)
def test_attributes_come_from_the_fragments(module, docs):
    own = plugin_doc(module, "DOCUMENTATION")
    fragments = own.get("extends_documentation_fragment") or []
    assert COLLECTION + ".attributes" in fragments, module
    assert any(f.startswith(COLLECTION + ".attributes.platform") for f in fragments), module
    for name, attribute in (own.get("attributes") or {}).items():
        assert "description" not in attribute, (module, name, "the description is the fragment's")
    attributes = docs[0][module]["attributes"]
    for name in ("check_mode", "diff_mode", "idempotent", "platform"):
        assert attributes[name]["support"] in ("full", "partial", "none", "N/A"), (module, name)
        assert attributes[name]["description"], (module, name)
    if module in INFO_MODULES:
        assert COLLECTION + ".attributes.info_module" in fragments, module
        assert attributes["check_mode"]["support"] == "full" and attributes["diff_mode"]["support"] == "N/A"
        assert attributes["idempotent"]["support"] == "full"


def test_the_action_group_is_the_one_the_modules_document(docs):
    runtime = yaml.safe_load((REPO / "meta" / "runtime.yml").read_text())
    groups = runtime.get("action_groups") or {}
    assert groups, "meta/runtime.yml has no action_groups"
    for module in MODULES:
        want = sorted("%s.%s" % (COLLECTION, group) for group, members in groups.items() if module in members)
        attribute = docs[0][module]["attributes"].get("action_group")
        assert (sorted(attribute["membership"]) if attribute else []) == want, module
        # A group's defaults reach every member: each must take every option the group is meant for.
        if want:
            assert "cache_dir" in docs[0][module]["options"], module


def test_seealso_names_modules_that_exist(docs):
    for module in MODULES:
        entries = docs[0][module].get("seealso") or []
        assert entries, module
        for entry in entries:
            if "module" in entry:
                namespace, name = entry["module"].rsplit(".", 1)
                assert namespace == COLLECTION and name in MODULES and name != module, (module, entry)
            else:
                assert entry.get("description") and (entry.get("link") or entry.get("ref")), (module, entry)


def tasks_of(items):
    for item in items or []:
        for key in ("block", "rescue", "always"):
            yield from tasks_of(item.get(key))
        yield item


@pytest.mark.parametrize("module", MODULES)
def test_examples_use_documented_options_and_groups(module, docs):
    runtime = yaml.safe_load((REPO / "meta" / "runtime.yml").read_text())
    groups = {"group/%s.%s" % (COLLECTION, g) for g in runtime.get("action_groups") or {}}
    calls = 0
    for task in tasks_of(plugin_doc(module, "EXAMPLES")):
        for key in task.get("module_defaults") or {}:
            assert key in groups or key.startswith(COLLECTION + "."), (module, key)
        for key, args in task.items():
            if key.startswith(COLLECTION + "."):
                name = key.rsplit(".", 1)[1]
                options = docs[0][name]["options"]
                unknown = set(args or {}) - set(options)
                assert not unknown, (module, task.get("name"), unknown)
                calls += name == module
    assert calls or module == "hf_receive", module
