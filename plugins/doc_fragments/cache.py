# -*- coding: utf-8 -*-
# Copyright: (c) 2026, JustNews contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """Options of the modules that work on a hub cache of the managed host."""

    # cache_dir, as every module that finds the cache the way huggingface_hub does takes it.
    DOCUMENTATION = r"""
options:
  cache_dir:
    description:
      - The hub cache directory on the managed host.
      - Defaults to the directory C(huggingface_hub) itself uses on the host, C($HF_HUB_CACHE), else
        C($HF_HOME/hub), else C(~/.cache/huggingface/hub). Note that a process with C(HF_HOME=/x) looks in
        C(/x/hub), not in C(/x).
    type: path
"""

    # The options of justnews.huggingface.hf_snapshot that take a model into the cache, for the modules that
    # take models in as it does (hf_carry, hf_receive).
    SNAPSHOT_OPTIONS = r"""
options:
  hf_home:
    description: As O(justnews.huggingface.hf_snapshot#module:hf_home).
    type: path
  dir_mode:
    description: As O(justnews.huggingface.hf_snapshot#module:dir_mode).
    type: str
  owner:
    description: As O(justnews.huggingface.hf_snapshot#module:owner).
    type: str
  group:
    description: As O(justnews.huggingface.hf_snapshot#module:group).
    type: str
  mode:
    description: As O(justnews.huggingface.hf_snapshot#module:mode).
    type: raw
    default: '0644'
  free_space_margin:
    description: As O(justnews.huggingface.hf_snapshot#module:free_space_margin); the staged copy counts too.
    type: raw
    default: 1G
  shared_blobs:
    description: As O(justnews.huggingface.hf_snapshot#module:shared_blobs).
    type: bool
    default: true
  verify_checksums:
    description: As O(justnews.huggingface.hf_snapshot#module:verify_checksums).
    type: bool
    default: true
  retries:
    description: As O(justnews.huggingface.hf_snapshot#module:retries).
    type: int
    default: 5
  timeout:
    description: As O(justnews.huggingface.hf_snapshot#module:timeout).
    type: int
    default: 1800
"""
