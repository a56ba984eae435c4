"""Class descriptions generated from a knowledge graph: text for every class, captioned or not.

A class with no caption can still be described: the KG knows its attribute strengths per part,
its taxonomy and its authored description. :class:`Describer` turns them into deterministic English,
used as training text for the joint space (so text queries reach classes nobody captioned) and as
the explanation of text-only class ranking.

**Rules** (all thresholds live in :class:`DescribeConfig`):

1. *Values per attribute group.* In each group (CUB: ``has_crown_color``), the values of class
   :math:`c` are ranked by strength :math:`s_{ca}`; value :math:`a` is kept when
   :math:`s_{ca} \\ge` ``min_strength`` and :math:`s_{ca} \\ge` ``relative`` :math:`\\cdot \\max_{a'} s_{ca'}`
   (co-dominant colours: "black and white wings"), at most ``max_values`` per colour group and one
   per group of any other aspect (a bill has one shape, a bird one size).
2. *Salience.* A kept value's salience is its contrast to the average class,
   :math:`s_{ca} - \\frac{1}{C}\\sum_{c'} s_{c'a}`: a red crown is worth saying, black eyes (most birds)
   are not. Phrases are ordered by the largest salience of their values (ties: text).
3. *Phrases per part.* The kept values of one part's groups become one noun phrase, modifiers in the
   order length, pattern, colour, shape (``"a short black cone-shaped bill"``); values that are
   things of their own become their own phrase (``"an eye ring"``, ``"a crest"``). Parts whose
   modifiers are identical are merged (``"a red crown, throat and breast"``). Size, whole-body colour
   and body shape describe the bird itself (``"a small mostly red perching bird"``). How groups and
   values read is :mod:`fgmm.kg.phrases`.
4. *Taxonomy.* The *group noun* is the head noun of the class's label ("Vermilion Flycatcher" →
   flycatcher) when another leaf class of the same family (or, without families, the same parent)
   shares it, or when the family's or order's common name lists it ("Old World sparrows" → sparrow);
   otherwise there is none and the text says "bird". The family is named with its common name (its
   ``dcterms:description``, for taxa of rank family or order) when it has one.
5. *Canonical description* (:attr:`ClassDescription.text`): the taxonomy sentence, an appearance
   sentence with the ``max_phrases`` most salient phrases, then the authored ``dcterms:description``
   and ``rdfs:comment`` of the class verbatim.
6. *Variants* (attribute-phrase augmentation, :attr:`ClassDescription.variants`): ``variants``
   caption-style sentences (:data:`VARIANT_TEMPLATES`), each naming a subset of 2-4 phrases drawn
   without replacement with probability proportional to salience (floor 0.05) from the
   ``pool`` most salient, with a random stream seeded by ``seed`` and the class name (Python's
   ``random.Random``), so the same graph and config give the same sentences on every machine.

Descriptions are stored in the graph as ``prov:Entity`` nodes ``<namespace>description/<class>/<k>``
(``rdf:value`` the text, ``dcterms:subject`` the class, ``dcterms:type`` ``"canonical"`` or
``"variant"``, ``prov:wasGeneratedBy`` ``<namespace>activity/fgmm-describe``, whose
``dcterms:description`` records the config) by :func:`write_descriptions`, read back by
:func:`read_descriptions`, and exported as JSON lines by :func:`export_descriptions`.

Example::

    describer = Describer(import_cub("data/cub200"))
    d = describer.describe("Vermilion Flycatcher")
    d.text       # "The Vermilion Flycatcher (Pyrocephalus rubinus) is a flycatcher of the family ..."
    d.variants   # ["this flycatcher has a red crown, forehead, throat, breast and belly ...", ...]
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from rdflib import Literal, URIRef
from rdflib.namespace import DCTERMS, PROV, RDF, RDFS

from fgmm.errors import ConfigError
from fgmm.io import write_bytes_atomic
from fgmm.kg.graph import KnowledgeGraph
from fgmm.kg.phrases import article, aspect_and_noun, join, noun_phrase, value_phrase
from fgmm.kg.vocab import DWC, FGMM, SAFE, name_of

#: modifier order within a part's noun phrase
MODIFIER_ORDER = ("length", "pattern", "color", "shape", "kind")

#: order of nouns in a merged phrase (head to tail); other nouns follow alphabetically
NOUN_ORDER = ("forehead", "crown", "head", "nape", "eye", "throat", "breast", "belly", "underparts", "back",
              "upperparts", "wing", "tail", "upper tail", "under tail", "leg", "bill")

#: caption-style templates of the variants; ``{noun}`` is the group noun or "bird"
VARIANT_TEMPLATES = (
    "this bird has {phrases}.",
    "a {size} {noun} with {phrases}.",
    "this {noun} has {phrases}.",
    "the bird has {phrases}.",
    "a {body} bird with {phrases}.",
    "this {size} bird has {phrases}.",
)

#: the ``prov:Activity`` (under the graph's namespace) that generated stored descriptions
ACTIVITY = "activity/fgmm-describe"


@dataclass(frozen=True)
class DescribeConfig:
    """Thresholds of :class:`Describer` (see the module docstring for the rules).

    Attributes:
        min_strength: a value is mentioned only at or above this strength.
        relative: ... and at or above this share of its group's strongest value.
        max_values: at most this many values per colour group ("black and white"); other groups keep one.
        max_phrases: phrases in the canonical description.
        variants: caption-style variants per class.
        pool: the most salient phrases variants draw from.
        phrases_per_variant: ``(fewest, most)`` phrases in a variant.
        seed: seed of the variants.
    """

    min_strength: float = 0.3
    relative: float = 0.6
    max_values: int = 2
    max_phrases: int = 8
    variants: int = 10
    pool: int = 10
    phrases_per_variant: tuple[int, int] = (2, 4)
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_strength <= 1.0 or not 0.0 <= self.relative <= 1.0:
            raise ConfigError("describe: min_strength and relative must be in [0, 1]")
        low, high = self.phrases_per_variant
        if min(self.max_values, self.max_phrases, self.pool, low) < 1 or high < low or self.variants < 0:
            raise ConfigError("describe: max_values, max_phrases, pool and phrases_per_variant must be positive, "
                              "phrases_per_variant ordered, variants >= 0")


@dataclass(frozen=True)
class Evidence:
    """One attribute value a description states: name, strength and contrast to the average class."""

    attribute: str
    strength: float
    contrast: float
    aspect: str
    noun: str
    words: str
    feature: bool = False


@dataclass(frozen=True)
class Phrase:
    """A noun phrase of a description, its salience and the attributes it states."""

    text: str
    salience: float
    attributes: tuple[str, ...]


@dataclass
class ClassDescription:
    """What :meth:`Describer.describe` returns for one class.

    Attributes:
        name, label: the class's node name and label.
        text: the canonical description (rule 5).
        variants: caption-style variants (rule 6).
        noun: the group noun ("flycatcher"), or ``None``.
        phrases: all phrases, most salient first.
        evidence: every attribute value the phrases state.
    """

    name: str
    label: str
    text: str
    variants: list[str]
    noun: str | None
    phrases: list[Phrase] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)

    def texts(self) -> list[str]:
        """The canonical description followed by the variants."""
        return [self.text, *self.variants]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, "noun": self.noun, "text": self.text,
                "variants": self.variants, "phrases": [p.text for p in self.phrases],
                "evidence": [{"attribute": e.attribute, "strength": round(e.strength, 6),
                              "contrast": round(e.contrast, 6)} for e in self.evidence]}


def _lower_first(text: str) -> str:
    """``"Tyrant flycatchers"`` → ``"tyrant flycatchers"``; ``"New World warblers"`` stays (a proper name)."""
    words = text.split()
    if len(words) > 1 and words[1][:1].isupper():
        return text
    return text[:1].lower() + text[1:]


def singular(word: str) -> str:
    """``albatrosses`` → ``albatross``, ``finches`` → ``finch``, ``larks`` → ``lark``, ``chat`` → ``chat``."""
    if word.endswith("sses") or word.endswith(("ches", "shes", "xes")):
        return word[:-2]
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def head_noun(label: str) -> str:
    """The last word of a label, lower case: ``"Vermilion Flycatcher"`` → ``flycatcher``; a hyphenated
    last word gives its last piece when that is capitalised (``"Scrub-Jay"`` → ``jay``, but
    ``"Whip-poor-will"`` stays whole)."""
    words = label.strip().split()
    if not words:
        return ""
    piece = words[-1].split("-")[-1]
    return (piece if piece[:1].isupper() else words[-1]).lower()


def common_nouns(common_name: str) -> list[str]:
    """Singular head nouns listed by a common name: ``"Gulls, terns and skimmers"`` → gull, tern, skimmer."""
    text = re.sub(r"\(.*?\)", " ", common_name.lower())
    parts = re.split(r"[,:;]|\band\b|\bor\b", text)
    nouns = [singular(p.split()[-1]) for p in parts if p.split()]
    return [n for n in nouns if n not in ("ally", "allies")]


class Describer:
    """Generates :class:`ClassDescription` s of the classes of a knowledge graph.

    Args:
        kg: the graph (classes, attribute links with strengths, taxonomy, descriptions).
        config: thresholds and variant settings.
        class_order: the classes compared for salience (default: the leaf classes).
    """

    def __init__(self, kg: KnowledgeGraph, config: DescribeConfig | None = None,
                 class_order: Sequence[str] | None = None):
        self.kg = kg
        self.config = config or DescribeConfig()
        self.matrix, self.classes, self.attributes = kg.class_attribute_matrix(class_order)
        self.mean = self.matrix.mean(0) if len(self.classes) else np.zeros(len(self.attributes))
        self.row = {name: i for i, name in enumerate(self.classes)}
        groups: dict[str, list[int]] = {}
        self.readings: list[tuple[str, str, str, str]] = []  # per attribute: aspect, noun, kind, words
        self.group_of: dict[str, str] = {}  # attribute name → group name
        for j, iri in enumerate(kg.nodes("attribute")):
            group_iri = kg.graph.value(iri, FGMM.inGroup)
            name = self.attributes[j]
            group = name_of(group_iri) if group_iri is not None else name.partition("::")[0]
            value = name.partition("::")[2] or name
            aspect, noun = aspect_and_noun(group)
            self.readings.append((aspect, noun, *value_phrase(aspect, noun, value)))
            self.group_of[name] = group
            groups.setdefault(group, []).append(j)
        self.groups = list(groups.values())

    # ------------------------------------------------------------------ attributes → phrases

    def evidence(self, name: str) -> list[Evidence]:
        """The attribute values rule 1 keeps for class ``name`` (in attribute order)."""
        row = self.matrix[self._row(name)]
        cfg = self.config
        kept = []
        for members in self.groups:
            ranked = sorted(members, key=lambda j: (-row[j], j))
            top = row[ranked[0]]
            most = cfg.max_values if self.readings[ranked[0]][0] == "color" else 1
            kept += [j for j in ranked[:most]
                     if row[j] > 0 and row[j] >= cfg.min_strength and row[j] >= cfg.relative * top]
        out = []
        for j in sorted(kept):
            aspect, noun, kind, words = self.readings[j]
            out.append(Evidence(self.attributes[j], float(row[j]), float(row[j] - self.mean[j]), aspect, noun, words,
                                kind == "feature"))
        return out

    def phrases(self, evidence: Sequence[Evidence]) -> tuple[list[Phrase], dict[str, list[Evidence]]]:
        """Rule 3: the part phrases (most salient first) and the body's evidence by aspect."""
        body: dict[str, list[Evidence]] = {}
        parts: dict[str, dict[str, list[Evidence]]] = {}
        out: list[Phrase] = []
        for e in evidence:
            if e.feature:
                out.append(Phrase(e.words, e.contrast, (e.attribute,)))
            elif e.noun == "body":
                body.setdefault(e.aspect, []).append(e)
            else:
                parts.setdefault(e.noun, {}).setdefault(e.aspect, []).append(e)
        merged: dict[tuple[str, ...], list[str]] = {}
        for noun, aspects in parts.items():
            merged.setdefault(self._modifiers(aspects), []).append(noun)
        for modifiers, nouns in merged.items():
            nouns.sort(key=lambda n: (NOUN_ORDER.index(n) if n in NOUN_ORDER else len(NOUN_ORDER), n))
            stated = [e for n in nouns for es in parts[n].values() for e in es]
            out.append(Phrase(noun_phrase(modifiers, nouns), max(e.contrast for e in stated),
                              tuple(sorted({e.attribute for e in stated}, key=self.attributes.index))))
        out.sort(key=lambda p: (-p.salience, p.text))
        return out, body

    @staticmethod
    def _modifiers(aspects: dict[str, list[Evidence]]) -> tuple[str, ...]:
        """Modifier words of one part in :data:`MODIFIER_ORDER` (several values of one aspect joined)."""
        ordered = [a for a in MODIFIER_ORDER if a in aspects] + sorted(set(aspects) - set(MODIFIER_ORDER))
        return tuple(join([e.words for e in sorted(aspects[a], key=lambda e: -e.strength)]) for a in ordered)

    # ------------------------------------------------------------------ taxonomy

    def _rank(self, iri: URIRef) -> str | None:
        value = self.kg.graph.value(iri, DWC.taxonRank)
        return None if value is None else str(value)

    def _common_name(self, iri: URIRef) -> str | None:
        """A family's or order's common name (its description), ``None`` for other ranks."""
        if self._rank(iri) not in ("family", "order"):
            return None
        value = self.kg.graph.value(iri, DCTERMS.description)
        return None if value is None else str(value)

    def group_noun(self, name: str) -> tuple[str | None, URIRef | None]:
        """Rule 4: ``(group noun or None, the family -- or the parent without families -- or None)``."""
        kg = self.kg
        lineage = kg.lineage(name)
        iri = lineage[0]
        family = next((t for t in lineage[1:] if self._rank(t) == "family"), lineage[1] if len(lineage) > 1 else None)
        own = head_noun(kg.label(iri))
        own = own if self._rank(iri) in (None, "species") else singular(own)  # genus leaves: "Phoebes"
        if family is None or not own:
            return None, family
        relatives = [c for c in self.classes if c != name_of(iri) and family in kg.lineage(c)[1:]]
        if any(head_noun(kg.label(kg.node("class", c))) == own for c in relatives):
            return own, family
        listed = [n for t in lineage[1:] if (common := self._common_name(t)) for n in common_nouns(common)]
        return (own if singular(own) in listed else None), family

    def _taxonomy_sentence(self, iri: URIRef, noun: str | None, family: URIRef | None) -> str:
        kg = self.kg
        scientific = kg.graph.value(iri, DWC.scientificName)
        subject = f"The {kg.label(iri)}" + (f" ({scientific})" if scientific is not None else "")
        if family is None:
            return f"{subject} is {article(noun)} {noun}." if noun else ""
        common = self._common_name(family)
        where = f"the {self._rank(family) or 'group'} {kg.label(family)}" + (f" ({_lower_first(common)})"
                                                                             if common else "")
        return f"{subject} is {article(noun)} {noun} of {where}." if noun else f"{subject} belongs to {where}."

    # ------------------------------------------------------------------ sentences

    @staticmethod
    def _body_words(body: dict[str, list[Evidence]]) -> tuple[str, str, str]:
        """``(size, colour, shape)`` words of the whole bird (empty strings when unknown)."""
        def words(aspect: str) -> str:
            return join([e.words for e in sorted(body.get(aspect, []), key=lambda e: -e.strength)], "or")

        colors = [e.words for e in sorted(body.get("color", []), key=lambda e: -e.strength)]
        color = f"mostly {colors[0]}" if len(colors) == 1 else join(colors)
        return words("size"), color, words("shape") or words("kind")

    def describe(self, name: str) -> ClassDescription:
        """The description of class ``name`` (a name, label or IRI the graph resolves)."""
        kg = self.kg
        iri = kg.node("class", name)
        name = name_of(iri)
        evidence = self.evidence(name)
        phrases, body = self.phrases(evidence)
        noun, family = self.group_noun(name)
        size, color, shape = self._body_words(body)
        sentences = [self._taxonomy_sentence(iri, noun, family)]
        subject = " ".join(w for w in (size, color, shape, "bird") if w)
        said = [p.text for p in phrases[:self.config.max_phrases]]
        if said or subject != "bird":
            sentences.append(f"It is {article(subject)} {subject}" + (f" with {join(said)}." if said else "."))
        sentences += [str(v).strip() for p in (DCTERMS.description, RDFS.comment)
                      for v in sorted(kg.graph.objects(iri, p), key=str) if str(v).strip()]
        text = " ".join(s for s in sentences if s)
        return ClassDescription(name, kg.label(iri), text, self._variants(name, phrases, noun, size, color),
                                noun, phrases, evidence)

    def _variants(self, name: str, phrases: Sequence[Phrase], noun: str | None, size: str, color: str) -> list[str]:
        """Rule 6: caption-style sentences on salience-weighted subsets of the phrases."""
        cfg = self.config
        pool = list(phrases[:cfg.pool])
        if not pool or cfg.variants == 0:
            return []
        rng = random.Random(f"{cfg.seed}:{name}")
        out: list[str] = []
        for _ in range(cfg.variants * 5):
            if len(out) == cfg.variants:
                break
            low, high = cfg.phrases_per_variant
            count = rng.randint(min(low, len(pool)), min(high, len(pool)))
            # Efraimidis-Spirakis: weighted sampling without replacement by the top keys u^(1/w)
            keys = sorted(range(len(pool)), key=lambda i: -rng.random() ** (1.0 / max(pool[i].salience, 0.05)))
            chosen = sorted(keys[:count])
            template = VARIANT_TEMPLATES[rng.randrange(len(VARIANT_TEMPLATES))]
            sentence = template.format(phrases=join([pool[i].text for i in chosen]), noun=noun or "bird",
                                       size=size, body=color)
            sentence = re.sub(r"\s+", " ", sentence).replace(" a a", " a")
            sentence = re.sub(r"\ba (?=[aeiou])", "an ", sentence)
            if sentence not in out:
                out.append(sentence)
        return out

    def describe_all(self) -> list[ClassDescription]:
        """Descriptions of every compared class, in class order."""
        return [self.describe(name) for name in self.classes]

    def _row(self, name: str) -> int:
        key = name_of(self.kg.node("class", name))
        if key not in self.row:
            raise ConfigError(f"class '{name}' is not among the described classes (leaf classes or class_order)")
        return self.row[key]


