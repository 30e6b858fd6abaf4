"""Scenes: sample a random scene from a config, render it (reference) and render
its degraded versions.

Determinism: :func:`make_item` derives everything from ``(seed, index)`` through
``numpy.random.SeedSequence([seed, index])``, so an item is the same whatever
process or worker makes it.

Shapes: rendered signals ``(C, T)``: binaural ``C = 2`` (left, right), ambisonics
ACN/SN3D ``C = (N+1)^2``; ``T = round(duration_s * sample_rate)``.

Conventions: a source's ``level_dbfs`` is the active RMS of its mono signal: in
anechoic scenes that is the level of its plane wave (W channel in ambisonics;
before the HRIR in binaural); in rooms the RIR has unit omni energy, so it is the
level of its total (direct + reverberant) sound at the listener.
Directions are in the listener's head frame (degrees). In anechoic scenes the
distance is recorded but only rooms use it (plane waves, no distance attenuation).
"""
from __future__ import annotations

import functools
import math

import numpy as np
from scipy.signal import oaconvolve

from ..errors import SpaqError
from ..formats import parse_format
from ..spatial.ambisonics import binaural_decoder, decode_binaural, encode, fibonacci_directions
from ..spatial.angles import cart2sph, great_circle_deg, sph2cart
from ..spatial.hrtf import blend_hrtf, load_hrtf
from ..spatial.render import render_binaural, trajectory
from ..spatial.room import RoomSpec, min_rt60_s, place_in_room, response_length_s, room_impulse_response
from ..spatial.sh import sh_matrix
from .degradations import DEGRADATIONS, apply_signal_degradation, degradation_params, tangent_frame
from .sources import make_source, pink_noise

__all__ = ["sample_scene", "sample_chains", "render_scene", "make_item", "scene_mods"]


def _choose(weights: dict, rng):
    names = list(weights)
    w = np.asarray([weights[k] for k in names], dtype=np.float64)
    return names[int(rng.choice(len(names), p=w / w.sum()))]


def _uniform_elevation(lo, hi, rng):
    """Elevation uniform on the sphere's area between lo and hi degrees."""
    a, b = math.sin(math.radians(lo)), math.sin(math.radians(hi))
    return math.degrees(math.asin(rng.uniform(a, b)))


