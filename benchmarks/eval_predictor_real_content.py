"""The reference-free predictor on real recorded content (issue 20): severity ladders and clean
scores of scenes built from the real instrument and ambience recordings that the shared spatial-
codings test redistributes (``../shared/listening-tests/ambisonics-param-coding/generate_stimuli/
source_audio``), rendered by spaq's corpus engine in binaural (the held-out SONICOM-2 head), FOA,
3OA and mono (FOA's W), anechoic and in a room, then coded or degraded along the engine's ladders.

    PYTHONPATH=src python benchmarks/eval_predictor_real_content.py [--cache DIR] [--out FILE.md]

No listener rated these items: the check is whether the predictor (a) gives a clean real scene a
score a listener would (high: these are clean recordings) in every format and (b) orders each
coding ladder (Spearman of the score against severity per sweep; the teacher's own drop from the
clean scene to the worst is shown, so that a ladder nobody hears is not read as a miss). The
training corpus has only synthetic sources (speech, harmonic tones, pink noise), one per scene:
this is content the predictor was not fitted to, closer to what an FOA codec test plays.

Scenes (2.5 s, the recordings' length; 44.1 kHz resampled to 48 kHz; each source at -26 dBFS):
string quartet (cello, viola, two violins), band (bass, drums, other, vocals; MUSDB), beat + saw,
typing + fan noise (an ambience). Families: noise, lowpass, clipping, opus, mp3, aac, and in the
rooms a longer room (``reverb_longer``: the RT60 lengthened, the one reverb change a listener hears
as a fault without a reference); severities 0, 0.2, ..., 1; each sweep's random choices drawn by
the corpus engine from (seed, index).
The table (features + teacher scores) is cached in ``--cache``; building it takes ~6 min CPU.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

SOURCE_DIR = ROOT.parent / "shared/listening-tests/ambisonics-param-coding/generate_stimuli/source_audio"
SCENES = {
    "quartet": [("gomes_string_quartet/Mov1_Cello_Haydn_StringQuartet_op76_n1_cut.wav", 30),
                ("gomes_string_quartet/Mov1_Viola_Haydn_StringQuartet_op76_n1_cut.wav", 10),
                ("gomes_string_quartet/Mov1_Violin2_Haydn_StringQuartet_op76_n1_cut.wav", -10),
                ("gomes_string_quartet/Mov1_Violin1_Haydn_StringQuartet_op76_n1_cut.wav", -30)],
    "band": [("musdb_bks_bulldozer/bass_cut.wav", 0), ("musdb_bks_bulldozer/drums_cut.wav", 40),
             ("musdb_bks_bulldozer/other_cut.wav", -60), ("musdb_bks_bulldozer/vocals_cut.wav", 5)],
    "beat+saw": [("freesound/385676__scydan__trip-acoustic-beat_cut.wav", 60), ("saw.wav", -90)],
    "typing+fan": [("freesound/489423__samsterbirdies__typing-on-a-keyboard_cut.wav", -20),
                   ("freesound/594984__hdomst__fan-noise_cut.wav", 135)],
}
FAMILIES = ["noise", "lowpass", "clipping", "opus", "mp3", "aac"]
SEVERITIES = [0.2, 0.4, 0.6, 0.8, 1.0]
FORMATS = ["binaural", "foa", "hoa3"]
DURATION_S = 2.5
SEED = 9500
HEAD = "sonicom-2"  # the held-out head


def _signals(scene: str) -> list[np.ndarray]:
    from spaq.io import read_audio, resample

    T = int(DURATION_S * 48000)
    out = []
    for f, _ in SCENES[scene]:
        x, sr = read_audio(str(SOURCE_DIR / f))
        x = resample(x, sr, 48000)[0, :T]
        x = np.pad(x, (0, T - len(x)))
        out.append(x * 10 ** (-26 / 20) / max(float(np.sqrt(np.mean(x ** 2))), 1e-12))
    return out


def _clean_scene(fmt: str, scene: str, room: bool, index: int):
    """``(scene dict, signals, ref (C, T))``: ``scene``'s recordings placed in the engine's scene
    drawn for ``index`` (its room; the drawn source replaced by the recordings and their
    directions), rendered once for every family of that index (the scene draws do not depend on
    the family)."""
    from spaq.data.scenes import render_scene
    from spaq.train.quality import sweep_draws

    _, sc, _ = sweep_draws(FAMILIES[0], fmt, "chord", SEED, index, duration_s=DURATION_S, hrtf=HEAD,
                           room_probability=1.0 if room else 0.0)
    tmpl = sc["sources"][0]
    sc["sources"] = [{**tmpl, "azimuth_deg": float(az), "elevation_deg": 0.0, "distance_m": 1.5, "level_dbfs": -26.0}
                     for _, az in SCENES[scene]]
    sig = _signals(scene)
    return sc, sig, np.asarray(render_scene(sc, sig), dtype=np.float64)


def _degrade(family: str, index: int, sc: dict, sig: list, ref: np.ndarray) -> list:
    """[deg (C, T) per severity] of ``family`` on the clean scene of :func:`_clean_scene`, with the
    degradation's random choices drawn for ``(SEED, index)`` as the corpus engine's sweeps draw them."""
    from spaq.data.degradations import DEGRADATIONS, apply_signal_degradation
    from spaq.data.scenes import render_scene, scene_mods
    from spaq.formats import parse_format
    from spaq.train.quality import FAMILIES as QF
    from spaq.train.quality import sweep_draws, sweep_params

    cfg, _, choice = sweep_draws(family, sc["format"], "chord", SEED, index, duration_s=DURATION_S, hrtf=HEAD,
                                 room_probability=1.0 if sc["room"] is not None else 0.0)
    name = QF[family][0]
    degs = []
    for s in SEVERITIES:
        p = sweep_params(family, s, cfg, sc, choice)
        mods = scene_mods([{"type": name, "stage": DEGRADATIONS[name].stage, "severity": float(s), "params": p}])
        y = render_scene(sc, sig, mods) if mods else ref.copy()
        if DEGRADATIONS[name].stage == "signal":
            y, _ = apply_signal_degradation(y, p, name, 48000, parse_format(sc["format"]))
        degs.append(np.asarray(y, dtype=np.float64))
    return degs


def build_table(cache: Path, log=print, level_dbfs: float | None = None):
    """Every item's features and teacher score, cached as ``cache/real_content_<features key>.csv``
    (``level_dbfs``: features of each item scaled to that active level, a checkpoint's ``input_level_dbfs``),
    the FOA / 3OA items' features read through their binaural decode too (``decode.`` columns, as a recipe
    with ``ambisonic`` makes them), so that a routed checkpoint and one that is not share one table."""
    import hashlib
    import json

    import pandas as pd

    from spaq.files import atomic_write
    from spaq.metrics.functional.predictor import FEATURE_NAMES
    from spaq.train.predictor import _teacher, _teacher_scores, feature_rows

    teacher = _teacher()
    ident = {"features": list(FEATURE_NAMES), "teacher": [teacher.name, teacher.version, teacher.sha256],
             "scenes": SCENES, "families": FAMILIES, "seed": SEED, "decode_features": True}
    if level_dbfs is not None:  # tables made before the option keep their key
        ident["input_level_dbfs"] = float(level_dbfs)
    key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:12]
    path = Path(cache) / f"real_content_{key}.csv"
    if path.is_file():
        return pd.read_csv(path, keep_default_na=False)
    recs, idx = [], 0
    for scene in SCENES:
        for room in (False, True):
            for fmt in FORMATS:
                idx += 1
                sc, sig, ref = _clean_scene(fmt, scene, room, idx)
                for fam in FAMILIES + (["reverb_longer"] if room else []):
                    xs = [ref] + _degrade(fam, idx, sc, sig, ref)
                    kinds = [("binaural" if fmt == "binaural" else ("foa" if fmt == "foa" else "hoa"), xs)]
                    if fmt == "foa":
                        kinds.append(("mono", [x[:1] for x in xs]))
                    for kind, ys in kinds:
                        if kind == "mono":
                            tgt = _teacher_scores(teacher, np.repeat(ys[0], 2, 0), [np.repeat(y, 2, 0) for y in ys])
                        else:
                            tgt = _teacher_scores(teacher, ys[0], ys)
                        feats = feature_rows(np.stack(ys).astype(np.float32), kind, level_dbfs, decode=True)
                        for j, s in enumerate([0.0] + SEVERITIES):
                            recs.append({"sweep": f"{idx}/{fam}", "scene": scene, "room": int(room), "family": fam, "format": kind,
                                         "severity": s, "target": float(tgt[j]),
                                         **feats[j]})
                    log(f"  {scene} {'room' if room else 'anechoic'} {fmt} {fam}")
    df = pd.DataFrame(recs)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: df.to_csv(tmp, index=False))
    return df


def evaluate(model, df, min_teacher_drop: float = 10.0) -> dict:
    """``model`` (a PredictorNet; None: the intrusive teacher's own scores) on the table: the clean
    scenes' mean score per format, and per family the mean per-sweep Spearman of the score against
    severity (:func:`eval_predictor.ladders`) over all sweeps and over the sweeps whose teacher
    score falls >= ``min_teacher_drop`` from clean to the worst."""
    from eval_predictor import ladders

    from spaq.train.predictor import predict_table

    pred = df["target"].to_numpy() if model is None else predict_table(model, df)["raw"]
    fams = sorted(df["family"].unique())
    every = ladders({"raw": pred}, df, audible_only=False, families=fams)
    heard = ladders({"raw": pred}, df, audible_only=False, min_teacher_drop=min_teacher_drop, families=fams)
    lad = {f: {"all": every[f]["mean"], "n_all": every[f]["n"], "audible": heard[f]["mean"], "n_audible": heard[f]["n"]}
           for f in fams}
    d = df.assign(pred=pred)
    return {"clean": d[d["severity"] == 0].groupby("format")["pred"].mean().to_dict(), "ladders": lad,
            "clean_min": float(d[d["severity"] == 0]["pred"].min())}


def table_lines(results: dict) -> list[str]:
    """Markdown rows: one per model name in ``results`` (name -> :func:`evaluate`'s output)."""
    fams = FAMILIES + ["reverb_longer"]
    L = ["| model | clean score: binaural / FOA / 3OA / mono (lowest) | " + " | ".join(fams) + " |",
         "|---|---|" + "---|" * len(fams)]
    for name, r in results.items():
        c = r["clean"]
        L.append(f"| {name} | {c.get('binaural', np.nan):.0f} / {c.get('foa', np.nan):.0f} / {c.get('hoa', np.nan):.0f} / "
                 f"{c.get('mono', np.nan):.0f} ({r['clean_min']:.0f}) | "
                 + " | ".join(f"{r['ladders'][f]['audible']:.2f} ({r['ladders'][f]['n_audible']}), all {r['ladders'][f]['all']:.2f}"
                              for f in fams) + " |")
    return L


def main(argv=None):
    import torch

    from spaq.models import checkpoint as ck
    from spaq.weights import resolve

    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", default=str(Path.home() / ".cache/spaq/predictor_real_content"))
    ap.add_argument("--out", default=None, help="also write the table here (Markdown)")
    ap.add_argument("--checkpoint", default=None, help="default: the packaged predictor_v1")
    a = ap.parse_args(argv)
    if not SOURCE_DIR.is_dir():
        sys.exit(f"error: {SOURCE_DIR} is absent (the shared spatial-codings test's source audio)")
    torch.set_num_threads(1)
    w = resolve("predictor_v1", path=a.checkpoint, offline=True, download=False)
    model, _ = ck.load(w.path, architecture="predictor", sha256=w.sha256)
    df = build_table(Path(a.cache), level_dbfs=model.cfg.input_level_dbfs)
    name = f"checkpoint {w.sha256[:8]}... (reference-free)" if a.checkpoint else "predictor_v1 (shipped; reference-free)"
    L = table_lines({name: evaluate(model, df),
                     "quality (intrusive teacher, against the clean scene)": evaluate(None, df)})
    print("\n".join(L))
    if a.out:
        Path(a.out).write_text("\n".join(L) + "\n")


if __name__ == "__main__":
    main()
