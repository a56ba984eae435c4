"""A small procedural fine-grained bird dataset in which every modality carries class signal.

The embedded default of ``fgmm demo`` and the test bed of every modality (datasets/procedural.md).
:func:`procedural_class_spec` is the single source of the classes: genera of sibling species that
share their structure (size, bill, tail) and differ in one or two plumage attributes, each class
with CUB-like attribute strengths, a song and a geographic/seasonal range. :func:`generate_procedural`
renders from it, per sample and with a per-sample random stream:

* an image (PIL): body, head, crown, wing, breast pattern, bill, tail, eye ring, drawn from the
  attributes sampled from the class strengths, with pose/scale/position jitter, background clutter,
  occluding leaves, colour jitter and pixel noise;
* five captions written from the same per-image attributes with varied templates (Reed-style);
* a 1.5 s, 16 kHz WAV: syllables at the class pitch, rate, sweep and harmonics, plus noise;
* a location and a date drawn from the class range (ranges of classes overlap);

and writes everything in the folder format (:mod:`fgmm.data.folder`), so loading it exercises the
user-data loader. Held-out ("unseen") classes have only test samples; ``noise_rate`` of the
training samples get a wrong observed label (mostly a sibling species), the true one kept in
``Sample.meta["clean_label"]``. The same arguments give byte-identical files.
"""

from __future__ import annotations

import io
import math
import os
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from fgmm.data.folder import DATASET_FILES, claim_dataset_folder, load_folder, write_folder
from fgmm.data.sample import MultiModalDataset, Sample
from fgmm.data.splits import holdout_protocol, holdout_split
from fgmm.errors import ConfigError
from fgmm.io import write_bytes_atomic as write_atomic

ATTRIBUTE_GROUPS: dict[str, tuple[str, ...]] = {
    "has_size": ("small", "medium", "large"),
    "has_bill_shape": ("short", "long", "hooked"),
    "has_tail_shape": ("forked", "rounded", "pointed"),
    "has_crown_color": ("red", "blue", "yellow", "black", "grey"),
    "has_wing_color": ("brown", "black", "olive", "blue", "grey"),
    "has_breast_color": ("white", "yellow", "buff", "grey"),
    "has_breast_pattern": ("solid", "striped", "spotted"),
    "has_eye_ring": ("present", "absent"),
}
GENUS_GROUPS = ("has_size", "has_bill_shape", "has_tail_shape")
"""Structural groups shared by all species of a genus."""
SPECIES_GROUPS = ("has_crown_color", "has_wing_color", "has_breast_color", "has_breast_pattern",
                  "has_eye_ring")
"""Plumage groups in which sibling species differ (one or two of them)."""
ATTRIBUTE_NAMES: list[str] = [f"{group}::{value}" for group, values in ATTRIBUTE_GROUPS.items()
                              for value in values]

GENUS_NAMES = ("Warbler", "Finch", "Sparrow", "Flycatcher", "Tanager", "Vireo", "Wren", "Thrush", "Bunting",
               "Kinglet", "Grosbeak", "Oriole")
HABITATS = ("", "Marsh ", "Forest ", "Desert ", "Mountain ", "Island ")
SPECIES_ADJECTIVES: dict[str, dict[str, str]] = {
    "has_crown_color": {"red": "Crimson-crowned", "blue": "Azure-crowned", "yellow": "Golden-crowned",
                        "black": "Black-capped", "grey": "Grey-crowned"},
    "has_wing_color": {"brown": "Brown-winged", "black": "Black-winged", "olive": "Olive-winged",
                       "blue": "Blue-winged", "grey": "Grey-winged"},
    "has_breast_color": {"white": "White-breasted", "yellow": "Yellow-breasted", "buff": "Buff-breasted",
                         "grey": "Grey-breasted"},
    "has_breast_pattern": {"solid": "Plain-breasted", "striped": "Streak-breasted",
                           "spotted": "Spot-breasted"},
    "has_eye_ring": {"present": "Spectacled", "absent": "Bare-eyed"},
}
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (196, 32, 36), "blue": (44, 86, 196), "yellow": (232, 198, 40), "black": (28, 28, 30),
    "grey": (128, 128, 132), "brown": (118, 78, 42), "olive": (108, 118, 48), "white": (238, 238, 232),
    "buff": (218, 186, 138),
}
SIZE_SCALE = {"small": 0.78, "medium": 0.9, "large": 1.04}
SAMPLE_RATE = 16_000
AUDIO_SECONDS = 1.5
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 16, 1024
TEST_FRACTION = 0.25
SIBLING_NOISE = 0.7
"""Share of noisy labels that name a sibling species (the rest name any other seen class)."""


