"""Every figure function on small results folders written through the real store: it must
draw axes with data, the expected labels and numbers, and skip with a note (not fail)
when the sweep lacks what it needs."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.collections import PathCollection, PolyCollection, QuadMesh
from matplotlib.colors import to_hex

import analysis
from analysis import style
from analysis.figures import FIGURES
from analysis.figures_compare import (fig_performance_profile, fig_sampler_comparison, fig_time_to_target,
                                      fig_wallclock)
from analysis.figures_sharpness import fig_sharpness_over_training, fig_sharpness_vs_accuracy, fig_sharpness_vs_lam
from analysis.figures_theory import fig_theory_curves
from analysis.figures_training import fig_accuracy_vs_lam, fig_learning_curves, fig_rho_lam_heatmap
from fakes import make_results
from harness import store
from harness.config import TrialConfig
from harness.records import new_record

LAM = style.label("lam")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def classification(tmp_path_factory):
    return analysis.load(make_results(tmp_path_factory.mktemp("cls"), n_seeds=2, epochs=4))


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return analysis.load(make_results(tmp_path_factory.mktemp("syn"), n_seeds=2, epochs=4, synthetic=True))


def _write_sweep(root: Path, name: str, entries: list[tuple[dict, list[dict]]]) -> Path:
    """A results folder with these (config, records) trials, written as a sweep writes it."""
    sweep_dir = root / name
    grid = [{"trial_id": store.trial_id(name, c), "trial": c} for c, _ in entries]
    store.write_spec(sweep_dir, f"name: {name}\n", "0" * 40, {"sweep": name, "trials": grid})
    for (config, records), item in zip(entries, grid):
        row = store.trial_row(sweep=name, spec_hash="0" * 40, trial_id=item["trial_id"], config=config,
                              records=records, status="ok", error=None, attempts=1, info={"device": "cpu"},
                              node="n1", provenance=store.provenance())
        store.write_trial(sweep_dir, row, records)
    return sweep_dir


@pytest.fixture(scope="module")
def samplers(tmp_path_factory):
    """digits with SGD and SAM under three samplers; importance sampling a little better."""
    entries = []
    for sampler, bonus in (("uniform", 0.0), ("importance", 0.02), ("reshuffle", 0.01)):
        for optimizer, lam, rho in (("sgd", None, 0.0), ("sam", 1.0, 0.05)):
            for seed in range(2):
                config = TrialConfig(dataset="digits", sampler=sampler, optimizer=optimizer, lam=lam, rho=rho,
                                     lr=0.1, epochs=3, seed=seed).to_dict()
                top = 0.9 + bonus + (0.01 if rho else 0.0) + 0.002 * seed
                records = [new_record(epoch=float(e), iteration=10 * e, grad_evals=10 * e * (2 if rho else 1),
                                      train_loss=1.0 / e, test_acc=top - 0.1 * (3 - e), time_train=0.5 * e,
                                      time_total=0.6 * e) for e in (1, 2, 3)]
                entries.append((config, records))
    return analysis.load(_write_sweep(tmp_path_factory.mktemp("smp"), "samplers", entries))


@pytest.fixture(scope="module")
def theory(tmp_path_factory):
    """Ridge regression: lam 0.5 and 1, uniform and importance sampling, constant and
    decreasing v1 steps, two trials each; geometric decay to a plateau per setting."""
    entries = []
    for lam in (0.5, 1.0):
        for sampler, floor in (("uniform", 1e-2), ("importance", 3e-3)):
            for schedule, factor in (("constant", 1.0), ("decreasing", 0.1)):
                for seed in range(2):
                    config = TrialConfig(dataset="ridge", model="linear", optimizer="unified", lam=lam,
                                         sampler=sampler, batch_size=1, step_rule="v1", lr_schedule=schedule,
                                         iterations=500, eval_every=100, seed=seed).to_dict()
                    records = [new_record(epoch=i / 100, iteration=i, grad_evals=2 * i, train_loss=1.0,
                                          rel_subopt=math.exp(-i / 50) + floor * factor * lam * (1 + 0.1 * seed),
                                          time_train=1e-3 * i, time_total=2e-3 * i)
                               for i in range(0, 501, 100)]
                    entries.append((config, records))
    return analysis.load(_write_sweep(tmp_path_factory.mktemp("thy"), "theory", entries))


def _data_axes(fig) -> list:
    """Axes that show data: a line with 2+ finite points, a non-empty collection, or a bar."""
    shown = []
    for ax in fig.axes:
        lines = [l for l in ax.get_lines() if np.isfinite(np.asarray(l.get_ydata(), float)).sum() >= 2]
        collections = [c for c in ax.collections if len(c.get_offsets()) or (
            isinstance(c, QuadMesh) and np.ma.count(c.get_array()) > 0) or isinstance(c, PolyCollection)]
        bars = [p for p in ax.patches if p.get_height() > 0]
        if lines or collections or bars:
            shown.append(ax)
    return shown


def _labels(fig) -> tuple[set[str], set[str]]:
    return {ax.get_xlabel() for ax in fig.axes}, {ax.get_ylabel() for ax in fig.axes}


@pytest.mark.parametrize("x, label", [("epoch", "Epoch"), ("time_train", "Training-only wall-clock (s)"),
                                      ("grad_evals", "Gradient evaluations")])
def test_learning_curves(classification, x, label):
    trials, epochs = classification
    fig = fig_learning_curves(trials, epochs, x=x)
    xlabels, ylabels = _labels(fig)
    assert label in xlabels and {"Test accuracy (%)", "Training loss (nats)"} <= ylabels
    acc_ax = next(ax for ax in fig.axes if ax.get_ylabel() == "Test accuracy (%)")
    lines = {l.get_label(): l for l in acc_ax.get_lines()}
    assert set(lines) == {"SGD", "USAM", "SAM", "Unified (lam=0.5)", "Unified (lam=1/t)"}
    assert to_hex(lines["SAM"].get_color()) == style.method_color("SAM").lower()
    # the SGD line is the seed mean of its records, in percent
    sgd = epochs[(epochs["method"] == "SGD") & (epochs["status"] == "ok")]
    expected = 100 * sgd.groupby("iteration")["test_acc"].mean().to_numpy()
    np.testing.assert_allclose(lines["SGD"].get_ydata(), expected)
    if x == "grad_evals":  # SAM pays two gradients per step
        assert lines["SAM"].get_xdata()[-1] == 2 * lines["SGD"].get_xdata()[-1]


def test_accuracy_vs_lam_and_heatmap_numbers(classification):
    trials, _ = classification
    fig = fig_accuracy_vs_lam(trials)
    assert _data_axes(fig)
    ax = fig.axes[0]
    assert ax.get_ylabel() == "Test accuracy (%), final" and ax.get_xlabel() == LAM
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "0.5", "1", "1/t"]
    heat = fig_rho_lam_heatmap(trials)
    mesh = next(c for ax in heat.axes for c in ax.collections if isinstance(c, QuadMesh))
    done = trials[trials["status"] == "ok"]
    means = done.groupby("method", observed=True)["final_test_acc"].mean()
    order = ["USAM", "Unified (lam=0.5)", "SAM", "Unified (lam=1/t)"]  # lam 0, 0.5, 1, 1/t
    np.testing.assert_allclose(np.ravel(mesh.get_array()), 100 * means[order].to_numpy())
    texts = [t.get_text() for t in heat.axes[0].texts]
    assert f"{100 * means['SAM']:.2f}" in " ".join(texts)
    assert any(a.get_ylabel() == "Test accuracy (%), final" for a in heat.axes)  # the colour bar


def test_sharpness_figures(classification):
    trials, epochs = classification
    scatter = fig_sharpness_vs_accuracy(trials)
    points = sum(len(c.get_offsets()) for ax in scatter.axes for c in ax.collections if isinstance(c, PathCollection))
    assert points == int(((trials["status"] == "ok") & trials["final_lam_max"].notna()).sum())
    assert {"Test accuracy (%), final"} <= _labels(scatter)[1]
    over = fig_sharpness_over_training(trials, epochs)
    assert _data_axes(over) and "Epoch" in _labels(over)[0]
    sgd = next(l for l in over.axes[0].get_lines() if l.get_label() == "SGD")
    np.testing.assert_allclose(sgd.get_xdata(), [2.0, 4.0])  # measured every second evaluation
    vs_lam = fig_sharpness_vs_lam(trials)
    assert _data_axes(vs_lam) and vs_lam.axes[0].get_xlabel() == LAM
    assert vs_lam.axes[0].get_ylabel() == style.label("lam_max", "final")


def _overlapping_texts(fig) -> list[tuple[str, str]]:
    """Pairs of visible labels of one axes that overlap once drawn: level tick labels and
    annotations by their boxes; rotated tick labels (parallel slanted lines) when the gap
    between neighbours, measured across the slant, is less than a line of text."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    pairs = []
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticklabels() if t.get_visible() and t.get_text()]
        level = [t for t in (*ticks, *ax.texts) if t.get_visible() and t.get_text() and not t.get_rotation()]
        boxes = [t.get_window_extent(renderer) for t in level]
        pairs += [(level[i].get_text(), level[j].get_text()) for i in range(len(level))
                  for j in range(i + 1, len(level)) if boxes[i].overlaps(boxes[j])]
        slanted = [t for t in ticks if t.get_rotation()]
        for a, b in zip(slanted, slanted[1:]):
            angle = math.radians(a.get_rotation())
            gap = abs(ax.transData.transform((b.get_position()[0], 0))[0]
                      - ax.transData.transform((a.get_position()[0], 0))[0]) * abs(math.sin(angle))
            height = a.get_fontsize() * fig.dpi / 72
            if gap < height:
                pairs.append((a.get_text(), b.get_text()))
    return pairs


