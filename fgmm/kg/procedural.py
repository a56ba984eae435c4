"""The knowledge graph of the procedural demo dataset, built from its class spec.

:func:`fgmm.data.procedural.procedural_class_spec` is the one source of the procedural classes;
this module turns it into RDF: every species under its genus, every ``has_<part>::<value>``
attribute in its group and part (grouped like CUB), and one link per (class, attribute) with the
spec's strength. ``knowledge/procedural.ttl`` is this graph for the default demo configuration; a
test checks that the shipped file equals a fresh build.
"""

from __future__ import annotations

import re

from fgmm.data.procedural import ATTRIBUTE_GROUPS, ATTRIBUTE_NAMES, procedural_class_spec
from fgmm.kg.cub import attribute_label, part_of_group, words
from fgmm.kg.graph import KnowledgeGraph

PROCEDURAL_BASE = "https://fgmm.dev/kg/procedural/"

#: the demo configuration whose graph ships as ``knowledge/procedural.ttl``
DEFAULT_CONFIG: dict[str, int] = {"num_classes": 20, "seed": 0, "unseen_classes": 5}


def class_name(label: str) -> str:
    """Node name of a procedural class or genus: ``"Crimson-crowned Warbler"`` → ``Crimson-crowned_Warbler``."""
    return re.sub(r"\s+", "_", label.strip())


def build_procedural_kg(num_classes: int = DEFAULT_CONFIG["num_classes"], seed: int = DEFAULT_CONFIG["seed"],
                        unseen_classes: int = DEFAULT_CONFIG["unseen_classes"]) -> KnowledgeGraph:
    """The knowledge graph of ``procedural_class_spec(num_classes, seed, unseen_classes=...)``.

    Species are named by their label with underscores (``fgmm:index`` = dataset label) and sit
    under their genus; descriptions come from the spec; held-out (zero-shot) classes say so in
    their description.
    """
    specs = procedural_class_spec(num_classes, seed, unseen_classes=unseen_classes)
    config = f"num_classes={num_classes}, seed={seed}, unseen_classes={unseen_classes}"
    kg = KnowledgeGraph(PROCEDURAL_BASE, title="Procedural demo birds",
                        source=f"fgmm.data.procedural.procedural_class_spec({config})")
    for group in ATTRIBUTE_GROUPS:
        kg.add_group(group, part=part_of_group(group), label=words(group))
    for index, name in enumerate(ATTRIBUTE_NAMES):
        kg.add_attribute(name, group=name.split("::", 1)[0], label=attribute_label(name), index=index)
    for genus in dict.fromkeys(spec["genus"] for spec in specs):
        kg.add_class(class_name(genus), label=genus, rank="genus",
                     description="A procedural genus whose species share size, bill and tail shape.")
    for spec in specs:
        held_out = " Held out for zero-shot evaluation (no training images)." if spec["unseen"] else ""
        kg.add_class(class_name(spec["name"]), label=spec["name"], parent=class_name(spec["genus"]),
                     rank="species", description=spec["description"] + held_out, index=spec["index"])
    kg.link_many((class_name(spec["name"]), attribute, strength)
                 for spec in specs for attribute, strength in spec["attributes"].items())
    return kg