def _rng(*keys: int) -> np.random.Generator:
    return np.random.default_rng([int(k) for k in keys])


def _strengths(rng: np.random.Generator, values: tuple[str, ...], dominant: str, low: float,
               high: float) -> dict[str, float]:
    """Strengths of one attribute group: ``dominant`` in ``[low, high]``, the rest sharing the remainder."""
    top = rng.uniform(low, high)
    others = [v for v in values if v != dominant]
    shares = rng.dirichlet(np.full(len(others), 0.7)) * (1.0 - top)
    return {v: round(float(top if v == dominant else shares[others.index(v)]), 4) for v in values}


def _species_values(rng: np.random.Generator, base: dict[str, str], taken: set[tuple[str, ...]],
                    first: bool) -> tuple[dict[str, str], list[str]]:
    """A new combination of plumage values: the genus base (first species) or 1-2 groups changed."""
    for _ in range(1000):
        values, changed = dict(base), []
        if not first:
            picks = rng.choice(len(SPECIES_GROUPS), rng.integers(1, 3), replace=False)
            changed = [SPECIES_GROUPS[i] for i in picks]
            for group in changed:
                values[group] = str(rng.choice([v for v in ATTRIBUTE_GROUPS[group] if v != base[group]]))
        key = tuple(values[g] for g in ATTRIBUTE_GROUPS)
        if key not in taken:
            taken.add(key)
            return values, changed
        first = False
    raise RuntimeError("could not find a new attribute combination")  # pragma: no cover - 600 combinations


def _species_name(values: dict[str, str], changed: list[str], genus: str, taken: set[str]) -> str:
    groups = changed + [g for g in SPECIES_GROUPS if g not in changed]
    adjectives = [SPECIES_ADJECTIVES[g][values[g]] for g in groups]
    for count in range(1, len(adjectives) + 1):
        for adjective in adjectives:
            words = [adjective, *(a for a in adjectives if a != adjective)][:count]
            name = f"{' '.join(words)} {genus}"
            if name not in taken:
                taken.add(name)
                return name
    raise RuntimeError("class names are not unique")  # pragma: no cover - combinations are unique


def _describe(name: str, genus: str, top: dict[str, str], song: dict, where: dict) -> str:
    pattern = {"solid": "plain", "striped": "streaked", "spotted": "spotted"}[top["has_breast_pattern"]]
    ring = "a white eye ring" if top["has_eye_ring"] == "present" else "no eye ring"
    month = (datetime(2001, 1, 1) + timedelta(days=where["peak_day"])).strftime("%B")
    return (f"The {name} is a {top['has_size']} {genus.split()[-1].lower()} with a {top['has_crown_color']} "
            f"crown, {top['has_wing_color']} wings, a {pattern} {top['has_breast_color']} breast, a "
            f"{top['has_bill_shape']} bill, a {top['has_tail_shape']} tail and {ring}. Its song repeats "
            f"about {song['rate_hz']:.0f} notes a second near {song['pitch_hz']:.0f} Hz. It is seen around "
            f"latitude {where['lat']:.0f}, longitude {where['lon']:.0f}, mostly in {month}.")


