"""``torch.utils.data`` dataset that generates corpus items on the fly (no disk).

Item ``i`` is :func:`spaq.data.scenes.make_item` of ``(config, seed, i)``: the same
signals ``spaq generate`` writes for that config and seed (bit-identical to
float32 files; pcm24 files are these samples quantised to 24 bits).
"""
from __future__ import annotations

import json
import os

import numpy as np
import torch
from torch.utils.data import Dataset

from .config import load_config, validate_config

__all__ = ["SpatialCorpusDataset"]


class SpatialCorpusDataset(Dataset):
    """On-the-fly synthetic spatial corpus.

    ``config``: a path to a YAML config or a config dict; ``n``/``seed`` override
    the config's ``corpus.n``/``corpus.seed``.

    Each item is a dict: ``reference`` ``(C, T)`` float32 tensor; for pairs and
    triplets ``degraded`` ``(C, T)`` and ``severity`` (scalar, max over the chain);
    for triplets also ``negative`` ``(C, T)`` and ``negative_severity``;
    ``azimuth_deg``/``elevation_deg`` of the first source (scalars); ``index``;
    ``format`` (str) and ``meta`` (JSON string of scene and chains). Items of a
    mixed-format config have different ``C``: use one format per dataset to batch.
    """

    def __init__(self, config, n: int | None = None, seed: int | None = None):
        if isinstance(config, (str, os.PathLike)):
            cfg = load_config(config)
        else:
            cfg = validate_config(config)
        if n is not None:
            cfg["corpus"]["n"] = int(n)
        if seed is not None:
            cfg["corpus"]["seed"] = int(seed)
        self.config = cfg
        self.n = int(cfg["corpus"]["n"])
        self.seed = int(cfg["corpus"]["seed"])

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict:
        from .scenes import make_item

        if not 0 <= int(index) < self.n:
            raise IndexError(index)
        item = make_item(self.config, self.seed, int(index))
        sc = item["scene"]
        out = {
            "index": int(index),
            "reference": torch.from_numpy(np.ascontiguousarray(item["reference"])),
            "format": sc["format"],
            "azimuth_deg": torch.tensor(sc["sources"][0]["azimuth_deg"], dtype=torch.float32),
            "elevation_deg": torch.tensor(sc["sources"][0]["elevation_deg"], dtype=torch.float32),
            "meta": json.dumps({"scene": sc, "chains": item["chains"]}, sort_keys=True, default=str),
        }
        chains = item["chains"]
        if item["degraded"]:
            out["degraded"] = torch.from_numpy(item["degraded"][0])
            out["severity"] = torch.tensor(max((s["severity"] for s in chains[0]), default=0.0), dtype=torch.float32)
        if len(item["degraded"]) > 1:
            out["negative"] = torch.from_numpy(item["degraded"][1])
            out["negative_severity"] = torch.tensor(max((s["severity"] for s in chains[1]), default=0.0),
                                                    dtype=torch.float32)
        return out
