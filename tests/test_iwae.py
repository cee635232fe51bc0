"""The importance-weighted autoencoder: its log-weights against a direct computation, the
k-sample bound against the ELBO (Jensen per set of draws, equality at k = 1, growth with k)
and against log p(x) by quadrature, its gradient, its options, and `genlab train model=iwae`
followed by `genlab evaluate` and `genlab anomaly` on the checkpoint. Then the same for the
paper's two-stochastic-layer model (model=iwae2), whose log-weights evaluate asks it for,
and the commands that sample, interpolate and embed in its top layer."""

from __future__ import annotations

import csv
import functools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import mirrored_decoder, mlp_vae, new_run, run_in_process, train_checkpoint
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import Tensor
from torch.distributions import Bernoulli, Normal

from genlab.commands.common import CONFIG_DIR
from genlab.errors import ConfigError
from genlab.metrics.likelihood import likelihood_bounds
from genlab.models import IWAE, TwoLayerIWAE, VariationalAutoencoder
from genlab.models.capabilities import ImportanceWeighted
from genlab.models.iwae import iwae_bound
from genlab.models.vae import kl_divergence
from genlab.nn.gaussian import MLPGaussianEncoder


def iwae(**options) -> IWAE:
    """A small IWAE on 28-pixel images (tanh MLPs, as configs/model/iwae.yaml)."""
    options = {"hidden_dims": [32], "latent_dim": 4, "activation": "tanh", **options}
    return mlp_vae(IWAE, **options)


def toy_iwae() -> IWAE:
    """An IWAE small enough for log p(x) by quadrature: one latent unit, 2×2 binary images,
    float64. Its q(z|x) is N(1, 2) for every image, a poor fit of the posterior, so that the
    gaps between L_1, L_10, L_100 and log p(x) are wide (about 2, 0.3 and 0.03 nats)."""
    torch.manual_seed(0)
    model = mlp_vae(IWAE, image_size=2, latent_dim=1, hidden_dims=[8], activation="tanh", k=1)
    with torch.no_grad():
        # Spread the decoder's logits so that p(x|z) really depends on z.
        for parameter in model.decoder.parameters():
            parameter.mul_(3)
        for head, value in ((model.encoder.mu, 1.0), (model.encoder.logvar, math.log(2.0))):
            head.weight.zero_()
            head.bias.fill_(value)
    return model.double().eval()


TOY_IMAGES = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 0.0]], dtype=torch.float64).view(
    2, 1, 2, 2
)
# The trapezoid rule's points on [−12, 12]: the prior's mass outside is below 1e-32.
GRID = torch.linspace(-12, 12, 48_001, dtype=torch.float64).unsqueeze(1)
LOG_TRAPEZOID = torch.full((len(GRID),), math.log(GRID[1, 0] - GRID[0, 0]), dtype=torch.float64)
LOG_TRAPEZOID[[0, -1]] += math.log(0.5)


@torch.no_grad()
def log_lik_on_grid(model: IWAE, image: Tensor) -> Tensor:
    """log p(image | z) at every point z of GRID."""
    logits = model.decode_logits(GRID)
    return -model.reconstruction_nll(logits, image.expand(len(GRID), *image.shape))


def log_px_by_quadrature(model: IWAE, x: Tensor) -> Tensor:
    """log p(x) = log ∫ p(x|z) N(z; 0, 1) dz [B], for a model with one latent unit."""
    log_prior = Normal(0.0, 1.0).log_prob(GRID).squeeze(1)
    return torch.stack(
        [
            torch.logsumexp(log_lik_on_grid(model, image) + log_prior + LOG_TRAPEZOID, dim=0)
            for image in x
        ]
    )


@torch.no_grad()
def elbo_by_quadrature(model: IWAE, x: Tensor) -> Tensor:
    """ELBO = ∫ q(z|x) log p(x|z) dz − KL(q(z|x) ‖ N(0, 1)) [B], the KL in closed form."""
    mu, logvar = model.encode_distribution(x)
    rows = []
    for image, m, lv in zip(x, mu, logvar, strict=True):
        q = Normal(m, (0.5 * lv).exp()).log_prob(GRID).squeeze(1)
        expected = ((q + LOG_TRAPEZOID).exp() * log_lik_on_grid(model, image)).sum()
        rows.append(expected - kl_divergence(m.view(1, 1), lv.view(1, 1))[0])
    return torch.stack(rows)