def procedural_class_spec(num_classes: int = 20, seed: int = 0, *, unseen_classes: int = 5,
                          species_per_genus: int = 4) -> list[dict]:
    """The classes of the procedural dataset: the one source the generator and the KG use.

    Genera of ``species_per_genus`` species share size, bill and tail shape, song shape and region;
    each species differs from its genus base in one or two plumage groups. ``unseen_classes``
    species (spread over genera, never a genus's only species) are held out for zero-shot.

    Returns:
        One dict per class, in label order: ``name`` ("Crimson-crowned Warbler"), ``genus``,
        ``index``, ``unseen``, ``attributes`` (``{"has_part::value": strength in [0, 1]}`` over
        :data:`ATTRIBUTE_NAMES`; within a group the strengths sum to 1 and the class's own value
        dominates), ``song`` (``pitch_hz``, ``rate_hz``, ``syllable_s``, ``sweep``, ``vibrato_hz``,
        ``harmonics``), ``range`` (``lat``, ``lon``, ``spread_deg``, ``peak_day``, ``day_spread``)
        and ``description`` (one paragraph, usable as a class description).
    """
    if not num_classes >= 2:
        raise ConfigError(f"the procedural dataset needs at least 2 classes, got {num_classes}")
    if not 0 <= unseen_classes < num_classes:
        raise ConfigError(f"unseen_classes must be in [0, {num_classes - 1}], got {unseen_classes}")
    if not seed >= 0:
        raise ConfigError(f"seed must be >= 0, got {seed}")
    rng = _rng(seed, 0)
    num_genera = math.ceil(num_classes / species_per_genus)
    if num_genera > len(GENUS_NAMES) * len(HABITATS):
        raise ConfigError(f"at most {len(GENUS_NAMES) * len(HABITATS) * species_per_genus} classes")
    genus_names = [f"{h}{g}" for h in HABITATS for g in GENUS_NAMES][:num_genera]
    taken_values: set[tuple[str, ...]] = set()
    taken_names: set[str] = set()
    classes: list[dict] = []
    for genus in genus_names:
        base = {group: str(rng.choice(values)) for group, values in ATTRIBUTE_GROUPS.items()}
        genus_song = {"pitch_hz": rng.uniform(1800, 4800), "rate_hz": rng.uniform(3.0, 8.0),
                      "sweep": float(rng.choice([-0.45, 0.0, 0.45])), "harmonics": int(rng.integers(1, 4))}
        genus_range = (rng.uniform(-35, 60), rng.uniform(-150, 150), rng.uniform(0, 365))
        size = min(species_per_genus, num_classes - len(classes))
        for species in range(size):
            values, changed = _species_values(rng, base, taken_values, species == 0)
            name = _species_name(values, changed, genus, taken_names)
            attributes = {}
            for group, group_values in ATTRIBUTE_GROUPS.items():
                low, high = (0.85, 0.97) if group in GENUS_GROUPS else (0.7, 0.94)
                attributes.update({f"{group}::{v}": s for v, s in
                                   _strengths(rng, group_values, values[group], low, high).items()})
            song = {"pitch_hz": round(genus_song["pitch_hz"] * rng.uniform(0.8, 1.25), 1),
                    "rate_hz": round(genus_song["rate_hz"] * rng.uniform(0.75, 1.3), 2),
                    "syllable_s": round(rng.uniform(0.04, 0.11), 3), "sweep": genus_song["sweep"],
                    "vibrato_hz": round(float(rng.choice([0.0, rng.uniform(20, 60)])), 1),
                    "harmonics": genus_song["harmonics"]}
            where = {"lat": round(float(np.clip(genus_range[0] + rng.normal(0, 6), -70, 75)), 2),
                     "lon": round(float((genus_range[1] + rng.normal(0, 8) + 180) % 360 - 180), 2),
                     "spread_deg": round(rng.uniform(3, 6), 2),
                     "peak_day": round(float((genus_range[2] + rng.normal(0, 30)) % 365), 1),
                     "day_spread": round(rng.uniform(20, 40), 1)}
            classes.append({"index": len(classes), "name": name, "genus": genus, "unseen": False,
                            "attributes": attributes, "song": song, "range": where,
                            "description": _describe(name, genus, values, song, where)})
    by_genus = [[c for c in classes if c["genus"] == g] for g in genus_names]
    order, shuffled = rng.permutation(len(by_genus)), [rng.permutation(len(m)) for m in by_genus]
    candidates = [by_genus[g][shuffled[g][r]] for r in range(species_per_genus - 1) for g in order
                  if r < len(by_genus[g]) - 1]
    if len(candidates) < unseen_classes:
        raise ConfigError(f"cannot hold out {unseen_classes} classes and keep a seen species in every genus")
    for chosen in candidates[:unseen_classes]:
        chosen["unseen"] = True
    return classes