# ---------------------------------------------------------------------------------------------- storage


def _description_iri(kg: KnowledgeGraph, name: str, k: int) -> URIRef:
    return URIRef(f"{kg.base}description/{quote(name, safe=SAFE)}/{k}")


def write_descriptions(kg: KnowledgeGraph, descriptions: Sequence[ClassDescription],
                       config: DescribeConfig | None = None) -> int:
    """Store descriptions in ``kg`` (see the module docstring); earlier generated ones are replaced.

    Only nodes generated by fgmm's describe activity are removed; authored text is never touched.
    Returns the number of description nodes written.
    """
    activity = URIRef(f"{kg.base}{ACTIVITY}")
    for node in list(kg.graph.subjects(PROV.wasGeneratedBy, activity)):
        kg.graph.remove((node, None, None))
    kg.graph.set((activity, RDF.type, PROV.Activity))
    kg.graph.set((activity, DCTERMS.description, Literal(
        "Class descriptions generated by fgmm.kg.describe.Describer with "
        + json.dumps(asdict(config or DescribeConfig())))))
    count = 0
    for d in descriptions:
        class_iri = kg.node("class", d.name)
        for k, text in enumerate(d.texts()):
            node = _description_iri(kg, d.name, k)
            for p, o in ((RDF.type, PROV.Entity), (DCTERMS.subject, class_iri), (RDF.value, Literal(text)),
                         (DCTERMS.type, Literal("canonical" if k == 0 else "variant")),
                         (PROV.wasGeneratedBy, activity)):
                kg.graph.add((node, p, o))
            count += 1
    return count


