"""Content checks of a declared spatial format: does what the channels hold fit what the format
says they are? Two mistakes give plausible but wrong scores without any other sign:

* **a loudspeaker file in another channel order** (film order L C R Ls Rs LFE read as the SMPTE /
  ITU-R BS.2051 order L R C LFE Ls Rs): a full-band loudspeaker feed lands in the LFE slot, which
  the binaural render drops. An LFE channel is low-passed at 120 Hz, so almost none of its energy
  lies above :data:`LFE_BAND_HZ`; a speaker feed of speech, music or noise has most of its energy
  there. Flagged when the LFE channel holds more than :data:`LFE_MAX_HIGH_SHARE` of its energy above
  200 Hz and is within :data:`LFE_MIN_LEVEL_DB` of the loudest channel (dither in an unused LFE is
  white but far below the programme).
* **ambisonics in another normalisation or channel order** (N3D or FuMa read as ACN/SN3D): in SN3D
  the first-order components of one plane wave satisfy ``X^2 + Y^2 + Z^2 = W^2`` and a diffuse field
  the same (each direction's first-order gains have unit norm: each component holds a third), so the
  long-term ratio ``r = (E[X^2] + E[Y^2] + E[Z^2]) / E[W^2]`` of a real sound field is about 1 (less
  where sources add coherently); N3D multiplies it by 3 and FuMa (W at -3 dB) by 2. Read per
  third-octave band above 200 Hz and flagged when the median is above
  :data:`SN3D_MAX_FIRST_ORDER_RATIO` (room modes move the broadband ratio from 0.04 to 1.9).
* **two channels that are not two ears** (a spaced microphone pair far apart, two unrelated tracks, a
  loudspeaker pair with independent channels) read as binaural: two ears 15-25 cm apart are coherent below
  250 Hz in any sound field, such signals are not (:func:`binaural_check`, :data:`NOT_BINAURAL_COHERENCE`).
  Checked on a reference and on a signal read alone (``check_binaural``), not on a degraded one.

:class:`FormatContent` gathers the statistics block by block (files streamed in one pass) and
:meth:`FormatContent.warnings` says what it found, one line each. It is the one implementation
behind the loaders (:func:`spaq.io.load_pair`, in memory and streamed: ``spaq score``, ``spaq
batch``, :func:`spaq.score`) and :func:`spaq.localization.localize`.
"""
from __future__ import annotations

import numpy as np
import scipy.fft

__all__ = ["FormatContent", "format_warnings", "first_order_ratio", "binaural_check", "not_binaural_message", "LFE_BAND_HZ",
           "LFE_MAX_HIGH_SHARE", "LFE_MIN_LEVEL_DB", "SN3D_MAX_FIRST_ORDER_RATIO", "NOT_BINAURAL_COHERENCE"]

#: an LFE channel's content lies below this (Hz): LFE feeds are low-passed at 120 Hz
LFE_BAND_HZ = 200.0
#: an LFE channel with more than this share of its energy above LFE_BAND_HZ is a full-band feed. Measured
#: (benchmarks/measure_format_checks.py, benchmarks/results/format_checks.md): white noise low-passed at 120 Hz
#: 0.4 % (4th order) and 6.4 % (2nd order, the gentlest LFE filter); full-band feeds 35-100 % (the corpus
#: engine's pink noise 35 %, noise bursts 37 %, percussion 65 %, speech 97 %, white noise 99 %): 0.15 lies a
#: factor 2.3 from each side
LFE_MAX_HIGH_SHARE = 0.15
#: ... and is not negligible: its level within this many dB of the loudest channel's
LFE_MIN_LEVEL_DB = -30.0
#: an SN3D sound field's first-order to W energy ratio is 1 for one plane wave and for any incoherent sum of
#: them (each direction's first-order gains have unit norm), diffuse noise included; N3D reads 3, FuMa 2.
#: Measured (benchmarks/results/format_checks.md), median over bands: plane waves, 2-5 sources and diffuse
#: noise 0.98-1.02 at orders 1-3; the corpus engine's ACN/SN3D references (anechoic, rooms, diffuse, orders
#: 1-3) 0.92-1.09, their degraded versions up to 1.34, except two clipped 17-19 dB over full scale (1.66,
#: 1.82: W, the largest channel, loses most). 1.5 flags N3D (3) and FuMa (2 x 0.92 = 1.84 in a room)
SN3D_MAX_FIRST_ORDER_RATIO = 1.5
#: the third-octave bands (Hz) whose median ratio is read, and the range (dB) below the loudest band they are
#: counted in
RATIO_BANDS_HZ = (200.0, 12800.0)
RATIO_RANGE_DB = 40.0
#: W counts as silent beside its first-order channels when its energy is below theirs by this factor (60 dB)
_W_SILENT = 1e-6


