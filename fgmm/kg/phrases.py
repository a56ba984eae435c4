"""Words for attributes: how an attribute group and value read in English, and finding them in a query.

A KG attribute is ``<group>::<value>`` (CUB: ``has_crown_color::red``) in a group about a part. This
module turns one into the pieces of a noun phrase and back:

* :func:`aspect_and_noun`: ``has_crown_color`` → ``("color", "crown")``; ``has_upper_tail_color`` →
  ``("color", "upper tail")``; ``has_size`` → ``("size", "body")``; ``has_primary_color`` →
  ``("color", "body")``; ``has_eye_ring`` → ``("ring", "eye")``. The aspect is the last word when it is
  one of :data:`ASPECTS`, the noun the rest (``body`` when nothing is left or for :data:`BODY_WORDS`).
* :func:`value_phrase`: how a value reads for its aspect -- an adjective placed before the noun
  (``"red"``, ``"cone-shaped"``, ``"notched"`` from ``notched_tail``, ``"short"`` from
  ``shorter_than_head``) or a *feature*, a noun phrase of its own (``has_head_pattern::eyebrow`` →
  ``"an eyebrow"``, ``has_eye_ring::present`` → ``"an eye ring"``). :data:`VALUE_WORDS` holds the
  exceptions (CUB's bill shapes, sizes, body shapes, head patterns, bill lengths); any other value reads
  as its words with the noun removed (``rounded-wings`` on ``wing`` → ``rounded``), so any KG that
  names its attributes ``has_<part>_<aspect>::<value>`` gets phrases without a table.
* :func:`noun_phrase`, :func:`join`, :func:`article`: English assembly (``"a red crown"``,
  ``"black wings"``, ``"a, b and c"``, ``"an olive back"``).
* :func:`match_attributes`: the attributes a free-text query mentions (``"brilliant red crown and
  underparts"`` → crown color red, underparts color red), for explanations of text-only ranking.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

#: last words of a group name that name the aspect of a part, not the part
ASPECTS = ("color", "pattern", "shape", "length", "ring", "size")

#: group nouns that mean the whole bird (``has_primary_color`` is the body's colour)
BODY_WORDS = ("primary", "")

#: nouns that read as plurals ("black wings", not "a black wing")
PLURAL_NOUNS = {"wing": "wings", "leg": "legs", "eye": "eyes", "foot": "feet"}
MASS_NOUNS = ("underparts", "upperparts", "wings", "legs", "eyes", "feet")

#: (aspect, value) → adjective, or ``("feature", phrase)`` for values that are things of their own
VALUE_WORDS: dict[tuple[str, str], str | tuple[str, str]] = {
    # CUB bill shapes
    ("shape", "curved_(up_or_down)"): "curved", ("shape", "dagger"): "dagger-shaped",
    ("shape", "needle"): "needle-like", ("shape", "hooked_seabird"): "hooked seabird",
    ("shape", "cone"): "cone-shaped", ("shape", "all-purpose"): "all-purpose",
    # CUB bill length
    ("length", "about_the_same_as_head"): "medium-length", ("length", "longer_than_head"): "long",
    ("length", "shorter_than_head"): "short",
    # CUB sizes
    ("size", "very_small_(3_-_5_in)"): "very small", ("size", "small_(5_-_9_in)"): "small",
    ("size", "medium_(9_-_16_in)"): "medium-sized", ("size", "large_(16_-_32_in)"): "large",
    ("size", "very_large_(32_-_72_in)"): "very large",
    # CUB body shapes (``has_shape``): read as "a ... bird"
    ("shape", "upright-perching_water-like"): "upright water", ("shape", "chicken-like-marsh"): "chicken-like marsh",
    ("shape", "long-legged-like"): "long-legged wading", ("shape", "perching-like"): "perching",
    ("shape", "tree-clinging-like"): "tree-clinging", ("shape", "upland-ground-like"): "upland ground",
    # patterns
    ("pattern", "solid"): "plain", ("pattern", "multi-colored"): "multicolored",
    # CUB head patterns that are features, not adjectives of the head
    ("pattern", "malar"): ("feature", "a malar stripe"), ("pattern", "crested"): ("feature", "a crest"),
    ("pattern", "masked"): ("feature", "a mask"),
    ("pattern", "unique_pattern"): ("feature", "a distinctive head pattern"),
    ("pattern", "eyebrow"): ("feature", "an eyebrow"), ("pattern", "eyering"): ("feature", "an eye ring"),
    ("pattern", "eyeline"): ("feature", "an eye line"), ("pattern", "capped"): ("feature", "a cap"),
    # eye rings (the procedural set)
    ("ring", "present"): ("feature", "an eye ring"), ("ring", "absent"): ("feature", "no eye ring"),
}

def aspect_and_noun(group: str) -> tuple[str, str]:
    """``(aspect, noun)`` of an attribute group name (see the module docstring)."""
    tokens = group.removeprefix("has_").split("_")
    aspect = tokens[-1] if tokens[-1] in ASPECTS else "kind"
    noun = " ".join(tokens[:-1] if aspect != "kind" else tokens)
    if aspect == "size" or noun in BODY_WORDS:
        noun = "body"
    return aspect, noun


def _strip_noun(text: str, noun: str) -> str:
    """``rounded-wings`` without its noun ``wing`` → ``rounded``; ``forked_tail`` → ``forked``."""
    for form in (PLURAL_NOUNS.get(noun, ""), noun):
        if form:
            text = re.sub(rf"[\s_-]+{re.escape(form)}$", "", text)
    return text


def value_phrase(aspect: str, noun: str, value: str) -> tuple[str, str]:
    """``("adjective", words)`` or ``("feature", noun phrase)`` of one attribute value."""
    found = VALUE_WORDS.get((aspect, value))
    if isinstance(found, tuple):
        return found
    if found is not None:
        return "adjective", found
    words = _strip_noun(value, noun)
    words = re.sub(r"\s*\(.*?\)\s*", " ", words.replace("_", " ")).strip()
    return "adjective", words


def plural(noun: str) -> str:
    return PLURAL_NOUNS.get(noun, noun)


def is_plural(noun: str) -> bool:
    return noun in MASS_NOUNS or noun in PLURAL_NOUNS.values()


def article(phrase: str) -> str:
    """``"a"`` or ``"an"`` for the word starting ``phrase`` (by its first letter)."""
    return "an" if phrase[:1].lower() in "aeiou" else "a"


def with_article(phrase: str, plural_noun: bool) -> str:
    """``"a red crown"``, ``"black wings"`` (plural nouns take no article)."""
    return phrase if plural_noun else f"{article(phrase)} {phrase}"


def join(items: Sequence[str], conjunction: str = "and") -> str:
    """``a``; ``a and b``; ``a, b and c``."""
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {conjunction} {items[-1]}"


def noun_phrase(modifiers: Sequence[str], nouns: Sequence[str]) -> str:
    """``modifiers`` before the joined ``nouns``, with an article when the first noun is singular."""
    head = [plural(n) for n in nouns]
    text = " ".join([*(m for m in modifiers if m), join(head)])
    return with_article(text, is_plural(head[0]))


# ---------------------------------------------------------------------------------------------- matching

#: query words read as one or several KG nouns (besides the nouns themselves and their plurals)
NOUN_SYNONYMS: dict[str, tuple[str, ...]] = {
    "beak": ("bill",), "chest": ("breast",), "cap": ("crown",), "stomach": ("belly",), "abdomen": ("belly",),
    "underside": ("underparts",), "underbelly": ("underparts",), "neck": ("nape",), "feet": ("leg",),
    "foot": ("leg",), "brow": ("forehead",), "mantle": ("back",), "bird": ("body",), "plumage": ("body",),
    "feathers": ("body",), "head": ("head", "crown", "forehead", "nape"), "eyes": ("eye",),
}

#: query words read as another value word
VALUE_SYNONYMS: dict[str, str] = {
    "gray": "grey", "crimson": "red", "scarlet": "red", "vermilion": "red", "golden": "yellow", "tan": "buff",
    "chestnut": "rufous", "rusty": "rufous", "beige": "buff", "streaked": "striped", "streaky": "striped",
    "tiny": "very small", "solid": "plain", "conical": "cone-shaped",
    "multicoloured": "multicolored",
}

#: words that end the reach of adjectives met before them
BREAKS = frozenset({"with", ".", ";", "has", "have", "is", "are", "but", "it", "its", "this", "that"})

#: coordinating words: ``"red crown and underparts"`` shares ``red``
COORDINATION = frozenset({"and", "or", ","})


@dataclass(frozen=True)
class QueryTerm:
    """One attribute a query mentions.

    Attributes:
        attribute: the attribute's name.
        words: the query words that matched it (``"crimson crown"``).
        span: ``(start, end)`` token positions (:func:`tokenize`) of its value words (``crimson``);
            ``None`` for features matched by their noun phrase.
    """

    attribute: str
    words: str
    span: tuple[int, int] | None = None


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens (hyphens and apostrophes kept inside words) and ``, . ;``."""
    return re.findall(r"[a-z]+(?:[-'][a-z]+)*|[,.;]", text.lower())


