"""``spaq train predictor CONFIG``: the reference-free quality predictor (``predictor`` metric).

Which data fit what (see ``configs/train/predictor.yaml``):

1. **Corpus-engine sweeps** (the training split: its seed, espeak voices and heads, never those
   of the evaluation): one scene per (family, format, source, scene index), rendered clean and
   degraded at each severity with :func:`spaq.train.quality.sweep`; mono items are the W channel
   of the FOA scenes. **Target (teacher)**: spaq's intrusive ``quality`` metric on each
   (clean, degraded) pair (mono: the diotic pair), with the parameters :data:`TEACHER_PARAMS` names
   (version 5: the shipped weights' teacher); naming newer parameters gives new targets on the next
   run. The network (shared MLP encoder, class head with cross-entropy on the MUSHRA bands of the
   teacher score, score head with a regression loss; loss = CE + lambda * MSE on the 0..1 scale)
   and its feature scalers (mean
   and std of the training split only) are fitted here.
2. **Real listeners**: the shared speech-codec MUSHRA half (8 stimuli x 8 conditions, mean
   ratings, diotic speech scored as mono). Fits only the listener calibration, a linear map
   ``mushra = clamp(a + b * score, 0, 100)`` (2 parameters, least squares), reported beside the
   score (``score`` itself stays on the teacher's scale, the one the class bands refer to: these
   ratings cover one narrow domain, speech codecs, and their hidden references score only ~50
   on the teacher's scale, so a global map would squeeze every corpus score into 40..90); its
   leave-one-stimulus-out cross-validation (the same fit without the held-out stimulus) is
   reported. ``calibration.apply: false`` keeps the identity.

The features of every item are cached in ``workdir`` (a CSV per split), so a second run with
the same corpus section only refits the network (seconds).
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..cache import json_sha256
from ..config import RecipeConfig, Section
from ..errors import SpaqError
from ..files import atomic_write
from ..models.predictor import BANDS, score_class  # the MUSHRA bands live with the model

__all__ = ["PredictorTrainConfig", "CorpusSplit", "make_split", "split_records", "fit_predictor", "train_predictor",
           "mushra_predictor_table", "fit_calibration", "BANDS", "score_class", "embedding_table",
           "mushra_embedding_table", "training_rows", "decode_view", "route", "feature_rows"]


#: the formats of a split's table rows (mono: the W channel of the FOA scenes)
TABLE_FORMATS = ("binaural", "foa", "hoa", "mono")
#: the rows whose teacher compares a long room with the same room made shorter (``room_reference``): the
#: binaural and third-order ones. On every format the FOA and mono codec ladders fell (mp3 -0.95 -> -0.71
#: and -0.61 held out: the network reads their rooms through the temporal features codecs move too), on these
#: two no ladder did (benchmarks/results/predictor_seeds.md, fortieth session)
ROOM_REFERENCE_FORMATS = ("binaural", "hoa")


@dataclass
class CorpusSplit(Section):
    """One split of corpus-engine sweeps (the evaluation uses another with other seeds/voices/head)."""

    seed: int = 9100
    duration_s: float = 1.5
    voices: list[str] = field(default_factory=lambda: ["en-us", "de", "fr-fr", "es"])
    heads: list[str] = field(default_factory=lambda: ["default", "sonicom-1"])
    sources: list[str] = field(default_factory=lambda: ["speech", "harmonic", "pink_noise"])
    formats: list[str] = field(default_factory=lambda: ["binaural", "foa", "hoa3"])
    mono: bool = True
    families: list[str] = field(default_factory=lambda: ["noise", "lowpass", "clipping", "opus", "mp3", "aac",
                                                         "reverb", "blur"])
    severities: list[float] = field(default_factory=lambda: [0.2, 0.4, 0.6, 0.8, 1.0])
    scenes: int = 2
    # share of the scenes of the other families rendered in a room (reverb's always are): a
    # room is no impairment, so the network sees reverberant scenes that score 100 too
    room_probability: float = 0.0
    # clean anchor scenes (severity 0 only, target = the teacher's identity score) per family (but
    # reverb), format and source, in a room with anchor_room_probability: more clean content, and
    # clean rooms, so that a natural room or an unusual timbre is not read as an impairment
    anchor_scenes: int = 0
    anchor_room_probability: float = 0.5
    # the anchor scenes have 1 to this many sources of their type (1: one, as the sweeps): wide,
    # multi-source scenes that are no impairment either (real scenes are not one source)
    anchor_sources: int = 1
    # the degraded sweeps' scenes have 1 to this many sources of their type (1: one source, as
    # every split before the option): the faults on wide, multi-source scenes too
    scene_sources: int = 1
    # espeak speech with a synthetic band above 11 kHz at this level (spaq.data.sources.upper_band);
    # None: as espeak makes it, ending at about 10 kHz where recorded speech does not
    speech_upper_band_db: float | None = None
    # the features of every item computed after scaling it to this active level (dBFS;
    # spaq.metrics.functional.predictor.predictor_features); None: at the level the engine renders.
    # Set from the recipe's top-level ``input_level_dbfs`` for every split of a recipe
    input_level_dbfs: float | None = None
    # the degradations' options: "recipe" (spaq.train.quality.RECIPE_OPTIONS: those the shipped
    # weights were trained with where the corpus engine's defaults have changed since) or "engine"
    # (the engine's current defaults: the held-out evaluation)
    degradation_options: str = "recipe"
    # the teacher's reference for a scene in a room with a longer RT60 than this (s), for the rows of
    # ``room_reference_formats``: the same scene in that room with the RT60 set to this value
    # (spaq.train.quality.room_reference), so that a clean room and a reverb sweep's longer room are
    # judged on one scale; None: every item against its own clean scene. Set from the recipe's
    # top-level ``room_reference`` for every split of a recipe
    room_reference_rt60_s: float | None = None
    room_reference_formats: list[str] = field(default_factory=lambda: list(ROOM_REFERENCE_FORMATS))
    # also the features of the FOA and 3OA rows read through their binaural decode, in the columns
    # "decode.<feature>" (binaural and mono rows: a copy of their features), for a recipe's ambisonic
    # network (decode_view). Set from the recipe's top-level ``ambisonic`` for every split of a recipe
    decode_features: bool = False

    def __post_init__(self):
        if self.degradation_options not in ("recipe", "engine"):
            raise SpaqError(f"degradation_options must be 'recipe' or 'engine', not {self.degradation_options!r}")
        if self.room_reference_rt60_s is not None and not float(self.room_reference_rt60_s) > 0:
            raise SpaqError(f"room_reference rt60_s must be > 0 s, not {self.room_reference_rt60_s!r}")
        bad = [f for f in self.room_reference_formats if f not in TABLE_FORMATS]
        if bad:
            raise SpaqError(f"room_reference formats: unknown {', '.join(map(str, bad))}; use {', '.join(TABLE_FORMATS)}")


@dataclass
class FitSection(Section):
    seed: int = 7
    hidden: list[int] = field(default_factory=lambda: [64, 32])
    dropout: float = 0.1
    epochs: int = 300
    lr: float = 3e-3
    weight_decay: float = 1e-4
    reg_weight: float = 4.0
    rank_weight: float = 0.0   # > 0: + rank_weight * hinge on the severity order within each sweep
    rank_margin: float = 0.02
    # True: train only on what a listener hears without a reference (see audible_rows): reverb
    # sweeps that shorten the RT60 and noise added to a noise source are left out
    audible_only: bool = False
    # > 0: + logit_weight * MSE of the score head's logit against logit(target / 100) (target
    # clipped to [logit_clip, 100 - logit_clip]): the teacher's order where its score is near 0
    # or 100 (noise at 8 vs 0 dB SNR: 0.2 vs 0.1), which the 0..1 MSE ignores
    logit_weight: float = 0.0
    logit_clip: float = 0.05
    rank_on_logit: bool = False  # the ranking hinge on the score head's logit instead of the 0..1 score
    members: int = 1             # > 1: an ensemble of networks fitted from seeds seed, seed + 1, ... (logits averaged)
    groups: list[str] = field(default_factory=lambda: ["psycho", "band", "spatial", "format"])
    embedding: str = ""        # encoder spec (spaq.metrics.encoders.load_encoder) appended to the features; "" = none


@dataclass
class CalibrationSection(Section):
    path: str = "../shared/listening-tests/speech-codec-mushra"
    ratings: str = "ratings_filtered_stim01-08.csv"
    apply: bool = True
    scale: str = "linear"      # the map is linear in the score ("linear") or in its logit ("logit")


@dataclass
class PredictorTrainConfig(RecipeConfig):
    """Validated recipe (``configs/train/predictor.yaml``) read by :mod:`spaq.config`."""

    seed: int = 7
    # every input (training splits, MUSHRA files, and at inference through the checkpoint) scaled to
    # this active level before its features (dBFS); None: features at the signal's own level
    input_level_dbfs: float | None = None
    # the teacher's reference for scenes in long rooms, for every split (CorpusSplit's
    # room_reference_rt60_s / _formats): {rt60_s: ..., formats: [...]}; None: each item against its own clean scene
    room_reference: dict | None = None
    # a second network for FOA and 3OA input, fitted as ``fit`` on the same rows with the ambisonic rows'
    # features read as ``read`` (spaq.metrics.functional.predictor.AMBISONIC_READS), from fit seed ``seed``
    # (default: the recipe's): {read: decode[, seed: N]}; None: one network for every format
    ambisonic: dict | None = None
    corpus: CorpusSplit = field(default_factory=CorpusSplit)
    # more splits fitted beside ``corpus`` (other seeds, source types, scene sizes), each spelt out
    # in full; split k (1, 2, ...) has its sweep ids offset by k * EXTRA_SWEEP_OFFSET
    extra: list[CorpusSplit] = field(default_factory=list)
    fit: FitSection = field(default_factory=FitSection)
    calibration: CalibrationSection = field(default_factory=CalibrationSection)
    base_dir: Path = field(default_factory=Path.cwd, metadata={"config": False})

    def __post_init__(self):
        from ..data.sources import SOURCE_TYPES
        from ..metrics.functional.predictor import FEATURE_GROUPS
        from .quality import FAMILIES

        rr = None if self.room_reference is None else dict(self.room_reference)
        if self.ambisonic is not None:
            from ..metrics.functional.predictor import AMBISONIC_READS

            amb = dict(self.ambisonic)
            if set(amb) - {"read", "seed"} or amb.get("read") not in AMBISONIC_READS[1:]:
                raise SpaqError("predictor train config: ambisonic takes read (one of "
                                f"{', '.join(AMBISONIC_READS[1:])}) and seed, got {amb}")
        if rr is not None and (set(rr) - {"rt60_s", "formats"} or "rt60_s" not in rr):
            raise SpaqError("predictor train config: room_reference takes rt60_s (required) and formats, "
                            f"got {', '.join(sorted(rr))}")
        for sp in [self.corpus, *self.extra]:
            if sp.input_level_dbfs is not None and sp.input_level_dbfs != self.input_level_dbfs:
                raise SpaqError("predictor train config: input_level_dbfs is set for the whole recipe "
                                "(top level), not per split")
            sp.input_level_dbfs = None if self.input_level_dbfs is None else float(self.input_level_dbfs)
            if sp.room_reference_rt60_s is not None:
                raise SpaqError("predictor train config: room_reference is set for the whole recipe (top level), "
                                "not per split")
            if sp.decode_features:
                raise SpaqError("predictor train config: decode features are set by the recipe's ambisonic "
                                "(top level), not per split")
            sp.decode_features = self.ambisonic is not None
            if rr is not None:
                sp.room_reference_rt60_s = float(rr["rt60_s"])
                sp.room_reference_formats = list(rr.get("formats", ROOM_REFERENCE_FORMATS))
                sp.__post_init__()
            for f in sp.families:
                if f not in FAMILIES:
                    raise SpaqError(f"predictor train config: unknown family {f!r}; known: {', '.join(FAMILIES)}")
            for t in sp.sources:
                if t not in SOURCE_TYPES or t == "files":
                    raise SpaqError(f"predictor train config: unknown source type {t!r}; known: "
                                    f"{', '.join(x for x in SOURCE_TYPES if x != 'files')}")
        from ..models.predictor import CALIB_SCALES

        if self.calibration.scale not in CALIB_SCALES:
            raise SpaqError(f"predictor train config: calibration.scale {self.calibration.scale!r}; "
                            f"known: {', '.join(CALIB_SCALES)}")
        for g in self.fit.groups:
            if g not in FEATURE_GROUPS:
                raise SpaqError(f"predictor train config: unknown feature group {g!r}; known: {', '.join(FEATURE_GROUPS)}")
        self.base_dir = Path(self.base_dir)

    def mushra_dir(self) -> Path:
        return self.resolve_path(self.calibration.path)



# --------------------------------------------------------------------------- corpus
#: the ``quality`` parameters (registry name) the teacher scores with: version 5, on which the shipped
#: ``predictor_v1`` was trained (their ``combination`` is absent, read as 1, the sum of the two
#: distortions; ``quality`` 7.0's code decodes ambisonics with the causal MagLS decoder, with which the
#: shipped weights were refitted; 8.0's gives their absent ``d_order`` weight 0 and decodes the corpus's
#: full-order signals as 7.0 did), so that the recipe reproduces the shipped weights. The parameters'
#: sha256 and the metric's version are part of every cached table's key.
TEACHER_PARAMS = "quality_v5"


def _teacher():
    from ..metrics.quality import Quality
    from ..weights import resolve

    return Quality(checkpoint=str(resolve(TEACHER_PARAMS, offline=True, download=False).path))


def _teacher_scores(metric, ref: np.ndarray, degs: list) -> np.ndarray:
    r = torch.from_numpy(np.stack([ref] * len(degs)))
    d = torch.from_numpy(np.stack(degs))
    with torch.no_grad():
        return metric.forward(r, d)["score"].double().numpy()


def _features(x: np.ndarray, kind: str, level_dbfs: float | None = None, ambisonic_read: str = "intensity") -> np.ndarray:
    from ..metrics.functional.predictor import predictor_features

    with torch.no_grad():
        return predictor_features(torch.from_numpy(np.asarray(x, dtype=np.float64)), 48000, kind,
                                  level_dbfs=level_dbfs, ambisonic_read=ambisonic_read).numpy()


#: the columns of a split's table (``CorpusSplit.decode_features``) that hold the features read through the decode
DECODE_PREFIX = "decode."


def feature_rows(x: np.ndarray, kind: str, level_dbfs: float | None = None, decode: bool = False) -> list[dict]:
    """The feature columns of each item of ``x (N, C, T)`` (float32, as a float WAV holds it) of one ``kind``:
    ``{feature: value}`` per item and, with ``decode``, the ``decode.<feature>`` columns too (the FOA / HOA
    reading through the binaural decode; other kinds: a copy), as a split's table holds them."""
    from ..metrics.functional.predictor import FEATURE_NAMES

    feats = _features(x, kind, level_dbfs)
    rows = [dict(zip(FEATURE_NAMES, f.tolist())) for f in feats]
    if decode:
        dfe = _features(x, kind, level_dbfs, ambisonic_read="decode") if kind in ("foa", "hoa") else feats
        for r, f in zip(rows, dfe):
            r.update(zip([DECODE_PREFIX + n for n in FEATURE_NAMES], f.tolist()))
    return rows