def _sample_attributes(rng: np.random.Generator, spec: dict) -> dict[str, str]:
    out = {}
    for group, values in ATTRIBUTE_GROUPS.items():
        p = np.array([spec["attributes"][f"{group}::{v}"] for v in values], dtype=np.float64)
        out[group] = values[int(rng.choice(len(values), p=p / p.sum()))]
    return out


def _jitter(rng: np.random.Generator, color: tuple[int, int, int], amount: float = 14.0) -> tuple[int, ...]:
    noise = rng.normal(0, amount, 3).tolist()
    return tuple(min(255, max(0, int(c + d))) for c, d in zip(color, noise, strict=True))


def _leaf(draw: ImageDraw.ImageDraw, rng: np.random.Generator, canvas: int) -> None:
    x, y = rng.uniform(0, canvas, 2)
    rx, ry = rng.uniform(0.02, 0.06, 2) * canvas
    base = (int(rng.integers(40, 110)), int(rng.integers(110, 170)), int(rng.integers(30, 80)))
    green = _jitter(rng, base, 20)
    draw.ellipse((x - rx, y - ry, x + rx, y + ry), fill=green)


def _background(rng: np.random.Generator, canvas: int) -> Image.Image:
    top = np.array(_jitter(rng, ((150, 190, 225), (170, 200, 150), (205, 195, 160), (180, 180, 180))
                           [int(rng.integers(0, 4))], 25), dtype=np.float32)
    bottom = np.array(_jitter(rng, tuple(int(c) for c in top * 0.75), 20), dtype=np.float32)
    ramp = np.linspace(0.0, 1.0, canvas, dtype=np.float32)[:, None]
    column = (top * (1 - ramp) + bottom * ramp).astype(np.uint8)[:, None, :]
    image = Image.fromarray(column, "RGB").resize((canvas, canvas), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(2, 6))):
        x0, y0 = rng.uniform(-0.1, 1.1, 2) * canvas
        angle = rng.uniform(-0.6, 0.6) + (math.pi if rng.random() < 0.5 else 0.0)
        length = rng.uniform(0.4, 1.0) * canvas
        draw.line((x0, y0, x0 + length * math.cos(angle), y0 + length * math.sin(angle)),
                  fill=_jitter(rng, (96, 70, 44), 18), width=int(rng.integers(2, 8)))
    for _ in range(int(rng.integers(3, 11))):
        _leaf(draw, rng, canvas)
    for _ in range(int(rng.integers(0, 4))):  # flowers in plumage colours, so colour alone is ambiguous
        x, y = rng.uniform(0, canvas, 2)
        r = rng.uniform(0.015, 0.035) * canvas
        color = COLORS[("red", "blue", "yellow", "white")[int(rng.integers(0, 4))]]
        draw.ellipse((x - r, y - r, x + r, y + r), fill=_jitter(rng, color))
    return image


def _bill(draw: ImageDraw.ImageDraw, shape: str, x: float, y: float, r: float, color: tuple) -> None:
    if shape == "short":
        points = [(x, y - 0.24 * r), (x + 0.62 * r, y + 0.02 * r), (x, y + 0.24 * r)]
    elif shape == "long":
        points = [(x, y - 0.16 * r), (x + 1.55 * r, y + 0.05 * r), (x, y + 0.16 * r)]
    else:
        points = [(x, y - 0.3 * r), (x + 0.55 * r, y - 0.28 * r), (x + 0.92 * r, y - 0.02 * r),
                  (x + 0.88 * r, y + 0.36 * r), (x + 0.72 * r, y + 0.1 * r), (x, y + 0.3 * r)]
    draw.polygon(points, fill=color)


def _tail(draw: ImageDraw.ImageDraw, shape: str, x: float, y: float, length: float, width: float,
          color: tuple) -> None:
    if shape == "forked":
        draw.polygon([(x, y - width), (x - length, y - 2.2 * width), (x - 0.55 * length, y),
                      (x - length, y + 2.2 * width), (x, y + width)], fill=color)
    elif shape == "rounded":
        draw.ellipse((x - 1.05 * length, y - 1.5 * width, x + 0.1 * length, y + 1.5 * width), fill=color)
    else:
        draw.polygon([(x, y - width), (x - 1.3 * length, y + 0.3 * width), (x, y + width)], fill=color)


