"""scripts/bench_gan.py --model progan|biggan: both loops run from the same weights, genlab's
ProGAN stays at its final stage through the timed batches, the plain loops do genlab's math
(the critic's loss, the orthogonality penalty and its weights), and the JSON makes a row of
the README's train table per GAN. (dcgan's run: tests/test_bench_table.py.)"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
import torch
from hydra.utils import instantiate

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"

README = """# project

<!-- bench:train -->
old
<!-- /bench -->
"""


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    # The script imports benchlib from its own folder, as python does for a script.
    monkeypatch.syspath_prepend(str(SCRIPTS))
    import bench_gan

    # main() sets torch's threads and quietens two loggers: put them back for other tests.
    threads = torch.get_num_threads()
    levels = {name: logging.getLogger(name).level for name in ("pytorch_lightning", "genlab")}
    yield bench_gan
    torch.set_num_threads(threads)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def tiny_model(bench: ModuleType, model: str, tmp_path: Path) -> tuple[object, object]:
    """(the config, the model) of a tiny benchmark run of ``model``."""
    args = bench.parse_args(["--model", model, "--width", "4", "--batch-size", "8"])
    cfg = bench.compose(args, str(tmp_path))
    torch.manual_seed(0)
    return cfg, instantiate(cfg.model)


@pytest.mark.parametrize(
    ("model", "title", "warmup"),
    [
        ("progan", "progan (32 px, final stage; one D and one G step a batch)", 1),
        # Rounded up to whole cycles of two D steps and a G step.
        ("biggan", "biggan (32 px; two D steps a G step)", 2),
    ],
)
def test_tiny_run_writes_json_with_same_weights_and_a_table_row(
    bench: ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    model: str,
    title: str,
    warmup: int,
) -> None:
    out = tmp_path / f"gan_{model}.json"
    argv = ["--model", model, "--steps", "2", "--warmup", "1", "--repeats", "1"]
    tiny = ["--threads", "1", "--batch-size", "8", "--width", "4", "--json", str(out)]
    returned = bench.main([*argv, *tiny])

    report = json.loads(out.read_text())
    assert report == json.loads(json.dumps(returned))
    assert report["script"] == "bench_gan" and report["model"] == model
    assert report["image_size"] == 32 and report["width"] == 4 and report["batch_size"] == 8
    assert report["warmup"] == warmup and report["machine"]["threads"] == 1
    assert list(report["models"]) == [model]
    row = report["models"][model]
    assert row["steps"] == 2 and row["same_weights"] is True
    assert row["d_steps"] == (2 if model == "biggan" else 1)
    for loop in (row["plain"], row["genlab"]):
        assert loop["images_per_s"] > 0
        assert loop["ms_per_batch"] == pytest.approx(8000 / loop["images_per_s"], rel=1e-6)
        assert math.isfinite(loop["final_d_loss"]) and math.isfinite(loop["final_g_loss"])
        assert len(loop["runs_images_per_s"]) == len(loop["contended"]) == 1
    assert row["ratio"] == pytest.approx(
        row["genlab"]["images_per_s"] / row["plain"]["images_per_s"]
    )
    if model == "progan":
        # Checked when the clock started and when it stopped: the last of 4 stages, faded in.
        assert row["genlab_stages"] == [{"stage": 3, "alpha": 1.0}] * 2
    else:
        assert "genlab_stages" not in row
        assert "rounded up to multiples of 2" in capsys.readouterr().out

    table = bench_table(tmp_path, out)
    assert f"| {title} | " in table
    assert f"{row['ratio']:.3f}" in table and "batch 8, 2 steps, median of 1" in table


def bench_table(tmp_path: Path, *reports: Path) -> str:
    """The train table bench_table.py renders from ``reports`` into a small README."""
    import bench_table as table

    readme = tmp_path / "README.md"
    readme.write_text(README)
    assert table.main(["--readme", str(readme), *map(str, reports)]) == 0
    return readme.read_text()


# The config's weights (the penalty dominates), and a drift weight that makes the drift term
# dominate (the untrained critic's scores are near 0).
@pytest.mark.parametrize(("gp_weight", "drift"), [(None, None), (0.0, 1e6)])
def test_the_plain_critic_loss_is_progans(
    bench: ModuleType, tmp_path: Path, gp_weight: float | None, drift: float | None
) -> None:
    cfg, model = tiny_model(bench, "progan", tmp_path)
    gp_weight = cfg.model.gp_weight if gp_weight is None else gp_weight
    drift = cfg.model.drift if drift is None else drift
    model.gp_weight, model.drift = gp_weight, drift
    model.set_extra_state(bench.final_stage_state(model))
    last = model.num_stages - 1
    assert (model.stage, model.alpha, model.resolution) == (last, 1.0, 32)
    real = torch.rand(8, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        fake = model.generator(torch.randn(8, model.latent_dim), last, 1.0)

    torch.manual_seed(1)  # the penalty's mixing coefficients
    plain = bench.progan_critic_loss(
        lambda x: model.discriminator(x, last, 1.0), real, fake, gp_weight=gp_weight, drift=drift
    )
    torch.manual_seed(1)
    scores = model.discriminate(real), model.discriminate(fake)
    genlab = model.adversarial_loss.discriminator(*scores) + model.discriminator_penalty(
        real, fake, None
    )
    assert plain.item() == pytest.approx(genlab.item(), rel=1e-6)
    # The dominant term is far above the Wasserstein estimate.
    assert plain.item() > 1e3 * abs((scores[1].mean() - scores[0].mean()).item())


def test_final_stage_state_follows_the_schedule(bench: ModuleType, tmp_path: Path) -> None:
    _, model = tiny_model(bench, "progan", tmp_path)
    state = bench.final_stage_state(model)
    # 3 doublings of 150k-image fades and stable phases after the 4x4 stage's 150k.
    assert state == {"images_seen": 3 * 300_000, "stage": 3, "alpha": 1.0}
    assert model.schedule(state["images_seen"] - 1)[1] < 1  # one image earlier: still fading
    model.fade_images, model.stable_images = 0, 5
    assert bench.final_stage_state(model)["images_seen"] == 15
    assert model.schedule(15) == (3, 1.0)


def test_timer_fails_a_run_away_from_the_final_stage(bench: ModuleType) -> None:
    timer = bench.GanTimer(start=2, stop=4, final_stage=True)
    fading = SimpleNamespace(stage=3, alpha=0.5, num_stages=4)
    timer.on_train_batch_end(None, fading, None, None, 0)  # batch 1: not checked
    with pytest.raises(RuntimeError, match="stage 3 with alpha 0.5 at batch 2"):
        timer.on_train_batch_end(None, fading, None, None, 1)


def test_the_plain_orthogonal_penalty_is_biggans(bench: ModuleType, tmp_path: Path) -> None:
    cfg, model = tiny_model(bench, "biggan", tmp_path)
    g = model.generator
    weights = bench.orthogonality_weights(g)
    assert [id(w) for w in weights] == [id(w) for w in model.regularised_weights()]
    assert all(w is not g.shared.weight for w in weights) and len(weights) > 10
    # Orthogonal initialisation makes the penalty ~0: move the weights off it.
    with torch.no_grad():
        for w in weights:
            w.add_(torch.randn_like(w) * 0.1)
    masks = [1 - torch.eye(len(w)) for w in weights]
    plain = cfg.model.orthogonal_reg * bench.orthogonal_penalty(weights, masks)
    assert plain.item() > 0
    assert plain.item() == pytest.approx(model.orthogonal_penalty().item(), rel=1e-5)


def test_labelled_batches_keep_benchlibs_order_and_their_labels(bench: ModuleType) -> None:
    from benchlib import batches

    n = 50
    # Image i is all i, its label i % 10: a batch's labels tell whether they follow it.
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).clone()
    labels = torch.arange(n) % 10
    labelled, plain = bench.labelled_batches(images, labels, 16, 7), batches(images, 16, 7)
    for _ in range(7):  # two epochs and a bit, three batches of 16 each
        x, y = next(labelled)
        assert torch.equal(x, next(plain))
        assert torch.equal(y, (x[:, 0, 0, 0] * 255).round().long() % 10)


def test_parse_args_defaults_and_rounding(
    bench: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    dcgan = bench.parse_args([])
    assert (dcgan.model, dcgan.steps, dcgan.warmup, dcgan.width) == ("dcgan", 30, 3, None)
    progan = bench.parse_args(["--model", "progan"])
    assert (progan.steps, progan.warmup) == (15, 3)
    biggan = bench.parse_args(["--model", "biggan"])
    assert (biggan.steps, biggan.warmup) == (10, 4)
    assert capsys.readouterr().out == ""  # nothing to round
    odd = bench.parse_args(["--model", "biggan", "--steps", "5", "--warmup", "3"])
    assert (odd.steps, odd.warmup) == (6, 4)
    assert "timing 6 batches after 4 warm-up" in capsys.readouterr().out
    for argv, message in (
        (["--model", "stylegan"], "invalid choice"),
        (["--width", "0"], "--width must be at least 1"),
    ):
        with pytest.raises(SystemExit):
            bench.parse_args(argv)
        assert message in capsys.readouterr().err


def test_compose_pins_what_the_plain_loops_implement(bench: ModuleType, tmp_path: Path) -> None:
    for model, expected in (
        ("gan", {"d_steps": 1, "loss": "bce"}),
        ("dcgan", {"d_steps": 1, "loss": "bce"}),
        ("progan", {"d_steps": 1, "ema_start": 0, "batch_sizes": None, "gp_weight": 10.0}),
        ("biggan", {"d_steps": 2, "ema_start": 0, "loss": "hinge", "orthogonal_reg": 1e-4}),
    ):
        args = bench.parse_args(["--model", model, "--steps", "4", "--warmup", "2"])
        cfg = bench.compose(args, str(tmp_path))
        assert {k: cfg.model[k] for k in expected} == expected
        # Every batch a D step, every d_steps-th also a G step: 6 batches.
        assert cfg.trainer.max_steps == 6 + 6 // expected["d_steps"]
        timer = cfg.callbacks.bench_timer
        assert timer._target_ == "bench_gan.GanTimer"
        assert timer.final_stage is (model == "progan")
        assert (timer.start, timer.stop) == (2, 6)
        # genlab's default steps per execution, unless asked otherwise.
        assert cfg.performance.steps_per_execution == "auto"
    args = bench.parse_args(["--model", "gan", "--steps-per-execution", "4"])
    assert bench.compose(args, str(tmp_path)).performance.steps_per_execution == 4


def test_one_table_row_per_gan_in_the_order_given(bench: ModuleType, tmp_path: Path) -> None:
    from benchlib import AdversarialRun

    files = []
    for model, size, plain_s, genlab_s in (
        ("dcgan", 28, 2.7, 2.8),
        ("progan", 32, 12.0, 12.5),
        ("biggan", 32, 18.0, 18.4),
    ):
        args = bench.parse_args(["--model", model, "--repeats", "1"])
        plain = bench.summary([AdversarialRun(plain_s, 1.0, 0.5, 0.0)], args)
        genlab = bench.summary([AdversarialRun(genlab_s, 1.1, 0.4, 0.0)], args)
        stages = [(3, 1.0), (3, 1.0)] if model == "progan" else []
        report = bench.as_json(plain, genlab, args, size, stages)
        assert report["model"] == model and report["image_size"] == size
        assert report["models"][model]["steps"] == args.steps
        path = tmp_path / f"{model}.json"
        path.write_text(json.dumps(report))
        files.append(path)
    # dcgan's row keeps its layout (d_steps added).
    assert set(json.loads(files[0].read_text())["models"]["dcgan"]) == {
        "steps",
        "step",
        "d_steps",
        "plain",
        "genlab",
        "ratio",
        "best_ratio",
        "same_weights",
    }

    table = bench_table(tmp_path, *files)
    rows = [line for line in table.splitlines() if line.startswith("| ") and "img/s" in line]
    assert [row.split(" | ")[0] for row in rows] == [
        "| dcgan (one D and one G step a batch)",
        "| progan (32 px, final stage; one D and one G step a batch)",
        "| biggan (32 px; two D steps a G step)",
    ]
    # progan: 15 batches of 128 in 12 s against 12.5 s.
    assert "| 160 img/s (800 ms) | 154 img/s (833 ms) | 0.960 | batch 128, 15 steps" in rows[1]
    assert "batch 128, 10 steps, median of 1" in rows[2]


@pytest.mark.parametrize("model", ["dcgan", "progan", "biggan"])
def test_the_plain_adam_settings_are_genlabs(bench: ModuleType, tmp_path: Path, model: str) -> None:
    cfg, built = tiny_model(bench, model, tmp_path)
    genlab_g, genlab_d = built.build_optimizers()
    for node, genlab, params in (
        (cfg.model.optimizer_g, genlab_g, built.generator.parameters()),
        (cfg.model.optimizer_d, genlab_d, built.discriminator.parameters()),
    ):
        plain = bench.adam(params, node)
        keys = ("lr", "betas", "eps", "weight_decay", "amsgrad")
        assert {k: plain.defaults[k] for k in keys} == {k: genlab.defaults[k] for k in keys}
    if model == "biggan":  # the authors' eps, not PyTorch's default
        assert genlab_g.defaults["eps"] == 1e-6