def decode_view(df):
    """``df`` (a split's table made with ``decode_features``) with every feature column replaced by
    its ``decode.`` column: the features the ambisonic network of a routed checkpoint reads (FOA
    and 3OA rows read through their binaural decode; binaural and mono rows as they are)."""
    import pandas as pd

    from ..metrics.functional.predictor import FEATURE_NAMES

    cols = [DECODE_PREFIX + n for n in FEATURE_NAMES]
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise SpaqError("the table has no decode features (decode.<feature> columns): make its split with "
                        "decode_features (a recipe with ambisonic)")
    vals = df[cols].rename(columns=dict(zip(cols, FEATURE_NAMES)))
    rest = df.drop(columns=cols + list(FEATURE_NAMES))
    return pd.concat([rest, vals], axis=1)[[c for c in df.columns if c not in cols]]


#: sweep ids of the clean anchor scenes start here (apart from the sweeps' own ids)
ANCHOR_SWEEP_OFFSET = 100000
#: the sweep ids of the recipe's k-th extra split are offset by k times this (so that the ranking
#: term never pairs sweeps of two splits)
EXTRA_SWEEP_OFFSET = 300000


def make_split(split: CorpusSplit, log=print, audio_dir=None, index_offset: int = 0) -> list[dict]:
    """Every item of ``split``: dicts with family, format, source, head, voice, scene, severity
    (0 = the clean scene), ``target`` (the teacher's score against the clean scene, or for a long room
    against the same scene in a shorter one: ``split.room_reference_rt60_s``) and one column per feature; then, with
    ``split.anchor_scenes``, the clean anchor scenes (family ``anchor``, severity 0, sweep ids from
    :data:`ANCHOR_SWEEP_OFFSET`). ``audio_dir``: also keep each sweep's audio there (float32 ``.npy``)."""
    from ..data.degradations import DEGRADATIONS
    from .quality import FAMILIES

    teacher = _teacher()
    sevs = [float(s) for s in split.severities]
    recs = []
    t0, c0 = time.time(), time.process_time()

    def each(scenes, start):
        idx = start
        for fam in split.families:
            for fmt in split.formats:
                for src in split.sources:
                    for sc in range(int(scenes)):
                        idx += 1
                        yield idx, fam, fmt, src, sc

    for idx, fam, fmt, src, sc in each(split.scenes, index_offset):
        recs += _sweep_records(split, teacher, idx, fam, fmt, src, sc, sevs, float(split.room_probability),
                               audio_dir, log, n_sources=int(split.scene_sources))
        log(f"  {fam}/{fmt}/{src}/{sc} ({time.time() - t0:.0f} s wall, {time.process_time() - c0:.0f} s CPU)")
    if int(split.anchor_scenes) > 0:
        n0 = len(recs)
        for idx, fam, fmt, src, sc in each(split.anchor_scenes, 0):
            if DEGRADATIONS[FAMILIES[fam][0]].needs_room:  # its scenes are rooms already
                continue
            for r in _sweep_records(split, teacher, idx, fam, fmt, src, sc, [], float(split.anchor_room_probability),
                                    audio_dir, log, sweep_id=ANCHOR_SWEEP_OFFSET + idx,
                                    n_sources=int(split.anchor_sources)):
                recs.append({**r, "family": "anchor"})
        log(f"  {len(recs) - n0} clean anchor items ({time.time() - t0:.0f} s wall, {time.process_time() - c0:.0f} s CPU)")
    return recs


