# -*- coding: utf-8 -*-
# Copyright: (c) 2026, JustNews contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """The role that runs the modules for a fleet, as a seealso entry."""

    DOCUMENTATION = r"""
options: {}
seealso:
  - name: The justnews.huggingface.model_cache role
    description: Runs the collection's modules for a fleet from one set of variables (C(model_cache_models) and
      the rest) - the fetch, the bundle and the bake, the drop-ins and the restarts, the doctor and the prune.
    link: https://github.com/justnews/justnews.huggingface/blob/main/roles/model_cache/README.md
"""
