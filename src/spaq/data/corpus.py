"""Corpus generation: items -> audio files + manifest (Parquet, optional CSV).

Layout of an output folder::

    corpus.json           what corpus this is (config, config hash, seed, the corpus engine's rendering
                          version, spaq's version): guards the folder
    audio/000000_ref.wav  reference;  _deg.wav degraded (pairs) or positive (triplets);
    audio/000000_neg.wav  negative (triplets)
    items.jsonl           journal: one line per finished item (its files are complete)
    manifest.parquet      one row per item, sorted by index (manifest.csv on request)

Guarantees:

* files are written to a temporary name and renamed (:func:`spaq.io.atomic_write`), and an item
  enters the journal only after all its files are in place, so an interrupted run
  never lists a half-written file; ``resume`` skips items in the journal;
* item ``i`` depends only on ``(config, seed, i)`` (see :func:`spaq.data.scenes.make_item`),
  so manifests and sample hashes are the same for any number of workers;
* an output folder that holds another corpus (or other files) is refused, and a
  folder with this corpus is only continued with ``resume``.

``*_sha256`` columns are sha256 of the samples as stored (read back: float32 for
``float32`` files, int32 for ``pcm24``; interleaved frames, little endian).
"""
from __future__ import annotations

import contextlib
import json
import os
import re

import numpy as np
import soundfile as sf

from ..errors import SpaqError
from ..formats import parse_format
from ..files import atomic_write
from ..jobs import append_journal, make_pool, read_journal
from .config import config_hash
from .external import require_binary

__all__ = ["generate_corpus", "item_record", "write_audio_atomic", "samples_sha256", "preflight",
           "read_manifest", "MANIFEST_COLUMNS"]

MANIFEST_COLUMNS = [
    "item_id", "index", "kind", "format", "n_channels", "sample_rate", "duration_s",
    "reference_path", "reference_sha256", "degraded_path", "degraded_sha256", "negative_path", "negative_sha256",
    "n_sources", "azimuth_deg", "elevation_deg", "distance_m", "sources",
    "hrtf_name", "hrtf_sha256", "room", "room_rt60_s", "room_absorption", "diffuse",
    "degradation_types", "severity", "degradations", "negative_severity", "negative_degradations",
]
_SUBTYPES = {"float32": ("FLOAT", "float32"), "pcm24": ("PCM_24", "int32")}


def samples_sha256(path: str, subtype: str) -> str:
    """sha256 of a file's samples as stored (see module doc)."""
    import hashlib

    data, _ = sf.read(path, dtype=_SUBTYPES[subtype][1], always_2d=True)
    return hashlib.sha256(np.ascontiguousarray(data).astype(data.dtype.newbyteorder("<")).tobytes()).hexdigest()


def write_audio_atomic(path: str, x: np.ndarray, sample_rate: int, subtype: str = "float32") -> None:
    """Write ``x (C, T)`` as WAV through :func:`spaq.io.atomic_write` (a temporary file in
    the same folder, renamed over ``path``)."""
    atomic_write(path, lambda tmp: sf.write(tmp, np.asarray(x).T, sample_rate, subtype=_SUBTYPES[subtype][0],
                                            format="WAV"))


# Leftovers of a writer killed before its rename (atomic_write removes its temporary file on
# any exception, not on SIGKILL or power loss): spaq.io.atomic_write's ".<stem>.<pid>.<12 hex>
# .tmp<suffix>" and the "<name>.tmp-<pid>" of corpora written by older spaq versions.
_STALE_TMP = re.compile(r"\.tmp-|^\..+\.\d+\.[0-9a-f]{12}\.tmp(\.[^.]*)?$")


def _remove_stale_temps(out_dir: str) -> None:
    for folder in (out_dir, os.path.join(out_dir, "audio")):
        for name in os.listdir(folder):
            if _STALE_TMP.search(name) and os.path.isfile(os.path.join(folder, name)):
                os.remove(os.path.join(folder, name))


def _json(x) -> str:
    return json.dumps(x, sort_keys=True, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))