def _sweep_records(split, teacher, idx, fam, fmt, src, sc, sevs, room_probability, audio_dir, log, sweep_id=None,
                   n_sources: int = 1):
    """The records of one sweep of :func:`make_split` (its clean scene and each severity; with
    ``sevs`` empty, the clean scene only)."""
    from .quality import RECIPE_OPTIONS, render_sweep, shorter_room

    sweep_id = idx if sweep_id is None else sweep_id
    voice = split.voices[idx % len(split.voices)]
    head = split.heads[idx % len(split.heads)] if fmt == "binaural" else ""
    sweep_kw = dict(duration_s=float(split.duration_s), hrtf=head or "default", voices=[voice],
                    room_probability=room_probability, n_sources=n_sources, upper_band_db=split.speech_upper_band_db,
                    options=RECIPE_OPTIONS if split.degradation_options == "recipe" else None)
    try:
        ref, degs, scene, signals = render_sweep(fam, fmt, src, sevs, int(split.seed), idx, **sweep_kw)
    except SpaqError as e:
        log(f"  skipped {fam}/{fmt}/{src}/{sc}: {e}")
        return []
    items = [ref] + degs
    kinds = [("binaural" if fmt == "binaural" else ("foa" if fmt == "foa" else "hoa"), items)]
    if split.mono and fmt == "foa":
        kinds.append(("mono", [x[:1] for x in items]))
    room_ref = None
    if split.room_reference_rt60_s is not None and any(k in split.room_reference_formats for k, _ in kinds):
        room_ref = shorter_room(scene, signals, float(split.room_reference_rt60_s))
    recs = []
    for kind, xs in kinds:
        r = xs[0]  # the teacher's reference: the clean scene, or the same scene in the shorter room
        if room_ref is not None and kind in split.room_reference_formats:
            r = room_ref[:1] if kind == "mono" else room_ref
        if kind == "mono":
            tgt = _teacher_scores(teacher, np.repeat(r, 2, 0), [np.repeat(x, 2, 0) for x in xs])
        else:
            tgt = _teacher_scores(teacher, r, xs)
        # as a float WAV holds it
        feats = feature_rows(np.stack(xs).astype(np.float32), kind, split.input_level_dbfs, split.decode_features)
        if audio_dir is not None:
            os.makedirs(audio_dir, exist_ok=True)
            np.save(os.path.join(audio_dir, f"{sweep_id:05d}_{kind}.npy"), np.stack(xs).astype(np.float32))
        for j, s in enumerate([0.0] + list(sevs)):
            recs.append({"sweep": sweep_id, "family": fam, "format": kind, "source": src, "head": head,
                         "voice": voice, "scene": sc, "severity": s, "target": float(tgt[j]),
                         **feats[j]})
    return recs