def test_wallclock_time_to_target_and_profile(classification, samplers):
    trials, epochs = classification
    wall = fig_wallclock(trials, epochs)
    bars = {t.get_text(): p.get_height() for t, p in zip(wall.axes[0].get_xticklabels(), wall.axes[0].patches)}
    assert bars["SGD"] == pytest.approx(1.0)
    assert wall.axes[0].get_ylabel() == "Training time per epoch (× SGD)"
    ttt = fig_time_to_target(trials, epochs)
    assert len(_data_axes(ttt)) == 2
    assert {"Training-only time to target (s)", "Gradient evaluations to target"} <= _labels(ttt)[1]
    assert _overlapping_texts(wall) == [] and _overlapping_texts(ttt) == []
    # one workload: no performance profile (a fraction of one workload says nothing)
    notes: list[str] = []
    assert fig_performance_profile(trials, epochs, notes=notes) is None and "two or more workloads" in notes[0]
    profile = fig_performance_profile(*samplers)  # digits under three samplers: three workloads
    assert len(_data_axes(profile)) == 2
    for ax in profile.axes:
        for line in ax.get_lines():
            y = np.asarray(line.get_ydata(), float)
            assert y.min() >= 0 and y.max() <= 1
    assert profile.axes[0].get_xscale() == "log" and profile.axes[0].get_ylabel() == "Fraction of the 3 workloads"


