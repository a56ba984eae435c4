"""Import PyTorch Geometric once, without the warning it triggers on import.

PyG 2.x decorates a few pooling helpers with ``torch.jit.script`` when it is imported, and recent torch
deprecates ``torch.jit.script`` with a ``FutureWarning`` — printed on every ``fgmm demo``, though nothing
in fgmm (or the user's code) called it. Exactly that warning is silenced, only while PyG is imported;
the same warning from any other caller still shows. Importing this module imports PyG that way
(``fgmm.gnn`` does it first thing); :func:`import_pyg` does the same explicitly.
"""

from __future__ import annotations

import warnings
from types import ModuleType

_JIT_SCRIPT_DEPRECATED = r"`torch\.jit\.script` is deprecated"


def import_pyg() -> ModuleType:
    """``import torch_geometric`` with PyG's import-time ``torch.jit.script`` FutureWarning silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_JIT_SCRIPT_DEPRECATED, category=FutureWarning)
        import torch_geometric
        import torch_geometric.nn  # noqa: F401  (the part that scripts at import)
    return torch_geometric


import_pyg()
