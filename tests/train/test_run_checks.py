"""What every training recipe shares: its counts checked in one line before any work, and the one-cycle schedule."""
import pytest
import torch

from spaq.cli import main
from spaq.errors import SpaqError
from spaq.train import check_run, one_cycle


@pytest.mark.parametrize("total", [1, 2, 3, 4, 9, 10, 11, 20, 100])
def test_one_cycle_runs_every_length_and_keeps_the_ten_percent_warm_up(total):
    """torch's OneCycleLR divides by zero where a 10 % warm-up is exactly one step (`spaq train sqm --steps 10`
    crashed); that length warms up over 1.5 steps, every other keeps 10 %."""
    opt = torch.optim.AdamW(torch.nn.Linear(2, 2).parameters(), lr=1e-3)
    sched = one_cycle(opt, 1e-3, total)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(total - 1):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert all(lr == lr and lr > 0 for lr in lrs)
    assert sched.total_steps == total
    if total != 10:
        assert sched._schedule_phases[0]["end_step"] == pytest.approx(0.1 * total - 1)


def test_counts_are_checked_in_one_line(tmp_path, capsys):
    for kw, msg in [({"steps": 0}, "steps must be an integer >= 1, got 0"), ({"epochs": 0}, "epochs must be"),
                    ({"seed": -1}, "seed must be an integer >= 0, got -1"), ({"steps": 2.5}, "steps must be")]:
        with pytest.raises(SpaqError, match=msg):
            check_run(**kw)
    check_run(steps=0, epochs=1, seed=0, min_steps=0)  # the localiser's epoch recipes have steps 0
    recipe = "src/spaq/resources/weights/sqm_v1.yaml"
    assert main(["train", "sqm", recipe, "--steps", "0", "--out", str(tmp_path / "x.pt")]) == 2
    assert "steps must be an integer >= 1, got 0" in capsys.readouterr().err
    assert main(["train", "sqm", recipe, "--seed", "-1", "--out", str(tmp_path / "x.pt")]) == 2
    assert "seed must be an integer >= 0" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()
