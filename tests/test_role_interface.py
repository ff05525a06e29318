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
