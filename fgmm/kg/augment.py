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
   group it names has a value for the target, every feature it names is one of the target's, and
   every value word it holds (``red``, ``pointed``, ``crimson``: the graph's single-word values and
   their synonyms) is part of a matched attribute; otherwise it is skipped: it would state something
   the graph does not support, or keep a value of the source class the matcher did not read
   (``"a blue crowned bird"``, ``"a thin pointed beak"`` of a class with a hooked bill).
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
from fgmm.kg.phrases import VALUE_SYNONYMS, match_attributes, tokenize


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


def value_words(describer: Describer) -> set[str]:
    """Single-word attribute values of the graph (``red``, ``hooked``) and their synonyms (``crimson``)."""
    return {words for _, _, kind, words in describer.readings if kind != "feature" and " " not in words} | set(
        VALUE_SYNONYMS)


def _detokenize(tokens: Sequence[str]) -> str:
    text = re.sub(r" ([,.;])", r"\1", " ".join(tokens))
    text = re.sub(r"\ba (?=[aeiou])", "an ", text)
    return re.sub(r"\ban (?=[^aeiou\s])", "a ", text)


def rewrite_caption(caption: str, describer: Describer, values: dict[str, str], features: set[str],
                    vocabulary: set[str] | None = None) -> str | None:
    """``caption`` with each named value replaced by the target's (rule 2), or ``None`` when it cannot be.

    ``vocabulary``: the value words of rule 2 (default :func:`value_words`; pass it when rewriting many).
    """
    terms = match_attributes(caption, describer.attributes)
    if not terms:
        return None
    tokens = tokenize(caption)
    vocabulary = value_words(describer) if vocabulary is None else vocabulary
    read = {i for term in terms if term.span is not None for i in range(*term.span)}
    if any(token in vocabulary and i not in read for i, token in enumerate(tokens)):
        return None
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
    vocabulary = value_words(describer)
    rng = random.Random(f"{seed}:{name}:pseudo")
    rng.shuffle(pool)
    out: list[str] = []
    for i in pool:
        text = rewrite_caption(captions[i], describer, values, features, vocabulary)
        if text is not None and text not in out:
            out.append(text)
            if len(out) == count:
                break
    return out
