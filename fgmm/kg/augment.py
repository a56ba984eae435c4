"""Pseudo-captions: real captions of other classes rewritten with a class's own attribute values.

Attribute-phrase augmentation for classes nobody captioned. A caption names a few attributes
("this bird has a crimson crown and a white belly"); :func:`rewrite_caption` replaces each named
value by the target class's value in that attribute group ("... a black crown and a yellow belly"),
keeping every other word. The sentence keeps the captioners' style -- their vocabulary, length and
grammar -- so a text model trained on real captions of some classes and pseudo-captions of the others
cannot use style to tell captioned classes from the rest (generated descriptions alone are
recognisably different, and a model trained on them learns "caption-like text means a captioned
class").

Rules:

1. A target class's values are the strongest value it keeps per group under the description rules
   (:meth:`fgmm.kg.describe.Describer.evidence`); its features (eye ring, crest, ...) are the
   feature values it keeps.
2. A caption is rewritten for a target only when it names at least one attribute, every attribute
   group it names has a value for the target, and every feature it names is one of the target's;
   otherwise it is skipped (it would state something the graph does not support).
3. Source captions come from the captioned classes most similar to the target (cosine of their
   attribute-strength rows, the ``neighbours`` nearest), so words the matcher does not read ("cheek
   patch", "webbed feet") fit the target more often; they are drawn with a seeded ``random.Random``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

import numpy as np

from fgmm.kg.describe import Describer
from fgmm.kg.phrases import match_attributes, tokenize


def class_values(describer: Describer, name: str) -> tuple[dict[str, str], set[str]]:
    """``({group: value words}, {feature attribute names})`` of class ``name`` (rule 1)."""
    values: dict[str, tuple[float, str]] = {}
    features: set[str] = set()
    for e in describer.evidence(name):
        if e.feature:
            features.add(e.attribute)
            continue
        group = describer.group_of[e.attribute]
        if group not in values or e.strength > values[group][0]:
            values[group] = (e.strength, e.words)
    return {g: words for g, (_, words) in values.items()}, features


def _detokenize(tokens: Sequence[str]) -> str:
    text = re.sub(r" ([,.;])", r"\1", " ".join(tokens))
    text = re.sub(r"\ba (?=[aeiou])", "an ", text)
    return re.sub(r"\ban (?=[^aeiou\s])", "a ", text)


def rewrite_caption(caption: str, describer: Describer, values: dict[str, str], features: set[str]) -> str | None:
    """``caption`` with each named value replaced by the target's (rule 2), or ``None`` when it cannot be."""
    terms = match_attributes(caption, describer.attributes)
    if not terms:
        return None
    tokens = tokenize(caption)
    replaced: dict[tuple[int, int], str] = {}
    for term in terms:
        if term.span is None:
            if term.attribute not in features:
                return None
            continue
        group = describer.group_of[term.attribute]
        if group not in values:
            return None
        replaced.setdefault(term.span, values[group])
    out: list[str] = []
    i = 0
    for start, end in sorted(replaced):
        if start < i:
            continue
        out += tokens[i:start] + [replaced[start, end]]
        i = end
    return _detokenize(out + tokens[i:])


def pseudo_captions(describer: Describer, name: str, captions: Sequence[str], owners: Sequence[int], count: int,
                    *, neighbours: int = 10, seed: int = 0) -> list[str]:
    """Up to ``count`` distinct pseudo-captions of class ``name`` from the real ``captions``.

    Args:
        describer: the graph's describer (its class order indexes ``owners``).
        name: the target class.
        captions: real captions; ``owners[i]`` is the index (in ``describer.classes``) of caption ``i``'s class.
        count: how many to make.
        neighbours: draw sources from this many most similar captioned classes (rule 3).
        seed: seeds the draw (with the class name).
    """
    target = describer._row(name)
    owners = np.asarray(owners)
    sources = sorted(set(owners.tolist()) - {target})
    if not sources:
        return []
    matrix = describer.matrix
    rows = matrix[sources]
    similarity = rows @ matrix[target] / (np.linalg.norm(rows, axis=1) * np.linalg.norm(matrix[target]) + 1e-12)
    nearest = {sources[k] for k in np.argsort(-similarity, kind="stable")[:neighbours]}
    pool = [i for i, owner in enumerate(owners) if owner in nearest]
    values, features = class_values(describer, name)
    rng = random.Random(f"{seed}:{name}:pseudo")
    rng.shuffle(pool)
    out: list[str] = []
    for i in pool:
        text = rewrite_caption(captions[i], describer, values, features)
        if text is not None and text not in out:
            out.append(text)
            if len(out) == count:
                break
    return out