def read_descriptions(kg: KnowledgeGraph) -> dict[str, list[str]]:
    """``{class name: [canonical, variant, ...]}`` of the descriptions stored by :func:`write_descriptions`."""
    activity = URIRef(f"{kg.base}{ACTIVITY}")
    rows: dict[str, list[tuple[int, str]]] = {}
    for node in kg.graph.subjects(PROV.wasGeneratedBy, activity):
        subject, value = kg.graph.value(node, DCTERMS.subject), kg.graph.value(node, RDF.value)
        if subject is None or value is None:
            continue
        k = str(node).rsplit("/", 1)[-1]
        rows.setdefault(name_of(subject), []).append((int(k) if k.isdigit() else math.inf, str(value)))
    return {name: [text for _, text in sorted(items)] for name, items in rows.items()}


def export_descriptions(descriptions: Sequence[ClassDescription], path: str | Path) -> Path:
    """Write one JSON object per class (:meth:`ClassDescription.to_dict`) per line, atomically."""
    lines = "".join(json.dumps(d.to_dict(), ensure_ascii=False) + "\n" for d in descriptions)
    return write_bytes_atomic(Path(path), lines.encode("utf-8"))


__all__ = ["ClassDescription", "DescribeConfig", "Describer", "Evidence", "Phrase", "export_descriptions",
           "read_descriptions", "write_descriptions"]
