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
  folder with this corpus is only continued with ``resume``, which continues the corpus
  recorded in ``corpus.json`` (its ``n`` and seed; another ``--n``/``--seed`` is refused);
* bad input is refused before anything is written, and a run that finishes no item
  leaves no trace (what it wrote and the folders it created are removed; a folder with a
  killed run's files but no finished item counts as empty): see :func:`generate_corpus`.

``*_sha256`` columns are sha256 of the samples as stored (read back: float32 for
``float32`` files, int32 for ``pcm24``; interleaved frames, little endian).
"""
from __future__ import annotations

import contextlib
import json
import numbers
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
    folders = []
    if "files" in types:
        folders.append(("scene.files_folder", s["files_folder"]))
    if "speech" in types and s["speech"]["engines"].get("folder", 0) > 0:
        folders.append(("scene.speech.folder", s["speech"]["folder"]))
    for key, folder in folders:  # a folder without audio files fails now, not at the first item
        from .sources import _list_audio_cached

        try:
            _list_audio_cached(os.path.abspath(folder))
        except SpaqError as e:
            raise SpaqError(f"{key}: {e}") from None
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


# what a run writes into its folder (besides stale temporary files): an item's audio files and the top level
_ITEM_FILE = re.compile(r"^\d{6}_(ref|deg|neg)\.wav$")
_OWN_FILES = ("corpus.json", "items.jsonl", "manifest.parquet", "manifest.csv")


def _ours_only(out_dir: str) -> bool:
    """True when the folder holds nothing but what a corpus run writes (its files, item audio, temporaries)."""
    for name in os.listdir(out_dir):
        full = os.path.join(out_dir, name)
        if name == "audio" and os.path.isdir(full):
            if not all((_ITEM_FILE.match(a) or _STALE_TMP.search(a)) and os.path.isfile(os.path.join(full, a))
                       for a in os.listdir(full)):
                return False
        elif not ((name in _OWN_FILES or _STALE_TMP.search(name)) and os.path.isfile(full)):
            return False
    return True


def _remove_ours(out_dir: str) -> None:
    """Remove what a corpus run writes into ``out_dir`` (never another file; the folder itself stays)."""
    audio = os.path.join(out_dir, "audio")
    if os.path.isdir(audio):
        for name in os.listdir(audio):
            if _ITEM_FILE.match(name) or _STALE_TMP.search(name):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(audio, name))
        with contextlib.suppress(OSError):
            os.rmdir(audio)
    for name in os.listdir(out_dir):
        if name in _OWN_FILES or _STALE_TMP.search(name):
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                os.remove(os.path.join(out_dir, name))


def _inspect_folder(out_dir: str) -> tuple[str, dict | None]:
    """What ``out_dir`` holds, before anything is written: ``("new", None)`` (absent), ``("empty", None)``,
    ``("unfinished", old)`` (a corpus run's files without one finished item: a run killed before its first
    item), ``("corpus", old)`` (a corpus with finished items; ``old``: its corpus.json). Refuses (one line) a
    file, a folder with other files and an unreadable corpus.json."""
    marker = os.path.join(out_dir, "corpus.json")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise SpaqError(f"--out {out_dir} is a file, not a folder; choose a folder")
    if not os.path.isdir(out_dir):
        return "new", None
    try:
        if not os.listdir(out_dir):
            return "empty", None
    except OSError as e:
        raise SpaqError(f"cannot read the output folder {out_dir}: {e.strerror or e}") from None
    if not os.path.exists(marker):
        raise SpaqError(f"output folder {out_dir} is not empty and holds no spaq corpus; choose another --out")
    try:
        with open(marker, encoding="utf-8") as f:
            old = json.load(f)
        if not isinstance(old, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as e:
        raise SpaqError(f"{marker} is unreadable ({e}); choose another --out") from None
    if (not os.path.exists(os.path.join(out_dir, "manifest.parquet")) and _ours_only(out_dir)
            and not read_journal(os.path.join(out_dir, "items.jsonl"), key="index", cast=int)):
        return "unfinished", old
    return "corpus", old


def _check_same_corpus(out_dir: str, old: dict, fingerprint: dict, resume: bool) -> None:
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


def _recorded_n(old: dict) -> int | None:
    """The number of items recorded in a corpus.json (its config's ``corpus.n``), None if it has none."""
    conf = old.get("config")
    sec = conf.get("corpus") if isinstance(conf, dict) else None
    n = sec.get("n") if isinstance(sec, dict) else None
    return n if isinstance(n, int) and not isinstance(n, bool) else None


def _missing_parents(path: str) -> list[str]:
    """``path`` and those of its parents that do not exist, deepest first."""
    out = []
    while path and not os.path.exists(path):
        out.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return out


def _start_folder(out_dir: str, state: str, fingerprint: dict) -> list[str]:
    """Create the output folder (``audio/``, ``corpus.json``) for a run of ``state`` (:func:`_inspect_folder`);
    returns the folders it created, deepest first."""
    created = _missing_parents(out_dir)
    if state == "unfinished":  # a run killed before its first item: start afresh (it may be another config)
        _remove_ours(out_dir)
    try:
        os.makedirs(os.path.join(out_dir, "audio"), exist_ok=True)
    except OSError as e:
        raise SpaqError(f"cannot create the output folder {out_dir}: {e.strerror or e}") from None
    marker = os.path.join(out_dir, "corpus.json")
    if state != "corpus":
        def dump(tmp):
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(fingerprint, f, indent=1, sort_keys=True, default=str)

        atomic_write(marker, dump)
    return created


def _undo_start(out_dir: str, created: list[str]) -> None:
    """After a run that finished no item: remove what it wrote and the folders it created (a folder
    that holds anything else stays), so that the folder takes a rerun, with this config or another."""
    with contextlib.suppress(OSError):
        _remove_ours(out_dir)
        for folder in created:  # deepest first; os.rmdir refuses a folder that is not empty
            os.rmdir(folder)


def generate_corpus(cfg: dict, out_dir: str, n: int | None = None, seed: int | None = None, workers: int = 1,
                    resume: bool = False, csv: bool | None = None, progress: bool = True):
    """Generate a corpus from a validated config into ``out_dir``; returns the manifest
    DataFrame. ``n``/``seed``/``csv`` override the config's ``corpus`` section.

    ``resume`` continues the corpus in ``out_dir`` as recorded in its ``corpus.json``: its
    number of items and seed (not the config's ``corpus.n``/``corpus.seed``); an ``n`` or
    ``seed`` that differs from the recorded one is refused in one line naming both (a
    corpus is neither grown nor cut by a resume: generate another into a new folder).
    Without a corpus in ``out_dir`` (absent or empty folder) ``resume`` starts one.

    Everything that can be checked is checked before anything is written (arguments, the
    Python packages, programs and HRTFs the config needs, the output folder). A run that
    fails or is interrupted before it finished any item leaves no trace: it removes what it
    wrote (corpus.json, items.jsonl, audio files, ``audio/``) and the folders it created,
    so the same folder takes a rerun, with the same config or a fixed one. A folder that
    nevertheless holds a corpus run's files without one finished item (a run killed by
    SIGKILL or a power loss before its first item) counts as empty: a run, with any
    config, starts afresh there. A failure after the first finished item keeps the
    finished items and writes the manifest of those (continue with ``resume``)."""
    import copy

    cfg = copy.deepcopy(cfg)
    c = cfg["corpus"]
    for flag, v, low in (("--n", n, 1), ("--seed", seed, 0)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Integral)):
            raise SpaqError(f"{flag} must be an integer, not {v!r}")
        if v is not None and v < low:
            raise SpaqError(f"{flag} must be {'at least 1' if low else '>= 0'}")
    if isinstance(workers, bool) or not isinstance(workers, numbers.Integral) or workers < 1:
        raise SpaqError("--workers must be at least 1")
    if csv is not None:
        c["csv"] = bool(csv)
    out_dir = os.path.abspath(out_dir)
    state, old = _inspect_folder(out_dir)
    marker = os.path.join(out_dir, "corpus.json")
    if state == "corpus" and resume:
        # continue the recorded corpus: its seed and number of items, not the config's
        rec_seed, rec_n = old.get("seed"), _recorded_n(old)
        if seed is not None and rec_seed is not None and seed != rec_seed:
            raise SpaqError(f"--seed {seed} differs from the seed {rec_seed} recorded in {marker}; --resume continues "
                            "the recorded corpus: leave out --seed (or generate into another --out)")
        if n is not None and rec_n is not None and n != rec_n:
            raise SpaqError(f"--n {n} differs from the n {rec_n} recorded in {marker}; --resume continues the recorded "
                            "corpus: leave out --n (or generate into another --out)")
        seed = rec_seed if rec_seed is not None else seed
        n = rec_n if rec_n is not None else n
    if n is not None:
        c["n"] = int(n)
    if seed is not None:
        c["seed"] = int(seed)
    preflight(cfg)
    from .. import __version__
    from . import ENGINE_VERSION

    # engine_version: what rendered the items (corpora of spaq before it carry none, and resume as before)
    fp = {"format": "spaq-corpus/1", "name": c["name"], "seed": c["seed"], "config_hash": config_hash(cfg),
          "config": cfg, "engine_version": ENGINE_VERSION, "spaq_version": __version__}
    if state == "corpus":
        _check_same_corpus(out_dir, old, fp, resume)
    created = _start_folder(out_dir, state, fp)
    done: dict = {}
    try:
        _remove_stale_temps(out_dir)
        journal = os.path.join(out_dir, "items.jsonl")
        done = read_journal(journal, key="index", cast=int)
        # keep journal entries whose files are all present
        done = {i: r for i, r in done.items()
                if all(not r[k] or os.path.exists(os.path.join(out_dir, r[k]))
                       for k in ("reference_path", "degraded_path", "negative_path"))}
        todo = [i for i in range(c["n"]) if i not in done]
        tasks = [(cfg, c["seed"], i, out_dir) for i in todo]
        _run(tasks, journal, done, c["n"], workers, progress)
    except BaseException:
        if not done and state != "corpus":  # nothing finished, now or before: leave the folder as it was
            _undo_start(out_dir, created)
        raise
    finally:
        # the manifest lists only finished items, also after an interruption or an error
        done = {i: r for i, r in done.items() if i < c["n"]}
        if done:
            _write_manifest(out_dir, done, c["csv"])
    return read_manifest(out_dir)


def _run(tasks: list, journal: str, done: dict, n: int, workers: int, progress: bool) -> None:
    """Render ``tasks`` and journal each finished item (added to ``done`` as it finishes)."""
    prog = None
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        prog = Progress(TextColumn("[bold]generate"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        transient=False)
    cut = False
    if os.path.isfile(journal) and os.path.getsize(journal) > 0:
        with open(journal, "rb") as f:
            f.seek(-1, os.SEEK_END)
            cut = f.read(1) != b"\n"
    pool = None
    try:
        with open(journal, "a", encoding="utf-8") as jf, (prog or contextlib.nullcontext()):
            if cut:  # a line cut by an interruption: the next record starts on a line of its own
                jf.write("\n")
            task = prog.add_task("items", total=n, completed=n - len(tasks)) if prog else None
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
