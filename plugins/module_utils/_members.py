# -*- coding: utf-8 -*-
# Copyright: (c) 2026, JustNews contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a tar member must be to be read as a blob: shared by bundles (_bundle) and carried streams (_carry).

Private to the justnews.huggingface collection: no compatibility promise.
"""

from __future__ import annotations

import tarfile

# A plain regular file whose stored data is its content, byte for byte.
PLAIN_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE)


def plain_member(member):
    """None when `member` is a plain regular member whose stored data is its content; else why it is not.

    tarfile counts GNU sparse members (type S, or a regular type with GNU.sparse.* PAX headers) as regular
    files, but reading one yields its holes as zeros: a few KiB in the archive would become any number of
    bytes on disk. Continuous-file members (type 7) are refused as well: no bundle has them."""
    if member.issym() or member.islnk():
        return "a link"
    if member.type not in PLAIN_TYPES and member.type != tarfile.GNUTYPE_SPARSE:
        return "a special file (tar type %r)" % member.type.decode("latin-1")
    sparse_keys = sorted(k for k in (member.pax_headers or {}) if k.startswith("GNU.sparse"))
    if member.type == tarfile.GNUTYPE_SPARSE or getattr(member, "sparse", None) is not None or sparse_keys:
        return "a sparse member%s, whose size on disk is not the size it stores" % (
            " (PAX header %s)" % sparse_keys[0] if sparse_keys else "")
    return None
