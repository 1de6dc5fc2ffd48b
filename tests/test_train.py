"""Specification of flowedu.train: maximum-likelihood fitting, its history, stops and failures."""

from __future__ import annotations

import copy
import math
import shutil
import threading
import warnings

import pytest
import torch

from flowedu import datasets, train
from flowedu.pretrained_flows import load_pretrained
from flowedu.realnvp import realnvp
from flowedu.train import History, TrainingError, fit, nll, pick_device

ENTROPY_N01_2D = math.log(2 * math.pi * math.e)  # 2.8379 nats


def small_flow(seed: int = 0, **kwargs) -> torch.nn.Module:
    torch.manual_seed(seed)
    return realnvp(**{"n_layers": 4, "hidden": (32, 32), **kwargs})


def gaussian(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))


# --- learning ------------------------------------------------------------------------------


def test_training_on_moons_lowers_the_nll_well_below_the_untrained_flows():
    train_x, test_x = datasets.sample("moons", 4000, seed=0), datasets.sample("moons", 4000, seed=1)
    stats = (train_x.mean(0).tolist(), train_x.std(0).tolist())
    flow = small_flow(standardize=stats)
    before, _ = nll(flow, test_x)  # a new flow is the Gaussian fitted to the data
    history = fit(flow, train_x, steps=200, batch_size=128, lr=5e-3, progress=False)
    after, stderr = nll(flow, test_x)
    assert 3.3 < before < 3.5
    assert after < before - 0.4, (before, after)
    assert history.losses[-1] < history.losses[0] - 0.3
    assert after > datasets.entropy("moons") - 3 * stderr  # the NLL cannot beat H


def test_fit_with_the_same_seed_repeats_the_same_losses():
    x = gaussian(500, seed=0) * 2
    runs = [fit(small_flow(), x, steps=20, batch_size=64, seed=5, progress=False) for _ in "ab"]
    assert runs[0].losses == runs[1].losses
    other = fit(small_flow(), x, steps=20, batch_size=64, seed=6, progress=False)
    assert other.losses != runs[0].losses


def test_a_compiled_fit_takes_the_same_steps_as_an_eager_one():
    # torch.compile fuses the arithmetic differently, so the losses agree to rounding only.
    x = gaussian(500, seed=0) * 2
    eager = fit(small_flow(), x, steps=30, batch_size=64, seed=5, progress=False)
    flow = small_flow()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled = fit(flow, x, steps=30, batch_size=64, seed=5, progress=False, compile=True)
    if shutil.which("g++"):  # with a C++ compiler, inductor compiles: no fallback warning
        assert not [w for w in caught if "torch.compile failed" in str(w.message)]
    assert compiled.steps == 30
    assert compiled.losses == pytest.approx(eager.losses, abs=1e-3)
    assert compiled.losses[-1] < compiled.losses[0] - 0.1  # it trained
    assert not flow.training


def test_a_fit_whose_compilation_fails_warns_and_trains_without_it(monkeypatch):
    def broken_compile(fn, **kwargs):
        def fail(*args):
            raise RuntimeError("no C++ compiler found")

        return fail

    monkeypatch.setattr(torch, "compile", broken_compile)
    x = gaussian(500, seed=0) * 2
    eager = fit(small_flow(), x, steps=10, batch_size=64, seed=5, progress=False)
    with pytest.warns(RuntimeWarning, match="torch.compile failed .*no C\\+\\+ compiler"):
        fallback = fit(
            small_flow(), x, steps=10, batch_size=64, seed=5, progress=False, compile=True
        )
    assert fallback.losses == eager.losses


def test_history_records_every_step_once_and_where_and_how_long_it_ran():
    calls = []
    history = fit(
        small_flow(),
        gaussian(200, seed=0),
        steps=23,
        batch_size=32,
        report_every=10,
        progress=False,
        callback=lambda step, loss: calls.append((step, loss)),
    )
    assert isinstance(history, History)
    assert history.steps == 23 and len(history.losses) == 23
    assert all(math.isfinite(v) for v in history.losses)
    assert history.device == "cpu" and history.device_name == "CPU"
    assert history.seconds > 0 and not history.stopped_early
    assert [step for step, _ in calls] == [10, 20, 23]
    assert [loss for _, loss in calls] == [history.losses[i - 1] for i in (10, 20, 23)]


