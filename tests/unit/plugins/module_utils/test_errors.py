"""_errors is the whole vocabulary of failures: every kind a module can return is in it, has a fix, and is
documented by the module that returns it. Found by reading the plugins' source, not by a list kept here."""

import ast
import importlib
import re
from pathlib import Path

import pytest
import yaml

from ansible_collections.justnews.huggingface.plugins.module_utils import _errors

PLUGINS = Path(__file__).resolve().parents[4] / "plugins"
PACKAGE = "ansible_collections.justnews.huggingface.plugins"
MODULES = sorted(p.stem for p in (PLUGINS / "modules").glob("*.py"))

# Where a kind is handed over: (callable name, index of the kind among its positional arguments). `Failure` alone
# is _agent_env's own exception (message first) until it raises _errors.Failure too.
KIND_ARGUMENT = {"_errors.Failure": 0, "HubFailure": 0, "_errors.fail": 1, "fail": 1, "Failure": 1}


def callee(node):
    """The name a call is made through: `_errors.Failure` for the collection's exception, else the last name."""
    func = node.func
    if isinstance(func, ast.Attribute):
        owner = getattr(func.value, "id", None)
        return "_errors." + func.attr if owner == "_errors" else func.attr
    return getattr(func, "id", None)


def module_of(path):
    """The imported module behind a file of plugins/, to resolve the constants it names."""
    return importlib.import_module("%s.%s.%s" % (PACKAGE, path.parent.name, path.stem))


def kind_nodes(tree):
    """Every expression that the source hands over, returns or compares as an error kind."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = callee(node)
            if name in KIND_ARGUMENT and len(node.args) > KIND_ARGUMENT[name]:
                yield node.args[KIND_ARGUMENT[name]]
            yield from (k.value for k in node.keywords if k.arg in ("kind", "error_kind"))
        elif isinstance(node, (ast.FunctionDef, ast.Lambda)):
            args = node.args.args[len(node.args.args) - len(node.args.defaults):]
            yield from (d for a, d in zip(args, node.args.defaults) if a.arg == "kind")
            if getattr(node, "name", "").endswith("_kind"):
                yield from (r.value for r in ast.walk(node) if isinstance(r, ast.Return) and r.value is not None)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                name = getattr(target, "id", "")
                if name == "kind":
                    yield node.value
                elif name.endswith("_KINDS") and isinstance(node.value, (ast.Tuple, ast.List)):
                    yield from (pair.elts[-1] for pair in node.value.elts if isinstance(pair, ast.Tuple))
                elif name.isupper() and isinstance(node.value, ast.Attribute) and \
                        getattr(node.value.value, "id", None) == "_errors":
                    yield node.value  # an alias of a kind, such as _hub.RATE_LIMITED
        elif isinstance(node, ast.Compare):
            sides = [node.left] + node.comparators
            if any(is_kind(side) for side in sides):
                yield from sides


def is_kind(node):
    """`kind`, `failure.kind`, `exc.kind` or `error_kind(exc)`: a blob's `.kind` (_store) is another matter."""
    if isinstance(node, ast.Call):
        return "error_kind" in (getattr(node.func, "attr", None), getattr(node.func, "id", None))
    if isinstance(node, ast.Attribute):
        return node.attr == "kind" and getattr(node.value, "id", None) in ("failure", "exc")
    return getattr(node, "id", None) == "kind"


def resolve(node, namespace):
    """The string values an expression can have, as far as the source says without running it."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.IfExp):
        return resolve(node.body, namespace) | resolve(node.orelse, namespace)
    if isinstance(node, ast.Name) and node.id.isupper():
        value = getattr(namespace, node.id, None)
        return {value} if isinstance(value, str) else set()
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.attr.isupper():
        owner = getattr(namespace, node.value.id, None)
        value = getattr(owner, node.attr, None)
        return {value} if isinstance(value, str) else set()
    return set()  # a variable or a call: its values are found where they are made


def kinds_in(path):
    namespace = module_of(path)
    found = set()
    for node in kind_nodes(ast.parse(path.read_text())):
        found |= resolve(node, namespace)
    return found


def closure(path, seen=None):
    """The file and every module_utils file it imports, directly or not, but for those whose failures it declares
    it turns into an answer of its own, or never meets as it takes only their texts (CONTAINS_FAILURES_OF;
    tests/unit/plugins/module_utils/test_settle.py)."""
    seen = set() if seen is None else seen
    seen.add(path)
    contained = getattr(module_of(path), "CONTAINS_FAILURES_OF", ())
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == PACKAGE + ".module_utils":
            for alias in node.names:
                if alias.name in contained:
                    continue
                dep = PLUGINS / "module_utils" / (alias.name + ".py")
                if dep not in seen:
                    closure(dep, seen)
    return seen


def returnable(module):
    """The kinds a module may return; for the documentation of an action plugin (plugins/action/<name>.py), the
    action's own, and those of the modules it runs (named in its RUNS)."""
    paths = closure(PLUGINS / "modules" / (module + ".py"))
    action = PLUGINS / "action" / (module + ".py")
    found = set()
    if action.exists():
        paths |= closure(action)
        for name in getattr(module_of(action), "RUNS", ()):
            found |= returnable(name)
    return found.union(*(kinds_in(p) for p in paths))