def item_record(item: dict, index: int, paths: dict, hashes: dict, kind: str) -> dict:
    """Manifest row of a generated item (``paths``/``hashes`` keyed ref/deg/neg)."""
    from ..spatial.hrtf import load_hrtf

    sc = item["scene"]
    fmt = parse_format(sc["format"])
    src0 = sc["sources"][0]
    hrtf_name = hrtf_sha = ""
    if fmt.is_binaural:
        h = load_hrtf(sc["hrtf"], sc["sample_rate"])
        hrtf_name, hrtf_sha = h.name, h.sha256
    chains = item["chains"]

    def sev(ch):
        return float(max((s["severity"] for s in ch), default=0.0))

    room = sc["room"]
    return {
        "item_id": f"{index:06d}",
        "index": int(index),
        "kind": kind,
        "format": sc["format"],
        "n_channels": int(item["reference"].shape[0]),
        "sample_rate": int(sc["sample_rate"]),
        "duration_s": float(sc["duration_s"]),
        "reference_path": paths.get("ref", ""),
        "reference_sha256": hashes.get("ref", ""),
        "degraded_path": paths.get("deg", ""),
        "degraded_sha256": hashes.get("deg", ""),
        "negative_path": paths.get("neg", ""),
        "negative_sha256": hashes.get("neg", ""),
        "n_sources": len(sc["sources"]),
        "azimuth_deg": float(src0["azimuth_deg"]),
        "elevation_deg": float(src0["elevation_deg"]),
        "distance_m": float(src0["distance_m"]),
        "sources": _json(sc["sources"]),
        "hrtf_name": hrtf_name,
        "hrtf_sha256": hrtf_sha,
        "room": _json(room) if room else "",
        "room_rt60_s": float(room["rt60_s"]) if room else float("nan"),
        "room_absorption": float(room["absorption"]) if room else float("nan"),
        "diffuse": _json(sc["diffuse"]) if sc["diffuse"] else "",
        "degradation_types": "+".join(s["type"] for s in chains[0]) if chains else "",
        "severity": sev(chains[0]) if chains else 0.0,
        "degradations": _json(chains[0]) if chains else "[]",
        "negative_severity": sev(chains[1]) if len(chains) > 1 else float("nan"),
        "negative_degradations": _json(chains[1]) if len(chains) > 1 else "",
    }


def _generate_one(args):
    cfg, seed, index, out_dir = args
    from .scenes import make_item

    item = make_item(cfg, seed, index)
    c = cfg["corpus"]
    subtype = c["subtype"]
    names = {"ref": item["reference"]}
    if item["degraded"]:
        names["deg"] = item["degraded"][0]
    if len(item["degraded"]) > 1:
        names["neg"] = item["degraded"][1]
    paths, hashes = {}, {}
    for key, x in names.items():
        rel = os.path.join("audio", f"{index:06d}_{key}.wav")
        full = os.path.join(out_dir, rel)
        if subtype == "pcm24":
            x = np.clip(x, -1.0, 1.0 - 2.0 ** -23)
        write_audio_atomic(full, x, c["sample_rate"], subtype)
        paths[key] = rel
        hashes[key] = samples_sha256(full, subtype)
    return item_record(item, index, paths, hashes, c["kind"])


def preflight(cfg: dict) -> None:
    """Fail early, with one line, on missing Python packages, programs or HRTFs the config needs."""
    from ..extras import require_modules
    from ..spatial.hrtf import load_hrtf

    s = cfg["scene"]
    # before any item is rendered: the manifest (pandas, pyarrow) is written only at the end
    mods = ["pandas", "pyarrow"] + (["pyroomacoustics"] if float(s["room"]["probability"]) > 0 else [])
    require_modules("spaq generate", mods, "data")
    types = {k for k, w in s["sources"]["types"].items() if w > 0}
    if ("speech" in types and s["speech"]["engines"].get("espeak", 0) > 0) or "babble" in types:
        require_binary("espeak-ng")
    d = cfg["degradations"]
    used = {st["type"] for st in d["chain"]} if d["chain"] else {k for k, w in d["types"].items() if w > 0}
    if cfg["corpus"]["kind"] == "single":
        used = set()
    if "codec" in used:
        require_binary("ffmpeg")
    fs = cfg["corpus"]["sample_rate"]
    if any(parse_format(f).is_binaural for f, w in s["formats"].items() if w > 0):
        load_hrtf(s["hrtf"], fs)
        if "hrtf_swap" in used:
            for head in (d["options"] or {}).get("hrtf_swap", {}).get("heads", ["sonicom-1", "sonicom-2"]):
                load_hrtf(head, fs)


def _write_manifest(out_dir: str, records: dict[int, dict], csv: bool):
    import pandas as pd

    rows = [records[i] for i in sorted(records)]
    df = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    atomic_write(os.path.join(out_dir, "manifest.parquet"), lambda tmp: df.to_parquet(tmp, index=False))
    if csv:
        atomic_write(os.path.join(out_dir, "manifest.csv"), lambda tmp: df.to_csv(tmp, index=False))
    return df