def refeaturize(df, audio_dir, level_dbfs: float | None = None):
    """``df`` (a :func:`make_split` table) with every feature recomputed from the audio
    ``make_split`` kept in ``audio_dir`` (the same float32 samples it computed them from, so the
    same values as a fresh run of the current feature code; ``level_dbfs``: the split's
    ``input_level_dbfs``)."""
    from ..metrics.functional.predictor import FEATURE_NAMES

    df = df.copy()
    for col in FEATURE_NAMES:
        if col not in df.columns:
            df[col] = 0.0
    for (sw, kind), g in df.groupby(["sweep", "format"]):
        x = np.load(os.path.join(audio_dir, f"{int(sw):05d}_{kind}.npy"))
        f = _features(x, kind, level_dbfs)
        sev = sorted(g["severity"].unique())
        for i, r in g.iterrows():
            df.loc[i, list(FEATURE_NAMES)] = f[sev.index(r["severity"])]
    return df


def split_records(split: CorpusSplit, cache: Path, log=print, audio_dir=None, keep_audio: bool = False) -> "object":
    """The split's table from ``cache`` (CSV) when it was made from the same split and the same
    teacher (``quality`` parameters' sha256), else made and written there (atomically).
    ``keep_audio``: the audio too, in the directory :func:`split_audio_dir` names beside the CSV
    (made again when only the CSV is there); ``audio_dir``: keep it there when the split is made."""
    import pandas as pd

    path = split_cache_path(split, cache)
    if keep_audio:
        audio_dir = split_audio_dir(path)
    if path.is_file() and (not keep_audio or Path(audio_dir).is_dir()):
        log(f"features from {path}")
        return pd.read_csv(path, keep_default_na=False).copy()  # one block per dtype (read_csv gives one per column)
    recs = make_split(split, log, audio_dir=audio_dir)
    df = pd.DataFrame(recs)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: df.to_csv(tmp, index=False))
    return df


#: the corpus format of :func:`spaq.train.quality.sweep` behind each table format (mono rows are FOA's W)
SWEEP_FORMAT = {"binaural": "binaural", "foa": "foa", "mono": "foa", "hoa": "hoa3"}


def reverb_longer(df, seed: int, duration_s: float = 1.5) -> dict:
    """sweep id -> True when its reverb degradation lengthens the RT60, for the rows of ``df`` (a
    :func:`make_split` table of a split made with ``seed`` and ``duration_s``). The corpus engine
    draws the direction at random; a drier room is no impairment a listener hears without a
    reference. Replays :func:`spaq.train.quality.sweep`'s draws without rendering (the direction
    comes from the degradation's own generator, so it is the same for a split's ``scene_sources``)."""
    from .quality import sweep_draws, sweep_params

    out = {}
    rev = df[df["family"] == "reverb"].astype({"head": object, "voice": object}).fillna({"head": "", "voice": ""})
    # a CSV reads "" back as NaN (a float column when every value is; object first, as pandas asks),
    # and a NaN key would drop its group (every ambisonic and mono sweep, whose head is "")
    for (sw, src, voice, head, fmt), _ in rev.groupby(["sweep", "source", "voice", "head", "format"]):
        draws = sweep_draws("reverb", SWEEP_FORMAT[fmt], src, seed, int(sw), duration_s=float(duration_s),
                            hrtf=head or "default", voices=[voice])
        out[int(sw)] = bool(sweep_params("reverb", 1.0, *draws)["rt60_factor"] > 1.0)
    return out


