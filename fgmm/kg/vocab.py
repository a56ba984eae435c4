"""The fgmm vocabulary (``knowledge/fgmm.ttl``) as Python terms, and how instance IRIs are minted.

An fgmm knowledge graph describes classes (species and the taxa above them), attributes grouped
into attribute groups that each concern one body part, and weighted class → attribute links::

    kg:class/001.Black_footed_Albatross  a fgmm:Class ;  rdfs:subClassOf kg:class/Phoebastria .
    kg:attribute/has_bill_shape::hooked_seabird  a fgmm:Attribute ;  fgmm:inGroup kg:group/has_bill_shape .
    kg:group/has_bill_shape  a fgmm:AttributeGroup ;  fgmm:ofPart kg:part/bill .
    kg:link/001.Black_footed_Albatross/has_bill_shape::hooked_seabird  a fgmm:AttributeLink ;
        fgmm:linkClass kg:class/... ;  fgmm:linkAttribute kg:attribute/... ;  fgmm:strength 0.598540145985 .
    kg:class/001.Black_footed_Albatross  fgmm:hasAttribute kg:attribute/has_bill_shape::hooked_seabird .

Instance IRIs are ``<base><segment>/<percent-encoded name>`` (segments: ``class``, ``attribute``,
``group``, ``part``, ``link``), so a node's name is the unquoted last path segment of its IRI.
"""

from __future__ import annotations

from decimal import Decimal
from urllib.parse import quote, unquote

from rdflib import Graph, Literal, Namespace, URIRef
from rdflib.namespace import DCTERMS, PROV, RDFS, SH, VOID, XSD, DefinedNamespace

from fgmm.errors import ConfigError
from fgmm.resources import knowledge_file  # noqa: F401  (re-exported: shipped Turtle files)


class FGMM(DefinedNamespace):
    """Terms of the fgmm vocabulary, ``https://fgmm.dev/ns#`` (prefix ``fgmm:``)."""

    _NS = Namespace("https://fgmm.dev/ns#")
    _fail = True

    Class: URIRef  # a recognisable kind of thing: a species, or a taxon above species
    Attribute: URIRef  # a visual attribute value, e.g. "bill shape: hooked"
    AttributeGroup: URIRef  # attributes that are alternatives for one aspect, e.g. "bill shape"
    Part: URIRef  # a body part an attribute group concerns, e.g. "bill"
    AttributeLink: URIRef  # a weighted class → attribute statement
    hasAttribute: URIRef  # class → attribute, present exactly when an AttributeLink links them
    linkClass: URIRef  # AttributeLink → its class
    linkAttribute: URIRef  # AttributeLink → its attribute
    strength: URIRef  # AttributeLink → xsd:decimal in [0, 1]
    inGroup: URIRef  # attribute → its attribute group
    ofPart: URIRef  # attribute group → the part it concerns
    index: URIRef  # position of a class or attribute in its source listing (sort key)


#: Darwin Core terms used for taxonomy (``dwc:scientificName``, ``dwc:taxonRank``)
DWC = Namespace("http://rs.tdwg.org/dwc/terms/")

#: the namespace used when a graph is created without one
DEFAULT_BASE = "https://fgmm.dev/kg/default/"

#: prefixes bound in every graph fgmm writes
PREFIXES: dict[str, Namespace | str] = {
    "fgmm": FGMM._NS, "dwc": DWC, "dcterms": DCTERMS, "prov": PROV, "void": VOID,
    "rdfs": RDFS, "xsd": XSD, "sh": SH,
}

#: node kind → (rdf:type, IRI path segment)
KINDS: dict[str, tuple[URIRef, str]] = {
    "class": (FGMM.Class, "class"),
    "attribute": (FGMM.Attribute, "attribute"),
    "group": (FGMM.AttributeGroup, "group"),
    "part": (FGMM.Part, "part"),
    "link": (FGMM.AttributeLink, "link"),
}

#: characters kept as they are in IRI path segments (RFC 3987 sub-delims, ':' and '@'; not '/', '&', "'")
SAFE = ":@!$()*+,;="

def check_base(base: str) -> str:
    """Return ``base`` if it is an absolute http(s) IRI ending in ``/`` or ``#``."""
    if not base.startswith(("http://", "https://")) or base[-1] not in "/#" or " " in base:
        raise ConfigError(f"graph namespace '{base}' must be an http(s) IRI ending in '/' or '#'")
    return base


def bind_kinds(graph: Graph, base: str) -> None:
    """Bind ``kg:`` to ``base`` and ``class:``, ``attribute:``, ``group:``, ``part:`` to its segments."""
    graph.bind("kg", base, override=True, replace=True)
    for kind in ("class", "attribute", "group", "part"):
        graph.bind(kind, f"{base}{KINDS[kind][1]}/", override=True, replace=True)


def mint(base: str, kind: str, name: str) -> URIRef:
    """The IRI of the node ``name`` of ``kind`` in the graph namespace ``base``."""
    if not name or not name.strip():
        raise ConfigError(f"a {kind} name must not be empty")
    return URIRef(f"{base}{KINDS[kind][1]}/{quote(name, safe=SAFE)}")


def segment(iri: URIRef | str) -> str:
    """The last path segment of an IRI as written (still percent-encoded)."""
    text = str(iri)
    return text[max(text.rfind("/"), text.rfind("#")) + 1:]


def link_iri(base: str, class_iri: URIRef, attribute_iri: URIRef) -> URIRef:
    """The IRI ``<base>link/<class segment>/<attribute segment>`` of a class → attribute link."""
    return URIRef(f"{base}link/{segment(class_iri)}/{segment(attribute_iri)}")


def name_of(iri: URIRef | str) -> str:
    """A node's name: the unquoted text after the last ``/`` or ``#`` of its IRI."""
    return unquote(segment(iri))


def strength_literal(value: float) -> Literal:
    """An ``xsd:decimal`` literal whose value converts back to exactly the float ``value``.

    The lexical form is the shortest decimal that round-trips (``repr``), in plain notation with
    a decimal point, so Turtle, N-Triples and JSON-LD all write and read it unchanged.
    """
    text = format(Decimal(repr(float(value))), "f")
    if "." not in text:
        text += ".0"
    return Literal(text, datatype=XSD.decimal)

