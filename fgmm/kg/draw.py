"""A picture of one class's neighbourhood: its strongest attributes, their parts, its taxonomy.

Layout: the class in the middle; its ``top_k`` strongest attributes on a ring around it (edge
width and label give the strength, colour the part), grouped by part; the parts on an outer ring;
the taxonomy path (parent, grandparent, ... root) as a column on the left. A class without
attribute links (a genus, a family) shows its subclasses on the ring instead. Drawn with networkx
on a matplotlib ``Figure`` (Agg canvas, no pyplot state), saved atomically as PNG or SVG.
"""

from __future__ import annotations

import io
import math
import textwrap
from pathlib import Path

from fgmm.errors import ConfigError
from fgmm.io import write_bytes_atomic as write_atomic
from fgmm.kg.graph import KnowledgeGraph
from fgmm.kg.vocab import DWC, FGMM, name_of

#: image formats :func:`draw_class` writes, by suffix
IMAGE_FORMATS = {".png": "png", ".svg": "svg"}

CLASS_COLOR, TAXON_COLOR, CHILD_COLOR = "#1f3b63", "#c9d6e8", "#8fb0d9"

#: layout radii and positions (data units; the class sits at the origin)
RING, LABEL_GAP, PART_RING, TAXONOMY_X = 1.45, 0.2, 2.85, -3.0


def _wrap(text: str, width: int = 18) -> str:
    return "\n".join(textwrap.wrap(text, width)) or text


