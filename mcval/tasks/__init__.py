"""Quality evaluation and benchmark inputs per task (one module per task).

Importing this package is torch-free; ``get_task(name)`` imports the task's module (and
with it torch and transformers) on demand. Metric names, units and rendering live in
``mcval.metrics``.
"""

from mcval.tasks.base import TaskDataError, TaskHandler, get_task

__all__ = ["TaskDataError", "TaskHandler", "get_task"]