def sample_scene(cfg: dict, rng: np.random.Generator) -> dict:
    """Draw a scene description (JSON-ready dict) from a validated config."""
    c, s = cfg["corpus"], cfg["scene"]
    src_cfg = s["sources"]
    fmt = _choose(s["formats"], rng)
    n_src = int(rng.integers(src_cfg["count"][0], src_cfg["count"][1] + 1))
    use_room = rng.random() < float(s["room"]["probability"])
    room = None
    if use_room:
        dims = [float(rng.uniform(*d)) for d in s["room"]["dims_m"]]
        room = {"dims_m": dims, "rt60_s": float(rng.uniform(*s["room"]["rt60_s"])),
                "listener_yaw_deg": float(rng.uniform(-180, 180)), "seed": int(rng.integers(2**62))}
        import pyroomacoustics as pra

        room["absorption"], room["ism_max_order"] = (float(v) for v in pra.inverse_sabine(room["rt60_s"], dims))
    sources, dirs = [], []
    for i in range(n_src):
        kind = _choose(src_cfg["types"], rng)
        for _ in range(100):  # keep sources apart by min_separation_deg
            az = float(rng.uniform(*src_cfg["azimuth_deg"]))
            el = _uniform_elevation(*src_cfg["elevation_deg"], rng)
            if all(great_circle_deg(az, el, a, e) >= src_cfg["min_separation_deg"] for a, e in dirs):
                break
        az = float(np.mod(az + 180, 360) - 180)
        dirs.append((az, el))
        src = {
            "type": kind,
            "level_dbfs": float(rng.uniform(*src_cfg["level_dbfs"])),
            "azimuth_deg": az,
            "elevation_deg": el,
            "distance_m": float(rng.uniform(*src_cfg["distance_m"])),
            "motion": None,
            "content_seed": int(rng.integers(2**62)),
        }
        if room is None and rng.random() < float(src_cfg["moving_probability"]):
            src["motion"] = {"azimuth_speed_deg_s": float(rng.uniform(*src_cfg["azimuth_speed_deg_s"])),
                             "elevation_speed_deg_s": float(rng.uniform(*src_cfg["elevation_speed_deg_s"]))}
        sources.append(src)
    if room is not None:
        # place the listener once (first source), then every source relative to it
        r = np.random.default_rng(room["seed"])
        first = place_in_room(room["dims_m"], room["rt60_s"], sources[0]["azimuth_deg"],
                              sources[0]["elevation_deg"], sources[0]["distance_m"], r,
                              margin_m=s["room"]["margin_m"], listener_yaw_deg=room["listener_yaw_deg"])
        room["listener_m"] = list(map(float, first.listener_m))
        for src in sources:
            spec = _place_from_listener(room, src["azimuth_deg"], src["elevation_deg"], src["distance_m"],
                                        s["room"]["margin_m"])
            src["position_m"] = list(map(float, spec.source_m))
            src["distance_m"] = float(np.linalg.norm(np.subtract(spec.source_m, spec.listener_m)))
        room["margin_m"] = float(s["room"]["margin_m"])
        room["ism_order"] = int(s["room"]["ism_order"])
    diffuse = None
    if rng.random() < float(s["diffuse"]["probability"]):
        diffuse = {"type": "pink_noise", "level_dbfs": float(rng.uniform(*s["diffuse"]["level_dbfs"])),
                   "directions": int(s["diffuse"]["directions"]), "seed": int(rng.integers(2**62))}
    return {
        "format": fmt,
        "sample_rate": int(c["sample_rate"]),
        "duration_s": float(c["duration_s"]),
        "hrtf": s["hrtf"],
        "hrir_lookup": s["hrir_lookup"],
        "binaural_rendering": s["binaural_rendering"],
        "decoder_order": int(s["decoder_order"]),
        "sources": sources,
        "room": room,
        "diffuse": diffuse,
    }


def _place_from_listener(room: dict, az, el, dist, margin) -> RoomSpec:
    dims = np.asarray(room["dims_m"], dtype=np.float64)
    lis = np.asarray(room["listener_m"], dtype=np.float64)
    v = sph2cart(az + room["listener_yaw_deg"], el)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_hi = np.where(v > 0, (dims - margin - lis) / v, np.where(v < 0, (margin - lis) / v, np.inf))
    d = max(0.1, min(float(dist), float(np.min(t_hi))))
    return RoomSpec(tuple(dims), room["rt60_s"], tuple(lis), tuple(lis + d * v), room["listener_yaw_deg"])


def sample_chains(cfg: dict, scene: dict, rng: np.random.Generator) -> list[list[dict]]:
    """Degradation chains for one item: ``[]`` (single), ``[chain]`` (pairs) or
    ``[positive, negative]`` (triplets: same types and random choices, the negative
    at a higher severity). Each step: ``{type, stage, severity, params}``."""
    kind = cfg["corpus"]["kind"]
    if kind == "single":
        return []
    d = cfg["degradations"]
    fmt = parse_format(scene["format"])
    fkind = "binaural" if fmt.is_binaural else "ambisonics"
    has_room = scene["room"] is not None
    if d["chain"]:
        steps = [(st["type"], float(st.get("severity", 0.5))) for st in d["chain"]]
        for t, _ in steps:
            if fkind not in DEGRADATIONS[t].formats:
                raise SpaqError(f"degradation {t!r} does not apply to {scene['format']} scenes")
            if DEGRADATIONS[t].needs_room and not has_room:
                raise SpaqError(f"degradation {t!r} needs rooms (set scene.room.probability to 1)")
    else:
        ok = {t: w for t, w in d["types"].items()
              if fkind in DEGRADATIONS[t].formats and (has_room or not DEGRADATIONS[t].needs_room) and w > 0}
        k = int(rng.integers(d["count"][0], d["count"][1] + 1))
        steps = []
        for _ in range(min(k, len(ok))):
            t = _choose(ok, rng)
            ok.pop(t)
            steps.append((t, float(rng.uniform(*d["severity"]))))
    fs = scene["sample_rate"]
    n_src = len(scene["sources"])
    directions = [(src["azimuth_deg"], src["elevation_deg"]) for src in scene["sources"]]
    choice_seeds = [int(rng.integers(2**62)) for _ in steps]
    sev_lists = [[s for _, s in steps]]
    if kind == "triplets":
        gap = float(rng.uniform(*d["triplet_gap"]))
        sev_lists = [[min(1.0, s) for _, s in steps], [min(1.0, s + gap) for _, s in steps]]
    chains = []
    for sevs in sev_lists:
        chain = []
        for (t, _), sv, cs in zip(steps, sevs, choice_seeds):
            p = degradation_params(t, sv, np.random.default_rng(cs), sample_rate=fs, fmt=fmt,
                                   options=(d["options"] or {}).get(t), n_sources=n_src, directions=directions)
            chain.append({"type": t, "stage": DEGRADATIONS[t].stage, "severity": sv, "params": p})
        chains.append(chain)
    return chains


