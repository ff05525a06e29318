# -*- coding: utf-8 -*-
# Copyright: (c) 2026, JustNews contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Sizes and free space: the sizes the options take ('512M', '1.5G') and the room left where a cache
is written.

Private to the justnews.huggingface collection: no compatibility promise.
"""

from __future__ import annotations

import os
import re

from ansible.module_utils.common.text.formatters import human_to_bytes


SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_size(value):
    """Bytes from an int or a size such as '512M' or '1.5G' (K, M, G, T are powers of 1024, as Ansible's
    human_to_bytes reads them; '2GiB', '10 KB' and '1g' are read too); ValueError else."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        if value < 0:
            raise ValueError(value)
        return value
    match = SIZE_RE.match(str(value))
    if not match:
        raise ValueError(value)
    return human_to_bytes(match.group(1), default_unit=match.group(2).upper() or None)


def nearest_existing(path):
    """The path itself or its closest ancestor that exists: where a folder about to be created will live."""
    while not os.path.lexists(path):
        parent = os.path.dirname(path) or "/"
        if parent == path:
            break
        path = parent
    return path


def free_space(path):
    """(bytes free for unprivileged writers, device) of the filesystem that holds or will hold `path`."""
    existing = nearest_existing(os.path.abspath(path))
    st = os.statvfs(existing)
    return st.f_bavail * st.f_frsize, os.stat(existing).st_dev
