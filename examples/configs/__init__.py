"""Example experiment configs, shipped as ``fgmm.configs``: read them with :func:`fgmm.resources.example_config`."""
