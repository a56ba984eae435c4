r"""Fixed (weight-free) features of positions on the sphere and of cyclic time.

Position encodings live in :data:`POSITION_ENCODINGS`:

* ``"sh"``: real spherical harmonics :math:`Y_\ell^m(\theta, \phi)` of degree :math:`\ell < L`
  (:math:`L^2` features), as in Rußwurm et al., *Geographic Location Encoding with Spherical
  Harmonics and Sinusoidal Representation Networks*, ICLR 2024. With colatitude :math:`\theta` and
  longitude :math:`\phi`:

  .. math::
      Y_\ell^m = \sqrt{2}\,\bar P_\ell^{|m|}(\cos\theta)\,\{\cos(m\phi)\ (m>0);\ \sin(|m|\phi)\ (m<0)\},
      \qquad Y_\ell^0 = \bar P_\ell^0(\cos\theta)

  where :math:`\bar P_\ell^m = \sqrt{\tfrac{2\ell+1}{4\pi}\tfrac{(\ell-m)!}{(\ell+m)!}}\,P_\ell^m`
  (Condon-Shortley phase included) is computed with the stable recurrences
  :math:`\bar P_m^m = -\sqrt{\tfrac{2m+1}{2m}}\sin\theta\,\bar P_{m-1}^{m-1}`,
  :math:`\bar P_{m+1}^m = \sqrt{2m+3}\cos\theta\,\bar P_m^m` and
  :math:`\bar P_\ell^m = a_\ell^m(\cos\theta\,\bar P_{\ell-1}^m - \bar P_{\ell-2}^m / a_{\ell-1}^m)`,
  :math:`a_\ell^m = \sqrt{(4\ell^2-1)/(\ell^2-m^2)}`. Smooth everywhere, no artefacts at the poles or
  the date line; resolution about :math:`180°/L`.
* ``"sphere"``: multi-scale sin/cos of the 3-D unit vector :math:`u = (\cos\varphi\cos\lambda,
  \cos\varphi\sin\lambda, \sin\varphi)`: :math:`[\sin(\pi u / s_k), \cos(\pi u / s_k)]` for scales
  :math:`s_k = 2^{-k}`, :math:`k = 0..K-1` (:math:`6K` features; a 3-D variant of the NeRF/Sphere2Vec
  frequency encodings).
* ``"wrap"``: SINR's input encoding (Cole et al., *Spatial Implicit Neural Representations for Global-Scale
  Species Mapping*, ICML 2023): :math:`[\sin(\pi\lambda/180), \cos(\pi\lambda/180), \sin(\pi\varphi/90),
  \cos(\pi\varphi/90)]`.

Cyclic time (:func:`time_features`): day of year :math:`d` as :math:`[\sin, \cos](2\pi k d / 365.25)` for
harmonics :math:`k = 1..K_d`, and hour :math:`h` as :math:`[\sin, \cos](2\pi h / 24)`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from fgmm.registry import Registry

PositionEncoding = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
POSITION_ENCODINGS: Registry[PositionEncoding] = Registry("position encoding")
DAYS_PER_YEAR = 365.25


def real_spherical_harmonics(lat: torch.Tensor, lon: torch.Tensor, degree: int) -> torch.Tensor:
    """Orthonormal real spherical harmonics of degrees ``0..degree-1`` at ``(lat, lon)`` in degrees.

    Args:
        lat: ``[B]`` latitudes.
        lon: ``[B]`` longitudes.
        degree: :math:`L`; the output has :math:`L^2` columns ordered by :math:`\\ell`, then
            :math:`m = -\\ell..\\ell`.

    Returns:
        ``[B, L**2]`` (dtype of ``lat``, computed in float64).
    """
    theta = torch.deg2rad(90.0 - lat.double())
    phi = torch.deg2rad(lon.double())
    x, s = torch.cos(theta), torch.sin(theta)
    legendre: dict[tuple[int, int], torch.Tensor] = {(0, 0): torch.full_like(x, math.sqrt(1 / (4 * math.pi)))}
    for m in range(degree):
        if m > 0:
            legendre[m, m] = -math.sqrt((2 * m + 1) / (2 * m)) * s * legendre[m - 1, m - 1]
        if m + 1 < degree:
            legendre[m + 1, m] = math.sqrt(2 * m + 3) * x * legendre[m, m]
        for ell in range(m + 2, degree):
            a = math.sqrt((4 * ell * ell - 1) / (ell * ell - m * m))
            a_prev = math.sqrt((4 * (ell - 1) ** 2 - 1) / ((ell - 1) ** 2 - m * m))
            legendre[ell, m] = a * (x * legendre[ell - 1, m] - legendre[ell - 2, m] / a_prev)
    m_phi = phi[:, None] * torch.arange(1, degree, dtype=phi.dtype)
    cos_m, sin_m = math.sqrt(2) * torch.cos(m_phi), math.sqrt(2) * torch.sin(m_phi)
    columns = []
    for ell in range(degree):
        columns += [legendre[ell, -m] * sin_m[:, -m - 1] for m in range(-ell, 0)]
        columns.append(legendre[ell, 0])
        columns += [legendre[ell, m] * cos_m[:, m - 1] for m in range(1, ell + 1)]
    return torch.stack(columns, dim=1).to(lat.dtype)


def unit_vectors(lat: torch.Tensor, lon: torch.Tensor) -> torch.Tensor:
    """``[B, 3]`` unit vectors of ``(lat, lon)`` in degrees."""
    phi, lam = torch.deg2rad(lat), torch.deg2rad(lon)
    return torch.stack((torch.cos(phi) * torch.cos(lam), torch.cos(phi) * torch.sin(lam), torch.sin(phi)), dim=1)


@POSITION_ENCODINGS.register("sh")
def spherical_harmonics_encoding(degree: int = 16) -> PositionEncoding:
    """Real spherical harmonics of degree ``< degree`` (``degree**2`` features)."""
    return lambda lat, lon: real_spherical_harmonics(lat, lon, degree)


@POSITION_ENCODINGS.register("sphere")
def sphere_frequency_encoding(scales: int = 6) -> PositionEncoding:
    """Multi-scale sin/cos of 3-D unit vectors (``6 * scales`` features)."""
    def encode(lat: torch.Tensor, lon: torch.Tensor) -> torch.Tensor:
        u = unit_vectors(lat, lon)
        freqs = math.pi * 2.0 ** torch.arange(scales, dtype=u.dtype)
        angles = (u[:, :, None] * freqs).flatten(1)
        return torch.cat((torch.sin(angles), torch.cos(angles)), dim=1)
    return encode


@POSITION_ENCODINGS.register("wrap")
def wrap_encoding() -> PositionEncoding:
    """SINR's sin/cos of normalised longitude and latitude (4 features)."""
    def encode(lat: torch.Tensor, lon: torch.Tensor) -> torch.Tensor:
        lam, phi = torch.pi * lon / 180.0, torch.pi * lat / 90.0
        return torch.stack((torch.sin(lam), torch.cos(lam), torch.sin(phi), torch.cos(phi)), dim=1)
    return encode


def position_dim(encoding: PositionEncoding) -> int:
    """Output width of a position encoding (evaluated at one point)."""
    return int(encoding(torch.zeros(1), torch.zeros(1)).shape[1])


def time_features(day: torch.Tensor, hour: torch.Tensor, day_harmonics: int = 2) -> torch.Tensor:
    """``[B, 2 * day_harmonics + 2]`` cyclic features of day of year and hour (``NaN`` in, ``NaN`` out:
    the caller masks)."""
    k = torch.arange(1, day_harmonics + 1, dtype=day.dtype)
    angle = 2 * math.pi * day[:, None] * k / DAYS_PER_YEAR
    hour_angle = 2 * math.pi * hour[:, None] / 24.0
    return torch.cat((torch.sin(angle), torch.cos(angle), torch.sin(hour_angle), torch.cos(hour_angle)), dim=1)
