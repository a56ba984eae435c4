"""fgmm.geo: metadata readers, the geo encoder, the presence-only prior, fusion, maps and the geo task.

Everything is generated here (tiny record sets, a JPEG with EXIF); no real data, no network.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import ExifTags, Image
from typer.testing import CliRunner

from fgmm.encoders import ENCODERS, create_encoder
from fgmm.errors import DataError
from fgmm.geo.encoder import as_geo_tensor
from fgmm.geo.encoding import real_spherical_harmonics
from fgmm.geo.fit import fit_geo_prior, random_places
from fgmm.geo.fusion import LearnedPriorFusion, product_rule
from fgmm.geo.kde import EARTH_RADIUS_KM, KernelDensityPrior
from fgmm.geo.metadata import geo_tensor, make_geo, parse_date, read_exif, read_image_locations
from fgmm.geo.occurrences import load_occurrences
from fgmm.geo.predict import geo_query
from fgmm.geo.prior import GeoPrior, GeoPriorConfig, assume_negative_full_loss

NAN = math.nan
AMERICA, EUROPE = (40.0, -100.0), (50.0, 10.0)
TINY = GeoPriorConfig(encoder="sh8", loss="an_full", hidden=32, blocks=1, epochs=60, batch_size=64, lr=3e-3,
                      pos_weight=32.0, dropout=0.0, grid_levels=0)


def _write_records(path: Path, rows_per_class: int = 40, seed: int = 0) -> Path:
    """Two species on two continents: A around the central US (dated in summer), B around central Europe."""
    rng = np.random.default_rng(seed)
    lines = ["class,latitude,longitude,date,time,source,record_id"]
    for name, (lat, lon) in (("001.Species_A", AMERICA), ("002.Species_B", EUROPE)):
        for i in range(rows_per_class):
            date = f"2020-07-{1 + i % 28:02d}" if name.endswith("A") and i % 2 else ""
            place = f"{lat + rng.normal(0, 3):.4f},{lon + rng.normal(0, 4):.4f}"
            lines.append(f"{name},{place},{date},,test,R{name[:3]}{i}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These models are tiny: one thread avoids losing seconds to thread contention on a busy 2-core box."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def records_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_records(tmp_path_factory.mktemp("geo") / "occurrences.csv")


@pytest.fixture(scope="module")
def toy_prior(records_csv: Path) -> GeoPrior:
    return fit_geo_prior(load_occurrences(records_csv), TINY)


# ---------------------------------------------------------------- prior math on a known answer

def test_prior_puts_each_species_on_its_continent(toy_prior: GeoPrior) -> None:
    queries = torch.tensor([[*AMERICA, NAN, NAN], [*EUROPE, NAN, NAN], [*AMERICA, 190.0, NAN],
                            [-40.0, 140.0, NAN, NAN]])
    log_p = toy_prior.predict(queries)
    assert log_p.shape == (4, 2) and bool((log_p <= 0).all())
    assert log_p[0].argmax() == 0 and log_p[1].argmax() == 1 and log_p[2].argmax() == 0
    assert log_p[0, 0].exp() > 0.5 and log_p[1, 1].exp() > 0.5
    home = log_p[[0, 1], [0, 1]]
    assert bool((log_p[3] < home - 0.5).all())          # Australia: neither species was ever recorded there


def test_softmax_prior_gives_log_density_ratios(records_csv: Path) -> None:
    prior = fit_geo_prior(load_occurrences(records_csv), replace(TINY, loss="softmax", epochs=20, grid_levels=4,
                                                                grid_table_size=256))
    log_ratio = prior.predict(torch.tensor([[*AMERICA, NAN, NAN], [*EUROPE, NAN, NAN]]))
    assert log_ratio[0, 0] > math.log(1.5) > log_ratio[0, 1] and log_ratio[1, 1] > math.log(1.5) > log_ratio[1, 0]
    # log p(c|x) - log p(c): the class-frequency-weighted sum of exp() over classes is exactly 1
    weights = (prior.class_counts + 1) / (prior.class_counts.sum() + 2)
    assert torch.allclose((log_ratio.exp() * weights).sum(1), torch.ones(2), atol=1e-5)


def test_kernel_density_matches_the_vmf_formula(records_csv: Path) -> None:
    records = load_occurrences(records_csv).subset([0])  # one record of species A
    kde = KernelDensityPrior(records, bandwidth_km=500.0, uniform_weight=1e-3)
    point = records.geo[:1].clone()
    out = kde(point)
    kappa = (EARTH_RADIUS_KM / 500.0) ** 2
    expected = math.log((1 - 1e-3) * 2 * kappa / (1 - math.exp(-2 * kappa)) + 1e-3)
    assert out[0, 0].item() == pytest.approx(expected, rel=1e-5)
    assert out[0, 1].item() == pytest.approx(math.log(1e-3), rel=1e-5)   # no record of B: the floor only
    assert kde(torch.tensor([[NAN, NAN, NAN, NAN]])).abs().sum() == 0


def test_assume_negative_loss_by_hand() -> None:
    pos = torch.tensor([[2.0, -1.0]])
    bg = torch.tensor([[0.5, -0.5]])
    lam = 4.0
    sig = torch.sigmoid
    by_hand = (-(lam * torch.log(sig(pos[0, 0]))) - torch.log(1 - sig(pos[0, 1]))) / 2 \
        - (torch.log(1 - sig(bg[0, 0])) + torch.log(1 - sig(bg[0, 1]))) / 2
    assert assume_negative_full_loss(pos, torch.tensor([0]), bg, lam).item() == pytest.approx(by_hand.item(), rel=1e-6)


def test_product_rule_and_missing_place(toy_prior: GeoPrior) -> None:
    image = torch.zeros(3, 2)                           # the image model cannot tell A from B
    geo = torch.tensor([[*AMERICA, NAN, NAN], [*EUROPE, NAN, NAN], [NAN, NAN, NAN, NAN]])
    fused = product_rule(image, toy_prior.predict(geo))
    assert fused[0].argmax() == 0 and fused[1].argmax() == 1
    assert torch.allclose(fused[2], torch.log_softmax(image[2], 0))  # no place: image-only scores unchanged
    assert torch.equal(product_rule(image, torch.zeros(3, 2)), torch.log_softmax(image, 1))


def test_learned_fusion_learns_to_trust_the_prior(toy_prior: GeoPrior) -> None:
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(40) % 2
    centres = torch.tensor([AMERICA, EUROPE])[labels]
    geo = torch.cat((centres + torch.randn(40, 2, generator=generator), torch.full((40, 2), NAN)), 1)
    image = torch.randn(40, 2, generator=generator)     # uninformative images
    fusion = LearnedPriorFusion(torch.tensor([40.0, 40.0])).fit(image, toy_prior.predict(geo), geo, labels)
    fused = fusion(image, toy_prior.predict(geo), geo)
    assert (fused.argmax(1) == labels).float().mean() == 1.0
    assert fusion.prior_weight.item() > 0


def test_learned_fusion_fits_when_the_image_model_cannot_score_some_classes() -> None:
    """Unseen classes come as -inf image logits: the fit must not turn them into NaN (0·inf gradients)."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(60) % 3
    image = torch.randn(60, 4, generator=generator) + 2.0 * torch.nn.functional.one_hot(labels, 4)
    image[:, 3] = -torch.inf                                   # class 3: no training image
    prior = torch.nn.functional.one_hot(labels, 4).float() * 2.0 - 1.0
    geo = torch.cat((torch.zeros(60, 2), torch.full((60, 2), NAN)), 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                         # no "diverged" fallback
        fusion = LearnedPriorFusion(torch.tensor([20.0, 20.0, 20.0, 1.0])).fit(image, prior, geo, labels)
    fused = fusion(image, prior, geo)
    assert all(bool(torch.isfinite(p).all()) for p in fusion.parameters())
    assert torch.isinf(fused[:, 3]).all() and torch.isfinite(fused[:, :3]).all()
    assert (fused.argmax(1) == labels).float().mean() == 1.0


def test_prior_save_load_round_trip(toy_prior: GeoPrior, tmp_path: Path) -> None:
    path = toy_prior.save(tmp_path / "prior.safetensors")
    loaded = GeoPrior.load(path)
    geo = random_places(16, torch.Generator().manual_seed(1), 0.5)
    assert loaded.class_names == toy_prior.class_names and loaded.config.hidden == 32
    assert torch.allclose(loaded.predict(geo), toy_prior.predict(geo))
    (tmp_path / "bad.safetensors").write_bytes(b"not a prior")
    with pytest.raises(DataError, match="bad.safetensors"):
        GeoPrior.load(tmp_path / "bad.safetensors")


def test_class_index_is_spelling_tolerant(toy_prior: GeoPrior) -> None:
    assert toy_prior.class_index("Species A") == 0 and toy_prior.class_index("species_b") == 1
    with pytest.raises(DataError, match="matches 2 classes"):
        toy_prior.class_index("species")


# ---------------------------------------------------------------- encoder and masking

def test_spherical_harmonics_match_scipy() -> None:
    from scipy.special import sph_harm_y

    lat, lon = torch.tensor([10.0, -45.0, 89.0, 0.0]), torch.tensor([20.0, -170.0, 3.0, 180.0])
    ours = real_spherical_harmonics(lat.double(), lon.double(), 6).numpy()
    theta, phi = np.deg2rad(90 - lat.numpy()), np.deg2rad(lon.numpy())
    columns = []
    for ell in range(6):
        for m in range(-ell, ell + 1):
            y = sph_harm_y(ell, abs(m), theta, phi)
            columns.append(y.real if m == 0 else math.sqrt(2) * (y.real if m > 0 else y.imag))
    assert np.allclose(ours, np.stack(columns, 1), atol=1e-6)   # float32 inputs


@pytest.mark.parametrize("name", ["sh8", "sphere4", "wrap"])
def test_geo_encoder_masks_missing_values(name: str) -> None:
    encoder = create_encoder("geo", name)
    assert "geo" in ENCODERS and encoder.modality == "geo"
    geo = torch.tensor([[45.0, 7.0, 120.0, 6.5], [NAN, NAN, NAN, NAN], [45.0, 7.0, NAN, NAN], [NAN, NAN, 120.0, NAN]])
    out = encoder.encode(geo)
    assert out.shape == (4, encoder.dim) and not out.isnan().any()
    masks = out[:, -3:]
    assert masks.tolist() == [[1, 1, 1], [0, 0, 0], [1, 0, 0], [0, 1, 0]]
    assert out[1].abs().sum() == 0                      # nothing known: all zeros, nothing imputed
    assert torch.equal(out[2, :encoder.position_dim], out[0, :encoder.position_dim])
    assert out[2, encoder.position_dim:-7].abs().sum() == 0   # no date: no time features
    assert out[3, :encoder.position_dim].abs().sum() == 0
    assert torch.allclose(as_geo_tensor(out), geo, equal_nan=True)   # raw values recoverable (priors read them)
    assert encoder.fingerprint() == create_encoder("geo", name).fingerprint()


def test_geo_encoder_reads_samples_and_prior_rows_without_place_are_zero(toy_prior: GeoPrior) -> None:
    from fgmm.data.sample import Sample

    samples = [Sample(id="a", location=(45.0, 7.0), time=datetime(2024, 5, 17, 7, 45)), Sample(id="b")]
    geo = geo_tensor(samples)
    assert geo[0].tolist() == pytest.approx([45.0, 7.0, 138.32291, 7.75], rel=1e-4)
    assert geo[1].isnan().all()
    assert torch.equal(toy_prior(samples)[1], torch.zeros(2))


# ---------------------------------------------------------------- reading metadata, bad values

def _jpeg_with_exif(path: Path, lat: tuple, lat_ref: str, lon: tuple, lon_ref: str, stamp: str) -> Path:
    exif = Image.Exif()
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = stamp
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps.update({ExifTags.GPS.GPSLatitudeRef: lat_ref, ExifTags.GPS.GPSLatitude: lat,
                ExifTags.GPS.GPSLongitudeRef: lon_ref, ExifTags.GPS.GPSLongitude: lon})
    Image.new("RGB", (16, 12), (90, 120, 200)).save(path, format="JPEG", exif=exif)
    return path


def test_exif_gps_and_date_from_a_written_jpeg(tmp_path: Path) -> None:
    photo = _jpeg_with_exif(tmp_path / "gull.jpg", (33.0, 51.0, 36.0), "S", (151.0, 12.0, 36.0), "E",
                            "2023:11:02 16:45:10")
    found = read_exif(photo)
    assert found.location == pytest.approx((-33.86, 151.21), abs=1e-6)
    assert found.time == datetime(2023, 11, 2, 16, 45, 10) and found.has_hour
    row = geo_query(image=photo)
    assert row[0, :2].tolist() == pytest.approx([-33.86, 151.21], abs=1e-4) and row[0, 3] == pytest.approx(16.75)
    assert geo_query(lat=10.0, lon=20.0, image=photo)[0, :2].tolist() == [10.0, 20.0]   # explicit values win
    plain = tmp_path / "plain.jpg"
    Image.new("RGB", (8, 8)).save(plain)
    assert read_exif(plain).location is None and read_exif(plain).time is None
    result = CliRunner().invoke(_app(), ["geo", "exif", str(photo), str(plain)])
    assert result.exit_code == 0 and "-33.86000, 151.21000" in result.output and "no GPS position" in result.output


def test_exif_impossible_values_name_the_photo(tmp_path: Path) -> None:
    far = _jpeg_with_exif(tmp_path / "far.jpg", (95.0, 0.0, 0.0), "N", (1.0, 0.0, 0.0), "E", "2023:11:02 16:45:10")
    with pytest.raises(DataError, match=r"far.jpg: EXIF GPS latitude 95 is outside \[-90, 90\]"):
        read_exif(far)
    bad_date = _jpeg_with_exif(tmp_path / "when.jpg", (1.0, 0.0, 0.0), "N", (1.0, 0.0, 0.0), "E", "2023:02:30 10:00:00")
    with pytest.raises(DataError, match="when.jpg: EXIF DateTimeOriginal '2023:02:30 10:00:00'"):
        read_exif(bad_date)


@pytest.mark.parametrize(("row", "problem"), [
    ("12,91.5,10.0,,", r"image_locations.csv:3: latitude 91.5 is outside \[-90, 90\]"),
    ("12,10.0,-181,,", r"image_locations.csv:3: longitude -181 is outside \[-180, 180\]"),
    ("12,10.0,,,", r"image_locations.csv:3: latitude and longitude must be given together"),
    ("12,north,10,,", r"image_locations.csv:3: latitude/longitude 'north', '10' are not numbers"),
    ("12,10.0,10.0,2023-02-30,", r"image_locations.csv:3: date '2023-02-30' is not a valid date"),
    ("10,10.0,10.0,,", r"image_locations.csv:3: image id 10 repeats line 2"),
])
def test_bad_coordinates_and_dates_name_file_and_line(tmp_path: Path, row: str, problem: str) -> None:
    path = tmp_path / "image_locations.csv"
    path.write_text(f"image_id,latitude,longitude,date,record\n10,1.0,2.0,2020-01-05,xc XC1\n{row}\n")
    with pytest.raises(DataError, match=problem):
        read_image_locations(path)


def test_bad_occurrence_rows_and_times(tmp_path: Path) -> None:
    path = tmp_path / "occ.csv"
    path.write_text("class,latitude,longitude,date,time\nA,10,20,2020-01-01,25:10\n")
    with pytest.raises(DataError, match=r"occ.csv:2: time '25:10' is not a valid clock time"):
        load_occurrences(path)
    path.write_text("class,latitude,longitude,date\nA,10,200,\n")
    with pytest.raises(DataError, match=r"occ.csv:2: longitude 200 is outside"):
        load_occurrences(path)
    path.write_text("class,latitude,longitude,date,time,source,record_id\n"
                    "A,10,20,2020-01-01,07:45 AM,x,1\nZ,1,2,,,x,2\n")
    records = load_occurrences(path, ["A"])
    assert len(records) == 1 and records.dropped == {"Z": 1} and records.records == ["x 1"]
    assert records.geo[0, 3].item() == pytest.approx(7.75)
    with pytest.raises(DataError, match="date '2020-13-01'"):
        make_geo(1.0, 2.0, "2020-13-01")
    assert parse_date("2024-05-17T07:45")[1] is True


def test_cub_loader_fills_places_dates_and_records(tiny_cub: Path) -> None:
    from fgmm.data.cub import load_cub

    (tiny_cub / "image_locations.csv").write_text(
        "image_id,latitude,longitude,date,record\n10,41.5,-87.6,2021-05-03,eBird checklist S1\n12,,,,\n"
        "20,28.2,-177.4,,xeno-canto XC9\n")
    dataset = load_cub(tiny_cub)
    by_id = {s.id: s for s in dataset}
    assert by_id["10"].location == (41.5, -87.6) and by_id["10"].time == datetime(2021, 5, 3)
    assert by_id["10"].meta["location_record"] == "eBird checklist S1"
    assert by_id["12"].location is None and by_id["20"].time is None
    assert geo_tensor([by_id["10"]])[0, 3].isnan()      # a date without a clock time: hour missing


# ---------------------------------------------------------------- the map command and the task

def _app():
    from fgmm.cli.main import app

    return app


def test_cli_geo_show_draws_a_map_and_refuses_to_overwrite(records_csv: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "a.png"
    args = ["geo", "show", "Species A", "--occurrences", str(records_csv), "--out", str(out), "--epochs", "3"]
    result = runner.invoke(_app(), args)
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = runner.invoke(_app(), args)
    assert again.exit_code == 3 and "--force" in again.output
    prior_file = tmp_path / "p.safetensors"
    fitted = runner.invoke(_app(), ["geo", "fit", "--occurrences", str(records_csv), "--out", str(prior_file),
                                    "--epochs", "2"])
    assert fitted.exit_code == 0, fitted.output
    shown = runner.invoke(_app(), ["geo", "show", "Species_B", "--prior", str(prior_file), "--out",
                                   str(tmp_path / "b.png"), "--date", "2020-07-01", "--extent", "-20,40,30,70"])
    assert shown.exit_code == 0, shown.output
    wrong = runner.invoke(_app(), ["geo", "show", "Species C", "--prior", str(prior_file), "--out",
                                   str(tmp_path / "c.png")])
    assert wrong.exit_code == 3 and "matches 0 classes" in wrong.output


def test_geo_task_gains_on_two_continents(tmp_path: Path, records_csv: Path) -> None:
    from fgmm.data.sample import MultiModalDataset, Sample
    from fgmm.tasks.geo import evaluate_geo

    rng = np.random.default_rng(0)
    samples, features = [], []
    for i in range(80):
        label = i % 2
        lat, lon = (AMERICA, EUROPE)[label]
        place = None if i % 20 == 8 else (lat + rng.normal(0, 2), lon + rng.normal(0, 2))
        samples.append(Sample(id=str(i), label=label, location=place, time=datetime(2020, 7, 1) if i % 3 else None,
                              meta={"location_record": ""}))
        features.append(rng.normal(0, 1, 8) + 0.3 * label)   # weak image signal
    split = ["test" if i % 4 == 0 else "train" for i in range(80)]
    dataset = MultiModalDataset(samples=samples, class_names=["001.Species_A", "002.Species_B"], split=split)
    train = np.array([i for i, s in enumerate(split) if s == "train"])
    test = np.array([i for i, s in enumerate(split) if s == "test"])
    metrics = evaluate_geo(dataset, torch.tensor(np.array(features), dtype=torch.float32),
                           load_occurrences(records_csv), train, test, grid=(replace(TINY, epochs=20),),
                           sinr=replace(TINY, epochs=20), kde=((300.0, 0.1),))
    assert metrics["geo_prior_top1"] == 1.0 and metrics["geo_prior_top1_kde"] == 1.0
    assert metrics["geo_fused_top1"] > metrics["geo_image_top1"]
    assert metrics["geo_n_noplace"] == 4 and metrics["geo_n_dated"] + metrics["geo_n_undated"] == 16
