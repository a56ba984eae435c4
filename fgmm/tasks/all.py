"""Import every built-in task module so that they register in :data:`fgmm.tasks.TASKS`."""

from fgmm.tasks import audio, geo, image, image_retrieval, kg, noise, text, text_novel, zsl_ps  # noqa: F401