@pytest.fixture
def binary_images() -> Tensor:
    generator = torch.Generator().manual_seed(0)
    x = (torch.rand(16, 1, 28, 28, generator=generator) < 0.15).float()
    x[:, :, 10:14, 4:24] = 1.0
    return x


def test_log_weights_match_a_direct_computation(binary_images: Tensor) -> None:
    """log w_i = log p(x|z_i) + log N(z_i; 0, I) − log N(z_i; μ, σ²), z_i = μ + σ·ε_i with
    the ε of a seeded generator, computed with torch.distributions."""
    model = iwae().eval()
    x = binary_images[:5]
    k = 7
    with torch.no_grad():
        weights = model.log_weights(x, k=k, generator=torch.Generator().manual_seed(3))
        mu, logvar = model.encode_distribution(x)
        eps = torch.randn(k, *mu.shape, generator=torch.Generator().manual_seed(3))
        std = (0.5 * logvar).exp()
        z = mu + std * eps
        logits = model.decoder(z.flatten(0, 1)).view(k, *x.shape)
        log_lik = Bernoulli(logits=logits).log_prob(x.expand(k, *x.shape)).flatten(2).sum(2)
        log_prior = Normal(0.0, 1.0).log_prob(z).sum(2)
        log_q = Normal(mu, std).log_prob(z).sum(2)
    assert weights.shape == (k, 5)
    torch.testing.assert_close(weights, log_lik + log_prior - log_q, rtol=1e-5, atol=1e-3)


def test_the_bound_is_the_one_evaluate_reports(binary_images: Tensor) -> None:
    """Training's bound and genlab.metrics.likelihood's, from the same seed, agree to the
    last digit: the same draws in the same order."""
    model = iwae().eval()
    with torch.no_grad():
        own = iwae_bound(model.log_weights(binary_images, k=9, generator=torch.Generator()))
    _, evaluated = likelihood_bounds(model, binary_images, k=9, generator=torch.Generator())
    torch.testing.assert_close(own, evaluated)


def test_jensen_holds_for_every_set_of_draws(binary_images: Tensor) -> None:
    """log (1/k) Σ w_i ≥ (1/k) Σ log w_i for any draws: the bound is at least the mean of
    the draws' one-sample ELBO estimates, and at most their best one."""
    model = iwae().eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for k in (2, 5, 50):
            weights = model.log_weights(binary_images, k=k, generator=generator)
            bound = iwae_bound(weights)
            assert (bound >= weights.mean(dim=0)).all()
            assert (bound <= weights.max(dim=0).values).all()
            # Where the draws' weights differ by more than rounding, the inequality is strict
            # (for two draws a and b the gap is about (a - b)²/8).
            spread = weights.max(dim=0).values - weights.min(dim=0).values
            gap = bound - weights.mean(dim=0)
            assert (gap[spread > 0.5] > 0).all() and (spread > 0.5).any()


def test_k1_is_the_elbo(binary_images: Tensor) -> None:
    """At k = 1 the bound is the draw's own ELBO estimate, log p(x|z) − (log q − log p)(z),
    and the model's logged recon, kl and elbo are the VAE's for the same weights and draw."""
    model = iwae(k=1).eval()
    with torch.no_grad():
        weights = model.log_weights(binary_images, generator=torch.Generator())
        assert weights.shape == (1, len(binary_images))
        torch.testing.assert_close(iwae_bound(weights), weights[0])

        # The same weights, and the same draw, as VariationalAutoencoder's training step.
        vae = mlp_vae(hidden_dims=[32], latent_dim=4, activation="tanh").eval()
        vae.load_state_dict(model.state_dict())
        torch.manual_seed(4)
        vae_terms = vae.loss_terms(binary_images)
        torch.manual_seed(4)
        ours = model.loss_terms(binary_images)
        torch.testing.assert_close(ours["recon"], vae_terms["recon"])
        torch.testing.assert_close(ours["kl"], vae_terms["kl"])
        torch.testing.assert_close(ours["elbo"], vae_terms["elbo"])