def audible_rows(df, seed: int, duration_s: float = 1.5) -> np.ndarray:
    """Boolean mask of the rows of ``df`` (a :func:`make_split` table) whose degradation a
    listener hears without a reference: every clean row (severity 0) and every degraded row but
    those of reverb sweeps that shorten the RT60 (a drier room) and of noise added to a
    pink-noise source (noise in noise). The intrusive teacher scores both as impairments (they
    differ from the reference); a reference-free predictor cannot learn them, and fitting them
    teaches it that dry rooms are degraded."""
    longer = reverb_longer(df, seed, duration_s)
    sev = df["severity"].to_numpy(dtype=np.float64)
    fam = df["family"].to_numpy()
    drier = (fam == "reverb") & ~df["sweep"].map(lambda s: longer.get(int(s), True)).to_numpy(dtype=bool)
    noise_in_noise = (fam == "noise") & (df["source"].to_numpy() == "pink_noise")
    return (sev == 0) | ~(drier | noise_in_noise)


def fit_rows(df, split: CorpusSplit, fit: FitSection, log=print):
    """The rows of ``df`` (the table of ``split``) the network is fitted on: all, or with
    ``fit.audible_only`` those of :func:`audible_rows`."""
    if not fit.audible_only:
        return df
    keep = audible_rows(df, split.seed, split.duration_s)
    log(f"audible_only: {int((~keep).sum())} of {len(df)} rows left out (drier rooms, noise in noise)")
    return df[keep].reset_index(drop=True)


def split_cache_path(split: CorpusSplit, cache) -> Path:
    """The CSV :func:`split_records` caches ``split`` in: ``cache``'s stem + a key of the split,
    the teacher and the feature names."""
    # the teacher's parameters are part of the key: a recalibrated quality metric gives new targets
    # and so are the feature names: a table made before a feature was added lacks its column
    from ..data import ENGINE_VERSION
    from ..metrics.functional.predictor import FEATURE_NAMES

    t = _teacher()
    sp = {**asdict(split), "engine": ENGINE_VERSION}  # the corpus engine that renders the split
    for opt, default in (("anchor_sources", 1), ("scene_sources", 1), ("speech_upper_band_db", None),
                         ("input_level_dbfs", None), ("degradation_options", "recipe"), ("engine", 1),
                         ("room_reference_rt60_s", None), ("decode_features", False)):
        if sp.get(opt) == default:  # the default: tables cached before the option keep their key
            del sp[opt]
    if "room_reference_rt60_s" not in sp:  # no room reference: its formats do not matter
        del sp["room_reference_formats"]
    else:
        sp["room_reference_rt60_s"] = float(sp["room_reference_rt60_s"])
    for opt in ("speech_upper_band_db", "input_level_dbfs"):  # -18 and -18.0 (YAML) are one split
        if sp.get(opt) is not None:
            sp[opt] = float(sp[opt])
    ident = {"split": sp, "teacher": [t.name, t.version, getattr(t, "sha256", None),
                                                  getattr(t, "fast", None)], "features": list(FEATURE_NAMES)}
    key = json_sha256(ident)[:16]
    return Path(cache).with_name(f"{Path(cache).stem}_{key}.csv")


def split_audio_dir(csv_path) -> Path:
    """Where ``split_records(..., keep_audio=True)`` keeps the audio of the split cached in ``csv_path``."""
    p = Path(csv_path)
    return p.with_name(p.stem + "_audio")


# --------------------------------------------------------------------------- embeddings
def embedding_table(audio_dir, df, encoder="bast"):
    """The mean-over-frames embedding of each row of ``df`` (a :func:`make_split` table), from the
    audio ``make_split`` kept in ``audio_dir``: a DataFrame (index of ``df``) with columns
    ``emb0 .. emb{dim-1}``. ``encoder``: an :class:`~spaq.metrics.encoders.Encoder` or a spec of
    :func:`~spaq.metrics.encoders.load_encoder`; the signal it gets is the metric's
    (:func:`~spaq.metrics.encoders.signal_embedding`), so training and inference agree."""
    import pandas as pd

    from ..metrics.encoders import Encoder, load_encoder, signal_embedding

    enc = encoder if isinstance(encoder, Encoder) else load_encoder(encoder)
    rows = {}
    for (sw, fmt), g in df.groupby(["sweep", "format"]):
        p = os.path.join(audio_dir, f"{int(sw):05d}_{fmt}.npy")
        if not os.path.isfile(p):
            raise SpaqError(f"embedding: {p} is missing (the split's kept audio is incomplete: delete the cached "
                            f"table beside {audio_dir} to make it again)")
        x = np.load(p).astype(np.float64)  # (S, C, T) at 48 kHz
        e = signal_embedding(enc, x, 48000, fmt).numpy()  # (S, dim)
        sev = sorted(g["severity"].unique())
        for i, r in g.iterrows():
            rows[i] = e[sev.index(r["severity"])]
    E = np.stack([rows[i] for i in df.index])
    return pd.DataFrame(E, index=df.index, columns=[f"emb{j}" for j in range(E.shape[1])])


def _mushra_audio(root, table):
    """The rated files of ``table`` (:func:`mushra_predictor_table`), one at a time: the first
    channel at 48 kHz, ``(1, T)`` float64."""
    import soundfile as sf

    from ..io import resample

    for _, r in table.iterrows():
        x, fs = sf.read(str(Path(root) / "audio" / r["file"]), dtype="float64", always_2d=True)
        x = x.T[:1]
        yield resample(x, fs, 48000) if fs != 48000 else x


def mushra_embedding_table(root, table, encoder):
    """The embedding columns (``emb0 ..``) of the rated files of ``table``
    (:func:`mushra_predictor_table`), each scored alone as mono at 48 kHz as there."""
    import pandas as pd

    from ..metrics.encoders import Encoder, load_encoder, signal_embedding

    enc = encoder if isinstance(encoder, Encoder) else load_encoder(encoder)
    rows = [signal_embedding(enc, x[None], 48000, "mono")[0].numpy() for x in _mushra_audio(root, table)]
    E = np.stack(rows)
    return pd.DataFrame(E, index=table.index, columns=[f"emb{j}" for j in range(E.shape[1])])


