#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, JustNews contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: hf_image_root
short_description: Check and write into a directory being built into a container or VM image
version_added: 0.1.0
description:
  - Checks O(image_root), a directory being built into a container or VM image on the machine that builds it, and
    returns the ids that the image's own C(/etc/passwd) and C(/etc/group) give to O(owner) and O(group) (read
    without following a symlink, regular files of at most 4 MiB). A service user or group with id 0 is refused
    unless O(allow_root).
  - Each of O(paths) is checked (no C(..), no existing symlink below O(image_root) on the way) and returned under
    RV(image_root) by the name it was given, in RV(paths).
  - It then creates O(dirs), writes O(files) and makes O(links), each through a descriptor of the image root with
    every component opened without following symlinks at the moment of the write - a component that is a
    symlink fails with RV(error_kind=unsafe_image_root) and nothing is written outside the root.
  - The role justnews.huggingface.model_cache calls it from its C(bake) entry point, with
    M(justnews.huggingface.hf_snapshot) filling the cache at the paths it returns.
author:
  - JustNews maintainers (@justnews)
extends_documentation_fragment:
  - justnews.huggingface.attributes
  - justnews.huggingface.attributes.platform
  - justnews.huggingface.model_cache
attributes:
  check_mode:
    support: full
    details:
      - Tells what would be created or changed in the image and writes nothing.
  diff_mode:
    support: none
    details:
      - RV(written) names what was created or changed.
  idempotent:
    support: full
    details:
      - Writes only what differs.
options:
  image_root:
    description:
      - The directory built into the image. It must exist and must not be C(/).
    type: path
    required: true
  owner:
    description: The service user, looked up in the image's C(/etc/passwd).
    type: str
    required: true
  group:
    description:
      - The group, looked up in the image's C(/etc/group). Unset uses the user's primary group there.
    type: str
  allow_root:
    description:
      - Accept an O(owner) whose uid in the image is 0, or a group (O(group) or the user's primary group) whose gid
        is 0. Without it such an image fails with RV(error_kind=unsafe_image_root) before anything is written - the
        cache would belong to root in the image, which is more likely an altered C(/etc/passwd) than a choice.
    type: bool
    default: false
  paths:
    description:
      - Paths that will be written, by name - each value an absolute path as the image sees it. No component may
        be C(..), and no existing component below O(image_root) may be a symlink, which the controller would
        resolve against its own root. Each is returned under RV(image_root) in RV(paths), by the same name.
    type: dict
    default: {}
  dirs:
    description:
      - Folders (paths as the image sees them) to create in the image. Missing folders on the way are made root's,
        mode 0755.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: The folder, as the image sees it.
        type: str
        required: true
      owner:
        description:
          - V(service) (the ids of O(owner) and O(group) in the image) or V(root). Unset, a new folder is root's
            and an existing one keeps its owner.
        type: str
        choices: [root, service]
      mode:
        description: Permissions in octal; unset, a new folder gets 0755 and an existing one keeps its mode.
        type: raw
  files:
    description:
      - Files of root's to write into the image. Each is written to a new name in its folder and renamed into
        place, so a symlink at the path is replaced, never written through.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: The file, as the image sees it.
        type: str
        required: true
      content:
        description: Its content.
        type: str
        required: true
      mode:
        description: Permissions in octal.
        type: raw
        default: '0644'
      force:
        description: Replace an existing entry whose content or mode differs; V(false) keeps any existing entry.
        type: bool
        default: true
  links:
    description:
      - Symlinks to make in the image, owned by the service user; an existing link or file at the path is
        replaced, a directory is refused.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: The link, as the image sees it.
        type: str
        required: true
      src:
        description: Its target, as the image sees it (absolute; never followed here).
        type: str
        required: true
  hub_cache:
    description:
      - The hub cache as the image sees it. Its C(CACHEDIR.TAG) is written there (root's, C(0644), an existing one
        kept), the text C(huggingface_hub) writes into a cache it downloads into, and the links of O(models)
        point into it.
    type: str
    version_added: 0.1.1
  models:
    description:
      - The models' records (the C(record) that M(justnews.huggingface.hf_snapshot) and
        M(justnews.huggingface.hf_carry) return per model); each whose C(link) is set gets that link, as O(links)
        does, to its snapshot under O(hub_cache) (C(<hub_cache>/models--owner--name/snapshots/<commit>)).
    type: list
    elements: dict
    default: []
    version_added: 0.1.1
  dropins:
    description:
      - The agents' Hugging Face environment, written for each of O(dropins.units) as
        C(/etc/systemd/system/<unit>.d/<dropin_name>) (root's, C(0644), in a folder of root's, C(0755)) - the drop-in
        M(justnews.huggingface.hf_agent_env) writes on a host, without a token; give the agents one at deploy time
        if they need it.
    type: dict
    version_added: 0.1.1
    suboptions:
      units:
        description: The units, such as C(justnews@memory.service).
        type: list
        elements: str
        required: true
      dropin_name:
        description: The drop-in's file name.
        type: str
        default: 60-hf-cache.conf
      hf_home:
        description: C(HF_HOME) of the agents.
        type: str
        required: true
      hub_cache:
        description: C(HF_HUB_CACHE) of the agents.
        type: str
        required: true
      offline:
        description: Set C(HF_HUB_OFFLINE=1).
        type: bool
        default: true
      endpoint:
        description: C(HF_ENDPOINT), when not empty.
        type: str
        default: ""