def test_fit_leaves_the_flow_in_eval_mode():
    flow = small_flow()
    fit(flow, gaussian(100, seed=0), steps=2, batch_size=16, progress=False)
    assert not flow.training


def test_fit_accepts_a_dataset_name():
    history = fit(small_flow(), "moons", steps=3, batch_size=16, progress=False)
    assert history.steps == 3


# --- stopping ------------------------------------------------------------------------------


def test_a_stop_event_set_from_the_callback_ends_training_at_that_step():
    stop = threading.Event()

    def callback(step, loss):
        if step == 10:
            stop.set()

    history = fit(
        small_flow(),
        gaussian(200, seed=0),
        steps=1000,
        batch_size=32,
        report_every=5,
        progress=False,
        callback=callback,
        stop=stop,
    )
    assert history.stopped_early
    assert history.steps == 10 and len(history.losses) == 10


def test_a_stop_event_set_before_training_stops_after_one_step():
    stop = threading.Event()
    stop.set()
    history = fit(small_flow(), gaussian(100, seed=0), steps=50, stop=stop, progress=False)
    assert history.stopped_early and history.steps == 1 and len(history.losses) == 1


# --- failures ------------------------------------------------------------------------------


def finite_weights(flow) -> bool:
    return all(torch.isfinite(t).all() for t in flow.state_dict().values())


def test_a_diverging_loss_raises_training_error_naming_step_and_layer_and_restores_weights():
    flow = small_flow(scale_bound=None)
    start = copy.deepcopy(flow.state_dict())
    data = gaussian(500, seed=0) * 3
    with pytest.raises(TrainingError) as err:
        fit(flow, data, steps=100, batch_size=64, lr=1e10, report_every=10, progress=False)
    message = str(err.value)
    assert "at step" in message and "layer" in message and "AffineCoupling" in message
    assert "restored to step 0" in message and "smaller lr" in message
    assert finite_weights(flow)
    assert all(torch.equal(start[k], v) for k, v in flow.state_dict().items())


def test_a_layer_returning_nan_at_step_7_is_named_and_weights_go_back_to_step_5(monkeypatch):
    flow = small_flow()
    layer = flow.layers[2]
    real_forward, calls = layer.forward, [0]

    def forward_that_breaks(x):
        calls[0] += 1
        z, log_det = real_forward(x)
        return (z * float("nan"), log_det) if calls[0] >= 7 else (z, log_det)

    monkeypatch.setattr(layer, "forward", forward_that_breaks)
    snapshots = {}

    def callback(step, loss):
        snapshots[step] = copy.deepcopy(flow.state_dict())

    with pytest.raises(TrainingError) as err:
        fit(
            flow,
            gaussian(200, seed=0),
            steps=20,
            batch_size=32,
            report_every=5,
            progress=False,
            callback=callback,
        )
    message = str(err.value)
    assert "the loss became nan at step 7" in message
    assert "layer 2 (AffineCoupling)" in message
    assert "restored to step 5" in message
    assert finite_weights(flow)
    assert all(torch.equal(snapshots[5][k], v) for k, v in flow.state_dict().items())


# --- evaluation ----------------------------------------------------------------------------


def test_nll_returns_the_mean_and_its_standard_error():
    flow = small_flow(standardize=([0.5, 0.0], [2.0, 1.0]))
    x = gaussian(1000, seed=2)
    mean, stderr = nll(flow, x, batch_size=300)  # chunks must not change the answer
    values = -flow.log_prob(x).double().detach()
    assert mean == pytest.approx(values.mean().item(), rel=1e-6)
    assert stderr == pytest.approx(values.std().item() / math.sqrt(len(x)), rel=1e-6)


def test_nll_of_the_standard_normal_flow_on_its_own_samples_is_its_entropy():
    flow = small_flow()  # new, without standardize: exactly N(0, I)
    mean, stderr = nll(flow, gaussian(20_000, seed=3))
    assert abs(mean - ENTROPY_N01_2D) < 3 * stderr
    assert stderr == pytest.approx(1 / math.sqrt(20_000), rel=0.05)  # sd of 0.5 chi2_2 is 1


def test_nll_of_points_with_zero_density_names_the_problem():
    flow = small_flow(scale_bound=None)
    with torch.no_grad():
        flow.layers[1].net[-1].bias.fill_(1e4)  # exp(s) overflows
    with pytest.raises(ValueError, match="non-finite log-likelihood.*layer 1"):
        nll(flow, gaussian(10, seed=0))