# --------------------------------------------------------------------------- fitting
def feature_columns(groups) -> tuple[list[int], list[str]]:
    """Indices and names of the feature columns of ``groups`` (in :data:`FEATURE_NAMES` order)."""
    from ..metrics.functional.predictor import FEATURE_GROUPS, FEATURE_NAMES

    keep = {n for g in groups for n in FEATURE_GROUPS[g]}
    idx = [i for i, n in enumerate(FEATURE_NAMES) if n in keep]
    return idx, [FEATURE_NAMES[i] for i in idx]


def _severity_pairs(df) -> tuple:
    """Row indices ``(lower, higher)`` of consecutive severities within each sweep and format,
    where the teacher agrees (its score drops): the order the ranking term enforces."""
    if "sweep" not in df.columns:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    lo, hi = [], []
    pos = {k: i for i, k in enumerate(df.index)}
    for _, g in df.groupby(["sweep", "format"]):
        g = g.sort_values("severity")
        idx, t = [pos[k] for k in g.index], g["target"].to_numpy()
        for a in range(len(idx) - 1):
            if t[a] > t[a + 1]:
                lo.append(idx[a])
                hi.append(idx[a + 1])
    return torch.tensor(lo, dtype=torch.long), torch.tensor(hi, dtype=torch.long)


def fit_predictor(df, fit: FitSection, log=print, extra_columns=(), input_level_dbfs: float | None = None,
                  ambisonic_read: str = "intensity"):
    """Fit :class:`~spaq.models.predictor.PredictorNet` on the rows of ``df`` (features, ``target``
    0..100): scalers from these rows, full-batch AdamW, loss CE(class bands) + reg_weight * MSE
    (0..1 scale) [+ rank_weight * mean hinge(margin - (score(lower severity) - score(higher)))
    over consecutive severities of each sweep where the teacher's score drops]. Deterministic in ``fit.seed``. ``extra_columns``: more columns of ``df``
    appended to the feature vector (ablations of features the metric does not compute).
    ``input_level_dbfs``: the level ``df``'s features were computed at (its splits'
    ``input_level_dbfs``), recorded in the model's config so that the metric computes them so too.
    ``fit.embedding`` (an encoder spec): the model takes the embedding in ``df``'s columns
    ``emb0 ..`` (:func:`embedding_table`) too, and the metric computes it at inference.
    ``ambisonic_read``: how ``df``'s FOA / HOA features were read (recorded in the config, as the level).
    Returns ``(model in eval mode, history)``."""
    from ..metrics.functional.predictor import FEATURE_NAMES
    from ..models.predictor import PredictorConfig, PredictorNet

    if int(fit.members) > 1:  # each member on its own seed, then one network that averages them
        fitted = [fit_predictor(df, FitSection(**{**asdict(fit), "members": 1, "seed": int(fit.seed) + k}),
                                log, extra_columns, input_level_dbfs, ambisonic_read) for k in range(int(fit.members))]
        first = fitted[0][0]
        model = PredictorNet(PredictorConfig(**{**first.cfg.to_dict(), "members": int(fit.members)}))
        state = dict(first.state_dict())
        for k, (m, _) in enumerate(fitted[1:]):  # member k + 2 -> more.k.(0 encoder, 1 class head, 2 score head)
            for pos, part in enumerate((m.encoder, m.class_head, m.score_head)):
                for key, v in part.state_dict().items():
                    state[f"more.{k}.{pos}.{key}"] = v
        model.load_state_dict(state)
        model.eval()
        return model, [h for _, hs in fitted for h in hs]
    torch.manual_seed(int(fit.seed))
    idx, names = feature_columns(fit.groups)
    cols = list(FEATURE_NAMES) + list(extra_columns)
    idx = idx + list(range(len(FEATURE_NAMES), len(cols)))
    names = names + list(extra_columns)
    spec, emb = _embedding_columns(df, fit)
    cfg = PredictorConfig(n_features=len(cols), feature_index=idx, feature_names=names,
                          hidden=list(fit.hidden), dropout=float(fit.dropout), embedding=spec, n_embedding=len(emb),
                          input_level_dbfs=None if input_level_dbfs is None else float(input_level_dbfs),
                          ambisonic_read=ambisonic_read)
    model = PredictorNet(cfg)
    X = torch.tensor(df[cols + emb].to_numpy(dtype=np.float64), dtype=torch.float32)
    y = torch.tensor(df["target"].to_numpy(dtype=np.float64), dtype=torch.float32)
    c = torch.tensor(score_class(df["target"].to_numpy()), dtype=torch.long)
    lc = float(fit.logit_clip)
    y_logit = torch.logit(torch.clamp(y, lc, 100.0 - lc) / 100)
    sub = X[:, model.index]  # the selected features (+ the embedding)
    model.set_scaler(sub.mean(0), sub.std(0, unbiased=False))
    opt = torch.optim.AdamW(model.parameters(), lr=float(fit.lr), weight_decay=float(fit.weight_decay))
    counts = torch.bincount(c, minlength=3).float().clamp_min(1)
    cw = (counts.sum() / (3 * counts))  # balanced classes
    hist = []
    lo_i, hi_i = _severity_pairs(df) if float(fit.rank_weight) > 0 else (None, None)
    model.train()
    for ep in range(int(fit.epochs)):
        opt.zero_grad()
        out = model(X)
        ce = torch.nn.functional.cross_entropy(out["logits"], c, weight=cw)
        reg = torch.mean((out["raw"] - y / 100) ** 2)
        loss = ce + float(fit.reg_weight) * reg
        if float(fit.logit_weight) > 0:
            loss = loss + float(fit.logit_weight) * torch.mean((out["score_logit"] - y_logit) ** 2)
        if lo_i is not None and len(lo_i):
            # the corpus engine's order: within a sweep, a higher severity scores lower
            sc = out["score_logit"] if fit.rank_on_logit else out["raw"]
            gap = sc[lo_i] - sc[hi_i]
            loss = loss + float(fit.rank_weight) * torch.mean(torch.relu(float(fit.rank_margin) - gap))
        loss.backward()
        opt.step()
        if ep % 50 == 0 or ep == int(fit.epochs) - 1:
            hist.append({"epoch": ep, "loss": loss.item(), "ce": ce.item(), "mse": reg.item()})
    model.eval()
    log(f"fitted: loss {hist[-1]['loss']:.4f} (ce {hist[-1]['ce']:.4f}, mse {hist[-1]['mse']:.4f})")
    return model, hist


