"""First-order content scored from its ambisonic form against the listeners (issue 19).

The spatial-codings MUSHRA (``../shared/listening-tests/ambisonics-param-coding``) played each
trial's FOA condition as the authors rendered it: the third-order reference's first four channels
decoded with a first-order MagLS decoder. A user who holds the ambisonic files scores the same
stimulus as a third-order reference against first-order content (4 channels, or zero-padded to
16). This script scores the 7 rebuilt FOA items three ways and compares them with the mean
ratings (less the test's mean error, score - rating, over its 42 binaural items: the offset the
joint fit removes):

* ``binaural``: the binaural files the listeners heard (what the fit sees);
* ``ambisonic``: the ambisonic files through ``spaq.score`` (each signal decoded at its effective
  order, version 8);
* ``zero-padded``: the same ambisonic pair with every signal decoded by the third-order decoder
  (how version 7 decoded it), the same parameters.

    python benchmarks/rebuild_param_coding.py --ambisonics          # once
    python benchmarks/eval_quality_foa_ambisonic.py [--cache DIR] [--params JSON] [--md OUT]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main(argv=None):
    from rebuild_param_coding import default_cache

    import pandas as pd

    from spaq.metrics.functional.quality import pool_features, quality_maps
    from spaq.metrics.quality import Quality
    from spaq.spatial.decoders import hrtf_decoder
    from spaq.train.quality import (ORDER_CONDITION, _load_ambisonic_foa_pair, _load_binaural_pair, ambisonic_paths,
                                    param_coding_table)

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", default=str(default_cache()), help="the rebuilt items (default %(default)s)")
    ap.add_argument("--params", default=None, help="quality parameters JSON (default: the shipped ones)")
    ap.add_argument("--md", default=None, help="write the table as markdown here")
    a = ap.parse_args(argv)
    root = Path(a.cache)
    table = param_coding_table(root)
    params = None if a.params is None else json.loads(Path(a.params).read_text())
    m = Quality(params=params)

    # the test's offset: mean score - rating over its 42 binaural items
    table["binaural"] = [float(m.score(_load_binaural_pair(root / r["ref"], root / r["deg"])).score)
                         for _, r in table.iterrows()]
    offset = float(np.mean(table["binaural"] - table["mean"]))
    rows = []
    for _, r in table[table["condition"] == ORDER_CONDITION].iterrows():
        ref, deg = _load_ambisonic_foa_pair(*ambisonic_paths(root, r))
        x, y = torch.from_numpy(ref)[None], torch.from_numpy(deg)[None]
        with torch.no_grad():
            amb = float(m(x, y)["score"][0])
            f = pool_features(quality_maps(x, y, m.frontend, hrtf_decoder(3, m.sample_rate), m.chunk_frames))
            zp = float(m.model(f)["score"][0])
        rows.append({"trial": r["trial"], "rating": r["mean"], "binaural": r["binaural"], "ambisonic": amb,
                     "zero-padded": zp})
    d = pd.DataFrame(rows)
    lines = [f"Test offset (mean score - rating over its 42 binaural items): {offset:+.2f}", "",
             "| trial | rating | binaural (heard) | ambisonic, effective order | ambisonic, zero-padded order 3 |",
             "|---|---|---|---|---|"]
    for _, r in d.iterrows():
        lines.append(f"| {r['trial']} | {r['rating']:.1f} | {r['binaural']:.1f} | {r['ambisonic']:.1f} | "
                     f"{r['zero-padded']:.1f} |")
    cells = []
    for k in ("binaural", "ambisonic", "zero-padded"):
        e = d[k] - d["rating"] - offset
        cells.append(f"{e.mean():+.1f} / {np.sqrt(np.mean(e ** 2)):.1f}")
    lines.append("| mean error / RMSE after the offset | | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    print(text)
    if a.md:
        Path(a.md).write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
