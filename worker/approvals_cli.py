"""The gates' command line, moved to ``worker.gates.cli``: this name is that module itself,
so imports and monkeypatches of the old path keep working."""

import sys

from worker.gates import cli

sys.modules[__name__] = cli