def _embedding_columns(df, fit) -> tuple[str, list]:
    """``(spec, columns)`` of the embedding ``fit.embedding`` names ("", [] without one)."""
    import re

    spec = str(getattr(fit, "embedding", "") or "").strip()
    if not spec:
        return "", []
    n = sum(1 for c in df.columns if re.fullmatch(r"emb\d+", str(c)))
    cols = [f"emb{j}" for j in range(n)]
    if not n or any(c not in df.columns for c in cols):
        raise SpaqError(f"fit.embedding {spec!r}: the table has no embedding columns emb0..: add them with "
                        "spaq.train.predictor.embedding_table")
    return spec, cols


def route(model, ambisonic):
    """One routed network (:class:`~spaq.models.predictor.PredictorNet`): ``model`` for binaural and
    mono input with ``ambisonic`` (a network fitted on :func:`decode_view` rows) for FOA and HOA, its
    parameters under ``ambisonic.``; the calibration is ``model``'s (set it after)."""
    from ..models.predictor import PredictorConfig, PredictorNet

    net = PredictorNet(PredictorConfig.from_dict({**model.cfg.to_dict(), "ambisonic": ambisonic.cfg.to_dict()}))
    state = dict(model.state_dict())
    state.update({f"ambisonic.{k}": v for k, v in ambisonic.state_dict().items()})
    net.load_state_dict(state)
    net.eval()
    return net


def predict_table(model, df) -> dict:
    """Model outputs on the rows of ``df``: ``raw`` (0..100, the score, teacher scale), ``mushra``
    (listener-calibrated), ``proba`` (N, 3). A routed model (``model.ambisonic``) reads the FOA and
    HOA rows (``format`` column) from their decode features (:func:`decode_view`)."""
    amb = getattr(model, "ambisonic", None)
    rows = (df["format"].isin(["foa", "hoa"]).to_numpy() if amb is not None and "format" in df.columns
            else np.zeros(len(df), dtype=bool))
    out = _predict_rows(model, df)
    if rows.any():
        o = _predict_rows(amb, decode_view(df[rows]))
        for k in out:
            out[k][rows] = o[k]
    return out


def _predict_rows(model, df) -> dict:
    from ..metrics.functional.predictor import FEATURE_NAMES

    known = set(FEATURE_NAMES)
    cols = list(FEATURE_NAMES) + [n for n in model.cfg.feature_names if n not in known]  # + ablation extras
    cols += model.cfg.embedding_names
    X = torch.tensor(df[cols].to_numpy(dtype=np.float64), dtype=torch.float32)
    with torch.no_grad():
        o = model(X)
    return {"mushra": o["mushra"].double().numpy(), "raw": o["score"].double().numpy(),
            "proba": torch.softmax(o["logits"], -1).double().numpy()}


# --------------------------------------------------------------------------- calibration on listeners
def mushra_predictor_table(root, ratings: str, log=print, level_dbfs: float | None = None):
    """The MUSHRA half: per stimulus and condition mean rating (``spaq.train.quality.mushra_table``)
    with the predictor's features of the rated (degraded) file, scored alone as mono at 48 kHz
    (``level_dbfs``: scaled to that active level first, as the recipe's ``input_level_dbfs``)."""
    import pandas as pd

    from ..metrics.functional.predictor import FEATURE_NAMES
    from .quality import mushra_table

    table = mushra_table(root, ratings)
    rows = [_features(x[None], "mono", level_dbfs)[0] for x in _mushra_audio(root, table)]
    f = pd.DataFrame(np.stack(rows), columns=list(FEATURE_NAMES))
    log(f"MUSHRA features: {len(table)} files")
    return pd.concat([table.reset_index(drop=True), f], axis=1)


def _calib(a, b, raw, scale="linear"):
    from ..models.predictor import calibration_input

    return np.clip(a + b * calibration_input(np.asarray(raw, dtype=np.float64), scale), 0.0, 100.0)


def fit_calibration(raw: np.ndarray, y: np.ndarray, scale: str = "linear") -> tuple[float, float]:
    """Least squares ``(a, b)`` of ``a + b * x`` to ratings ``y`` (0..100), ``x`` the 0..100 score
    ``raw`` on the calibration ``scale`` (:func:`spaq.models.predictor.calibration_input`)."""
    from ..models.predictor import calibration_input

    A = np.c_[np.ones(len(raw)), calibration_input(np.asarray(raw, dtype=np.float64), scale)]
    a, b = np.linalg.lstsq(A, np.asarray(y, dtype=np.float64), rcond=None)[0]
    return float(a), float(b)


def loso_calibration(table, raw: np.ndarray, scale: str = "linear") -> np.ndarray:
    """Leave-one-stimulus-out calibrated predictions (the held-out stimulus never fits a, b)."""
    y = table["mean"].to_numpy(dtype=np.float64)
    raw = np.asarray(raw, dtype=np.float64)
    out = np.full(len(y), np.nan)
    for stim in sorted(table["stimulus"].unique()):
        test = (table["stimulus"] == stim).to_numpy()
        a, b = fit_calibration(raw[~test], y[~test], scale)
        out[test] = _calib(a, b, raw[test], scale)
    return out


def mushra_stats(table, pred: np.ndarray) -> dict:
    from scipy.stats import pearsonr, spearmanr

    y = table["mean"].to_numpy(dtype=np.float64)
    coded = (table["condition"] != "Reference").to_numpy()
    return {"pearson_coded": float(pearsonr(pred[coded], y[coded])[0]),
            "spearman_coded": float(spearmanr(pred[coded], y[coded])[0]),
            "rmse_coded": float(np.sqrt(np.mean((pred[coded] - y[coded]) ** 2))),
            "pearson_all": float(pearsonr(pred, y)[0]), "n_coded": int(coded.sum()), "n_all": int(len(y))}