class _Lexicon:
    """The (noun, adjective) → attribute names and feature phrases of a set of attributes."""

    def __init__(self, attributes: Iterable[str]):
        self.order: dict[str, int] = {}
        self.adjectives: dict[tuple[str, str], list[str]] = {}
        self.features: list[tuple[str, str]] = []
        for name in attributes:
            self.order[name] = len(self.order)
            group, _, value = name.partition("::")
            aspect, noun = aspect_and_noun(group)
            kind, words = value_phrase(aspect, noun, value)
            if kind == "feature":
                if not words.startswith("no "):
                    features_words = words.split(" ", 1)[1] if words.startswith(("a ", "an ")) else words
                    self.features.append((name, features_words))
                continue
            self.adjectives.setdefault((noun, words), []).append(name)
        self.nouns = {noun for noun, _ in self.adjectives}
        #: body words that need no noun: sizes and body shapes ("small", "perching"), not colours
        self.anywhere = {adjective for (noun, adjective), names in self.adjectives.items()
                         if noun == "body" and not any("_color::" in n for n in names)}
        self.words = {adjective for _, adjective in self.adjectives}
        self.longest = max((len(w.split()) for w in self.words | self.nouns), default=1)

    def span(self, tokens: Sequence[str], i: int, known: set[str], synonyms: dict) -> tuple[object, int]:
        """The longest entry of ``known`` (or a synonym) starting at token ``i``, and its width."""
        for width in range(min(self.longest, len(tokens) - i), 0, -1):
            text = " ".join(tokens[i:i + width])
            if width == 1 and text in synonyms:
                return synonyms[text], 1
            for candidate in (text, text.removesuffix("s")):
                if candidate in known:
                    return candidate, width
        return None, 0


