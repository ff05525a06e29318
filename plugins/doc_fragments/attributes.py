# -*- coding: utf-8 -*-
# Copyright: (c) 2026, JustNews contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """The attributes of the collection's modules.

    DOCUMENTATION describes check_mode, diff_mode and idempotent; each module sets their support (and details)
    itself, or takes them from INFO_MODULE and IDEMPOTENT_NOT_MODIFY_STATE when it only reports.
    """

    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in C(check_mode) and return changed status prediction without modifying target.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in C(check_mode)), when in diff mode.
  idempotent:
    description:
      - When run twice in a row outside check mode, with the same arguments, the second invocation indicates no change.
      - This assumes that the system controlled/queried by the module has not changed in a relevant way.
"""

    # Together with DOCUMENTATION, for the modules that only read and report.
    INFO_MODULE = r"""
options: {}
attributes:
  check_mode:
    support: full
    details:
      - This action does not modify state.
  diff_mode:
    support: N/A
    details:
      - This action does not modify state.
"""

    # Together with DOCUMENTATION, for the modules that only read and report.
    IDEMPOTENT_NOT_MODIFY_STATE = r"""
options: {}
attributes:
  idempotent:
    support: full
    details:
      - This action does not modify state.
"""

    PLATFORM = r"""
options: {}
attributes:
  platform:
    description: Target OS/families that can be operated against.
    support: N/A
    platforms: posix
"""

    PLATFORM_LINUX = r"""
options: {}
attributes:
  platform:
    description: Target OS/families that can be operated against.
    support: N/A
    platforms: linux
    details:
      - Hosts managed by systemd; the module runs C(systemctl) and C(journalctl) and reads the units' processes in
        C(/proc).
"""

    # For the modules that have an action plugin; each sets the support of async.
    FLOW = r"""
options: {}
attributes:
  action:
    description: Indicates this has a corresponding action plugin so some parts of the options can be executed on the controller.
    support: full
  async:
    description: Supports being used with the C(async) keyword.
"""

    # The modules that fetch a model (hf_snapshot, hf_carry) are in both groups.
    ACTIONGROUP_FETCH = r"""
options: {}
attributes:
  action_group:
    description:
      - Use C(group/justnews.huggingface.cache) in C(module_defaults) to set defaults for this module, or
        C(group/justnews.huggingface.fetch) for the options every fetch of a model shares (free_space_margin,
        shared_blobs, verify_checksums, retries, timeout, and where and as whom it writes).
    support: full
    membership:
      - justnews.huggingface.cache
      - justnews.huggingface.fetch
"""

    ACTIONGROUP_CACHE = r"""
options: {}
attributes:
  action_group:
    description: Use C(group/justnews.huggingface.cache) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - justnews.huggingface.cache
"""