def test_accuracy_axes_zoom_to_the_late_curves(samplers):
    trials, epochs = samplers
    fig = fig_learning_curves(trials, epochs)
    ax = fig.axes[0]
    ends = [line.get_ydata()[-1] for line in ax.get_lines() if not line.get_label().startswith("_")]
    low, high = ax.get_ylim()
    # the first evaluation sits 20 points below the end; the axis fits epochs 2-3 instead
    assert min(ends) - low < 15 and high >= max(ends) and "after the first quarter" in fig._suptitle.get_text()


def test_sampler_comparison(samplers):
    trials, _ = samplers
    fig = fig_sampler_comparison(trials)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["uniform", "importance", "random reshuffling"]
    assert ax.get_ylabel() == "Test accuracy (%), final" and ax.get_xlabel() == "Sampler"
    # SAM's points: the seed means per sampler, in percent
    sam = next(c for c in ax.containers if c.get_label() == "SAM")
    np.testing.assert_allclose(sam.lines[0].get_ydata(), [91.1, 93.1, 92.1])


@pytest.mark.parametrize("hue, lines_per_panel, panels", [("lam", 2, 4), ("sampler", 2, 4), ("step", 2, 4)])
def test_theory_curves(theory, hue, lines_per_panel, panels):
    trials, epochs = theory
    fig = fig_theory_curves(trials, epochs, hue=hue)
    shown = _data_axes(fig)
    assert len(shown) == panels
    for ax in shown:
        assert ax.get_yscale() == "log" and ax.get_xlabel() == "Iterations"
        assert ax.get_ylabel() == style.label("rel_subopt")
        assert len([l for l in ax.get_lines() if not l.get_label().startswith("_")]) == lines_per_panel
    if hue == "sampler":  # importance ends lower than uniform in every panel
        for ax in shown:
            ends = {l.get_label(): l.get_ydata()[-1] for l in ax.get_lines()}
            assert ends["importance"] < ends["uniform"]


def test_figures_skip_with_a_note_when_data_is_missing(synthetic, classification, tmp_path):
    trials, epochs = synthetic
    notes: list[str] = []
    assert fig_learning_curves(trials, epochs, notes=notes) is None
    assert fig_theory_curves(trials, epochs, hue="sampler", notes=notes) is None
    assert fig_theory_curves(trials, epochs, hue="lam") is not None  # five methods on one problem
    assert len(notes) == 2 and "final_test_acc" in notes[0] and "more than one sampler" in notes[1]
    flat_trials, flat_epochs = analysis.load(make_results(tmp_path, n_seeds=2, epochs=2, with_sharpness=False))
    notes.clear()
    for spec in FIGURES:
        if spec.name.startswith("sharpness"):
            assert spec.draw(flat_trials, flat_epochs, notes) is None
    assert len(notes) == 3 and all("lam_max" in n for n in notes)
    notes.clear()
    assert fig_sampler_comparison(classification[0], notes=notes) is None and "more than one sampler" in notes[0]


def test_method_colours_are_fixed_and_distinct():
    labels = ["SGD", "SAM", "USAM", "Unified (lam=0.5)", "Unified (lam=1/t)", "Unified (lam=1-1/t)",
              "Unified (lam=0)", "Unified (lam=1)"]
    colours = [style.method_color(m) for m in labels]
    assert len(set(colours)) == len(labels)
    assert style.method_color("SGD") == "#000000" and style.palette(["SAM"]) == {"SAM": "#D55E00"}
    assert style.method_order(["Unified (lam=1/t)", "SAM", "Unified (lam=0.5)", "SGD", "USAM"]) == \
        ["SGD", "USAM", "SAM", "Unified (lam=0.5)", "Unified (lam=1/t)"]
