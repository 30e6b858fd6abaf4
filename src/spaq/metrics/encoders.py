"""Audio encoders, behind one small interface: the embedding studies (``spaq study
embeddings``) and the reference-free ``predictor``'s optional embedding (:func:`signal_embedding`)
use them. They sit in the metrics layer (not in ``spaq.study``, where they began) so that a
metric may compute an embedding at inference; ``spaq.study.encoders`` re-exports this module.

An :class:`Encoder` has a ``name``, the ``sample_rate`` it takes and ``embed(x)``: mono
waveforms ``(B, T)`` (torch, at ``sample_rate``) -> frame embeddings ``(B, frames, dim)``.
A binaural encoder (``binaural = True``) takes ``(B, 2, T)`` (left, right) instead.

* ``bast``: spaq's own, the trunk of the packaged BAST localiser
  (:func:`spaq.localization.load_localizer`): the left-ear patch embedding and encoder on the
  log-mel of the signal fed to both ears, mean over the patches of each 48-frame analysis
  window (0.48 s at 32 kHz; level-normalised as the localiser does) -> ``(B, windows, 96)``.
* ``sqm``: spaq's spatial-similarity encoder (:mod:`spaq.models.sqm`, shipped ``sqm_v1``), a
  binaural encoder: the 16-d frame embeddings (40 ms frames) of the binaural signal (ambisonics
  and layouts through the classic metrics' shared binaural decode, mono fed to both ears)
  -> ``(B, frames, 16)``. It embeds where a sound is, not what it is.
* ``resemblyzer``: the speaker encoder (GE2E LSTM, 256-d) that the ``resemblyzer`` package ships
  in its wheel (``pretrained.pt``, 17 MB, Apache-2.0): 40-band mel frames of 10 ms at 16 kHz,
  windows of 1.6 s every 0.4 s -> ``(B, windows, 256)``; each view is scaled to -30 dBFS RMS
  first (the package's own volume normalisation, here without silence trimming so that
  reference and degraded windows stay aligned).
* ``cdpam``: the acoustic embedding (512-d, one per clip) of CDPAM's encoder, weights shipped
  in the ``cdpam`` wheel (106 MB, MIT), at 22.05 kHz on int16-scaled waveforms as CDPAM's
  ``load_audio`` gives them -> ``(B, 1, 512)``. Slow: about 2 s of CPU per second of audio.
* ``distillmos``: the quality embedding of Distill-MOS (variant 7, weights inside the
  ``distillmos`` wheel, MIT; :func:`spaq.metrics.functional.classic.distillmos_model`), a network
  distilled from an XLS-R (wav2vec 2.0) speech-quality model: the attention-pooled 200-d
  transformer state from which its MOS head (a linear layer and a sigmoid) reads the score, one
  per 7.68 s segment as the package segments (shorter input zero-padded, each segment scaled to
  its peak), 16 kHz -> ``(B, segments, 200)``.
* ``wav2vec2=PATH``, ``vggish=PATH``, ``openl3=PATH``: a model the user exported from those
  projects to a **local file**, TorchScript (``.pt``/``.ts``) or ONNX (``.onnx``), that takes
  waveforms ``(B, T)`` at the preset's rate (wav2vec2 and VGGish 16 kHz, OpenL3 48 kHz) and
  returns ``(B, frames, dim)`` (or ``(B, dim)``: one frame). spaq never downloads weights and
  does not re-implement VGGish's or OpenL3's spectrogram front-ends: export them inside the
  model. ``NAME@RATE=PATH`` loads any other such model under ``NAME`` at ``RATE`` Hz.
* ``hf=DIR`` (``hf@LAYER=DIR``): a wav2vec2-family model (Wav2Vec2, HuBERT, WavLM, ...) saved
  with ``transformers``' ``save_pretrained`` in the **local directory** ``DIR``, loaded with
  ``AutoModel.from_pretrained(DIR, local_files_only=True)`` (never a download; needs
  ``pip install 'spaq[wav2vec2]'``). Input as its feature extractor prepares it: at the
  ``sampling_rate`` of ``DIR/preprocessor_config.json`` (16 kHz when absent), zero-mean
  unit-variance per utterance when it says ``do_normalize`` (the default when absent) ->
  ``last_hidden_state`` ``(B, frames, hidden_size)`` (frames: the conv feature encoder's
  strides, 20 ms for the usual models); ``@LAYER`` takes ``hidden_states[LAYER]`` instead
  (0 = the projected CNN features, ``num_hidden_layers`` = the last).
"""
from __future__ import annotations