def test_k1_is_the_elbo_in_expectation() -> None:
    """E[L_1] is the ELBO, here known by quadrature: the mean over 200,000 draws lies within
    five standard errors of it (a spurious failure: about one in a million)."""
    model = toy_iwae()
    with torch.no_grad():
        single = model.log_weights(TOY_IMAGES, k=200_000, generator=torch.Generator())
    elbo = elbo_by_quadrature(model, TOY_IMAGES)
    standard_error = single.std(dim=0) / math.sqrt(single.shape[0])
    assert ((single.mean(dim=0) - elbo).abs() < 5 * standard_error).all(), (single.mean(0), elbo)
    # And the ELBO is below log p(x), by more than the test's resolution.
    assert (log_px_by_quadrature(model, TOY_IMAGES) - elbo > 1.0).all()


def test_the_bound_rises_with_k_towards_log_px() -> None:
    """E[L_1] < E[L_10] < E[L_100] ≤ log p(x), each mean over 4000 sets of draws, and L_k at
    k = 200,000 is log p(x) within five of its standard errors, on a model whose log p(x) is
    known by quadrature."""
    model = toy_iwae()
    x = TOY_IMAGES
    log_px = log_px_by_quadrature(model, x)
    repeats = 4000
    generator = torch.Generator().manual_seed(0)
    means = []
    with torch.no_grad():
        for k in (1, 10, 100):
            weights = model.log_weights(x, k=k * repeats, generator=generator)
            bounds = iwae_bound(weights.view(repeats, k, len(x)).transpose(0, 1))
            mean, standard_error = bounds.mean(dim=0), bounds.std(dim=0) / math.sqrt(repeats)
            # Below log p(x) in expectation (a single set of draws may land above it).
            assert (mean < log_px + 5 * standard_error).all(), (k, mean, log_px)
            if means:
                # Each tenfold k closes much of the gap: five standard errors of the difference.
                previous, previous_error = means[-1]
                difference_error = (standard_error.square() + previous_error.square()).sqrt()
                assert (mean > previous + 5 * difference_error).all(), (k, mean, previous)
            means.append((mean, standard_error))

        weights = model.log_weights(x, k=200_000, generator=generator)
    # The estimate of p(x) is the mean weight; its relative standard error is that of log p̂.
    relative = weights.exp().std(dim=0) / weights.exp().mean(dim=0) / math.sqrt(len(weights))
    assert ((iwae_bound(weights) - log_px).abs() < 5 * relative).all()
    assert (relative < 0.01).all()


def assert_every_parameter_learns(model: torch.nn.Module) -> None:
    """Every parameter got a finite, non-zero gradient from the last backward pass."""
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_loss_is_the_negative_bound_and_its_gradient_flows(binary_images: Tensor) -> None:
    model = iwae(k=8)
    torch.manual_seed(0)
    terms = model.loss_terms(binary_images)
    assert set(terms) == {"loss", "iwae_bound", "recon", "kl", "elbo"}
    torch.testing.assert_close(terms["loss"], -terms["iwae_bound"])
    torch.testing.assert_close(terms["elbo"], -(terms["recon"] + terms["kl"]))
    assert terms["iwae_bound"] > terms["elbo"]
    terms["loss"].backward()
    assert_every_parameter_learns(model)
    # Both heads of q(z|x) get a gradient: μ through z, log σ² through z and log q.
    assert model.encoder.logvar.weight.grad.abs().sum() > 0


def test_training_raises_the_bound(binary_images: Tensor) -> None:
    torch.manual_seed(0)
    model = iwae(k=5, optimizer=functools.partial(torch.optim.Adam, lr=3e-3))
    optimizer = model.configure_optimizers()

    def bound() -> float:
        with torch.no_grad():
            weights = model.log_weights(binary_images, k=50, generator=torch.Generator())
        return float(iwae_bound(weights).mean())

    before = bound()
    for _ in range(30):
        optimizer.zero_grad()
        model.loss_terms(binary_images)["loss"].backward()
        optimizer.step()
    assert bound() > before + 0.1 * abs(before), (before, bound())


class AtStep(IWAE):
    """An IWAE whose optimizer step count is set by the test, not read from a Trainer."""

    global_step = 0