def scene_mods(chain: list[dict]) -> dict:
    """Scene-stage modifications of a chain: rotation (3x3), misplacement, HRTF swap, reverb."""
    mods = {}
    for step in chain:
        if step["stage"] != "scene":
            continue
        DEGRADATIONS[step["type"]].scene_mod(mods, step["params"])
    return mods


def _move(az, el, angle_deg, bearing_deg):
    """Direction ``angle_deg`` away from (az, el) along great-circle bearing ``bearing_deg``."""
    v, north, east = tangent_frame(az, el)
    b = math.radians(bearing_deg)
    axis_dir = math.cos(b) * north + math.sin(b) * east
    a = math.radians(angle_deg)
    w = math.cos(a) * v + math.sin(a) * axis_dir
    az2, el2, _ = cart2sph(w)
    return float(az2), float(el2)


@functools.lru_cache(maxsize=8)
def _decoder(hrtf_key: str, fs: int, order: int, method: str):
    return binaural_decoder(load_hrtf(hrtf_key, fs), order, method)


def _source_signals(scene: dict, opts: dict) -> list[np.ndarray]:
    fs, dur = scene["sample_rate"], scene["duration_s"]
    sigs = []
    for src in scene["sources"]:
        x, meta = make_source(src["type"], dur, fs, np.random.default_rng(src["content_seed"]),
                              src["level_dbfs"], opts)
        src["content"] = meta
        sigs.append(x)
    return sigs