def return_doc(module):
    return yaml.safe_load(importlib.import_module("%s.modules.%s" % (PACKAGE, module)).RETURN)


def test_every_kind_has_a_fix():
    constants = {v for k, v in vars(_errors).items() if k.isupper() and isinstance(v, str)}
    assert constants == set(_errors.FIXES) == _errors.KINDS
    for kind, text in _errors.FIXES.items():
        assert text.strip() and "{" not in text and "}" not in text, kind
        assert not text[0].isupper() and not text.endswith("."), (kind, "a fix is a clause the message goes on with")


def test_every_option_a_fix_names_is_written_with_its_role_variable():
    assert _errors.fix(_errors.TIMEOUT).startswith("raise 'timeout' (model_cache_timeout)")
    assert "'token' (model_cache_token)" in _errors.fix(_errors.GATED)
    for name in re.findall(r"\{(\w+)\}", "".join(_errors._TEXTS.values())):  # pylint: disable=protected-access
        assert name in _errors.ROLE_VARIABLES, name


def test_every_kind_in_the_source_is_in_the_vocabulary():
    used = {}
    for path in sorted(PLUGINS.rglob("*.py")):
        for kind in kinds_in(path):
            used.setdefault(kind, []).append(path.name)
    unknown = {kind: files for kind, files in used.items() if kind not in _errors.KINDS}
    assert not unknown, unknown
    # Both ways: the vocabulary holds no kind that no module returns any more.
    assert set(used) == _errors.KINDS, _errors.KINDS - set(used)


def test_the_scan_sees_literals_and_constants(tmp_path):
    source = ('raise _errors.Failure("rate_limited", "m")\nraise HubFailure(_errors.DISK_FULL, "m")\n'
              'kind = "no_space" if x else OTHER\nresult.update(error_kind="gated")\n')
    namespace = type("M", (), {"OTHER": "other", "_errors": _errors})
    found = set().union(*(resolve(n, namespace) for n in kind_nodes(ast.parse(source))))
    assert found == {"rate_limited", "disk_full", "no_space", "other", "gated"}


@pytest.mark.parametrize("module", MODULES)
def test_every_module_documents_the_kinds_it_returns_and_the_fix(module):
    doc = return_doc(module)
    text = " ".join(doc["error_kind"]["description"])
    documented = set(re.findall(r"(?<![A-Z])V\((\w+)\)", text))  # V(kind), not RV(refused)
    assert documented == returnable(module), (documented ^ returnable(module))
    assert doc["error_kind"]["returned"] == doc["fix"]["returned"] == "on failure"
    assert doc["fix"]["type"] == "str"


@pytest.mark.parametrize("module", MODULES)
def test_every_module_fails_through_the_vocabulary(module):
    """No module calls fail_json itself: _errors.fail puts error_kind and its fix beside every message."""
    tree = ast.parse((PLUGINS / "modules" / (module + ".py")).read_text())
    calls = [node.lineno for node in ast.walk(tree)
             if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "fail_json"]
    assert not calls, (module, calls)


def test_fail_puts_the_kind_and_its_fix_beside_the_message():
    class Module:
        def fail_json(self, **result):
            self.result = result

    module = Module()
    _errors.fail(module, _errors.LOCKED, "held by pid 7", lock_wait=3.0)
    assert module.result == {"msg": "held by pid 7", "error_kind": "locked", "fix": _errors.FIXES["locked"],
                             "lock_wait": 3.0, "changed": False}
    _errors.fail(module, "no_such_kind", "boom")
    assert module.result["fix"] == _errors.FIXES["other"]


def test_the_role_keeps_no_fix_of_its_own():
    """The role shows the module's fix; a map from kinds to texts in its vars would drift from it."""
    role_vars = yaml.safe_load((PLUGINS.parent / "roles" / "model_cache" / "vars" / "main.yml").read_text())
    for name, value in role_vars.items():
        assert not (isinstance(value, dict) and set(value) & _errors.KINDS), name
