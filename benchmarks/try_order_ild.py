"""Measure (issue 19, thirty-fourth session): how often a second-order MagLS decode carries a larger
ILD error than a first-order one, per direction.

The order-truncation sweeps that ``quality`` leaves unordered (``quality_explorations.md``) swap the
second- and first-order items. ``quality`` decodes every ambisonic signal with the MagLS decoder of
its own order (:func:`spaq.spatial.ambisonics.binaural_decoder`, default KU100), so a truncated
third-order scene is judged by how far its lower-order decode is from the third-order decode. Here,
for every measured KU100 direction, each decoder's plane-wave response (its filters applied to the
direction's spherical harmonics) gives per-band ILDs (15 log-spaced bands, 500 Hz-16 kHz, 1024-point
DFT); the mean |ILD difference| over the bands against the third-order decode and against the HRTF
itself is compared between orders 1 and 2, quadrature-weighted over the 2702 directions.

    PYTHONPATH=src python benchmarks/try_order_ild.py [--hrtf ku100]

Results: ``benchmarks/results/quality_explorations.md``, thirty-fourth session.
"""
from __future__ import annotations

import argparse

import numpy as np

from spaq.spatial.ambisonics import binaural_decoder, sh_matrix
from spaq.spatial.hrtf import load_hrtf

FS, N_FFT = 48000, 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hrtf", default="ku100")
    a = ap.parse_args()
    h = load_hrtf(a.hrtf, FS)
    f = np.fft.rfftfreq(N_FFT, 1 / FS)
    edges = np.geomspace(500, 16000, 16)

    def ild(X):  # (K, 2, F) complex -> (K, 15) dB
        P = np.abs(X) ** 2
        B = np.stack([P[..., (f >= lo) & (f < hi)].sum(-1) for lo, hi in zip(edges[:-1], edges[1:])], -1)
        return 10 * np.log10(B[:, 0] / B[:, 1])

    I = {}
    for N in (1, 2, 3):
        Y = sh_matrix(N, h.azimuth_deg, h.elevation_deg)
        I[N] = ild(np.einsum("ecf,ck->kef", np.fft.rfft(binaural_decoder(h, N), N_FFT, axis=-1), Y))
    w = h.quadrature_weights()
    w = w / w.sum()
    print(f"{a.hrtf}, {h.n_directions} directions, mean |dILD| over 15 bands 0.5-16 kHz (quadrature-weighted)")
    print("| against | order 1 | order 2 | share of directions where order 2 is further |")
    print("|---|---|---|---|")
    for label, ref in (("the third-order decode", I[3]), ("the HRTF", ild(np.fft.rfft(h.hrir, N_FFT, axis=-1)))):
        e1, e2 = np.abs(I[1] - ref).mean(-1), np.abs(I[2] - ref).mean(-1)
        print(f"| {label} | {(w * e1).sum():.2f} dB | {(w * e2).sum():.2f} dB | {(w * (e2 > e1)).sum():.3f} |")
    e1, e2 = np.abs(I[1] - I[3]).mean(-1), np.abs(I[2] - I[3]).mean(-1)
    lat = np.degrees(np.arcsin(np.clip(np.sin(np.radians(h.azimuth_deg)) * np.cos(np.radians(h.elevation_deg)), -1, 1)))
    print("\nshare where order 2 is further from the third-order decode, by |lateral angle|:")
    for lo, hi in ((0, 15), (15, 45), (45, 90.1)):
        m = (np.abs(lat) >= lo) & (np.abs(lat) < hi)
        print(f"  {lo:g}-{min(hi, 90):g} deg: {(w[m] * (e2[m] > e1[m])).sum() / w[m].sum():.3f} "
              f"(mean |dILD| order 1 {(w[m] * e1[m]).sum() / w[m].sum():.2f}, order 2 {(w[m] * e2[m]).sum() / w[m].sum():.2f} dB)")


if __name__ == "__main__":
    main()