def test_beta_and_warmup_scale_the_prior_ratio_inside_each_weight(binary_images: Tensor) -> None:
    model = mlp_vae(
        AtStep, hidden_dims=[32], latent_dim=4, k=6, beta=2.0, kl_warmup_steps=100
    ).eval()
    x = binary_images[:4]
    with torch.no_grad():
        for training, step, weight in ((True, 0, 0.0), (True, 50, 1.0), (False, 0, 2.0)):
            model.train(training)
            model.global_step = step
            torch.manual_seed(7)
            terms = model.loss_terms(x)
            torch.manual_seed(7)
            parts = model.importance_terms(x, k=6)
            expected = -iwae_bound(parts["log_lik"] + weight * parts["log_ratio"]).mean()
            torch.testing.assert_close(terms["loss"], expected)
            # The logged bound is the bound, whatever the weight.
            unweighted = iwae_bound(parts["log_lik"] + parts["log_ratio"]).mean()
            torch.testing.assert_close(terms["iwae_bound"], unweighted)


@pytest.mark.parametrize("k", [0, -3, 2.5, True])
def test_bad_k_gets_a_clear_error(k: object) -> None:
    with pytest.raises(ConfigError, match="model.k"):
        iwae(k=k)


def configured(name: str) -> torch.nn.Module:
    """``model=NAME`` as `genlab train data=mnist` builds it."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[f"model={name}", "data=mnist"])
    return instantiate(cfg.model)


def test_config_is_the_papers_one_layer_model() -> None:
    model = configured("iwae")
    assert type(model) is IWAE and isinstance(model, VariationalAutoencoder)
    assert model.k == 50 and model.latent_dim == 50 and model.likelihood == "bernoulli"
    linears = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (784, 200),
        (200, 200),
        (200, 50),
        (200, 50),
    ]
    assert isinstance(model.encoder.body.activations[0], torch.nn.Tanh)
    # 784-200-200-50 and its mirror: 217,300 + 207,984 parameters.
    assert sum(p.numel() for p in model.trainable_parameters()) == 425_284
    assert {"HasPrior", "Variational", "ScoresAnomalies"} <= set(model.capabilities)


def test_recorded_config_rebuilds_the_model(binary_images: Tensor) -> None:
    model = iwae(k=7).eval()
    rebuilt = instantiate(model.model_config(), _convert_="all")
    assert type(rebuilt) is IWAE and rebuilt.k == 7
    rebuilt.load_state_dict(model.state_dict())
    rebuilt.eval()
    torch.testing.assert_close(rebuilt.score(binary_images), model.score(binary_images))


def check_logged_bounds(run: Path, *, epochs: int) -> EventAccumulator:
    """The run logged the bound and the ELBO's terms in training and validation, and each
    epoch's validation bound is above its ELBO; its TensorBoard events."""
    events = EventAccumulator(str(run / "tensorboard")).Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss", "train/iwae_bound", "train/elbo"} <= scalars
    assert {"val/loss", "val/iwae_bound", "val/elbo", "val/recon", "val/kl"} <= scalars
    bound = [e.value for e in events.Scalars("val/iwae_bound")]
    elbo = [e.value for e in events.Scalars("val/elbo")]
    assert len(bound) == epochs and all(b > e for b, e in zip(bound, elbo, strict=True))
    return events