def _breast_pattern(draw: ImageDraw.ImageDraw, rng: np.random.Generator, pattern: str, box: tuple,
                    color: tuple) -> None:
    x0, y0, x1, y1 = box
    cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    if pattern == "striped":
        for fx in np.linspace(-0.55, 0.55, int(rng.integers(4, 7))):
            half = ry * math.sqrt(max(0.0, 1 - fx * fx)) * 0.75
            x = cx + fx * rx
            draw.line((x, cy - half, x + rng.uniform(-1, 1), cy + half), fill=color,
                      width=max(1, int(rx * 0.09)))
    elif pattern == "spotted":
        for _ in range(int(rng.integers(8, 14))):
            angle, radius = rng.uniform(0, 2 * math.pi), math.sqrt(rng.uniform(0, 0.6))
            x, y = cx + radius * rx * math.cos(angle), cy + radius * ry * math.sin(angle)
            r = rx * rng.uniform(0.06, 0.1)
            draw.ellipse((x - r, y - r, x + r, y + r), fill=color)


def render_bird(attributes: dict[str, str], rng: np.random.Generator, size: int = 96) -> Image.Image:
    """Render one bird with the given per-image attribute values (``{group: value}``) as RGB.

    Drawn at twice the size and downsampled (anti-aliasing); pose, scale, position, colours,
    background and noise come from ``rng``.
    """
    canvas = 2 * size
    image = _background(rng, canvas)
    layer = Image.new("RGBA", (canvas, canvas), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    scale = SIZE_SCALE[attributes["has_size"]] * rng.uniform(0.85, 1.12) * canvas
    cx, cy = rng.uniform(0.42, 0.56) * canvas, rng.uniform(0.45, 0.58) * canvas
    rx, ry = 0.27 * scale, 0.17 * scale
    wing = _jitter(rng, COLORS[attributes["has_wing_color"]])
    body = tuple(int(0.55 * w + 0.45 * g) for w, g in zip(wing, _jitter(rng, (150, 140, 125)), strict=True))
    breast = _jitter(rng, COLORS[attributes["has_breast_color"]])
    dark = _jitter(rng, (40, 34, 30), 8)
    for dx in (-0.2, 0.15):
        draw.line((cx + dx * rx, cy + 0.8 * ry, cx + dx * rx + 0.1 * rx, cy + 1.55 * ry), fill=dark,
                  width=max(1, int(0.05 * rx)))
    _tail(draw, attributes["has_tail_shape"], cx - 0.85 * rx, cy - 0.05 * ry, 0.55 * rx, 0.32 * ry, wing)
    draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=body)
    breast_box = (cx - 0.35 * rx, cy - 0.35 * ry, cx + 0.95 * rx, cy + 0.98 * ry)
    draw.ellipse(breast_box, fill=breast)
    _breast_pattern(draw, rng, attributes["has_breast_pattern"], breast_box, dark)
    draw.ellipse((cx - 0.78 * rx, cy - 0.72 * ry, cx + 0.42 * rx, cy + 0.38 * ry), fill=wing)
    hr = 0.8 * ry
    hx, hy = cx + 0.88 * rx, cy - 0.85 * ry
    draw.ellipse((hx - hr, hy - hr, hx + hr, hy + hr), fill=body)
    crown = _jitter(rng, COLORS[attributes["has_crown_color"]])
    draw.chord((hx - hr, hy - hr, hx + hr, hy + hr), 195, 345, fill=crown)
    ex, ey = hx + 0.38 * hr, hy - 0.05 * hr
    if attributes["has_eye_ring"] == "present":
        ring = 0.3 * hr
        draw.ellipse((ex - ring, ey - ring, ex + ring, ey + ring), fill=_jitter(rng, COLORS["white"], 6))
    eye = 0.15 * hr
    draw.ellipse((ex - eye, ey - eye, ex + eye, ey + eye), fill=(12, 12, 12))
    bill = _jitter(rng, (70, 60, 50), 25)
    _bill(draw, attributes["has_bill_shape"], hx + 0.9 * hr, hy + 0.1 * hr, hr, bill)
    box = layer.getbbox()
    bird = layer.crop(box).rotate(float(rng.uniform(-22, 22)), resample=Image.Resampling.NEAREST, expand=True)
    if rng.random() < 0.5:
        bird = bird.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    corner = (int((box[0] + box[2] - bird.width) / 2), int((box[1] + box[3] - bird.height) / 2))
    image.paste(bird, corner, bird)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(0, 3))):
        _leaf(draw, rng, canvas)
    small = image.reduce(2)
    pixels = np.asarray(small, dtype=np.float32) * rng.uniform(0.8, 1.15)
    pixels += 5.0 * rng.standard_normal(pixels.shape, dtype=np.float32)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


