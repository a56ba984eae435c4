"""The one packaging rule ``pyproject.toml`` cannot express (everything else lives there).

Three folders stay at the top of the repository, where people look for them, and ship *inside* the
package so that an installed fgmm (wheel, sdist or editable) reads them with ``importlib.resources``:

========================  ========================  ===================================================
repository folder         package                   read through
========================  ========================  ===================================================
``knowledge/``            ``fgmm.knowledge``        :func:`fgmm.resources.knowledge_file`
``examples/configs/``     ``fgmm.configs``          :func:`fgmm.resources.example_config`
``datasets/cub-zsl-ps/``  ``fgmm.data.cub_zsl_ps``  :func:`fgmm.data.cub_ps.cub_ps_split` (data only)
========================  ========================  ===================================================

Each mapped code folder holds an ``__init__.py`` (setuptools' editable installs cannot map nested
namespace packages). ``datasets/`` never holds Python, so ``fgmm.data.cub_zsl_ps`` is a data-only
folder of the wheel and sdist; a checkout or an editable install reads the lists from ``datasets/``.
Every ``fgmm*`` package found on disk is shipped as well, so new subpackages need no edit here.
"""

from setuptools import find_namespace_packages, setup

DATA_PACKAGES = {"fgmm.knowledge": "knowledge", "fgmm.configs": "examples/configs",
                 "fgmm.data.cub_zsl_ps": "datasets/cub-zsl-ps"}

setup(
    packages=sorted(find_namespace_packages(include=["fgmm", "fgmm.*"], exclude=["*.__pycache__"])
                    + list(DATA_PACKAGES)),
    package_dir=DATA_PACKAGES,
)
