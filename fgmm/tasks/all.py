"""Import every built-in task module so that they register in :data:`fgmm.tasks.TASKS`."""

from fgmm.tasks import image, kg, text  # noqa: F401
