"""The sqm protocol (``eval_sqm.py``) with a source-informed checkpoint that was trained *without*
the direct path fed the direct-path input anyway (:func:`spaq.models.sqm.direct_path`, 2.5 ms):
what the input change alone does, before any retraining (issue 17; ``benchmarks/results/sqm.md``,
"Twentieth session"). The replaced ``sqm_v1_source`` weights are in git history:

    git show 7bb49f1:src/spaq/resources/weights/sqm_v1_source.pt > /tmp/sqm_v1_source.pt
    PYTHONPATH=src python benchmarks/try_sqm_direct_path.py --checkpoint /tmp/sqm_v1_source.pt \
        --scenes /tmp/sqm_large.pt --seed 2028 --refs 24 --trials 160 --groups 20 --per-group 26 --clip 1.0 --json out.json

(``--scenes``: the pre-render of ``eval_sqm.py --prerender`` with the same sizes.) ``DP_MS`` sets
the cut (default 2.5 ms after the direct sound).
"""
from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import eval_sqm as E  # noqa: E402

from spaq.models.sqm import direct_path  # noqa: E402

DP_MS = float(os.environ.get("DP_MS", "2.5"))
_finish = E.Scenes._finish


def _finish_direct(self, ks, x, cue):
    if self.model is not None and self.model.cfg.direct_path_ms > 0:
        raise SystemExit("this checkpoint reads the direct path itself: use eval_sqm.py")
    x = torch.cat([direct_path(x[a:a + 32].double(), E.SR, DP_MS).float() for a in range(0, len(x), 32)])
    return _finish(self, ks, x, cue)


E.Scenes._finish = _finish_direct

if __name__ == "__main__":
    E.main(sys.argv[1:])
