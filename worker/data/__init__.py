"""Training data: the Acme gold trajectories and ToolBench import and export."""

from worker.data.build import BuildError, BuildResult, build_dataset, split_roles
from worker.data.toolbench import (
    export_toolbench,
    export_trajectory,
    import_stage_1,
    import_toolbench,
)

__all__ = [
    "BuildError",
    "BuildResult",
    "build_dataset",
    "export_toolbench",
    "export_trajectory",
    "import_stage_1",
    "import_toolbench",
    "split_roles",
]
