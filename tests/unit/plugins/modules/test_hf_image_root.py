"""hf_image_root's hub_cache, models and dropins: what the bake writes into an image, as the drop-in and tag that
a host gets, never with a token."""

from __future__ import annotations

import pytest

from ansible_collections.justnews.huggingface.plugins.module_utils import _agent_env, _errors
from ansible_collections.justnews.huggingface.plugins.modules import hf_image_root

COMMIT = "c" * 40
DROPIN = {"units": ["justnews@memory.service", "justnews@scout.service"], "dropin_name": "60-hf-cache.conf",
          "hf_home": "/var/cache/hf", "hub_cache": "/var/cache/hf/hub", "offline": True, "endpoint": ""}


def params(**extra):
    p = {"dirs": [], "files": [], "links": [], "hub_cache": None, "models": [], "dropins": None}
    p.update(extra)
    return p


def test_each_unit_gets_the_hosts_dropin_without_a_token_in_a_folder_of_roots():
    dirs, files, links = hf_image_root.planned(params(dropins=DROPIN))
    assert [d["path"] for d in dirs] == ["/etc/systemd/system/%s.d" % u for u in DROPIN["units"]]
    assert all(d["owner"] == "root" and d["mode"] == "0755" for d in dirs) and links == []
    for unit, entry in zip(DROPIN["units"], files):
        assert entry["path"] == "/etc/systemd/system/%s.d/60-hf-cache.conf" % unit and entry["mode"] == "0644"
        text = _agent_env.dropin_text(unit, "/var/cache/hf", "/var/cache/hf/hub", True, "", "", None)
        assert entry["content"].encode() == text and "EnvironmentFile" not in entry["content"]


def test_the_tag_is_huggingface_hubs_and_an_existing_one_is_kept():
    _dirs, files, _links = hf_image_root.planned(params(hub_cache="/var/cache/hf/hub/"))
    assert files == [{"path": "/var/cache/hf/hub/CACHEDIR.TAG", "content": _agent_env.CACHEDIR_TAG, "mode": "0644",
                      "force": False}]


def test_each_record_with_a_link_is_linked_to_its_snapshot_as_the_image_sees_it():
    records = [{"repo_id": "org/name", "repo_type": "model", "commit": COMMIT, "link": "/opt/models/name"},
               {"repo_id": "org/data", "repo_type": "dataset", "commit": COMMIT, "link": None}]
    _dirs, _files, links = hf_image_root.planned(params(hub_cache="/var/cache/hf/hub", models=records))
    assert links == [{"path": "/opt/models/name",
                      "src": "/var/cache/hf/hub/models--org--name/snapshots/" + COMMIT}]


def test_a_link_without_a_commit_or_a_cache_is_refused():
    record = {"repo_id": "org/name", "commit": None, "link": "/opt/models/name"}
    with pytest.raises(_errors.Failure):
        hf_image_root.planned(params(hub_cache="/var/cache/hf/hub", models=[record]))
    with pytest.raises(_errors.Failure):
        hf_image_root.planned(params(models=[dict(record, commit=COMMIT)]))