def render_scene(scene: dict, signals: list[np.ndarray], mods: dict | None = None) -> np.ndarray:
    """Render ``scene`` with mono source ``signals`` (each ``(T,)``) -> ``(C, T)``,
    applying scene-stage ``mods`` (see :func:`scene_mods`)."""
    mods = mods or {}
    fs = scene["sample_rate"]
    T = int(round(scene["duration_s"] * fs))
    fmt = parse_format(scene["format"])
    rot = mods.get("rotation")
    hrtf = None
    if fmt.is_binaural:
        hrtf = load_hrtf(scene["hrtf"], fs)
        if "hrtf_swap" in mods:
            sw = mods["hrtf_swap"]
            hrtf = blend_hrtf(hrtf, load_hrtf(sw["head"], fs), sw["weight"])
    via_ambi = fmt.is_binaural and scene["binaural_rendering"] in ("ls", "magls")
    if via_ambi:
        if "hrtf_swap" in mods:
            decoder = binaural_decoder(hrtf, scene["decoder_order"], scene["binaural_rendering"])
        else:
            decoder = _decoder(str(scene["hrtf"]), fs, scene["decoder_order"], scene["binaural_rendering"])
        order = scene["decoder_order"]
    elif fmt.is_ambisonics:
        order = fmt.order
    C = 2 if fmt.is_binaural and not via_ambi else (order + 1) ** 2
    out = np.zeros((C, T))
    kind = "binaural" if C == 2 else "ambisonics"
    for i, (src, sig) in enumerate(zip(scene["sources"], signals)):
        az, el = src["azimuth_deg"], src["elevation_deg"]
        mp = mods.get("misplacement")
        if mp is not None and mp["source"] == i:
            az, el = _move(az, el, mp["angle_deg"], mp["bearing_deg"])
        if scene["room"] is not None:
            room = scene["room"]
            spec = _place_from_listener(room, az, el, src["distance_m"], room["margin_m"])
            rv = mods.get("reverb")
            draw_s = None
            if rv is not None:
                # the changed room's tail: the unchanged room's noise under the new decay (tail
                # "shared"); chains recorded before the option drew a new tail ("redrawn")
                if rv.get("tail", "redrawn") == "shared":
                    draw_s = response_length_s(spec.rt60_s)
                # at most fully absorbing walls: a shorter RT60 than the room allows is its shortest
                rt = float(np.clip(room["rt60_s"] * rv["rt60_factor"], 0.1, 3.0))
                spec.rt60_s = max(rt, min_rt60_s(room["dims_m"]) * (1 + 1e-6))
            rir, _ = room_impulse_response(
                spec, fs, kind, order=order if kind == "ambisonics" else 1, hrtf=hrtf,
                rng=np.random.default_rng(room["seed"] + i), ism_order=room["ism_order"], rotation=rot,
                reverb_gain_db=-rv["drr_change_db"] if rv is not None else 0.0, tail_draw_length_s=draw_s)
            out += oaconvolve(sig[None, :], rir, axes=-1)[:, :T]
            continue
        if src["motion"] is not None:
            m = src["motion"]
            az, el = trajectory(az, el, T, fs, m["azimuth_speed_deg_s"], m["elevation_speed_deg_s"])
        if rot is not None:
            a2, e2, _ = cart2sph(sph2cart(az, el) @ rot.T)
            az, el = (a2, e2) if np.ndim(az) else (float(a2), float(e2))
        if kind == "binaural":
            out += render_binaural(sig, az, el, hrtf, scene["hrir_lookup"])
        else:
            out += encode(sig, az, el, order)
    dfz = scene.get("diffuse")
    if dfz is not None:
        r = np.random.default_rng(dfz["seed"])
        K = dfz["directions"]
        noise = np.stack([pink_noise(T, r) for _ in range(K)]) * 10 ** (dfz["level_dbfs"] / 20) / np.sqrt(K)
        daz, de = fibonacci_directions(K)
        if rot is not None:
            daz, de, _ = cart2sph(sph2cart(daz, de) @ rot.T)
        if kind == "binaural":
            h = hrtf.nearest(daz, de)  # (K, 2, taps)
            for e in range(2):
                out[e] += oaconvolve(noise, h[:, e, :], axes=-1)[:, :T].sum(axis=0)
        else:
            out += sh_matrix(order, daz, de) @ noise
    if via_ambi:
        out = decode_binaural(out, decoder)
    return out


def make_item(cfg: dict, seed: int, index: int) -> dict:
    """Generate item ``index`` of the corpus ``(cfg, seed)``: returns ``{"scene", "chains",
    "reference" (C, T) float32, "degraded": [(C, T) float32, ...], "extras"}``."""
    ss = np.random.SeedSequence([int(seed), int(index)])
    r_scene, r_chain = (np.random.default_rng(s) for s in ss.spawn(2))
    scene = sample_scene(cfg, r_scene)
    chains = sample_chains(cfg, scene, r_chain)
    opts = dict(cfg["scene"]["speech"])
    opts["files_folder"] = cfg["scene"]["files_folder"]
    signals = _source_signals(scene, opts)
    ref = render_scene(scene, signals)
    fmt = parse_format(scene["format"])
    degs = []
    for chain in chains:
        mods = scene_mods(chain)
        y = render_scene(scene, signals, mods) if mods else ref.copy()
        for step in chain:
            if step["stage"] == "signal":
                y, extra = apply_signal_degradation(y, step["params"], step["type"], scene["sample_rate"], fmt)
                if extra:
                    step["measured"] = extra
        degs.append(y.astype(np.float32))
    return {"scene": scene, "chains": chains, "reference": ref.astype(np.float32), "degraded": degs}