_WORDS = {
    "small": ("small", "tiny"), "medium": ("medium sized", "mid-sized"), "large": ("large", "big"),
    "short": ("short", "stubby"), "long": ("long", "thin pointed"), "hooked": ("hooked", "curved"),
    "forked": ("forked", "notched"), "rounded": ("rounded", "fan shaped"), "pointed": ("pointed", "sharp"),
    "solid": ("plain", "unmarked"), "striped": ("striped", "streaked"), "spotted": ("spotted", "speckled"),
    "red": ("red", "crimson"), "blue": ("blue", "bright blue"), "yellow": ("yellow", "golden"),
    "black": ("black", "dark"), "grey": ("grey", "gray"), "brown": ("brown", "dull brown"),
    "olive": ("olive", "olive green"), "white": ("white", "pale"), "buff": ("buff", "tan"),
    "present": ("a white eye ring", "white rings around its eyes"),
    "absent": ("no eye ring", "plain dark eyes"),
}
_TEMPLATES = (
    "this bird has a {crown} crown, a {bill} beak and a {pattern} breast.",
    "a {size} bird with {wing} wings and a {tail} tail.",
    "this {size} bird has a {breast} breast, {wing} wings and a {crown} crown.",
    "the bird has a {bill} bill, {eye} and a {tail} tail.",
    "a {crown} crowned bird with a {pattern} {breast} breast and {wing} wing feathers.",
    "this is a {size} bird with a {bill} beak, a {crown} head and {eye}.",
    "{wing} wings, a {crown} cap and a {breast} breast mark this {size} bird.",
    "this bird has {eye}, a {pattern} belly and a {tail} tail.",
)


def write_captions(attributes: dict[str, str], rng: np.random.Generator, count: int = 5) -> list[str]:
    """``count`` Reed-style captions of one bird, from its per-image attribute values."""
    def word(group: str) -> str:
        options = _WORDS[attributes[group]]
        return options[int(rng.integers(0, len(options)))]

    captions = []
    for template in rng.choice(len(_TEMPLATES), size=min(count, len(_TEMPLATES)), replace=False):
        fields = {"size": word("has_size"), "bill": word("has_bill_shape"), "tail": word("has_tail_shape"),
                  "crown": word("has_crown_color"), "wing": word("has_wing_color"),
                  "breast": word("has_breast_color"), "pattern": word("has_breast_pattern"),
                  "eye": word("has_eye_ring")}
        captions.append(re.sub(r"\ba (?=[aeiou])", "an ", _TEMPLATES[int(template)].format(**fields)))
    return captions