def read_manifest(out_dir: str):
    """The manifest DataFrame of a corpus folder."""
    import pandas as pd

    path = os.path.join(out_dir, "manifest.parquet")
    if not os.path.exists(path):
        raise SpaqError(f"no manifest.parquet in {out_dir}")
    return pd.read_parquet(path)


def _check_folder(out_dir: str, fingerprint: dict, resume: bool) -> None:
    marker = os.path.join(out_dir, "corpus.json")
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        if not os.path.exists(marker):
            raise SpaqError(f"output folder {out_dir} is not empty and holds no spaq corpus; choose another --out")
        try:
            with open(marker, encoding="utf-8") as f:
                old = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise SpaqError(f"{marker} is unreadable ({e}); choose another --out") from e
        if old.get("config_hash") != fingerprint["config_hash"] or old.get("seed") != fingerprint["seed"]:
            raise SpaqError(f"output folder {out_dir} holds another corpus "
                            f"({old.get('name', '?')}, seed {old.get('seed')}); choose another --out")
        if old.get("engine_version", fingerprint["engine_version"]) != fingerprint["engine_version"]:
            # its items were rendered by another corpus engine: continuing would mix two renderings
            raise SpaqError(f"output folder {out_dir} holds this corpus rendered by corpus engine version "
                            f"{old['engine_version']}, this spaq renders with version {fingerprint['engine_version']}; "
                            "generate it again into another --out")
        if not resume:
            raise SpaqError(f"output folder {out_dir} already holds this corpus; add --resume to continue it")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise SpaqError(f"--out {out_dir} is a file, not a folder; choose a folder")
    try:
        os.makedirs(os.path.join(out_dir, "audio"), exist_ok=True)
    except OSError as e:
        raise SpaqError(f"cannot create the output folder {out_dir}: {e.strerror or e}") from None
    if not os.path.exists(marker):
        def dump(tmp):
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(fingerprint, f, indent=1, sort_keys=True, default=str)

        atomic_write(marker, dump)


def generate_corpus(cfg: dict, out_dir: str, n: int | None = None, seed: int | None = None, workers: int = 1,
                    resume: bool = False, csv: bool | None = None, progress: bool = True):
    """Generate a corpus from a validated config into ``out_dir``; returns the manifest
    DataFrame. ``n``/``seed``/``csv`` override the config's ``corpus`` section."""
    import copy

    cfg = copy.deepcopy(cfg)
    c = cfg["corpus"]
    if n is not None:
        if n < 1:
            raise SpaqError("--n must be at least 1")
        c["n"] = int(n)
    if seed is not None:
        if seed < 0:
            raise SpaqError("--seed must be >= 0")
        c["seed"] = int(seed)
    if csv is not None:
        c["csv"] = bool(csv)
    if workers < 1:
        raise SpaqError("--workers must be at least 1")
    preflight(cfg)
    out_dir = os.path.abspath(out_dir)
    from .. import __version__
    from . import ENGINE_VERSION

    # engine_version: what rendered the items (corpora of spaq before it carry none, and resume as before)
    fp = {"format": "spaq-corpus/1", "name": c["name"], "seed": c["seed"], "config_hash": config_hash(cfg),
          "config": cfg, "engine_version": ENGINE_VERSION, "spaq_version": __version__}
    _check_folder(out_dir, fp, resume)
    _remove_stale_temps(out_dir)
    journal = os.path.join(out_dir, "items.jsonl")
    done = read_journal(journal, key="index", cast=int)
    # keep journal entries whose files are all present
    done = {i: r for i, r in done.items()
            if all(not r[k] or os.path.exists(os.path.join(out_dir, r[k]))
                   for k in ("reference_path", "degraded_path", "negative_path"))}
    todo = [i for i in range(c["n"]) if i not in done]
    tasks = [(cfg, c["seed"], i, out_dir) for i in todo]

    prog = None
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        prog = Progress(TextColumn("[bold]generate"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        transient=False)
    pool = None
    try:
        with open(journal, "a", encoding="utf-8") as jf, (prog or contextlib.nullcontext()):
            task = prog.add_task("items", total=c["n"], completed=c["n"] - len(todo)) if prog else None
            if workers == 1 or len(tasks) <= 1:
                results = map(_generate_one, tasks)
            else:
                pool = make_pool(workers)
                results = pool.imap_unordered(_generate_one, tasks, chunksize=1)
            for rec in results:
                append_journal(jf, rec)
                done[rec["index"]] = rec
                if prog:
                    prog.advance(task)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
        # the manifest lists only finished items, also after an interruption or an error
        done = {i: r for i, r in done.items() if i < c["n"]}
        if done:
            _write_manifest(out_dir, done, c["csv"])
    return read_manifest(out_dir)
