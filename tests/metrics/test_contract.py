"""Every registered metric honours the contract (``spaq.metrics.base``): the shared tester.

A new metric gets these checks by registering (built-in or through the ``spaq.metrics``
entry-point group): functional core == class; batched == loop; streamed == whole (streamable
metrics); float32 == float64 within rounding; deterministic; gradients == central finite
differences (differentiable metrics); an identical pair scores the best value; a wrong
shape gives a one-line error. Tolerances (see each check) come from the arithmetic.
"""
from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf
import torch

import spaq
from spaq.errors import SpaqError
from spaq.metrics import BUILTIN, ENTRY_POINT_GROUP, metric_class, registered
from spaq.metrics.base import CONTRACT_ATTRIBUTES, Metric

from conftest import QASTANET_CKPT
from tester import close, test_input as make_input

NAMES = sorted(BUILTIN)


def _kwargs(cls, exact: bool = False) -> dict:
    params = inspect.signature(cls.__init__).parameters
    kw = {}
    if cls.needs_weights:
        if cls.name == "qastanet":
            if not QASTANET_CKPT.is_file():
                pytest.skip(f"official QASTAnet checkpoint not found at {QASTANET_CKPT} (../shared is absent)")
            kw["checkpoint"] = str(QASTANET_CKPT)
        else:
            pytest.skip(f"{cls.name} needs weights this test does not know how to find")
    if exact and "fast" in params:
        kw["fast"] = False
    return kw


@pytest.fixture(scope="module", params=NAMES)
def metric(request):
    cls = metric_class(request.param)
    return cls(**_kwargs(cls))


def test_contract_attributes_declared():
    for n in registered():
        cls = metric_class(n)
        assert cls.name == n
        for a in CONTRACT_ATTRIBUTES:
            assert hasattr(cls, a), (n, a)
        assert isinstance(cls.sample_rate, int) and cls.sample_rate >= 8000
        assert cls.formats and set(cls.formats) <= {"binaural", "ambisonics", "mono", "layout"}
        assert isinstance(cls.higher_is_better, bool) and isinstance(cls.differentiable, bool)
        assert cls.description and cls.unit and cls.reading
        json.dumps(cls.contract())
    # the base class knows no concrete metric
    src = inspect.getsource(sys.modules["spaq.metrics.base"])
    assert not any(f"from .{n}" in src or f"metrics.{n}" in src for n in NAMES)


def test_result_built_from_class_attributes(metric):
    r, d = make_input(type(metric), batch=1)
    rep = spaq.score(r[0], d[0], sample_rate=metric.sample_rate, metrics=[metric.name],
                     checkpoint=getattr(getattr(metric, "weights", None), "path", None), strict=True)
    res = rep.results[metric.name]
    assert res.unit == metric.unit and res.higher_is_better == metric.higher_is_better
    assert res.version == metric.version
    assert tuple(res.score_range or ()) == tuple(metric.score_range or ())
    assert res.provenance["sample_rate"] == metric.sample_rate


@pytest.mark.parametrize("name", NAMES)
def test_functional_equals_class_and_batched_equals_loop(name):
    """``forward`` on tensors (the functional core) gives the class's pair score, and the
    batched call each item's own score, within 1e-5 relative. Exact mode where the metric has
    one (fast mode decides per batch which bands need full rate, so a batched item may take
    the full-rate path: fast vs exact differ by up to 1.5e-3, tested elsewhere); what remains
    is float32 (QASTAnet's network and float32 audio, eps 6e-8) reduced in another order for
    another batch size or thread count: ~25 frames x 29 bands summed, ~4e-6 worst case."""
    from spaq.io import load_pair

    cls = metric_class(name)
    metric = cls(**_kwargs(cls, exact=True))
    r, d = make_input(cls, batch=2)
    pair = load_pair(r, d, sample_rate=metric.sample_rate)
    whole = metric.score(pair).score
    with torch.no_grad():
        fwd = metric.forward(torch.from_numpy(r), torch.from_numpy(d))["score"].numpy()
    assert fwd.shape == (2,)
    assert close(whole, fwd, 1e-5), (whole, fwd)
    for i in range(2):
        one = metric.score(load_pair(r[i], d[i], sample_rate=metric.sample_rate)).score
        assert isinstance(one, float)
        assert close(one, whole[i], 1e-5), (i, one, whole[i])
    assert whole[0] != whole[1]  # the items differ: a constant would not pass


def test_deterministic(metric):
    r, d = make_input(type(metric), batch=1)
    with torch.no_grad():
        a = metric.forward(torch.from_numpy(r), torch.from_numpy(d))["score"].numpy()
        b = metric.forward(torch.from_numpy(r), torch.from_numpy(d))["score"].numpy()
    if getattr(metric, "bitwise_deterministic", True):
        assert np.array_equal(a, b, equal_nan=True)
    else:  # the metric declares that its library is not (pystoi's matmul depends on memory alignment)
        assert close(a, b, 1e-12), (a, b)