import os

import numpy as np
import torch

from ..errors import SpaqError, SpaqInputError

__all__ = ["Encoder", "BastEncoder", "SqmEncoder", "ResemblyzerEncoder", "CdpamEncoder", "DistillMosEncoder", "TorchScriptEncoder", "OnnxEncoder",
           "HFEncoder", "NAMED", "PRESETS", "load_encoder", "signal_embedding"]

#: preset name -> the sample rate its exported model takes
PRESETS = {"wav2vec2": 16000, "vggish": 16000, "openl3": 48000}


class Encoder:
    """``embed(x (B, T)) -> (B, frames, dim)``; ``__call__`` checks shapes around it."""

    name: str = ""
    sample_rate: int = 16000
    #: True: ``embed`` takes binaural ``(B, 2, T)`` instead of mono ``(B, T)``
    binaural: bool = False

    def embed(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    @torch.no_grad()
    def __call__(self, x) -> torch.Tensor:
        x = torch.as_tensor(x)
        if self.binaural and (x.dim() != 3 or x.shape[1] != 2):
            raise SpaqInputError(f"encoder {self.name}: expected binaural waveforms (batch, 2, time), "
                                 f"got {tuple(x.shape)}")
        if not self.binaural and x.dim() != 2:
            raise SpaqInputError(f"encoder {self.name}: expected mono waveforms (batch, time), got {tuple(x.shape)}")
        y = self.embed(x.to(torch.float32))
        y = torch.as_tensor(y)
        if y.dim() == 2:
            y = y[:, None]
        if y.dim() != 3 or y.shape[0] != x.shape[0]:
            raise SpaqError(f"encoder {self.name}: the model returned {tuple(y.shape)}, not (batch, frames, dim)")
        return y.to(torch.float64)


class BastEncoder(Encoder):
    name = "bast"

    def __init__(self, weights=None):
        from ..localization import load_localizer

        self.model, self.meta = load_localizer(weights)
        self.model.eval()
        self.sample_rate = int(self.model.cfg.sample_rate)

    def embed(self, x):
        cfg, m = self.model.cfg, self.model
        spec = m.features()(torch.stack([x, x], dim=1))  # diotic: (B, 2, M, N) or (B, 2, 3, M, N)
        nf = cfg.n_frames
        n_win = spec.shape[-1] // nf
        if n_win < 1:
            raise SpaqInputError(f"encoder bast: {x.shape[-1] / self.sample_rate:.3g} s is too short: it embeds "
                                 f"windows of {nf * cfg.hop / self.sample_rate:.2f} s")
        out = []
        for w in range(n_win):
            s = spec[..., w * nf:(w + 1) * nf]
            if cfg.features == "logmel":  # the localiser's level normalisation (BAST.forward)
                s = s - s.mean(dim=(1, 2, 3), keepdim=True)
            else:
                lm = s[:, :, 0]
                s = torch.cat([(lm - lm.mean(dim=(1, 2, 3), keepdim=True)).unsqueeze(2), s[:, :, 1:]], dim=2)
            out.append(m.enc_left(m.embed_left(s[:, 0])).mean(dim=1))
        return torch.stack(out, dim=1)


class SqmEncoder(Encoder):
    name = "sqm"
    binaural = True

    def __init__(self, weights=None):
        from ..models.sqm import load_pretrained

        self.model, _ = load_pretrained(weights)
        self.model.eval()
        self.sample_rate = int(self.model.cfg.sample_rate)

    def embed(self, x):
        if x.shape[-1] < self.model.cfg.frame_len:
            raise SpaqInputError(f"encoder sqm: {x.shape[-1] / self.sample_rate:.3g} s is too short: it embeds "
                                 f"frames of {self.model.cfg.frame_ms:.0f} ms")
        return self.model(x)["frames"]


def _require(name: str, module: str, dist: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise SpaqError(f"encoder {name} needs the {dist} package (weights inside its wheel, no download): "
                        f"pip install 'spaq[encoders]' ({str(e).splitlines()[0]})") from None


class ResemblyzerEncoder(Encoder):
    name = "resemblyzer"
    sample_rate = 16000
    window_s, hop_s, level_dbfs = 1.6, 0.4, -30.0

    def __init__(self):
        ve = _require(self.name, "resemblyzer.voice_encoder", "resemblyzer")
        self.audio = _require(self.name, "resemblyzer.audio", "resemblyzer")
        self.model = ve.VoiceEncoder("cpu", verbose=False).eval()

    def embed(self, x):
        a = x.detach().cpu().numpy().astype(np.float32)
        rms = np.sqrt(np.mean(a.astype(np.float64) ** 2, axis=-1, keepdims=True))
        a = a * (10 ** (self.level_dbfs / 20) / np.maximum(rms, 1e-9)).astype(np.float32)
        mels = np.stack([self.audio.wav_to_mel_spectrogram(v) for v in a])  # (B, frames, 40), 10 ms hop
        win, hop = int(round(self.window_s * 100)), int(round(self.hop_s * 100))
        if mels.shape[1] < win:
            raise SpaqInputError(f"encoder resemblyzer: {x.shape[-1] / self.sample_rate:.3g} s is too short: it "
                                 f"embeds windows of {self.window_s} s")
        starts = range(0, mels.shape[1] - win + 1, hop)
        m = torch.from_numpy(np.stack([mels[:, s:s + win] for s in starts], axis=1))  # (B, W, win, 40)
        B, W = m.shape[:2]
        return self.model(m.reshape(B * W, win, -1)).reshape(B, W, -1)


class CdpamEncoder(Encoder):
    name = "cdpam"
    sample_rate = 22050

    def __init__(self):
        cdpam = _require(self.name, "cdpam", "cdpam")
        models = _require(self.name, "cdpam.models", "cdpam")
        path = os.path.join(os.path.dirname(cdpam.__file__), "CDPAM_trained", "scratchJNDdefault_best_model.pth")
        if not os.path.isfile(path):
            raise SpaqError(f"encoder cdpam: the weights {path} are missing from the installed cdpam package")
        # the wheel's own file, an old pickle that weights_only loading rejects (cdpam.CDPAM fails the
        # same way on torch >= 2.6); it is trusted as much as the package's code that is imported
        state = torch.load(path, map_location="cpu", weights_only=False)["state"]
        model = models.FINnet(encoder_layers=16, encoder_filters=64, ndim=[16, 6], classif_dp=0.05, classif_BN=0,
                              classif_act="no", input_size=512)  # the settings of cdpam.CDPAM
        model.load_state_dict(state)
        self.model = model.base_encoder.eval()

    def embed(self, x):
        _, acoustic, _ = self.model(x[:, None] * 32768.0)
        return acoustic[:, None]


class DistillMosEncoder(Encoder):
    name = "distillmos"
    sample_rate = 16000

    def __init__(self):
        from .functional.classic import distillmos_model

        try:
            self.model = distillmos_model(self.name)
        except Exception as e:  # MetricUnavailable: the package is missing
            raise SpaqError(f"encoder distillmos: {e}") from None
        import sys

        mod = sys.modules[type(self.model).__module__]
        self.seq_len, self.max_hop = int(mod.SEQ_LEN), int(mod.MAX_HOP_LEN)

    def segments(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` -> ``(B, S, seq_len)``: the package's own segmenting (zero-padding shorter
        input; overlapping segments spread evenly over longer input) and peak scaling."""
        over = x.shape[-1] - self.seq_len
        if over < 0:
            x = torch.nn.functional.pad(x, (0, -over))
            over = 0
        n = int(np.ceil(over / self.max_hop)) + 1
        segs = torch.stack([x[:, int(c * over):int(c * over) + self.seq_len] for c in np.linspace(0, 1, n)], dim=1)
        return segs / (segs.abs().amax(dim=-1, keepdim=True) + 1e-8)

    def pooled(self, segs: torch.Tensor) -> torch.Tensor:
        """``(N, seq_len)`` peak-scaled segments -> ``(N, 200)``: the attention-pooled transformer
        state (``ConvTransformerSQAModel.forward`` up to its score head)."""
        t = self.model.transformer_pool_attn
        h = self.model.cnn(segs).permute(0, 2, 1)
        h = t.norm_input(h.transpose(-1, -2)).transpose(-1, -2)
        h = t.transformer(h)
        h = t.norm_trans(h.transpose(-1, -2)).transpose(-1, -2)
        att = torch.softmax(t.pool.linear2(t.pool.activation(t.pool.linear1(h))).transpose(2, 1), dim=2)
        return torch.bmm(att, h).squeeze(1)

    def embed(self, x):
        segs = self.segments(x)
        B, S = segs.shape[:2]
        return self.pooled(segs.reshape(B * S, -1)).reshape(B, S, -1)


class TorchScriptEncoder(Encoder):
    def __init__(self, path: str, sample_rate: int, name: str):
        try:
            self.model = torch.jit.load(path, map_location="cpu").eval()
        except Exception as e:
            raise SpaqError(f"encoder {name}: cannot load TorchScript model {path}: {str(e).splitlines()[0]}") from None
        self.name, self.sample_rate, self.path = name, int(sample_rate), path

    def embed(self, x):
        return self.model(x)


class OnnxEncoder(Encoder):
    def __init__(self, path: str, sample_rate: int, name: str):
        try:
            import onnxruntime as ort
        except ImportError:
            raise SpaqError(f"encoder {name}: an .onnx model needs onnxruntime: pip install onnxruntime") from None
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise SpaqError(f"encoder {name}: cannot load ONNX model {path}: {str(e).splitlines()[0]}") from None
        self.input = self.session.get_inputs()[0].name
        self.name, self.sample_rate, self.path = name, int(sample_rate), path

    def embed(self, x):
        y = self.session.run(None, {self.input: x.detach().cpu().numpy().astype(np.float32)})[0]
        return torch.from_numpy(np.asarray(y))


class HFEncoder(Encoder):
    """A ``transformers`` wav2vec2-family model from a local ``save_pretrained`` directory (module
    docstring: ``hf=DIR``). ``layer``: None for ``last_hidden_state``, else ``hidden_states[layer]``."""

    def __init__(self, path: str, layer: int | None = None, name: str = "hf"):
        import json

        path = os.path.expanduser(str(path))
        self.name, self.path, self.layer = name, path, layer
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise SpaqError(f"encoder {name}: {path} is not a transformers model directory (no config.json; "
                            "spaq loads local save_pretrained directories only)")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never the network, whatever else the user set
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import transformers
        except ImportError as e:
            raise SpaqError(f"encoder {name} needs the transformers package: pip install 'spaq[wav2vec2]' "
                            f"({str(e).splitlines()[0]})") from None
        pre = {}
        pp = os.path.join(path, "preprocessor_config.json")
        if os.path.isfile(pp):
            try:
                with open(pp, encoding="utf-8") as f:
                    pre = json.load(f)
            except (OSError, ValueError) as e:
                raise SpaqError(f"encoder {name}: cannot read {pp}: {str(e).splitlines()[0]}") from None
        self.sample_rate = int(pre.get("sampling_rate", 16000))
        self.normalize = bool(pre.get("do_normalize", True))
        tl = transformers.utils.logging
        bar = tl.is_progress_bar_enabled()
        tl.disable_progress_bar()  # no "Loading weights" bar on stderr (restored below)
        try:
            self.model = transformers.AutoModel.from_pretrained(path, local_files_only=True).eval()
        except Exception as e:
            raise SpaqError(f"encoder {name}: cannot load the transformers model in {path}: "
                            f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from None
        finally:
            if bar:
                tl.enable_progress_bar()
        n_layers = int(getattr(self.model.config, "num_hidden_layers", 0))
        if layer is not None and not 0 <= layer <= n_layers:
            raise SpaqError(f"encoder {name}: layer {layer} out of range 0..{n_layers}")
        self.model.float()

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` -> the model's input: zero-mean unit-variance per utterance when the
        preprocessor config says ``do_normalize`` (``Wav2Vec2FeatureExtractor``'s formula,
        variance + 1e-7), float32."""
        x = x.to(torch.float32)
        if self.normalize:
            x64 = x.to(torch.float64)
            m = x64.mean(dim=-1, keepdim=True)
            v = x64.var(dim=-1, unbiased=False, keepdim=True)
            x = ((x64 - m) / torch.sqrt(v + 1e-7)).to(torch.float32)
        return x

    def embed(self, x):
        out = self.model(self.prepare(x), output_hidden_states=self.layer is not None)
        return out.last_hidden_state if self.layer is None else out.hidden_states[self.layer]


#: encoders known by name (no file argument): name -> class; a new one (e.g. ``sqm``'s encoder)
#: is an :class:`Encoder` subclass with ``name``, ``sample_rate`` and ``embed``, added here
NAMED = {"bast": BastEncoder, "sqm": SqmEncoder, "resemblyzer": ResemblyzerEncoder, "cdpam": CdpamEncoder,
         "distillmos": DistillMosEncoder}


def load_encoder(spec: str) -> Encoder:
    """A name of :data:`NAMED` (``bast``, ``sqm``, ``resemblyzer``, ``cdpam``, ``distillmos``), ``"PRESET=PATH"``
    (``wav2vec2``, ``vggish``, ``openl3``), ``"NAME@RATE=PATH"`` or ``"hf=DIR"`` /
    ``"hf@LAYER=DIR"`` (a local transformers model directory) -> an :class:`Encoder`
    (local files or weights inside installed packages only)."""
    spec = str(spec).strip()
    if spec in NAMED:
        return NAMED[spec]()
    name, sep, path = spec.partition("=")
    if not sep or not path:
        raise SpaqError(f"encoder {spec!r}: use {', '.join(NAMED)}, PRESET=PATH ({', '.join(PRESETS)}), "
                        "NAME@RATE=PATH or hf[@LAYER]=DIR")
    name, _, rate = name.partition("@")
    if name == "hf":  # for hf the @ part is the layer: the rate is the saved preprocessor's
        try:
            layer = int(rate) if rate else None
        except ValueError:
            raise SpaqError(f"encoder {spec!r}: hf@LAYER=DIR takes an integer layer") from None
        return HFEncoder(path, layer, name=name)
    if rate:
        try:
            sr = int(rate)
        except ValueError:
            raise SpaqError(f"encoder {spec!r}: the rate must be an integer in Hz") from None
    elif name in PRESETS:
        sr = PRESETS[name]
    else:
        raise SpaqError(f"encoder {name!r}: unknown preset ({', '.join(PRESETS)}); give NAME@RATE=PATH")
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        raise SpaqError(f"encoder {name}: model file {path} not found (spaq loads local files only)")
    if path.lower().endswith(".onnx"):
        return OnnxEncoder(path, sr, name)
    return TorchScriptEncoder(path, sr, name)


def signal_embedding(encoder: Encoder, x, sample_rate: int, kind: str) -> torch.Tensor:
    """The mean-over-frames embedding of each signal: ``x (B, C, T)`` at ``sample_rate`` (torch or
    numpy) of ``kind`` (``binaural``, ``foa``, ``hoa``, ``mono``; see
    :func:`spaq.metrics.functional.predictor.signal_kind`) -> ``(B, dim)`` float64.

    The encoder's input: a mono encoder gets the ears' mean (binaural) or the channel W
    (ambisonics) or the channel (mono) (:func:`~spaq.metrics.functional.predictor.mono_mix`); a
    binaural one gets both ears (binaural), mono fed to both ears, or ambisonics through the
    classic metrics' shared binaural decode (:func:`~spaq.metrics.functional.classic.channels_for`).
    Then :func:`spaq.io.resample` to ``encoder.sample_rate``."""
    from ..io import resample
    from .functional.predictor import mono_mix

    x = torch.as_tensor(np.asarray(x, dtype=np.float64) if not isinstance(x, torch.Tensor) else x).to(torch.float64)
    if x.dim() != 3:
        raise SpaqInputError(f"encoder {encoder.name}: expected (batch, channels, time), got {tuple(x.shape)}")
    if not encoder.binaural:
        v = mono_mix(x, "binaural" if kind == "binaural" else "mono")  # W is channel 0 of ACN
    elif kind == "binaural":
        v = x
    elif kind == "mono":
        v = torch.cat([x[:, :1], x[:, :1]], dim=1)
    else:
        from .functional.classic import channels_for

        views = channels_for(x, None, int(sample_rate))
        v = torch.stack([views["left"], views["right"]], dim=1)
    v = v.numpy()
    if int(sample_rate) != int(encoder.sample_rate):
        v = resample(v, int(sample_rate), int(encoder.sample_rate))
    return encoder(torch.from_numpy(np.ascontiguousarray(v))).mean(dim=1)