def synthesize_song(song: dict, rng: np.random.Generator, seconds: float = AUDIO_SECONDS,
                    sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A noisy song: syllables at the class pitch, rate, sweep, vibrato and harmonics (float32, [-1, 1]).

    Syllable :math:`k` starts at :math:`t_k = t_0 + k / r` and has instantaneous frequency
    :math:`f(\\tau) = f_0 (1 + s(\\tau/d - 1/2)) + 0.04 f_0 \\sin(2\\pi v \\tau)` over its duration
    :math:`d`, summed over harmonics with amplitude :math:`2^{-(h-1)}` under a Hann envelope;
    white and low-frequency noise are added at a random SNR of 6-20 dB.
    """
    n = int(seconds * sample_rate)
    out = np.zeros(n, dtype=np.float64)
    pitch = song["pitch_hz"] * rng.uniform(0.95, 1.05)
    rate = song["rate_hz"] * rng.uniform(0.88, 1.12)
    duration = song["syllable_s"] * rng.uniform(0.9, 1.1)
    length = int(duration * sample_rate)
    tau = np.arange(length) / sample_rate
    freq = pitch * (1 + song["sweep"] * (tau / duration - 0.5))
    freq += 0.04 * pitch * np.sin(2 * np.pi * song["vibrato_hz"] * tau)
    phase = 2 * np.pi * np.cumsum(freq) / sample_rate
    harmonics = range(1, song["harmonics"] + 1)
    syllable = sum(0.5 ** (h - 1) * np.sin(h * phase) for h in harmonics) * np.hanning(length)
    start = rng.uniform(0.0, 0.25)
    while start + duration < seconds:
        begin = int(start * sample_rate)
        out[begin:begin + length] += syllable * rng.uniform(0.6, 1.0)
        start += 1.0 / rate + rng.normal(0, 0.01)
    signal_rms = math.sqrt(float(np.mean(out**2))) or 1.0
    rumble = np.cumsum(rng.standard_normal(n, dtype=np.float32)) * 0.05
    noise = rng.standard_normal(n, dtype=np.float32) + rumble - np.linspace(rumble[0], rumble[-1], n)
    noise *= signal_rms / (math.sqrt(float(np.mean(noise**2))) or 1.0) / 10 ** (rng.uniform(6, 20) / 20)
    mix = out + noise
    return (0.8 * mix / max(float(np.abs(mix).max()), 1e-9)).astype(np.float32)


def _place_and_time(spec: dict, rng: np.random.Generator) -> tuple[tuple[float, float], datetime]:
    where = spec["range"]
    lat = float(np.clip(rng.normal(where["lat"], where["spread_deg"]), -89.0, 89.0))
    lon = float((rng.normal(where["lon"], where["spread_deg"]) + 180.0) % 360.0 - 180.0)
    day = float((rng.normal(where["peak_day"], where["day_spread"])) % 365.0)
    year, minutes = int(rng.integers(2015, 2025)), int(rng.integers(5 * 60, 19 * 60))
    when = datetime(year, 1, 1) + timedelta(days=int(day), minutes=minutes)
    return (round(lat, 5), round(lon, 5)), when


def _noisy_labels(samples: list[Sample], split: list[str], specs: list[dict], rate: float,
                  rng: np.random.Generator) -> None:
    """Give ``rate`` of the training samples a wrong label: a sibling species or any seen class."""
    train = [i for i, part in enumerate(split) if part == "train"]
    seen = [c["index"] for c in specs if not c["unseen"]]
    chosen = sorted(rng.choice(train, size=round(rate * len(train)), replace=False).tolist()) if train else []
    for index in chosen:
        true = samples[index].label
        siblings = [c for c in seen if c != true and specs[c]["genus"] == specs[true]["genus"]]
        pool = siblings if siblings and rng.random() < SIBLING_NOISE else [c for c in seen if c != true]
        samples[index].label = int(pool[int(rng.integers(0, len(pool)))])


def _make_sample(spec: dict, image_index: int, out_dir: Path, image_size: int, seed: int,
                 with_audio: bool) -> Sample:
    """Render, synthesise and write one sample from its own random stream ``(seed, 1, class, image)``."""
    rng = _rng(seed, 1, spec["index"], image_index)
    sample_id = f"{spec['index']:03d}-{image_index:03d}"
    attributes = _sample_attributes(rng, spec)
    image_path = out_dir / "images" / f"{sample_id}.jpg"
    buffer = io.BytesIO()
    render_bird(attributes, rng, image_size).save(buffer, format="JPEG", quality=90)
    write_atomic(image_path, buffer.getvalue())
    audio_path = None
    if with_audio:
        audio_path = out_dir / "audio" / f"{sample_id}.wav"
        buffer = io.BytesIO()
        sf.write(buffer, synthesize_song(spec["song"], rng), SAMPLE_RATE, format="WAV", subtype="PCM_16")
        write_atomic(audio_path, buffer.getvalue())
    location, when = _place_and_time(spec, rng)
    return Sample(id=sample_id, label=spec["index"], image=image_path, texts=write_captions(attributes, rng),
                  audio=audio_path, location=location, time=when,
                  meta={"clean_label": spec["index"], "attributes": attributes})


def generate_procedural(out_dir: str | Path, *, num_classes: int = 20, images_per_class: int = 40,
                        image_size: int = 96, unseen_classes: int = 5, noise_rate: float = 0.2, seed: int = 0,
                        with_audio: bool = True, force: bool = False, progress: bool = False) -> MultiModalDataset:
    """Write the procedural dataset to ``out_dir`` in the folder format and return it loaded.

    Seen classes are split per class (a seeded 25% holdout); samples of unseen classes are all
    test. ``Sample.meta["clean_label"]`` is the true class of every sample, ``Sample.label`` the
    observed one (different for ``noise_rate`` of the training samples). The class spec is kept in
    ``dataset.meta["class_spec"]``; each sample's drawn attribute values in
    ``Sample.meta["attributes"]``. Samples are made on a small thread pool, each from its own random
    stream, so the bytes do not depend on scheduling. ``out_dir`` must be absent, empty or a dataset
    folder fgmm wrote (whose files are then rewritten); any other folder needs ``force``, and even then
    no file that is already there is overwritten (:func:`fgmm.data.folder.claim_dataset_folder`).
    ``progress`` shows a bar (on stderr) while the samples are made.

    Raises:
        ConfigError: an argument out of range. OwnershipError: ``out_dir`` holds files fgmm did not create.
    """
    if not 0.0 <= noise_rate < 1.0:
        raise ConfigError(f"noise_rate must be in [0, 1), got {noise_rate}")
    if not images_per_class >= 2:
        raise ConfigError(f"images_per_class must be at least 2 (a train and a test image per class), "
                          f"got {images_per_class}")
    if not MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE:
        raise ConfigError(f"image_size must be in [{MIN_IMAGE_SIZE}, {MAX_IMAGE_SIZE}], got {image_size}")
    out_dir = Path(out_dir).expanduser().absolute()
    specs = procedural_class_spec(num_classes, seed, unseen_classes=unseen_classes)
    # before any file is written; the sample files go straight to images/ and audio/, so those must be fgmm's too
    claim_dataset_folder(out_dir, force, reserved=(*DATASET_FILES, "images", "audio", "texts"))
    jobs = [(spec, image_index) for spec in specs for image_index in range(images_per_class)]
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:  # progress: a bar on stderr
        made = pool.map(lambda job: _make_sample(*job, out_dir, image_size, seed, with_audio), jobs)
        samples = list(tqdm(made, total=len(jobs), desc="generating samples", unit="sample", disable=not progress))
    unseen = [c["index"] for c in specs if c["unseen"]]
    seen_labels = [-1 if s.label in unseen else s.label for s in samples]
    split = ["test" if s.label in unseen else part
             for s, part in zip(samples, holdout_split(seen_labels, TEST_FRACTION, seed), strict=True)]
    _noisy_labels(samples, split, specs, noise_rate, _rng(seed, 2))
    dataset = MultiModalDataset(
        samples=samples, class_names=[c["name"] for c in specs], split=split,
        split_protocol=f"{holdout_protocol(TEST_FRACTION, seed)}+unseen-classes-test",
        attribute_names=list(ATTRIBUTE_NAMES),
        class_attributes=np.array([[c["attributes"][a] for a in ATTRIBUTE_NAMES] for c in specs],
                                  dtype=np.float32),
        class_descriptions={c["index"]: c["description"] for c in specs}, root=out_dir, name="procedural",
        unseen_classes=unseen,
        meta={"generator": "fgmm.data.procedural", "class_spec": specs,
              "params": {"num_classes": num_classes, "images_per_class": images_per_class,
                         "image_size": image_size, "unseen_classes": unseen_classes, "noise_rate": noise_rate,
                         "seed": seed, "with_audio": with_audio}},
    )
    write_folder(dataset, out_dir, force)
    return load_folder(out_dir)