def test_float32_equals_float64(metric):
    """float32 input (samples rounded to 24 bits, 6e-8 relative) scores as float64 within 1e-3
    relative: every metric computes in float64 or float32 with float32 spectra (~1e-6 relative
    over a 1 s FFT); thresholded bins may flip, which the mean over thousands of bins dilutes."""
    r, d = make_input(type(metric), batch=1)
    with torch.no_grad():
        s64 = metric.forward(torch.from_numpy(r), torch.from_numpy(d))["score"].numpy()
        s32 = metric.forward(torch.from_numpy(r).float(), torch.from_numpy(d).float())["score"].numpy()
    assert close(s32, s64, 1e-3), (s32, s64)


def test_identical_pair_scores_best(metric):
    cls = type(metric)
    best = cls.best()
    if best is None:
        pytest.skip(f"{cls.name} declares no best value (an identical pair's score depends on the input)")
    r, _ = make_input(cls, batch=1)
    with torch.no_grad():
        s = metric.forward(torch.from_numpy(r), torch.from_numpy(r.copy()))["score"].numpy()
    assert np.all(np.abs(s - best) <= 1e-6 * max(1.0, abs(best))), (s, best)


def test_wrong_shape_is_one_line_error(metric):
    r, d = make_input(type(metric), batch=1)
    for bad in (torch.from_numpy(r[0]), torch.from_numpy(r[..., :-1])):
        with pytest.raises(SpaqError) as e:
            metric.forward(bad, torch.from_numpy(d))
        assert "\n" not in str(e.value) and metric.name in str(e.value)


def test_bad_samples_and_transposed_input_are_one_line_errors(metric):
    """Every metric refuses NaN / Inf samples (a NaN-skipping mean read an all-NaN degraded signal as 99 with
    ``quality``) and a (B, T, C) tensor (more channels than samples), in one line naming the metric."""
    r, d = make_input(type(metric), batch=1)
    R, D = torch.from_numpy(r), torch.from_numpy(d)
    for bad_value in (float("nan"), float("inf")):
        bad = D.clone()
        bad[0, 0, 100] = bad_value
        for args in ((R, bad), (bad, D) if metric.needs_reference else (None, bad)):
            with pytest.raises(SpaqError) as e:
                metric(*args)
            msg = str(e.value)
            assert "\n" not in msg and metric.name in msg and "NaN or Inf" in msg and "(1 non-finite" in msg
    with pytest.raises(SpaqError) as e:
        metric(R.transpose(-1, -2) if metric.needs_reference else None, D.transpose(-1, -2))
    assert "is it transposed" in str(e.value) and "\n" not in str(e.value)


def test_calling_a_metric_scales_integer_pcm_and_takes_arrays(metric):
    """Calling a metric object reads integer PCM as every entry point does (int16: x / 2^15), so int16 samples
    score as their float values; numpy arrays score as tensors; forward() itself refuses integer tensors."""
    r, d = make_input(type(metric), batch=1)
    r16, d16 = (np.clip(np.round(x * 32768), -32768, 32767).astype(np.int16) for x in (r, d))
    rf, df = (torch.from_numpy(x.astype(np.float64) / 32768) for x in (r16, d16))
    with torch.no_grad():
        want = metric(rf if metric.needs_reference else None, df)["score"].numpy()
        got = metric(torch.from_numpy(r16) if metric.needs_reference else None, torch.from_numpy(d16))["score"].numpy()
        arr = metric(rf.numpy() if metric.needs_reference else None, df.numpy())["score"].numpy()
    assert close(got, want, 1e-12), (got, want)  # the same float64 samples
    assert close(arr, want, 1e-12), (arr, want)
    with pytest.raises(SpaqError) as e:
        metric.forward(torch.from_numpy(r16) if metric.needs_reference else None, torch.from_numpy(d16))
    assert "torch.int16" in str(e.value)