def draw_class(kg: KnowledgeGraph, name: str, out: str | Path, top_k: int = 12, dpi: int = 150) -> Path:
    """Draw the neighbourhood of class ``name`` into ``out`` (``.png`` or ``.svg``).

    Raises:
        ConfigError: unknown class, or an output suffix other than ``.png``/``.svg``.
    """
    import networkx as nx
    from matplotlib.figure import Figure

    out = Path(out)
    fmt = IMAGE_FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise ConfigError(f"cannot draw to '{out}': use a .png or .svg file name")
    if top_k < 1:
        raise ConfigError(f"top_k must be at least 1, got {top_k}")
    node = kg.node("class", name)
    g = kg.graph
    links = sorted(((s, a) for _, c, a, s in kg.link_rows() if c == node), key=lambda sa: (-sa[0], str(sa[1])))
    ring: list[tuple] = []  # (iri, strength or None, part iri or None)
    for strength, attribute in links[:top_k]:
        group = g.value(attribute, FGMM.inGroup)
        ring.append((attribute, strength, g.value(group, FGMM.ofPart) if group is not None else None))
    if not links:
        ring = [(child, None, None) for child in kg.children(node)[:top_k]]
    ring.sort(key=lambda entry: (kg.label(entry[2]) if entry[2] is not None else "~", -(entry[1] or 0.0)))
    parts = list(dict.fromkeys(p for _, _, p in ring if p is not None))
    palette = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
               "#469990", "#9a6324", "#800000", "#808000", "#000075", "#a9a9a9", "#fabed4", "#ffd8b1"]
    part_color = {p: palette[i % len(palette)] for i, p in enumerate(parts)}

    graph = nx.DiGraph()
    pos: dict[str, tuple[float, float]] = {"class": (0.0, 0.0)}
    spread = 2 * math.pi * 0.8  # the ring leaves a gap on the left for the way to the taxonomy column
    angles = [math.pi - (2 * math.pi - spread) / 2 - spread * (i + 0.5) / max(len(ring), 1)
              for i in range(len(ring))]
    labels: dict[str, tuple[str, float, float, str, str]] = {}  # key -> (text, x, y, ha, va)
    for i, (iri, strength, part) in enumerate(ring):
        key, (cos, sin) = f"n{i}", (math.cos(angles[i]), math.sin(angles[i]))
        pos[key] = (RING * cos, RING * sin)
        text = _wrap(kg.label(iri) if strength is None else f"{kg.label(iri)} ({strength:.2f})")
        ha = "left" if cos > 0.3 else "right" if cos < -0.3 else "center"
        va = "center" if abs(cos) > 0.3 else "bottom" if sin > 0 else "top"
        labels[key] = (text, (RING + LABEL_GAP) * cos, (RING + LABEL_GAP) * sin, ha, va)
        graph.add_edge("class", key, width=1.0 if strength is None else 0.8 + 7.0 * strength)
        if part is not None:
            graph.add_edge(key, f"p:{part}", width=0.6)
    for part in parts:
        members = [angles[i] for i, entry in enumerate(ring) if entry[2] == part]
        mean = math.atan2(sum(map(math.sin, members)), sum(map(math.cos, members)))
        pos[f"p:{part}"] = (PART_RING * math.cos(mean), PART_RING * math.sin(mean))
        labels[f"p:{part}"] = (kg.label(part), *pos[f"p:{part}"], "center", "center")
    lineage = kg.lineage(node)[1:]
    for depth, ancestor in enumerate(lineage):
        key = f"t{depth}"
        pos[key] = (TAXONOMY_X, 0.62 * depth)
        rank = g.value(ancestor, DWC.taxonRank)
        labels[key] = (_wrap(kg.label(ancestor) + (f" ({rank})" if rank else ""), 20), *pos[key], "center",
                       "center")
        graph.add_edge("class" if depth == 0 else f"t{depth - 1}", key, width=1.2)
    graph.add_nodes_from(pos)

    fig = Figure(figsize=(12, 9.5), dpi=dpi)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_axis_off()
    edges = list(graph.edges(data=True))
    nx.draw_networkx_edges(graph, pos, ax=ax, edgelist=[(u, v) for u, v, _ in edges],
                           width=[d["width"] for _, _, d in edges], edge_color="#7a7a7a", alpha=0.75,
                           arrows=False)
    nx.draw_networkx_nodes(graph, pos, ax=ax, nodelist=[f"n{i}" for i in range(len(ring))], node_size=420,
                           linewidths=0.8, edgecolors="#333333",
                           node_color=[part_color.get(p, CHILD_COLOR) for _, _, p in ring] or CHILD_COLOR)
    nx.draw_networkx_nodes(graph, pos, ax=ax, nodelist=[f"p:{p}" for p in parts], node_shape="s",
                           node_size=1300, node_color=[part_color[p] for p in parts], alpha=0.45)
    nx.draw_networkx_nodes(graph, pos, ax=ax, nodelist=[f"t{d}" for d in range(len(lineage))], node_size=700,
                           node_color=TAXON_COLOR, edgecolors="#5577aa")
    nx.draw_networkx_nodes(graph, pos, ax=ax, nodelist=["class"], node_size=3600, node_color=CLASS_COLOR)
    nx.draw_networkx_labels(graph, pos, ax=ax, labels={"class": _wrap(kg.label(node), 12)}, font_size=8.5,
                            font_color="white", font_weight="bold")
    for text, x, y, ha, va in labels.values():
        ax.text(x, y, text, fontsize=7.5, ha=ha, va=va,
                bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.8})
    scientific = g.value(node, DWC.scientificName)
    title = kg.label(node) + (f"  ({scientific})" if scientific and str(scientific) != kg.label(node) else "")
    shown = (f"top {len(ring)} of {len(links)} attributes by strength (edge width = strength), coloured by part"
             if links else f"{len(ring)} subclasses (no attribute links)")
    fig.suptitle(title, fontsize=15, fontweight="bold")
    ax.set_title(f"{name_of(node)} — {shown}; taxonomy on the left", fontsize=9.5, color="#444444")
    ax.set_xlim(TAXONOMY_X - 0.8, PART_RING + 0.5)
    ax.set_ylim(-PART_RING - 0.4, max(PART_RING, 0.62 * len(lineage)) + 0.4)
    ax.set_aspect("equal")
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, bbox_inches="tight")
    write_atomic(out, buffer.getvalue())
    return out