def _welch_nfft(sample_rate: int) -> int:
    """About 4 Hz bins (a 200 Hz edge resolved to a few per cent), a power of two."""
    return int(2 ** np.ceil(np.log2(max(256, sample_rate / 4))))


class FormatContent:
    """Statistics of one signal read in format ``fmt`` (a :class:`~spaq.formats.SpatialFormat`), gathered
    over blocks ``(channels, n)`` of its samples as read (before any normalisation conversion) with
    :meth:`add`; :meth:`warnings` gives the one-line warnings. Formats it has nothing to check (mono,
    layouts without LFE, binaural unless ``check_binaural``) cost nothing."""

    def __init__(self, fmt, sample_rate: int, n_channels: int, check_binaural: bool = False):
        self.fmt = fmt
        self.sample_rate = int(sample_rate)
        self.n_channels = int(n_channels)
        self.lfe = None
        self.ambi = False
        self.coherence = None
        if check_binaural and getattr(fmt, "is_binaural", False) and self.n_channels == 2:
            from ..dsp import LowBandCoherence

            self.coherence = LowBandCoherence(self.sample_rate)
        if getattr(fmt, "is_layout", False) and fmt.layout_spec.lfe is not None \
                and fmt.layout_spec.n_channels == self.n_channels:
            self.lfe = int(fmt.layout_spec.lfe)
            self.spec_channels = [self.lfe]
        elif getattr(fmt, "is_ambisonics", False) and self.n_channels >= 4:
            self.ambi = True
            self.spec_channels = [0, 1, 2, 3]  # W and the first-order channels, whatever the order
        if self.lfe is not None or self.ambi:
            self.nfft = _welch_nfft(self.sample_rate)
            self.window = np.hanning(self.nfft).astype(np.float32)
            self.psd = np.zeros((len(self.spec_channels), self.nfft // 2 + 1))
        self.energy = np.zeros(self.n_channels)
        self.count = 0

    @property
    def active(self) -> bool:
        return self.lfe is not None or self.ambi or self.coherence is not None

    def add(self, block) -> None:
        if not self.active:
            return
        x = np.asarray(block)
        if x.ndim != 2 or x.shape[0] != self.n_channels or x.shape[1] == 0:
            return
        if self.coherence is not None:
            self.coherence.add(x)
            return
        # the energies read: every channel of a layout (its LFE against the loudest), W and the first order of
        # ambisonics (the higher orders are not read)
        ch = slice(None) if self.lfe is not None else slice(0, 4)
        self.energy[ch] += np.einsum("ct,ct->c", x[ch], x[ch], dtype=np.float64)
        self.count += x.shape[1]
        # Welch power spectra of the channels looked at (half-overlapping Hann frames), in float32, a few frames
        # per transform
        s = x[self.spec_channels]
        n, hop = self.nfft, self.nfft // 2
        if s.shape[1] < n:
            s = np.pad(s, ((0, 0), (0, n - s.shape[1])))
        starts = np.arange(0, s.shape[1] - n + 1, hop)
        if starts[-1] != s.shape[1] - n:  # the last partial frame: one more ending at the block's end
            starts = np.append(starts, s.shape[1] - n)
        for i in range(0, len(starts), 8):
            frames = np.stack([s[:, a:a + n].astype(np.float32) for a in starts[i:i + 8]], axis=1) * self.window
            X = scipy.fft.rfft(frames, axis=-1)
            self.psd += (X.real ** 2 + X.imag ** 2).sum(1, dtype=np.float64)

    # ------------------------------------------------------------------ findings

    def lfe_stats(self) -> dict | None:
        """``{"high_share", "level_db", "top_hz"}`` of the LFE channel: its share of energy above
        :data:`LFE_BAND_HZ`, its level against the loudest channel (dB) and the frequency below which
        99 % of its energy lies; None without an LFE channel or signal."""
        if self.lfe is None or self.count == 0 or self.psd.sum() <= 0 or self.energy.max() <= 0:
            return None
        f = np.fft.rfftfreq(self.nfft, 1.0 / self.sample_rate)
        p = self.psd[0]
        total = float(p.sum())
        cum = np.cumsum(p) / total
        return {"high_share": float(p[f > LFE_BAND_HZ].sum() / total),
                "level_db": float(10 * np.log10(self.energy[self.lfe] / self.energy.max())),
                "top_hz": float(f[min(len(f) - 1, int(np.searchsorted(cum, 0.99)))])}

    def first_order_ratio(self) -> float | None:
        """``(E[X^2] + E[Y^2] + E[Z^2]) / E[W^2]`` with the first-order channels converted to SN3D from the
        declared normalisation: the median over the third-octave bands from :data:`RATIO_BANDS_HZ` up
        (to 0.9 of Nyquist) that hold energy within :data:`RATIO_RANGE_DB` of the loudest band, so that
        room modes and the coherent low end of a room (pressure nodes: W cancels, velocity does not),
        which move the broadband ratio from 0.04 to 1.9 on the corpus engine's rooms, do not decide it.
        inf when W is silent beside the first-order channels; None when they are all silent."""
        if not self.ambi or self.count == 0:
            return None
        w, d = float(self.energy[0]), float(self.energy[1:4].sum())
        if d <= 0:
            return None if w <= 0 else 0.0
        if w <= _W_SILENT * d:
            return float("inf")
        norm = str(self.fmt.normalisation).lower()
        scale = {"n3d": 1 / 3, "fuma": 1 / 2}.get(norm, 1.0)  # first order n3d -> sn3d: / sqrt 3; fuma W * sqrt 2
        f = np.fft.rfftfreq(self.nfft, 1.0 / self.sample_rate)
        lo, hi = RATIO_BANDS_HZ
        edges = lo * 2.0 ** (np.arange(0, 3 * np.log2(hi / lo) + 1e-9) / 3)
        edges = edges[edges <= 0.9 * self.sample_rate / 2]
        pw, pd, ratios, level = self.psd[0], self.psd[1:4].sum(axis=0), [], []
        for a, b in zip(edges[:-1], edges[1:]):
            m = (f >= a) & (f < b)
            if pw[m].sum() > 0:
                ratios.append(pd[m].sum() / pw[m].sum())
                level.append(pw[m].sum() + pd[m].sum())
        if not ratios:  # nothing above 200 Hz: the broadband ratio
            return d / w * scale
        level = np.asarray(level)
        keep = level >= level.max() * 10 ** (-RATIO_RANGE_DB / 10)
        return float(np.median(np.asarray(ratios)[keep])) * scale

    def warnings(self, label: str) -> list[str]:
        """One-line warnings for ``label`` (e.g. ``"ref (a.wav)"``)."""
        out = []
        st = self.lfe_stats()
        if st is not None and st["high_share"] > LFE_MAX_HIGH_SHARE and st["level_db"] >= LFE_MIN_LEVEL_DB:
            lay = self.fmt.layout_spec
            labels = " ".join(lay.labels)
            top = f"{st['top_hz'] / 1000:.1f} kHz" if st["top_hz"] >= 1000 else f"{st['top_hz']:.0f} Hz"
            out.append(
                f"{label}: channel {self.lfe + 1} of {lay.n_channels} (index {self.lfe}), the LFE of {lay.name} "
                f"({labels}), has content up to {top} ({100 * st['high_share']:.0f} % of its energy above "
                f"{LFE_BAND_HZ:.0f} Hz, where an LFE channel, low-passed at 120 Hz, has almost none; "
                f"{-st['level_db']:.0f} dB below the loudest channel): it looks like a full-band loudspeaker feed, so "
                f"the channels may be in another order (film order, e.g. L C R Ls Rs LFE for 5.1, puts the LFE last); "
                f"the LFE is left out of the binaural render: reorder the channels to {labels}")
        r = self.first_order_ratio()
        if r is not None and r > SN3D_MAX_FIRST_ORDER_RATIO:
            out.append(self._ambi_warning(label, r))
        coh = None if self.coherence is None else self.coherence.value()
        if coh is not None and coh < NOT_BINAURAL_COHERENCE:
            out.append(f"{label}: " + not_binaural_message(
                coh, "spaq reads its channels as two ears; if it is a loudspeaker stereo pair, "
                     "read it as one (--format stereo; format='stereo' in Python)"))
        return out

    def _ambi_warning(self, label: str, r: float) -> str:
        order = int(self.fmt.order)
        norm = str(self.fmt.normalisation).lower()
        read = "ACN/SN3D" if norm == "sn3d" else norm.upper()
        spell = "foa" if order == 1 else f"hoa{order}"
        if norm == "sn3d":
            fix = f"it may be N3D (plane wave 3; --format {spell}/n3d)"
            fix += (" or FuMa (W at -3 dB, channels W X Y Z: plane wave 2; --format foa/fuma)" if order == 1 else
                    " or FuMa (W at -3 dB: plane wave 2; spaq reads FuMa at first order only)")
        else:
            fix = "check its normalisation and channel order"
        if np.isinf(r):
            return (f"{label}: its W channel (channel 1, omnidirectional) is silent while its first-order channels "
                    f"are not: not an ACN/{read.split('/')[-1]} ambisonic signal, or its channels are in another order")
        return (f"{label}: its first-order channels carry {r:.2f} times the energy of W (X^2+Y^2+Z^2 over W^2, read "
                f"as {read}; median over bands above 200 Hz), where an SN3D sound field gives about 1 (one plane wave "
                f"or any mix of them, diffuse sound included): {fix}")


def format_warnings(x, fmt, sample_rate: int, label: str, check_binaural: bool = False) -> list[str]:
    """The warnings of :class:`FormatContent` for a whole signal ``x (channels, T)`` or ``(B, channels, T)``
    (per batch item; a finding names its first item); ``check_binaural``: a binaural signal's channels are
    checked for being two ears (a reference or a signal read alone; not a degraded one, whose lost
    coherence may be the degradation)."""
    x = np.asarray(x)
    items = x[None] if x.ndim == 2 else x
    out: list[str] = []
    for i, it in enumerate(items):
        fc = FormatContent(fmt, sample_rate, it.shape[-2], check_binaural)
        if not fc.active:
            return []
        fc.add(it)
        lab = label if len(items) == 1 else f"{label} (batch item {i})"
        for w in fc.warnings(lab):
            key = w.split(": ", 1)[1] if ": " in w else w
            if not any(o.split(": ", 1)[-1] == key for o in out):
                out.append(w)
    return out


def first_order_ratio(x, normalisation: str = "sn3d", sample_rate: int = 48000) -> float | None:
    """:meth:`FormatContent.first_order_ratio` of ambisonics ``x (channels, T)`` (any order, ACN) at
    ``sample_rate``."""
    from types import SimpleNamespace

    from .sh import order_from_channels

    x = np.asarray(x)
    # what FormatContent reads of a format (spaq.formats sits above this layer)
    fmt = SimpleNamespace(is_layout=False, is_ambisonics=True, order=order_from_channels(x.shape[-2]) or 1,
                          normalisation=normalisation)
    fc = FormatContent(fmt, sample_rate, x.shape[-2])
    fc.add(x)
    return fc.first_order_ratio()


#: below this long-term low-band coherence (:func:`spaq.dsp.low_band_coherence`, 50-250 Hz) a 2-channel
#: signal is said not to look binaural: two ears read 0.38 or more there in every sound field measured (one
#: source >= 0.99; rooms and diffuse noise 0.38-0.85 on three heads), two independent signals 0.008-0.022
NOT_BINAURAL_COHERENCE = 0.2


def binaural_check(x, sample_rate: int) -> tuple:
    """``(coherence, warning)`` for a 2-channel signal ``x (2, T)`` read as binaural: its long-term
    coherence below 250 Hz (:func:`spaq.dsp.low_band_coherence`; None when too short or empty there) and,
    below :data:`NOT_BINAURAL_COHERENCE`, the one-line warning that it does not look like two ears (else None).
    Read by :func:`spaq.localize` (the directions of two unrelated signals mean nothing)."""
    from ..dsp import low_band_coherence

    coh = low_band_coherence(x, int(sample_rate))
    if coh is None or coh >= NOT_BINAURAL_COHERENCE:
        return coh, None
    return coh, not_binaural_message(coh, "so its directions are not meaningful")


def not_binaural_message(coherence: float, consequence: str) -> str:
    """The one-line finding that a 2-channel signal of low-band ``coherence`` does not look binaural, with what
    that means where it is read (``consequence``)."""
    return (f"the two channels are nearly independent below 250 Hz (coherence {coherence:.3f} < "
            f"{NOT_BINAURAL_COHERENCE:g}, where two ears read 0.4 or more in any sound field): this does not "
            f"look like a binaural signal, {consequence}")