# --------------------------------------------------------------------------- driver
def _encoder(tc: PredictorTrainConfig):
    """``(encoder, spec)`` of the recipe's ``fit.embedding``, or ``(None, "")``. A relative path
    in the spec (``NAME=PATH``) is taken below the recipe's ``base_dir`` (as ``calibration.path``)
    and stored absolute in the checkpoint."""
    spec = str(tc.fit.embedding or "").strip()
    if not spec:
        return None, ""
    from ..metrics.encoders import load_encoder

    name, sep, path = spec.partition("=")
    if sep and path:
        spec = f"{name}={tc.resolve_path(os.path.expanduser(path)).resolve()}"
    return load_encoder(spec), spec


def training_rows(tc: PredictorTrainConfig, fit: FitSection, workdir, log=print, encoder=None):
    """The rows the recipe fits on: each split's table (``corpus``, then ``extra``; cached in
    ``workdir``), with the encoder's mean-over-frames embedding columns when ``encoder`` is given
    (from the split's audio kept beside its table), the rows :func:`fit_rows` keeps, and the k-th
    extra split's sweep ids offset by k * :data:`EXTRA_SWEEP_OFFSET`."""
    import pandas as pd

    parts = []
    for k, split in enumerate([tc.corpus, *tc.extra]):
        c0 = time.process_time()
        df = split_records(split, Path(workdir) / "predictor_train.csv", log, keep_audio=encoder is not None)
        log(f"{'training split' if k == 0 else f'extra split {k}'}: {len(df)} items "
            f"({time.process_time() - c0:.0f} s CPU)")
        if encoder is not None:
            audio = split_audio_dir(split_cache_path(split, Path(workdir) / "predictor_train.csv"))
            df = df.join(embedding_table(audio, df, encoder))
            log(f"  embedding: {df.filter(regex=r'^emb[0-9]+$').shape[1]} values ({time.process_time() - c0:.0f} s CPU)")
        df = fit_rows(df, split, fit, log)
        parts.append(df.assign(sweep=df["sweep"] + k * EXTRA_SWEEP_OFFSET) if k else df)
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]


def train_predictor(tc: PredictorTrainConfig, out, log=print, workdir=None) -> dict:
    """Run the recipe: corpus split (cached), teacher targets, features, network, calibration;
    write the checkpoint to ``out``. Returns a summary (CPU seconds included)."""
    from ..models import checkpoint

    c0, t0 = time.process_time(), time.time()
    out = Path(out)
    workdir = Path(workdir) if workdir else out.parent
    workdir.mkdir(parents=True, exist_ok=True)
    encoder, spec = _encoder(tc)
    fit = tc.fit
    if int(fit.seed) != int(tc.seed) or spec != fit.embedding:
        fit = FitSection(**{**asdict(fit), "seed": int(tc.seed), "embedding": spec})
    df = training_rows(tc, fit, workdir, log, encoder)
    model, hist = fit_predictor(df, fit, log, input_level_dbfs=tc.input_level_dbfs)
    if tc.ambisonic is not None:  # FOA and 3OA input: a second network on the same rows, read through the decode
        read = str(tc.ambisonic["read"])
        afit = FitSection(**{**asdict(fit), "seed": int(tc.ambisonic.get("seed", fit.seed))})
        log(f"ambisonic network: features read as {read!r}, fit seed {afit.seed}")
        amb, ahist = fit_predictor(decode_view(df), afit, log, input_level_dbfs=tc.input_level_dbfs,
                                   ambisonic_read=read)
        model = route(model, amb)
        hist = {"network": hist, "ambisonic": ahist}
    pt = predict_table(model, df)
    from scipy.stats import spearmanr

    train_stats = {"mae": float(np.mean(np.abs(pt["raw"] - df["target"]))),
                   "spearman": float(spearmanr(pt["raw"], df["target"])[0]),
                   "accuracy": float(np.mean(pt["proba"].argmax(1) == score_class(df["target"])))}
    calib = {"a": 0.0, "b": 1.0, "scale": "linear", "applied": False}
    root = tc.mushra_dir()
    if tc.calibration.apply:
        if not root.is_dir():
            raise SpaqError(f"MUSHRA data not found at {root} (calibration.path in the config; "
                            f"calibration.apply: false trains without it)")
        mt = mushra_predictor_table(root, tc.calibration.ratings, log, tc.input_level_dbfs)
        if encoder is not None:
            mt = mt.join(mushra_embedding_table(root, mt, encoder))
        raw = predict_table(model, mt)["raw"]
        scale = tc.calibration.scale
        a, b = fit_calibration(raw, mt["mean"].to_numpy(dtype=np.float64), scale)
        model.cfg.calib_scale = scale
        model.set_calibration(a, b)
        loso = loso_calibration(mt, raw, scale)
        calib = {"a": a, "b": b, "scale": scale, "applied": True, "loso": mushra_stats(mt, loso),
                 "uncalibrated": mushra_stats(mt, raw), "fit": mushra_stats(mt, _calib(a, b, raw, scale))}
        log(f"calibration ({scale} scale) a={a:.3f} b={b:.3f}; LOSO Pearson (coded) {calib['loso']['pearson_coded']:.3f}")
    cpu = time.process_time() - c0
    train = {"recipe": tc.to_dict(), "history": hist, "train_stats": train_stats, "calibration": calib,
             "n_train": int(len(df)),
             "target": "spaq quality metric (registry, default mode) on corpus-engine (clean, degraded) pairs",
             "data": {"network_and_scalers": "corpus-engine training splits (configs/train/predictor.yaml corpus"
                                             + (" and extra)" if tc.extra else ")"),
                      "calibration": ("speech-codec MUSHRA half (stim_01-08), mean ratings, 2 parameters "
                                      + ("(linear in the score)" if calib["scale"] == "linear" else "(linear in the score's logit)")
                                      if calib["applied"] else "none")}}
    sha = checkpoint.save(out, model, train=train)
    log(f"wrote {out} (sha256 {sha}; {cpu:.0f} s CPU, {time.time() - t0:.0f} s wall)")
    return {"out": str(out), "sha256": sha, "cpu_s": cpu, "train_stats": train_stats, "calibration": calib}
