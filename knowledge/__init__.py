"""The shipped knowledge files (``fgmm.knowledge``): vocabulary, SHACL shapes, taxonomies.

Read them with :func:`fgmm.resources.knowledge_file`; see ``README.md`` here for the modelling.
"""
