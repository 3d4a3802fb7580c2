"""Held calls, moved to ``worker.gates.calls``: this name is that module itself,
so imports and monkeypatches of the old path keep working."""

import sys

from worker.gates import calls

sys.modules[__name__] = calls