def check_evaluate_and_anomaly(workdir: Path, ckpt: Path) -> None:
    """`genlab evaluate` gives a finite ELBO and a log p(x) bound above it, and `genlab
    anomaly` a positive −ELBO for every image."""
    evaluated, _ = new_run(workdir, "evaluate", f"ckpt={ckpt}", "k=50")
    metrics = json.loads((evaluated / "metrics.json").read_text())["metrics"]
    assert math.isfinite(metrics["test/elbo"]) and math.isfinite(metrics["test/log_likelihood"])
    assert metrics["test/log_likelihood"] >= metrics["test/elbo"]
    assert metrics["test/elbo"] < 0

    scored, _ = new_run(workdir, "anomaly", f"ckpt={ckpt}", "elbo_samples=2")
    with (scored / "scores.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["index", "label", "score", "neg_elbo"]
    assert len(rows) == 40 and all(float(r["neg_elbo"]) > 0 for r in rows)


def test_train_evaluate_and_anomaly(workdir: Path) -> None:
    ckpt = train_checkpoint(
        workdir,
        "model=iwae",
        "model.encoder.hidden_dims=[32]",
        "model.latent_dim=4",
        "model.k=5",
        "data.binarize=true",
        "trainer.max_epochs=2",
    )
    run = ckpt.parent.parent
    events = check_logged_bounds(run, epochs=2)
    loss = [e.value for e in events.Scalars("val/loss")]
    bound = [e.value for e in events.Scalars("val/iwae_bound")]
    assert loss == pytest.approx([-b for b in bound], rel=1e-5)

    import genlab

    restored = genlab.load(ckpt)
    assert type(restored) is IWAE and restored.k == 5

    check_evaluate_and_anomaly(workdir, ckpt)


# The two-stochastic-layer model.


def two_layer(*, h1: int = 6, h2: int = 3, **options) -> TwoLayerIWAE:
    """A small TwoLayerIWAE on 28-pixel images: x -16- h1 -8- h2 and its mirror, tanh."""
    shape = {"in_channels": 1, "image_size": 28}
    gaussian = functools.partial(MLPGaussianEncoder, hidden_activation="tanh")
    return TwoLayerIWAE(
        encoder=gaussian(**shape, latent_dim=h1, hidden_dims=[16]),
        decoder=mirrored_decoder(1, 28, h1, [16], "tanh"),
        upper_encoder=gaussian(in_channels=h1, image_size=1, latent_dim=h2, hidden_dims=[8]),
        upper_decoder=gaussian(in_channels=h2, image_size=1, latent_dim=h1, hidden_dims=[8]),
        **shape,
        latent_dim=h2,
        **options,
    )


def test_two_layer_log_weights_match_a_direct_computation(binary_images: Tensor) -> None:
    """log w = log p(x|h1) + log p(h1|h2) + log p(h2) − log q(h1|x) − log q(h2|h1), one draw
    at a time with torch.distributions, h1 = μ1 + σ1·ε1 and h2 = μ2(h1) + σ2(h1)·ε2 with
    ε1 [k, B, h1] then ε2 [k, B, h2] from a generator seeded as the model's."""
    torch.manual_seed(0)
    model = two_layer().double().eval()
    x = binary_images[:5].double()
    k = 7
    with torch.no_grad():
        weights = model.log_weights(x, k=k, generator=torch.Generator().manual_seed(3))
        generator = torch.Generator().manual_seed(3)
        eps1 = torch.randn(k, 5, 6, generator=generator, dtype=torch.float64)
        eps2 = torch.randn(k, 5, 3, generator=generator, dtype=torch.float64)
        mu1, logvar1 = model.encoder(x)
        q1 = Normal(mu1, (0.5 * logvar1).exp())
        expected = []
        for i in range(k):
            h1 = q1.loc + q1.scale * eps1[i]
            mu2, logvar2 = model.upper_encoder(h1)
            q2 = Normal(mu2, (0.5 * logvar2).exp())
            h2 = q2.loc + q2.scale * eps2[i]
            prior_mu1, prior_logvar1 = model.upper_decoder(h2)
            p1 = Normal(prior_mu1, (0.5 * prior_logvar1).exp())
            px = Bernoulli(logits=model.decoder(h1))
            expected.append(
                px.log_prob(x).flatten(1).sum(1)
                + p1.log_prob(h1).sum(1)
                + Normal(0.0, 1.0).log_prob(h2).sum(1)
                - q1.log_prob(h1).sum(1)
                - q2.log_prob(h2).sum(1)
            )
    assert weights.shape == (k, 5)
    torch.testing.assert_close(weights, torch.stack(expected), rtol=1e-10, atol=1e-9)


def test_two_layer_bound_against_its_draws(binary_images: Tensor) -> None:
    """For every set of draws L_k ≥ the mean log-weight (and ≤ the largest); L_1 is the one
    log-weight; and E[L_20] is well above E[L_1] (means over 100 sets of draws)."""
    torch.manual_seed(0)
    model = two_layer().eval()
    x = binary_images[:6]
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for k in (1, 2, 5, 30):
            for _ in range(10):
                weights = model.log_weights(x, k=k, generator=generator)
                bound = iwae_bound(weights)
                assert (bound >= weights.mean(dim=0)).all(), k
                assert (bound <= weights.max(dim=0).values).all(), k
                if k == 1:
                    torch.testing.assert_close(bound, weights[0])
        repeats = 100
        single = model.log_weights(x, k=repeats, generator=generator)
        twenty = iwae_bound(
            model.log_weights(x, k=20 * repeats, generator=generator).view(20, -1, 6)
        )
    for draws in (single, twenty):
        assert draws.shape == (repeats, 6)
    error = (single.var(dim=0) / repeats + twenty.var(dim=0) / repeats).sqrt()
    assert (twenty.mean(dim=0) > single.mean(dim=0) + 5 * error).all()


def test_evaluate_takes_the_two_layer_models_own_log_weights(binary_images: Tensor) -> None:
    """likelihood_bounds of an ImportanceWeighted model: the bound of its log-weights and
    their mean as the ELBO, for a seed; asked max_decodes // B draws at a time, the same
    generator carrying on between the calls."""
    torch.manual_seed(0)
    model = two_layer().eval()
    assert isinstance(model, ImportanceWeighted)
    x = binary_images[:6]

    def seeded() -> torch.Generator:
        return torch.Generator().manual_seed(5)

    with torch.no_grad():
        own = model.log_weights(x, k=9, generator=seeded())
        generator = seeded()
        # max_decodes 27 decodes 27 // 6 = 4 draws of the 6 images at a time: 4, 4, 1.
        chunked = torch.cat([model.log_weights(x, k=n, generator=generator) for n in (4, 4, 1)])
    elbo, bound = likelihood_bounds(model, x, k=9, generator=seeded())
    torch.testing.assert_close(bound, iwae_bound(own))
    torch.testing.assert_close(elbo, own.mean(dim=0))
    elbo, bound = likelihood_bounds(model, x, k=9, generator=seeded(), max_decodes=27)
    torch.testing.assert_close(bound, iwae_bound(chunked))
    torch.testing.assert_close(elbo, chunked.mean(dim=0))
    assert not torch.equal(chunked, own)  # the chunks draw in another order
    # Anomaly's −ELBO is minus the mean of num_samples log-weights.
    neg_elbo = model.negative_elbo(x, num_samples=9, generator=seeded())
    torch.testing.assert_close(neg_elbo, -own.mean(dim=0))


def test_two_layer_loss_and_its_gradient(binary_images: Tensor) -> None:
    model = two_layer(k=8)
    torch.manual_seed(0)
    terms = model.loss_terms(binary_images)
    torch.manual_seed(0)
    parts = model.importance_terms(binary_images, k=8)
    assert set(terms) == {"loss", "iwae_bound", "recon", "kl", "elbo"}
    torch.testing.assert_close(terms["loss"], -terms["iwae_bound"])
    torch.testing.assert_close(
        terms["iwae_bound"], iwae_bound(parts["log_lik"] + parts["log_ratio"]).mean()
    )
    # The KL is sampled, so the ELBO is the mean log-weight.
    torch.testing.assert_close(terms["kl"], -parts["log_ratio"].mean())
    torch.testing.assert_close(terms["elbo"], (parts["log_lik"] + parts["log_ratio"]).mean())
    assert terms["iwae_bound"] > terms["elbo"]
    terms["loss"].backward()
    assert_every_parameter_learns(model)
    assert {n.split(".")[0] for n, _ in model.named_parameters()} == {
        "encoder",
        "decoder",
        "upper_encoder",
        "upper_decoder",
    }


def test_two_layer_codes_are_h2_and_decode_follows_the_means(binary_images: Tensor) -> None:
    """encode: the mean of q(h2|h1) at h1 = the mean of q(h1|x); decode: sigmoid of p(x|h1)'s
    logits at h1 = the mean of p(h1|h2); samples and the fixed grid codes are h2."""
    torch.manual_seed(0)
    model = two_layer().eval()
    x = binary_images[:4]
    with torch.no_grad():
        codes = model.encode(x)
        assert codes.shape == (4, 3) and model.latent_dim == 3
        torch.testing.assert_close(codes, model.upper_encoder(model.encoder(x)[0])[0])
        decoded = model.decode(codes)
        expected = torch.sigmoid(model.decoder(model.upper_decoder(codes)[0]))
        torch.testing.assert_close(decoded, expected)
        torch.testing.assert_close(model.reconstruct(x), decoded)
        assert model.fixed_z.shape == (64, 3)
        samples = model.sample(5, generator=torch.Generator().manual_seed(2))
    assert samples.shape == (5, 1, 28, 28)
    assert samples.min() >= 0 and samples.max() <= 1


def test_two_layer_config_is_the_papers_model() -> None:
    model = configured("iwae2")
    assert type(model) is TwoLayerIWAE and isinstance(model, IWAE)
    assert model.k == 50 and model.latent_dim == 50 and model.likelihood == "bernoulli"

    def linears(network: torch.nn.Module) -> list[tuple[int, int]]:
        return [
            (m.in_features, m.out_features)
            for m in network.modules()
            if isinstance(m, torch.nn.Linear)
        ]

    assert linears(model.encoder) == [(784, 200), (200, 200), (200, 100), (200, 100)]
    assert linears(model.upper_encoder) == [(100, 100), (100, 100), (100, 50), (100, 50)]
    assert linears(model.upper_decoder) == [(50, 100), (100, 100), (100, 100), (100, 100)]
    assert linears(model.decoder) == [(100, 200), (200, 200), (200, 784)]
    for network in (model.encoder, model.upper_encoder, model.upper_decoder, model.decoder):
        assert any(isinstance(m, torch.nn.Tanh) for m in network.modules())
    assert sum(p.numel() for p in model.trainable_parameters()) == 521_084
    assert {"HasPrior", "Variational", "ImportanceWeighted"} <= set(model.capabilities)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["model=iwae", "data=mnist"])
    assert "ImportanceWeighted" not in instantiate(cfg.model).capabilities


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "model.upper_encoder.latent_dim=20",
            "model.upper_encoder.latent_dim is 20 where the layers need 50",
        ),
        ("model.decoder.latent_dim=30", "model.decoder.latent_dim is 30 where the layers need 100"),
        ("model.upper_decoder.in_channels=40", "model.upper_decoder reads 40 inputs"),
    ],
)
def test_two_layer_sizes_that_do_not_chain_are_refused(override: str, message: str) -> None:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["model=iwae2", "data=mnist", override])
    with pytest.raises(Exception, match=message) as raised:
        instantiate(cfg.model)
    # Hydra wraps the error of a _target_ it instantiates; ours is the cause.
    error = raised.value
    while not isinstance(error, ConfigError) and error.__cause__ is not None:
        error = error.__cause__
    assert isinstance(error, ConfigError)


