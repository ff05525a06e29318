"""Import the collection through Ansible's own collection loader, from an ansible_collections tree."""

import tempfile
from pathlib import Path

from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder

REPO = Path(__file__).resolve().parents[2]

_ROOT = Path(tempfile.mkdtemp(prefix="jnhf-collections-"))
(_ROOT / "ansible_collections" / "justnews").mkdir(parents=True)
(_ROOT / "ansible_collections" / "justnews" / "huggingface").symlink_to(REPO)
_AnsibleCollectionFinder(paths=[str(_ROOT)])._install()  # pylint: disable=protected-access