def match_attributes(query: str, attributes: Iterable[str]) -> list[QueryTerm]:
    """The attributes of ``attributes`` (``<group>::<value>`` names) that ``query`` mentions.

    A part noun of the query (``crown``, ``wings``, ``beak`` → bill, ``head`` → crown, forehead and
    nape, ``bird`` → the whole body) takes the value words standing before it since the previous
    noun or break word (``"brilliant red crown"`` → crown colour red), a noun coordinated with the
    previous one shares its words (``"red crown and underparts"``), and a noun followed by ``is/are
    <word>`` takes that word. Sizes and body shapes match anywhere (``"small"``, ``"perching"``), body
    colours after ``mostly``; features match by their words (``"eye ring"``, ``"crest"``). Terms come
    in query order, each attribute once.
    """
    lexicon = _Lexicon(attributes)
    tokens = tokenize(query)
    found: dict[str, tuple[int, QueryTerm]] = {}

    def add(position: int, nouns: Sequence[str], adjective: str, words: str, span: tuple[int, int]) -> None:
        for noun in nouns:
            for name in lexicon.adjectives.get((noun, adjective), []):
                found.setdefault(name, (position, QueryTerm(name, words, span)))

    pending: list[tuple[str, str, tuple[int, int]]] = []  # (value word, query words, their token span)
    previous: list[tuple[str, str, tuple[int, int]]] = []
    last = None
    i = 0
    while i < len(tokens):
        token = tokens[i]
        adjective, width = lexicon.span(tokens, i, lexicon.words, VALUE_SYNONYMS)
        if adjective:
            words = " ".join(tokens[i:i + width])
            pending = (pending if last in ("adjective", "coordination") or last is None else []) + \
                [(str(adjective), words, (i, i + width))]
            if (i and tokens[i - 1] == "mostly") or str(adjective) in lexicon.anywhere:
                add(i, ["body"], str(adjective), words, (i, i + width))
            last, i = "adjective", i + width
            continue
        noun, width = lexicon.span(tokens, i, lexicon.nouns, NOUN_SYNONYMS)
        if noun:
            nouns = list(noun) if isinstance(noun, tuple) else [str(noun)]
            modifiers = pending or (previous if last == "coordination" else [])
            after = tokens[i + width:i + width + 2]
            if not modifiers and len(after) == 2 and after[0] in ("is", "are"):
                value = VALUE_SYNONYMS.get(after[1], after[1])
                at = i + width + 1
                modifiers = [(value, after[1], (at, at + 1))] if value in lexicon.words else []
            for adjective, words, span in modifiers:
                add(i, nouns, adjective, f"{words} {' '.join(tokens[i:i + width])}", span)
            previous, pending, last, i = modifiers, [], "noun", i + width
            continue
        if token in COORDINATION:
            last = "coordination" if last in ("noun", "coordination") else last
        elif token in BREAKS:
            pending, previous, last = [], [], None
        i += 1
    text = " ".join(tokens)
    for name, words in lexicon.features:
        hit = re.search(rf"\b{re.escape(words)}\b", text)
        if hit:
            found.setdefault(name, (len(text[:hit.start()].split()), QueryTerm(name, words)))
    return [term for _, term in sorted(found.values(), key=lambda pt: (pt[0], lexicon.order[pt[1].attribute]))]