notes:
  - Runs on the machine that builds the image (the controller, as a rule), as root so that ownership can be set.
seealso:
  - module: justnews.huggingface.hf_snapshot
    description: Fills the image's cache at the paths this module returns, owned by the image's service user.
  - module: justnews.huggingface.hf_carry
    description: Fills the image's cache from the controller's cache or a bundle, without links
      (O(justnews.huggingface.hf_carry#module:links=false)), which this module then makes.
  - module: justnews.huggingface.hf_bundle
    description: Writes the bundle a bake can take the models from.
"""

EXAMPLES = r"""
- name: Check the image root, resolve the service user in the image and create the cache
  justnews.huggingface.hf_image_root:
    image_root: /srv/images/agent/rootfs
    owner: justnews
    paths:
      hf_home: /var/cache/hf
      hub_cache: /var/cache/hf/hub
    dirs:
      - path: /var/cache/hf
        owner: service
        mode: "0750"
      - path: /var/cache/hf/hub
        owner: service
        mode: "0750"
  register: image

- name: Fetch a model into the image's cache, owned by the service user of the image
  justnews.huggingface.hf_snapshot:
    repo_id: sentence-transformers/all-MiniLM-L6-v2
    cache_dir: "{{ image.paths.hub_cache }}"
    owner: "{{ image.uid }}"
    group: "{{ image.gid }}"
  register: minilm

- name: Link the model and install a drop-in
  justnews.huggingface.hf_image_root:
    image_root: /srv/images/agent/rootfs
    owner: justnews
    links:
      - path: /opt/models/minilm
        src: "/var/cache/hf/hub/models--sentence-transformers--all-MiniLM-L6-v2/snapshots/{{ minilm.commit }}"
    files:
      - path: /etc/systemd/system/justnews@scout.service.d/60-hf-cache.conf
        content: |
          [Service]
          Environment=HF_HOME=/var/cache/hf
"""

RETURN = r"""
image_root:
  description: The real path of O(image_root).
  returned: success
  type: str
  sample: /srv/images/agent/rootfs
uid:
  description: The uid of O(owner) in the image.
  returned: success
  type: int
  sample: 1001
gid:
  description: The gid of O(group) (or of the owner's primary group) in the image.
  returned: success
  type: int
  sample: 1001
paths:
  description: Each of O(paths) under RV(image_root), by the name it was given.
  returned: success
  type: dict
  sample: {"hf_home": /srv/images/agent/rootfs/var/cache/hf, "hub_cache": /srv/images/agent/rootfs/var/cache/hf/hub}
written:
  description: The paths (as the image sees them) created or changed in the image (in check mode, that would be).
  returned: success
  type: list
  elements: str
  sample: [/var/cache/hf, /var/cache/hf/hub/CACHEDIR.TAG]
error_kind:
  description:
    - On failure, the cause - V(invalid_argument) (an empty O(owner), a user or group missing from the image, an id
      in the image's C(/etc/passwd) or C(/etc/group) that is not a number, a path with C(..), a missing
      O(image_root) or C(/)), V(unsafe_image_root) (a symlink or non-directory on the way to a path in the image,
      a C(/etc/passwd) or C(/etc/group) that is a symlink or special file, or a service user or group with id 0
      without O(allow_root)), V(other).
  returned: on failure
  type: str
  sample: unsafe_image_root
fix:
  description:
    - On failure, what to do about RV(error_kind), the same text for every failure of that kind (C(msg) names the
      path). It names the options to change, each followed by the variable of the role
      justnews.huggingface.model_cache that sets it.
  returned: on failure
  type: str
  sample: "nothing was written: make each component on the way a directory inside 'image_root'
    (model_cache_image_root), give the service user 'owner' (model_cache_owner) ids other than 0 in the image, or
    set 'allow_root' (model_cache_bake_allow_root) when an image whose agents run as root is meant"
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.justnews.huggingface.plugins.module_utils import _names
from ansible_collections.justnews.huggingface.plugins.module_utils import _agent_env
from ansible_collections.justnews.huggingface.plugins.module_utils import _errors
from ansible_collections.justnews.huggingface.plugins.module_utils import _image_root

# Only the texts of _agent_env are used here (dropin_text, CACHEDIR_TAG), none of its writers: none of its failures reaches this
# module's result.
CONTAINS_FAILURES_OF = ("_agent_env",)


def planned(p):
    """O(dirs), O(files) and O(links) with what O(hub_cache), O(models) and O(dropins) add to them."""
    dirs, files, links = list(p["dirs"]), list(p["files"]), list(p["links"])
    if p["hub_cache"]:
        files.append({"path": p["hub_cache"].rstrip("/") + "/CACHEDIR.TAG", "content": _agent_env.CACHEDIR_TAG,
                      "mode": "0644", "force": False})
    for record in p["models"]:
        if not record.get("link"):
            continue
        if not p["hub_cache"] or not _names.is_commit(record.get("commit") or ""):
            raise _errors.Failure(_errors.INVALID_ARGUMENT, "models: %s needs hub_cache and a 40-hex commit to be"
                                  " linked" % record.get("repo_id"))
        folder = _names.repo_folder_name(record.get("repo_id") or "", record.get("repo_type") or "model")
        links.append({"path": record["link"],
                      "src": "%s/%s/snapshots/%s" % (p["hub_cache"].rstrip("/"), folder, record["commit"])})
    env = p["dropins"]
    for unit in (env or {}).get("units") or []:
        folder = "/etc/systemd/system/%s.d" % unit
        text = _agent_env.dropin_text(unit, env["hf_home"], env["hub_cache"], env["offline"], env["endpoint"], "",
                                      None).decode("utf-8")
        dirs.append({"path": folder, "owner": "root", "mode": "0755"})
        files.append({"path": "%s/%s" % (folder, env["dropin_name"]), "content": text, "mode": "0644", "force": True})
    return dirs, files, links


def run(module, p, result):
    root = _image_root.check_image_root(p["image_root"])
    if not p["owner"]:
        raise _errors.Failure(_errors.INVALID_ARGUMENT,
                              "owner must name the service user of the image (set model_cache_owner)")
    uid, gid = _image_root.image_ids(root, p["owner"], p["group"], p["allow_root"])
    result.update(image_root=root, uid=uid, gid=gid, paths=_image_root.paths_in_root(root, p["paths"]))
    writer = _image_root.ImageWriter(root, uid, gid, check=module.check_mode)
    dirs, files, links = planned(p)
    for entry in dirs:
        writer.directory(entry["path"], entry.get("owner"), entry.get("mode"))
    for entry in files:
        writer.file(entry["path"], entry["content"], entry.get("mode") or "0644", entry.get("force", True))
    for entry in links:
        writer.link(entry["path"], entry["src"])
    result.update(changed=bool(writer.changed), written=writer.changed)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            image_root=dict(type="path", required=True),
            owner=dict(type="str", required=True),
            group=dict(type="str"),
            allow_root=dict(type="bool", default=False),
            paths=dict(type="dict", default={}),
            dirs=dict(type="list", elements="dict", default=[], options=dict(
                path=dict(type="str", required=True),
                owner=dict(type="str", choices=["root", "service"]),
                mode=dict(type="raw"))),
            files=dict(type="list", elements="dict", default=[], options=dict(
                path=dict(type="str", required=True),
                content=dict(type="str", required=True),
                mode=dict(type="raw", default="0644"),
                force=dict(type="bool", default=True))),
            links=dict(type="list", elements="dict", default=[], options=dict(
                path=dict(type="str", required=True),
                src=dict(type="str", required=True))),
            hub_cache=dict(type="str"),
            models=dict(type="list", elements="dict", default=[]),
            dropins=dict(type="dict", options=dict(
                units=dict(type="list", elements="str", required=True),
                dropin_name=dict(type="str", default="60-hf-cache.conf"),
                hf_home=dict(type="str", required=True),
                hub_cache=dict(type="str", required=True),
                offline=dict(type="bool", default=True),
                endpoint=dict(type="str", default=""))),
        ),
        supports_check_mode=True,
    )
    p = module.params
    result = {"changed": False}
    try:
        run(module, p, result)
    except _errors.Failure as exc:
        result.update(changed=False)
        _errors.fail_with(module, exc, **result)
    except OSError as exc:
        result.update(changed=False)
        _errors.fail(module, _errors.OTHER, "writing into the image root failed on %s: %s"
                     % (exc.filename or p["image_root"], exc), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
