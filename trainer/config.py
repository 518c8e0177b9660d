"""Moved to ``trainer.core.config`` (the shared core). This name is an alias of that module, kept while
branches written before the move are landed; nothing in the repository imports it
(tests/test_one_table.py::test_nothing_imports_the_shared_core_by_its_old_name)."""

import sys

from trainer.core import config as _moved

sys.modules[__name__] = _moved
