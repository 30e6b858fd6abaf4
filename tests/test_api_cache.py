"""spaq.score keeps metric instances between calls (same arguments and SPAQ_* environment)."""
import numpy as np
import pytest

import spaq
from spaq import api


def _pair(seed=0, n=24000):
    rng = np.random.default_rng(seed)
    ref = rng.standard_normal((2, n)).astype(np.float32) * 0.1
    deg = ref + 0.02 * rng.standard_normal((2, n)).astype(np.float32)
    return ref, deg


def test_metric_instance_reused_and_scores_unchanged(monkeypatch):
    spaq.clear_metric_cache()
    ref, deg = _pair()
    a = spaq.score(ref, deg, sample_rate=48000, metrics=["cues"])
    assert len(api._METRICS) == 1
    inst = next(iter(api._METRICS.values()))
    b = spaq.score(ref, deg, sample_rate=48000, metrics=["cues"])
    assert next(iter(api._METRICS.values())) is inst
    assert b["cues"].score == a["cues"].score > 0
    # a different argument is a different instance
    spaq.score(ref, deg, sample_rate=48000, metrics=["cues"], fast=True)
    assert len(api._METRICS) == 2
    # so is a changed SPAQ_* environment (checkpoint overrides, offline switch)
    monkeypatch.setenv("SPAQ_OFFLINE", "1")
    spaq.score(ref, deg, sample_rate=48000, metrics=["cues"])
    assert len(api._METRICS) == 3 and list(api._METRICS.values())[-1] is not inst
    spaq.clear_metric_cache()
    assert not api._METRICS


def test_failed_load_is_not_cached(monkeypatch, tmp_path):
    spaq.clear_metric_cache()
    monkeypatch.setenv("SPAQ_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("SPAQ_OFFLINE", "1")
    monkeypatch.delenv("SPAQ_QASTANET_CHECKPOINT", raising=False)
    rng = np.random.default_rng(1)
    ref = rng.standard_normal((4, 24000)).astype(np.float32) * 0.1
    r = spaq.score(ref, ref, sample_rate=48000, metrics=["qastanet", "cues"])
    assert "qastanet" in r.skipped and "cues" in r.results
    assert all(k[0] != "qastanet" for k in api._METRICS)
    spaq.clear_metric_cache()


def test_cache_is_bounded(monkeypatch):
    spaq.clear_metric_cache()
    # distinct keys through the public path: vary the environment
    ref, deg = _pair(n=4800)
    for i in range(api._METRICS_MAX + 2):
        monkeypatch.setenv("SPAQ_TEST_CACHE_KEY", str(i))
        spaq.score(ref, deg, sample_rate=48000, metrics=["cues"])
    assert len(api._METRICS) == api._METRICS_MAX
    spaq.clear_metric_cache()
    with pytest.raises(spaq.SpaqError):
        spaq.score(ref, deg, sample_rate=48000, metrics=["nope"])
