"""spaq's qastanet vs the official implementation's scores on the shared test vectors.

The vectors are regenerated with ../shared/qastanet/make_vectors.py; their sample hashes
are compared with those recorded next to the official scores and any mismatch is reported
(numpy/scipy versions may change a few samples). Tolerance: 0.005 on every pair.
"""
import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import QASTANET_DIR

TOL = 0.005  # the tolerance, for the default (fast) mode
TOL_EXACT = 1e-4  # exact mode (float64, full rate); long pairs are chunked (10 s + 1 s context)


@pytest.fixture(scope="module")
def vectors(tmp_path_factory, qastanet_checkpoint):
    gen = QASTANET_DIR / "make_vectors.py"
    off = QASTANET_DIR / "official_scores.json"
    if not gen.is_file() or not off.is_file():
        pytest.skip("make_vectors.py / official_scores.json not found in ../shared/qastanet")
    out = tmp_path_factory.mktemp("qastanet_vectors")
    subprocess.run([sys.executable, str(gen), str(out), "--cost", "5", "10", "30"], check=True,
                   capture_output=True, text=True)
    man = json.loads((out / "manifest.json").read_text())
    official = json.loads(off.read_text())
    return out, man["pairs"] + man["cost_pairs"], official


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_seventeen_pairs_match_official(vectors, mode, qastanet_metric, qastanet_exact_metric):
    metric = qastanet_exact_metric if mode == "exact" else qastanet_metric
    assert metric.fast == (mode == "fast")
    out, pairs, official = vectors
    assert len(official["scores"]) == 17
    deltas, mismatched = {}, []
    for p in pairs:
        name = p["name"]
        if name not in official["scores"]:
            continue
        rec = official["vectors"][name]
        if (rec["sha256_ref_samples"], rec["sha256_deg_samples"]) != (p["sha256_ref_samples"], p["sha256_deg_samples"]):
            mismatched.append(name)
        r, fs = sf.read(out / p["ref"], dtype="float32")
        d, _ = sf.read(out / p["deg"], dtype="float32")
        assert fs == 48000
        ref = torch.from_numpy(np.ascontiguousarray(r.T))[None]
        deg = torch.from_numpy(np.ascontiguousarray(d.T))[None]
        with torch.no_grad():
            s = float(metric.forward(ref, deg)["score"][0])
        deltas[name] = abs(s - official["scores"][name])
    if mismatched:
        warnings.warn(f"sample hashes differ from the official run for {mismatched} "
                      f"(numpy/scipy versions); scores compared anyway")
    print(f"\nqastanet ({mode}) |spaq - official| per pair:", json.dumps({k: round(v, 7) for k, v in deltas.items()}))
    assert len(deltas) == 17
    worst = max(deltas, key=deltas.get)
    tol = TOL_EXACT if mode == "exact" else TOL
    assert deltas[worst] <= tol, f"{worst}: delta {deltas[worst]:.5f}"
    # identical pairs reproduce the official sum-over-frames quirk exactly
    assert abs(deltas["p01_3oa_identical"]) < 1e-5 and abs(deltas["p11_1oa_identical"]) < 1e-5