# --- devices -------------------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_pick_device_is_the_cpu_here_and_refuses_cuda_clearly():
    if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        assert pick_device() == torch.device("cpu")
    assert pick_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="no CUDA GPU is visible; use 'cpu'"):
        pick_device("cuda")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        fit(small_flow(), gaussian(10, seed=0), steps=1, device="cuda", progress=False)


def test_pick_device_refuses_an_unknown_name():
    with pytest.raises(ValueError, match="unknown device 'gpu0'.*use 'cpu' or 'cuda'"):
        pick_device("gpu0")


def test_device_name_is_cpu_for_the_cpu():
    assert train.device_name(torch.device("cpu")) == "CPU"


# --- bad arguments -------------------------------------------------------------------------


def nan_data():
    x = gaussian(50, seed=0)
    x[7, 0] = float("nan")
    return x


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(steps=0), "steps must be a positive integer, got 0"),
        (dict(steps=2.5), "steps must be a positive integer"),
        (dict(batch_size=-1), "batch_size must be a positive integer, got -1"),
        (dict(lr=0), "lr must be a finite number > 0, got 0.0"),
        (dict(lr=float("nan")), "lr must be a finite number > 0"),
        (dict(lr="fast"), "lr must be a positive number"),
        (dict(schedule="linear"), 'schedule must be "constant" or "cosine"'),
        (dict(report_every=-5), "report_every must be a positive integer"),
        (dict(data=torch.zeros(50, 3)), r"expected data of shape (batch, 2), got (50, 3)"),
        (dict(data=torch.zeros(50)), "data.reshape(1, -1)"),
        (dict(data=nan_data()), "data contains 1 NaN and 0 infinite values (first bad rows: [7])"),
    ],
)
def test_fit_rejects_bad_arguments_saying_what_is_wrong(kwargs, words):
    args = {"data": gaussian(50, seed=0), "steps": 5, "progress": False, **kwargs}
    with pytest.raises(ValueError) as err:
        fit(small_flow(), **args)
    assert words in str(err.value)


def test_fit_rejects_data_that_is_not_a_tensor():
    with pytest.raises(TypeError, match="data must be a torch.Tensor"):
        fit(small_flow(), [[0.0, 1.0]], steps=1, progress=False)


def test_nll_rejects_points_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"expected x of shape \(batch, 2\), got \(4, 3\)"):
        nll(small_flow(), torch.zeros(4, 3))


# --- the gap to the data: KL(p || q) with its standard error --------------------------------


def test_kl_gap_paired_agrees_with_nll_minus_entropy_and_has_a_smaller_error():
    flow, _ = load_pretrained("circles")
    x = datasets.sample("circles", 50_000, seed=7)
    paired = train.kl_gap(flow, "circles", x)
    value, stderr = nll(flow, x)
    unpaired = value - datasets.entropy("circles")
    se_unpaired = math.hypot(stderr, datasets.entropy_stderr("circles"))
    assert paired.paired
    assert abs(paired.value - unpaired) < 3 * math.hypot(paired.stderr, se_unpaired)
    assert paired.stderr < se_unpaired / 2


def test_kl_gap_without_a_known_density_is_nll_minus_entropy_with_both_errors():
    flow, _ = load_pretrained("moons")
    x = datasets.sample("moons", 20_000, seed=7)
    gap = train.kl_gap(flow, "moons", x)
    value, stderr = nll(flow, x)
    assert not gap.paired
    assert gap.value == pytest.approx(value - datasets.entropy("moons"))
    assert gap.stderr == pytest.approx(math.hypot(stderr, datasets.entropy_stderr("moons")))


def test_a_gap_within_two_standard_errors_is_called_indistinguishable_never_negative():
    assert str(train.Gap(-0.001, 0.002, True)).startswith("indistinguishable from 0")
    assert str(train.Gap(0.003, 0.002, True)).startswith("indistinguishable from 0")
    assert str(train.Gap(0.017, 0.001, True)) == "0.017 \u00b1 0.001 nats"


def test_kl_gap_refuses_points_off_the_datas_support_with_a_clear_error():
    flow = small_flow()
    off_board = torch.tensor([[1.0, 3.0], [-3.0, 0.5]])  # (1, 3) is in an empty square
    with pytest.raises(ValueError, match="samples of 'checkerboard'"):
        train.kl_gap(flow, "checkerboard", off_board)