def test_two_layer_recorded_config_rebuilds_the_model(binary_images: Tensor) -> None:
    model = two_layer(k=3).eval()
    rebuilt = instantiate(model.model_config(), _convert_="all")
    assert type(rebuilt) is TwoLayerIWAE and rebuilt.k == 3 and rebuilt.latent_dim == 3
    rebuilt.load_state_dict(model.state_dict())
    rebuilt.eval()
    with torch.no_grad():
        ours, theirs = (
            m.log_weights(binary_images, k=4, generator=torch.Generator()) for m in (model, rebuilt)
        )
    torch.testing.assert_close(theirs, ours)


def test_two_layer_train_evaluate_anomaly_and_latent_commands(workdir: Path) -> None:
    ckpt = train_checkpoint(
        workdir,
        "model=iwae2",
        "model.encoder.hidden_dims=[32]",
        "model.encoder.latent_dim=8",
        "model.upper_encoder.hidden_dims=[16]",
        "model.latent_dim=4",
        "model.k=5",
        "data.binarize=true",
        "trainer.max_epochs=2",
    )
    run = ckpt.parent.parent
    check_logged_bounds(run, epochs=2)
    grids = {p.name for p in (run / "images").iterdir()}
    for grid in ("val_reconstructions", "val_samples", "val_interpolation"):
        assert f"{grid}_epoch001.png" in grids, grids

    import genlab

    restored = genlab.load(ckpt)
    assert type(restored) is TwoLayerIWAE and restored.k == 5 and restored.latent_dim == 4

    check_evaluate_and_anomaly(workdir, ckpt)

    # Samples are the decodings of h2 ~ N(0, I), through the mean of p(h1|h2).
    sampled, _ = new_run(workdir, "sample", f"ckpt={ckpt}", "n=6", "seed=1")
    assert (sampled / "samples.png").stat().st_size > 0
    saved = torch.load(sampled / "samples.pt", weights_only=True)
    assert saved["z"].shape == (6, 4) and saved["images"].shape == (6, 1, 28, 28)
    restored.eval()
    with torch.no_grad():
        torch.testing.assert_close(saved["images"], restored.decode(saved["z"]))

    interpolated, _ = new_run(
        workdir, "interpolate", f"ckpt={ckpt}", "pairs=[[0,1]]", "steps=4", "method=slerp"
    )
    saved = torch.load(interpolated / "interpolation.pt", weights_only=True)
    assert saved["images"].shape == (1, 4, 1, 28, 28)
    embedded, result = run_in_process(workdir, "embed", f"ckpt={ckpt}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert np.load(embedded / "codes.npz")["codes"].shape == (40, 4)
