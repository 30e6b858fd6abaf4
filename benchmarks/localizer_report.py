"""Markdown tables from the localiser's held-out evaluation (eval_localizer.py --json) and
ablation rows (ablate_localizer.py --out rows.jsonl).

Usage: python benchmarks/localizer_report.py EVAL.json ABLATION.jsonl > localizer_results.md
"""
import json
import sys

NAMES = {"ku100_anechoic": "KU100, anechoic, unseen content", "ku100_rooms": "KU100, rooms RT60 0.2-0.8 s",
         "sonicom_anechoic": "SONICOM subject 1 (unseen head), anechoic"}
TARGETS = {"ku100_anechoic": "median <= 3, FB <= 2 %, az MAE <= 1.3", "ku100_rooms": "median <= 8",
           "sonicom_anechoic": "median <= 12, FB <= 8 %"}


def f(v, pct=False):
    if v is None:
        return "-"
    return f"{100 * v:.1f} %" if pct else f"{v:.1f}"


def main(eval_json, ablation_jsonl=None):
    ev = json.load(open(eval_json))
    print(f"Held-out sets, one 0.47 s window per scene, n = 400 each (checkpoint sha256 {str(ev.get('sha256'))[:12]}):\n")
    print("| set | median (deg) | mean (deg) | 90th pct (deg) | front-back | horizontal az MAE (deg) | class acc. | target |")
    print("|---|---|---|---|---|---|---|---|")
    for k, m in ev["sets"].items():
        print(f"| {NAMES.get(k, k)} | {f(m['median_deg'])} | {f(m['mean_deg'])} | {f(m['p90_deg'])} | "
              f"{f(m['front_back_rate'], True)} | {f(m.get('horizontal_azimuth_mae_deg'))} "
              f"(n={m.get('horizontal_n', 0)}) | {f(m.get('class_accuracy'), True)} | {TARGETS.get(k, '')} |")
    if ablation_jsonl:
        rows = [json.loads(line) for line in open(ablation_jsonl) if line.strip()]
        budgets = []
        for r in rows:
            if (r["n_train"], r["epochs"]) not in budgets:
                budgets.append((r["n_train"], r["epochs"]))
        for n_train, epochs in sorted(budgets):
            group = [r for r in rows if (r["n_train"], r["epochs"]) == (n_train, epochs)]
            print(f"\nAblation (KU100 anechoic held-out set, 400 scenes; {n_train} rendered scenes + fresh spectral "
                  f"scenes per batch, {epochs} epochs each, same seed; one factor changed from SUB / separate / MIX):\n")
            print("| variant | integration | ear encoders | loss | median (deg) | mean (deg) | front-back | params | train s |")
            print("|---|---|---|---|---|---|---|---|---|")
            for r in group:
                print(f"| {r['variant']} | {r['integration_']} | {'shared' if r['share_weights_'] else 'separate'} | "
                      f"{r['loss_']} | {f(r['median_deg'])} | {f(r['mean_deg'])} | {f(r['front_back_rate'], True)} | "
                      f"{r['params']:,} | {r['train_seconds']} |")


if __name__ == "__main__":
    main(*sys.argv[1:])