def test_streamed_equals_whole(metric, tmp_path):
    cls = type(metric)
    if not cls.streamable:
        pytest.skip(f"{cls.name} does not stream")
    r, d = make_input(cls, batch=1, seconds=2.0)
    pr, pd = tmp_path / "r.wav", tmp_path / "d.wav"
    sf.write(pr, r[0].T.astype(np.float32), cls.sample_rate, subtype="FLOAT")
    sf.write(pd, d[0].T.astype(np.float32), cls.sample_rate, subtype="FLOAT")
    ck = getattr(getattr(metric, "weights", None), "path", None)
    a = spaq.score(str(pr), str(pd), metrics=[cls.name], stream=True, checkpoint=ck, strict=True)
    b = spaq.score(str(pr), str(pd), metrics=[cls.name], stream=False, checkpoint=ck, strict=True)
    assert a.streamed and not b.streamed
    # same samples, same chunk plan at 2 s (one chunk): equal to float rounding
    assert close(a.results[cls.name].score, b.results[cls.name].score, 1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_gradient_matches_finite_differences(name):
    cls = metric_class(name)
    if not cls.differentiable:
        pytest.skip(f"{name} is not differentiable")
    m = cls(**_kwargs(cls, exact=True)).double()  # float64 throughout: rounding far below the step
    r, d = make_input(cls, batch=1, seconds=0.5)
    ref = torch.from_numpy(r)
    deg = torch.from_numpy(d).requires_grad_(True)
    # a differentiable summary: the score when smooth, else the first smooth value returned
    out = m.forward(ref, deg)
    key = "score" if out["score"].requires_grad else next(k for k, v in out.items() if v.requires_grad)
    out[key].sum().backward()
    g = deg.grad.clone()
    rng = np.random.default_rng(7)
    v = torch.from_numpy(rng.standard_normal(d.shape)) * 1e-4 * float(np.std(d))
    eps = 1.0
    with torch.no_grad():
        fp = m.forward(ref, torch.from_numpy(d) + eps * v)[key].sum()
        fm = m.forward(ref, torch.from_numpy(d) - eps * v)[key].sum()
    fd = float(fp - fm) / (2 * eps)
    an = float(torch.sum(g * v))
    # central differences have O(eps^2 |f'''|) error; the step is 1e-4 of the signal per sample, in
    # float64; 5 % covers the kinks of clamps/abs the maps have (documented in test_quality's FD test)
    assert abs(an) > 0 and abs(fd - an) <= 0.05 * abs(an) + 1e-12, (key, fd, an)


def test_plugin_metric_through_entry_point(tmp_path):
    """A third-party package adds a metric through the ``spaq.metrics`` entry-point group:
    a tiny distribution on sys.path with an entry_points.txt, seen by a fresh interpreter."""
    pkg = tmp_path / "site"
    (pkg / "spaqplug").mkdir(parents=True)
    (pkg / "spaqplug" / "__init__.py").write_text(textwrap.dedent('''
        import torch
        from spaq.metrics.base import Metric

        class RmsDiff(Metric):
            name = "rmsdiff"
            version = "0.1"
            description = "rms of the difference"
            unit = "linear"
            reading = "lower is better"
            higher_is_better = False
            score_range = (0.0, None)
            formats = ("binaural", "ambisonics")
            differentiable = True

            def forward(self, ref, deg):
                self.check_tensors(ref, deg)
                return {"score": torch.sqrt(torch.mean((ref - deg) ** 2, dim=(-2, -1)))}
    '''))
    dist = pkg / "spaqplug-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: spaqplug\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nrmsdiff = spaqplug:RmsDiff\n")
    code = textwrap.dedent('''
        import json, numpy as np, spaq
        from spaq.metrics import registered
        x = np.random.default_rng(0).standard_normal((2, 4800)) * 0.1
        rep = spaq.score(x, x * 0.5, sample_rate=48000, metrics=["rmsdiff"])
        print(json.dumps({"names": registered(), "score": rep.results["rmsdiff"].score,
                          "expected": float(np.sqrt(np.mean((x * 0.5) ** 2)))}))
    ''')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(pkg)] + sys.path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert "rmsdiff" in got["names"] and "quality" in got["names"]
    assert abs(got["score"] - got["expected"]) < 1e-6


def test_register_checks_contract():
    class NotAMetric:
        name = "x"

    from spaq.metrics import register

    with pytest.raises(SpaqError):
        register(NotAMetric)
    assert issubclass(metric_class("quality"), Metric)
    with pytest.raises(SpaqError, match="unknown metric"):
        metric_class("no-such-metric")


def test_produces_maps_is_what_scoring_with_maps_gives(metric):
    """``produces_maps`` is part of the contract (``spaq score --maps`` refuses, before any work, metrics that give
    none): scoring with ``maps=True`` gives per-band / per-frame arrays exactly when it says so."""
    cls = type(metric)
    assert isinstance(cls.produces_maps, bool) and cls.contract()["produces_maps"] is cls.produces_maps
    r, d = make_input(cls, batch=1)
    rep = spaq.score(r[0], d[0], sample_rate=metric.sample_rate, metrics=[metric.name], maps=True,
                     checkpoint=getattr(getattr(metric, "weights", None), "path", None), strict=True)
    maps = rep.results[metric.name].maps
    assert bool(maps) is cls.produces_maps, (cls.name, sorted(maps))
    for k, v in maps.items():
        assert np.asarray(v).ndim >= 2, (cls.name, k, np.shape(v))
