"""FedSTO's defining properties: mAP@0.5, SRIP, selective uploads, the EMA teacher, pseudo-label buckets, votes."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch

from fedledger.aggregation.fedsto import BACKBONE, TEACHER, FedSTOConfig, FedSTOStrategy
from fedledger.aggregation.srip import srip
from fedledger.aggregation.teacher import buckets, ema_update, pseudo_targets
from fedledger.simulation.attacks import parse_attack
from fedledger.simulation.detection import GRID, Detections, cell_of
from fedledger.simulation.mean_ap import mean_ap, per_class_ap
from fedledger.simulation.tasks import ClientData, TrainSettings, get_task, model_arrays
from fedledger.simulation.tasks.detdigits import DetectionSplit

# ---------------------------------------------------------------------------- mAP@0.5


def truth(*boxes: tuple[int, float, float, float, float]) -> np.ndarray:
    rows = np.zeros((3, 5), dtype=np.float32)
    rows[:, 0] = -1
    for i, box in enumerate(boxes):
        rows[i] = box
    return rows


def found(*items: tuple[int, float, tuple[float, float, float, float]]) -> Detections:
    return Detections(
        np.array([b for _, _, b in items], dtype=np.float32).reshape(-1, 4),
        np.array([s for _, s, _ in items], dtype=np.float32),
        np.array([c for c, _, _ in items], dtype=np.int64),
    )


A, B = (2.0, 2.0, 14.0, 16.0), (30.0, 30.0, 44.0, 46.0)


def test_map_of_perfect_detections_is_one() -> None:
    truths = [truth((3, *A), (7, *B)), truth((3, *B))]
    detections = [found((3, 0.9, A), (7, 0.8, B)), found((3, 0.7, B))]
    assert mean_ap(detections, truths, 10) == pytest.approx(1.0)


def test_one_missed_box_halves_its_class() -> None:
    truths = [truth((3, *A), (7, *B)), truth((3, *B))]
    detections = [found((3, 0.9, A), (7, 0.8, B)), found()]
    assert per_class_ap(detections, truths, 10) == pytest.approx({3: 0.5, 7: 1.0})
    assert mean_ap(detections, truths, 10) == pytest.approx(0.75)


def test_a_false_positive_costs_only_when_it_outranks_a_true_one() -> None:
    truths = [truth((3, *A))]
    below = [found((3, 0.9, A), (3, 0.5, B))]
    above = [found((3, 0.9, B), (3, 0.5, A))]
    assert mean_ap(below, truths, 10) == pytest.approx(1.0)
    assert mean_ap(above, truths, 10) == pytest.approx(0.5)  # precision 1/2 at recall 1


def test_a_wrong_class_or_a_poor_overlap_or_a_duplicate_is_no_hit() -> None:
    truths = [truth((3, *A))]
    assert per_class_ap([found((5, 0.9, A))], truths, 10) == {3: 0.0}  # class 5 has no truth: left out
    shifted = (A[0] + 6, A[1], A[2] + 6, A[3])  # IoU 6*14 / (2*12*14 - 6*14) = 1/3
    assert mean_ap([found((3, 0.9, shifted))], truths, 10) == 0.0
    assert mean_ap([found((3, 0.9, A), (3, 0.8, A))], truths, 10) == pytest.approx(1.0)
    two = [truth((3, *A), (3, *B))]  # a duplicate of A before B's hit lowers precision at full recall
    assert mean_ap([found((3, 0.9, A), (3, 0.8, A), (3, 0.7, B))], two, 10) == pytest.approx(0.5 + 0.5 * 2 / 3)


# ---------------------------------------------------------------------------- SRIP


def test_srip_vanishes_on_orthogonal_weights_and_a_gradient_step_lowers_it() -> None:
    torch.manual_seed(0)
    orthogonal = torch.nn.Linear(8, 8, bias=False)
    with torch.no_grad():
        orthogonal.weight.copy_(torch.linalg.qr(torch.randn(8, 8))[0])
    assert srip(orthogonal).item() < 1e-8
    wide = torch.nn.Linear(16, 4, bias=False)  # orthonormal rows: W W^T = I
    with torch.no_grad():
        wide.weight.copy_(torch.linalg.qr(torch.randn(16, 4))[0].T)
    assert srip(wide).item() < 1e-8

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Linear(8, 5))
    before = srip(model)
    assert before.item() > 0.1
    before.backward()
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.grad is not None:
                parameter -= 0.05 * parameter.grad
    assert srip(model).item() < before.item()


def test_srip_scope_constrains_only_the_named_modules() -> None:
    model = get_task("detdigits").build_model(0)
    everything, neck_head = srip(model), srip(model, scope=("neck", "head"))
    assert 0 < neck_head.item() < everything.item()
    neck_head.backward()
    assert model.backbone[0].weight.grad is None and model.head.weight.grad is not None


# ----------------------------------------------------------------- teacher and buckets


def test_ema_update_follows_the_formula() -> None:
    teacher, student = torch.nn.BatchNorm1d(2), torch.nn.BatchNorm1d(2)
    with torch.no_grad():
        teacher.weight.copy_(torch.tensor([1.0, 2.0]))
        student.weight.copy_(torch.tensor([3.0, -2.0]))
        student.running_mean.copy_(torch.tensor([10.0, 0.0]))
        student.num_batches_tracked.fill_(7)
    ema_update(teacher, student, 0.9)
    assert teacher.weight.tolist() == pytest.approx([0.9 * 1 + 0.1 * 3, 0.9 * 2 - 0.1 * 2])
    assert teacher.running_mean.tolist() == pytest.approx([1.0, 0.0])
    assert int(teacher.num_batches_tracked) == 7  # counters are copied, not averaged
    with pytest.raises(ValueError, match="decay"):
        ema_update(teacher, student, 1.5)


def test_scores_fall_in_the_right_bucket() -> None:
    reliable, uncertain = buckets(np.array([0.05, 0.1, 0.59, 0.6, 0.95]))
    assert reliable.tolist() == [False, False, False, True, True]
    assert uncertain.tolist() == [False, True, True, False, False]


def teacher_output(cells: dict[int, tuple[float, int]]) -> torch.Tensor:
    """A raw output whose cells score exactly ``score`` for class ``cls`` (class probability ~1)."""
    output = torch.full((1, GRID * GRID, 15), 0.0)
    output[0, :, 0] = -30.0
    for cell, (score, cls) in cells.items():
        output[0, cell, 0] = float(np.log(score / (1 - score)))
        output[0, cell, 5 + cls] = 40.0
    return output


def test_pseudo_targets_supervise_reliable_boxes_fully_and_uncertain_ones_softly() -> None:
    sure, unsure, dropped = 0, 14, 35
    targets, counts = pseudo_targets(teacher_output({sure: (0.9, 4), unsure: (0.3, 6), dropped: (0.05, 1)}))
    assert counts == {"reliable": 1.0, "uncertain": 1.0}
    assert targets.assigned[0].nonzero().flatten().tolist() == [sure]
    assert int(targets.classes[0, sure]) == 4 and float(targets.objectness[0, sure]) == 1.0
    cx, cy = (float(v) for v in targets.boxes[0, sure, :2])
    assert cell_of(cx, cy) == sure
    assert float(targets.objectness[0, unsure]) == pytest.approx(0.3, abs=1e-4)
    assert float(targets.objectness[0, dropped]) == 0.0
    assert float(targets.objectness.sum()) == pytest.approx(1.3, abs=1e-4)  # every other cell is background


# ----------------------------------------------------------------- the strategy


@pytest.fixture(scope="module")
def setting() -> tuple[FedSTOStrategy, object, OrderedDict, ClientData]:
    plugin = FedSTOStrategy(FedSTOConfig(selective_rounds=1, local_epochs=1))
    task = get_task("detdigits")
    state = plugin.initial_state(task, 0)  # the warm-up, cached on disk
    full = task.client_data(1, 3, "iid", 0)
    small = ClientData(DetectionSplit(full.train.x[:96], full.train.y[:96], full.train.domain[:96]), full.val)
    return plugin, task, state, small


def test_clients_have_no_labels_and_fedavg_cannot_train_them(setting: tuple) -> None:
    _, task, _, data = setting
    assert not data.train.labeled and not data.val.labeled
    model = task.build_model(0)
    with pytest.raises(ValueError, match="no labels"):
        task.fit(model, data.train, TrainSettings())


def test_phase_one_uploads_the_backbone_only_and_phase_two_everything(setting: tuple) -> None:
    plugin, task, state, data = setting
    private: dict = {}
    update, metrics = plugin.client_update(task, 0, state, data, TrainSettings(seed=1, round=1), private)
    assert metrics["phase"] == 1.0 and list(update) == [k for k in state if k.startswith(BACKBONE)]
    assert any(not np.array_equal(update[k], state[k]) for k in update)  # it did train
    assert TEACHER in private and list(private[TEACHER]) == list(state)
    update_2, metrics_2 = plugin.client_update(task, 0, state, data, TrainSettings(seed=1, round=2), private)
    assert metrics_2["phase"] == 2.0 and list(update_2) == list(state)
    assert not np.array_equal(update_2["head.weight"], state["head.weight"])

    # In phase 1 the server takes only backbones, even from a client that sends more.
    aggregate = plugin.aggregate(None, 1, state, [(update, 10), (update_2, 10)])
    assert np.array_equal(aggregate["head.weight"], state["head.weight"])
    name = next(iter(update))
    assert np.allclose(aggregate[name], (update[name] + update_2[name]) / 2, atol=1e-6)
    aggregate_2 = plugin.aggregate(None, 2, state, [(update_2, 10)])
    assert np.array_equal(aggregate_2["head.weight"], update_2["head.weight"])
    with pytest.raises(ValueError, match="backbone"):
        plugin.check_update(state, OrderedDict(list(update_2.items())[:-1]))


def test_teacher_reset_starts_each_round_from_the_global_model(setting: tuple) -> None:
    plugin, task, state, data = setting
    assert plugin.config.teacher_reset  # the default, as measured (docs/fedsto.md, "Ablations")
    persistent = FedSTOStrategy(plugin.config.model_copy(update={"teacher_reset": False}))
    kept = {TEACHER: OrderedDict((k, np.zeros_like(v)) for k, v in state.items())}  # a teacher that finds nothing
    settings = TrainSettings(seed=1, round=2)
    _, with_kept = persistent.client_update(task, 0, state, data, settings, dict(kept))
    _, with_reset = plugin.client_update(task, 0, state, data, settings, dict(kept))
    assert with_kept["reliable"] == 0 and with_reset["reliable"] > 0


def test_the_server_step_learns_from_labels_and_is_deterministic(setting: tuple) -> None:
    plugin, task, state, _ = setting
    once = plugin.server_update(task, 0, 3, state)
    again = plugin.server_update(task, 0, 3, state)
    assert all(np.array_equal(once[k], again[k]) for k in state)
    server = task.server_data(0)
    untrained = model_arrays(task.build_model(0))
    before = task.evaluate(plugin.build(task, 0, untrained), server)["loss"]
    assert task.evaluate(plugin.build(task, 0, plugin.server_update(task, 0, 3, untrained)), server)["loss"] < before


def test_a_voter_without_labels_accepts_an_honest_update_and_rejects_a_corrupted_one(setting: tuple) -> None:
    plugin, task, state, data = setting
    voter = task.client_data(2, 3, "iid", 0)  # another domain's unlabeled canvases
    honest, _ = plugin.client_update(task, 0, state, data, TrainSettings(seed=3, round=2), {})
    corrupted = plugin.poison(parse_attack("scale:-10"), state, honest)
    judge = plugin.judge(task, 0, state, voter.val, {})
    threshold = 0.95 * judge(plugin.build(task, 0, state))  # the contract's 500 bps tolerance
    share = 1 / 3
    honest_score = judge(plugin.build(task, 0, plugin.apply_update(state, honest, share)))
    corrupted_score = judge(plugin.build(task, 0, plugin.apply_update(state, corrupted, share)))
    assert honest_score >= threshold > corrupted_score, (honest_score, threshold, corrupted_score)


def test_an_uncertain_box_targets_the_teachers_objectness_or_its_score() -> None:
    output = teacher_output({20: (0.8, 2)})
    output[0, 20, 5 + 3] = 40.0  # two classes tie: class probability 1/2, score 0.4 (uncertain)
    by_objectness, _ = pseudo_targets(output)
    by_score, _ = pseudo_targets(output, soft_target="score")
    assert not by_objectness.assigned.any() and not by_score.assigned.any()
    assert float(by_objectness.objectness[0, 20]) == pytest.approx(0.8, abs=1e-4)
    assert float(by_score.objectness[0, 20]) == pytest.approx(0.4, abs=1e-4)
    with pytest.raises(ValueError, match="soft_target"):
        pseudo_targets(output, soft_target="nope")
