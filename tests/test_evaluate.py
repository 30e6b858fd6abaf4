"""spaq.evaluate and `spaq evaluate`: statistics against scipy and hand-computed values,
P.1401 mapping monotonicity, bootstrap behaviour, table handling and the CLI."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kendalltau, pearsonr, spearmanr, t

from spaq.cli import main
from spaq.errors import SpaqError
from spaq.evaluate import (bootstrap, compare_correlations, correlations, evaluate, evaluate_table,
                           p1401_mapping, prediction_errors)


def _data(n=60, seed=0, noise=5.0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, n)
    y = 100 / (1 + np.exp(-8 * (x - 0.5))) + rng.normal(0, noise, n)
    return x, y


def test_correlations_match_scipy_with_ties():
    rng = np.random.default_rng(1)
    x = np.round(rng.normal(size=40), 1)  # ties
    y = x + rng.normal(size=40)
    c = correlations(x, y)
    assert c["pearson"] == pytest.approx(pearsonr(x, y)[0], abs=1e-12)
    assert c["spearman"] == pytest.approx(spearmanr(x, y)[0], abs=1e-12)
    assert c["kendall"] == pytest.approx(kendalltau(x, y)[0], abs=1e-12)
    assert math.isnan(correlations(np.ones(5), np.arange(5.0))["pearson"])


def test_mapping_recovers_a_monotone_cubic_exactly():
    x = np.linspace(-2, 3, 30)
    y = 5 + 2 * x + 0.1 * x ** 3
    m = p1401_mapping(x, y)
    assert m.n_params == 4 and m.direction == 1
    np.testing.assert_allclose(m(x), y, atol=1e-9)


def test_mapping_is_monotone_where_the_free_cubic_is_not():
    x, y = _data()  # a sigmoid: the unconstrained cubic bends back at the ends
    z = (x - x.mean()) / x.std()
    free = np.polynomial.polynomial.polyfit(z, y, 3)
    g = np.linspace(z.min(), z.max(), 2000)
    assert np.diff(np.polynomial.polynomial.polyval(g, free)).min() < 0  # the case this test is about
    m = p1401_mapping(x, y)
    gx = np.linspace(x.min(), x.max(), 2000)
    assert np.diff(m(gx)).min() > -1e-6
    sse = lambda p: float(np.sum((y - p) ** 2))  # noqa: E731
    lin = np.polyval(np.polyfit(x, y, 1), x)
    assert sse(np.polynomial.polynomial.polyval(z, free)) <= sse(m(x)) + 1e-6 <= sse(lin) + 1e-6


def test_decreasing_metric_gets_a_decreasing_mapping_and_the_same_errors():
    x, y = _data(seed=3)
    up = evaluate(x, y, n_boot=0)
    down = evaluate(-x, y, n_boot=0)
    assert down.mapping["direction"] == -1 and up.mapping["direction"] == 1
    assert down.pearson == pytest.approx(-up.pearson, abs=1e-12)
    assert down.rmse == pytest.approx(up.rmse, rel=1e-4)
    m = p1401_mapping(-x, y)
    assert np.diff(m(np.linspace(-x.max(), -x.min(), 500))).max() < 1e-6  # over the data range


def test_prediction_errors_by_hand():
    y = np.arange(1.0, 7.0)
    e = np.array([1, -1, 1, -1, 1, -1], dtype=float)
    mapped = y - e
    assert prediction_errors(mapped, y, 4)["rmse"] == pytest.approx(math.sqrt(6 / 2))
    assert prediction_errors(mapped, y, 2)["rmse"] == pytest.approx(math.sqrt(6 / 4))
    std = np.array([0.5, 0.5, 4.0, 4.0, 4.0, 4.0])
    votes = np.full(6, 10.0)
    c = t.ppf(0.975, 9) * std / math.sqrt(10)  # 0.358 for the first two, 2.86 for the rest
    r = prediction_errors(mapped, y, 4, std, votes)
    star = np.maximum(1 - c, 0)
    assert star[2:].max() == 0 and star[0] > 0
    assert r["rmse_star"] == pytest.approx(math.sqrt(np.sum(star ** 2) / 2))
    assert r["outlier_ratio"] == pytest.approx(2 / 6)  # |e| = 1 > 2 * 0.5 / sqrt(10) only for the first two
    with pytest.raises(SpaqError):
        prediction_errors(mapped[:4], y[:4], 4)


def test_fisher_z_by_hand():
    r = compare_correlations(0.9, 0.8, 50)
    z = (math.atanh(0.9) - math.atanh(0.8)) / math.sqrt(2 / 47)
    assert r["z"] == pytest.approx(z) and r["z"] == pytest.approx(1.811, abs=1e-3)
    assert r["p"] == pytest.approx(0.0701, abs=1e-3)


def test_bootstrap_contains_estimate_is_seeded_and_narrows_with_n():
    x, y = _data(n=40, seed=5, noise=15)
    a = bootstrap(x, y, n_boot=400, seed=7)
    assert a == bootstrap(x, y, n_boot=400, seed=7)
    r = correlations(x, y)["pearson"]
    assert a["pearson"][0] < r < a["pearson"][1]
    x4, y4 = _data(n=640, seed=5, noise=15)
    b = bootstrap(x4, y4, n_boot=400, seed=7)
    wa = a["pearson"][1] - a["pearson"][0]
    wb = b["pearson"][1] - b["pearson"][0]
    assert 0.15 < wb / wa < 0.45  # ~1/4 for 16x the items


def test_clustered_bootstrap_is_wider_for_duplicated_items():
    x, y = _data(n=12, seed=2, noise=15)
    xs, ys = np.repeat(x, 5), np.repeat(y, 5)  # every item five times: only 12 independent points
    labels = np.repeat(np.arange(12), 5)
    free = bootstrap(xs, ys, n_boot=400, seed=1)
    clus = bootstrap(xs, ys, n_boot=400, seed=1, clusters=labels)
    w = lambda c: c["pearson"][1] - c["pearson"][0]  # noqa: E731
    assert w(clus) > 1.6 * w(free)


def _mushra_like(seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(6):
        for c, q in [("A", 80), ("B", 60), ("C", 35), ("Reference", 100)]:
            ratings = np.clip(q + rng.normal(0, 10, 8), 0, 100).round().tolist()
            rows.append({"id": f"{s}-{c}", "stimulus": f"s{s}", "condition": c, "ratings": json.dumps(ratings),
                         "good": q / 10 + rng.normal(0, 0.5), "bad": rng.normal(), "status": "ok"})
    return pd.DataFrame(rows)


def test_evaluate_table_ratings_exclusion_status_and_aggregation():
    df = _mushra_like()
    df.loc[0, "status"] = "error"  # as written by spaq batch for a pair it could not score
    r = evaluate_table(df, ratings="ratings", exclude={"condition": ["Reference"]}, n_boot=0)
    assert r["n_items"] == 17 and r["n_excluded"] == 7
    assert set(r["metrics"]) == {"good", "bad"}  # id/stimulus/condition are not metrics
    kept = df[(df.status == "ok") & (df.condition != "Reference")]
    mos = np.array([np.mean(json.loads(v)) for v in kept.ratings])
    assert r["metrics"]["good"]["pearson"] == pytest.approx(pearsonr(kept.good, mos)[0], abs=1e-12)
    assert r["metrics"]["good"]["rmse_star"] is not None
    assert r["metrics"]["good"]["pearson"] > 0.9 > abs(r["metrics"]["bad"]["pearson"])
    assert r["comparisons"][0]["best"] == "good" and r["comparisons"][0]["significant"]
    agg = evaluate_table(df, ratings="ratings", metrics=["good"], aggregate="condition", order=1, n_boot=0)
    assert agg["n_items"] == 4
    g = df[df.status == "ok"].groupby("condition")
    xm = g["good"].mean()
    ym = g["ratings"].apply(lambda s: np.mean(np.concatenate([json.loads(v) for v in s])))
    assert agg["metrics"]["good"]["pearson"] == pytest.approx(pearsonr(xm, ym[xm.index])[0], abs=1e-12)
    with pytest.raises(SpaqError, match="no column"):
        evaluate_table(df, mos="nope")
    with pytest.raises(SpaqError, match="--mos"):
        evaluate_table(df)


def test_cli_json_plot_report_and_join(tmp_path, capsys):
    df = _mushra_like(1)
    scores = df[["id", "good", "bad", "status"]]
    ratings = df[["id", "stimulus", "condition", "ratings"]]
    scores.to_csv(tmp_path / "scores.csv", index=False)
    ratings.to_csv(tmp_path / "mos.csv", index=False)
    png, md = tmp_path / "ev.png", tmp_path / "ev.md"
    rc = main(["evaluate", str(tmp_path / "scores.csv"), "--mos-table", str(tmp_path / "mos.csv"), "--on", "id",
               "--ratings", "ratings", "--exclude", "condition=Reference", "--cluster", "stimulus",
               "--bootstrap", "200", "--plot", str(png), "--report", str(md), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    direct = evaluate_table(df, ratings="ratings", metrics=["good", "bad"], cluster="stimulus",
                            exclude={"condition": ["Reference"]}, n_boot=200)
    for k in ("pearson", "spearman", "kendall", "rmse"):
        assert out["metrics"]["good"][k] == pytest.approx(direct["metrics"]["good"][k], abs=1e-12)
    assert out["metrics"]["good"]["ci"]["pearson"] == pytest.approx(list(direct["metrics"]["good"]["ci"]["pearson"]))
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    text = md.read_text()
    assert f"{out['metrics']['good']['pearson']:.3f}" in text and "ev.png" in text
    assert sorted(out["files"]) == sorted([str(png), str(md)])


def test_cli_errors_are_one_line(tmp_path, capsys):
    p = tmp_path / "s.csv"
    pd.DataFrame({"a": [1, 2, 3, 4], "mos": [1, 2, 4, 3]}).to_csv(p, index=False)
    for args, msg in [(["--mos", "nope"], "no column 'nope'"), ([], "--mos COL"),
                      (["--mos", "mos", "--mapping", "2"], "--mapping"),
                      (["--mos", "mos", "--mos-table", str(p)], "--on")]:
        assert main(["evaluate", str(p), *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("spaq: error:") and msg in err and err.count("\n") == 1
    assert main(["evaluate", str(tmp_path / "missing.csv"), "--mos", "mos"]) == 2
    assert "table not found" in capsys.readouterr().err
    # too few items for a cubic: a clear error, no traceback, no report written
    assert main(["evaluate", str(p), "--mos", "mos", "--report", str(tmp_path / "r.md")]) == 2
    assert "at least" in capsys.readouterr().err and not (tmp_path / "r.md").exists()
    # the default columns alike (each too small is skipped): all skipped is an error, not an empty table
    assert main(["evaluate", str(p), "--mos", "mos"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no metric column could be evaluated: a: 4 items" in err and "5 needed" in err


def test_batch_table_defaults_join_with_other_key_and_skips_unusable(tmp_path, capsys):
    rng = np.random.default_rng(4)
    n = 20
    sev = rng.uniform(0, 1, n)
    scores = pd.DataFrame({"id": [f"{i:06d}" for i in range(n)], "status": "ok",
                           "quality": 100 - 80 * sev + rng.normal(0, 5, n), "quality.timbral_score": rng.normal(size=n),
                           "cues": 3 * sev + rng.normal(0, 0.3, n), "broken": np.nan})
    manifest = pd.DataFrame({"item_id": [f"{i:06d}" for i in range(n)], "severity": sev,
                             "room_rt60_s": [np.nan] * (n - 1) + [0.3]})
    scores.to_parquet(tmp_path / "s.parquet", index=False)
    manifest.to_parquet(tmp_path / "m.parquet", index=False)
    rc = main(["evaluate", str(tmp_path / "s.parquet"), "--mos-table", str(tmp_path / "m.parquet"),
               "--on", "id=item_id", "--mos", "severity", "--bootstrap", "0", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    # batch sub-values and the manifest's own columns are not metrics by default; an all-NaN column is skipped
    assert set(out["metrics"]) == {"quality", "cues"} and set(out["skipped"]) == {"broken"}
    assert out["metrics"]["quality"]["pearson"] == pytest.approx(pearsonr(scores.quality, sev)[0], abs=1e-12)
    # registered metrics keep the direction they are defined with, and a severity (higher = worse) taken as the
    # listening score goes against both: each gets a warning, and its mapping is not turned round to fit
    assert out["metrics"]["quality"]["mapping"]["direction"] == 1 and out["metrics"]["cues"]["mapping"]["direction"] == -1
    assert len(out["warnings"]) == 2
    assert out["warnings"][0].startswith("quality is higher-is-better, but here it falls")
    assert out["warnings"][1].startswith("cues is lower-is-better, but here it rises")
    # --direction fits the data's way (what the default did before for every column)
    rc = main(["evaluate", str(tmp_path / "s.parquet"), "--mos-table", str(tmp_path / "m.parquet"),
               "--on", "id=item_id", "--mos", "severity", "--bootstrap", "0", "--json",
               "--direction", "quality=lower", "--direction", "cues=higher"])
    flipped = json.loads(capsys.readouterr().out)
    assert flipped["metrics"]["quality"]["mapping"]["direction"] == -1 and flipped["warnings"] == []
    assert flipped["metrics"]["quality"]["rmse"] < out["metrics"]["quality"]["rmse"]
    # named explicitly, an unusable column is an error, not a silent skip
    assert main(["evaluate", str(tmp_path / "s.parquet"), "--mos-table", str(tmp_path / "m.parquet"),
                 "--on", "id=item_id", "--mos", "severity", "-m", "broken"]) == 2
    assert "broken: 0 items" in capsys.readouterr().err


def test_williams_dependent_test_properties():
    from spaq.evaluate import compare_dependent_correlations as williams

    rng = np.random.default_rng(11)
    y = rng.normal(size=40)
    x1 = y + rng.normal(0, 1, 40)
    same = williams(x1, x1.copy(), y)
    assert same["t"] == 0 and same["p"] == pytest.approx(1.0)
    x2 = y + rng.normal(0, 1.5, 40)
    a, b = williams(x1, x2, y), williams(x2, x1, y)
    assert a["t"] == pytest.approx(-b["t"]) and a["p"] == pytest.approx(b["p"])
    assert williams(x1, -x2, y)["t"] == pytest.approx(a["t"])  # a lower-is-better metric compares by |r|
    # under the null (both metrics equally good, independent errors) it rejects ~5 % of the time
    rej = 0
    for _ in range(400):
        y = rng.normal(size=40)
        rej += williams(y + rng.normal(size=40), y + rng.normal(size=40), y)["p"] < 0.05
    assert 8 <= rej <= 36
    # two strongly related metrics that differ a little: sharper than the independent Fisher z
    y = rng.normal(size=60)
    x1 = y + rng.normal(0, 0.8, 60)
    x2 = x1 + rng.normal(0, 0.5, 60)
    w = williams(x1, x2, y)
    f = compare_correlations(w["r1"], w["r2"], 60)
    assert w["r1"] > w["r2"] and w["p"] < f["p"] / 3


# --------------------------------------------------------------------------- issue 15 item 7


def _batch_csv(tmp_path, n=24, seed=6):
    """A table as `spaq batch` writes it (all pairs ok: empty `error` and `M.skipped` columns, which
    read back from CSV as all-NaN numbers) with a `mos` column."""
    rng = np.random.default_rng(seed)
    sev = rng.uniform(0, 1, n)
    df = pd.DataFrame({"id": [f"{i:06d}" for i in range(n)], "ref": [f"r{i}.wav" for i in range(n)],
                       "deg": [f"d{i}.wav" for i in range(n)], "status": "ok", "error": "", "format": "binaural",
                       "duration_s": 4.0, "quality": 100 - 80 * sev + rng.normal(0, 8, n),
                       "quality.timbral_score": rng.normal(size=n), "quality.skipped": "",
                       "cues": 3 * sev + rng.normal(0, 0.5, n), "cues.skipped": "",
                       "condition": np.where(np.arange(n) % 4 == 0, "Reference", "codec"), "mos": 100 - 90 * sev})
    p = tmp_path / "batch.csv"
    df.to_csv(p, index=False)
    assert pd.read_csv(p)["error"].isna().all()  # the case of the bug: an all-empty column reads as float NaN
    return p, df


def test_batch_bookkeeping_columns_are_not_metrics(tmp_path, capsys):
    p, df = _batch_csv(tmp_path)
    assert main(["evaluate", str(p), "--mos", "mos", "--bootstrap", "0", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["metrics"]) == {"quality", "cues"} and out["skipped"] == {}
    assert main(["evaluate", str(p), "--mos", "mos", "--bootstrap", "0"]) == 0
    text = capsys.readouterr().out
    assert "skipped" not in text and "error" not in text
    from spaq.evaluate import default_metric_columns

    raw = pd.read_csv(p).assign(n=1, duration=2.0, item_id=3)
    assert default_metric_columns(raw, {"mos"}) == ["quality", "cues"]


def test_exclude_value_matching_no_row_is_an_error(tmp_path, capsys):
    p, df = _batch_csv(tmp_path)
    assert main(["evaluate", str(p), "--mos", "mos", "--bootstrap", "0", "--exclude", "condition=Referenc"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("spaq: error: --exclude condition=Referenc: no row") and err.count("\n") == 1
    assert "Reference" in err and "codec" in err  # the values there are
    with pytest.raises(SpaqError, match="no row has this value"):
        evaluate_table(df, mos="mos", exclude={"condition": ["Reference", "nope"]})
    r = evaluate_table(df, mos="mos", metrics=["quality"], exclude={"condition": ["Reference"]}, n_boot=0)
    assert r["n_excluded"] == int((df.condition == "Reference").sum()) == 6


def _related_metrics(n=40, seed=0):
    """Two metrics that agree closely with each other (r12 ~ 0.9) and one is a bit better: Williams' t
    sees the difference that Fisher z (which ignores r12) does not."""
    rng = np.random.default_rng(seed)
    y = rng.normal(size=n)
    common = y + rng.normal(0, 1.0, n)
    return pd.DataFrame({"mos": y, "a": common + rng.normal(0, 0.25, n), "b": common + rng.normal(0, 0.6, n)})


def test_significance_marked_alike_for_fisher_and_williams(tmp_path, capsys):
    df = None
    for seed in range(200):  # the first seed where the two tests disagree at 5 %
        cand = _related_metrics(seed=seed)
        r = evaluate_table(cand, mos="mos", metrics=["a", "b"], order=1, n_boot=0)
        c = r["comparisons"][0]
        if c["williams_p"] < 0.05 < c["p"]:
            df = cand
            break
    assert df is not None
    assert c["significant"] is False and c["williams_significant"] is True and r["alpha"] == 0.05
    p = tmp_path / "s.csv"
    df.to_csv(p, index=False)
    assert main(["evaluate", str(p), "--mos", "mos", "-m", "a", "-m", "b", "--mapping", "1", "--bootstrap", "0"]) == 0
    line = [ln for ln in capsys.readouterr().out.splitlines() if "Williams" in ln][0]
    fisher, williams = line.split(";")
    assert "significant" not in fisher and williams.endswith("(significant at 0.05)")
    # alpha below both p values: neither marked; above both: both marked (one rule for the two tests)
    a = float(np.clip(c["williams_p"] / 2, 1e-6, None))
    r2 = evaluate_table(df, mos="mos", metrics=["a", "b"], order=1, n_boot=0, alpha=a)
    c2 = r2["comparisons"][0]
    assert c2["williams_significant"] is False and c2["significant"] is False and r2["alpha"] == a
    r3 = evaluate_table(df, mos="mos", metrics=["a", "b"], order=1, n_boot=0, alpha=min(0.99, c["p"] * 1.01))
    assert r3["comparisons"][0]["significant"] is True and r3["comparisons"][0]["williams_significant"] is True
    from spaq.evaluate import report_markdown

    md = report_markdown(r)
    assert "(not significant); Williams t" in md and md.rstrip().endswith("(significant at 0.05)")
    assert main(["evaluate", str(p), "--mos", "mos", "--alpha", "1.5"]) == 2
    assert "--alpha" in capsys.readouterr().err


def test_few_items_for_the_mapping_are_warned():
    """Fewer than three items per mapping parameter: a warning that says what would help (the cubic has 4
    parameters, the linear 2)."""
    rng = np.random.default_rng(3)
    df = pd.DataFrame({"m": np.arange(8.0), "mos": np.arange(8.0) * 10 + rng.normal(0, 1, 8)})
    cubic = evaluate_table(df, mos="mos", metrics=["m"], order=3, n_boot=0)["warnings"]
    assert len(cubic) == 1 and "8 items for a 4-parameter mapping" in cubic[0] and "--mapping 1" in cubic[0]
    linear = evaluate_table(df.iloc[:5], mos="mos", metrics=["m"], order=1, n_boot=0)["warnings"]
    assert len(linear) == 1 and "5 items for a 2-parameter mapping" in linear[0] and "--mapping" not in linear[0]
    assert evaluate_table(df, mos="mos", metrics=["m"], order=1, n_boot=0)["warnings"] == []  # 8 >= 3 x 2


def test_join_keys_are_text_and_each_key_one_row(tmp_path, capsys):
    """Ids are joined as written: "02" and "2", "1.10" and "1.1" are different items (read as numbers they
    collided and the joined table had more rows than items); a key shared by several rows of either table is
    refused; --mos with --ratings and a --cluster of one group are errors."""
    ids = ["1.1", "1.10", "1.2", "1.20", "2", "02", "3", "03", "4", "5", "6", "7"]
    rng = np.random.default_rng(2)
    mos = rng.uniform(20, 90, len(ids))
    pd.DataFrame({"id": ids, "quality": mos + rng.normal(0, 5, len(ids)), "grp": "a"}).to_csv(tmp_path / "s.csv",
                                                                                          index=False)
    pd.DataFrame({"id": ids, "mos": mos, "r": [json.dumps([m, m]) for m in mos]}).to_csv(tmp_path / "r.csv", index=False)
    base = ["evaluate", str(tmp_path / "s.csv"), "--mos-table", str(tmp_path / "r.csv"), "--on", "id", "--bootstrap", "0"]
    assert main(base + ["--mos", "mos", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_items"] == len(ids)
    assert out["metrics"]["quality"]["pearson"] == pytest.approx(pearsonr(
        pd.read_csv(tmp_path / "s.csv", dtype={"id": str})["quality"], mos)[0], abs=1e-12)
    pd.DataFrame({"id": ids + ids[:2], "mos": np.r_[mos, mos[:2]]}).to_csv(tmp_path / "dup.csv", index=False)
    assert main(base[:3] + [str(tmp_path / "dup.csv")] + base[4:] + ["--mos", "mos"]) == 2
    assert "--mos-table has 4 rows that share a key on 'id' (e.g. id=1.1)" in capsys.readouterr().err
    assert main(base + ["--mos", "mos", "--ratings", "r"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(base + ["--mos", "mos", "--cluster", "grp"]) == 2
    assert "every row is in one group (a)" in capsys.readouterr().err
