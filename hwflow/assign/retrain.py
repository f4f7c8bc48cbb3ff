"""`hwflow retrain`: fine-tune a run in approx mode with an assignment's tables.

Forward passes go through the chosen multipliers' tables (bit-exact emulation), gradients
are the exact products' (straight-through, `hwflow.nn.kernels.ApproxMatmul`), or with
`gradient="table"` (config `retrain.gradient`, `--gradient`) the tables' own slopes
along each operand (`hwflow.nn.kernels.table_gradients`); the forward is the same.
Quantization ranges stay frozen (observers off) so the integer datapath the RTL
implements does not drift. Adam at lr 1e-3 by default (the seed fine-tunes ResNets 10
epochs at 1e-3).

Every epoch writes `RUN/checkpoints/retrain-<key>.last.pt` (model, optimizer, RNG state,
best-so-far); a rerun resumes from it. The kept model is the epoch with the best
validation accuracy, ties broken by validation loss (epoch 0 = before retraining counts),
never chosen by test accuracy.
Outputs: `RUN/checkpoints/retrain-<key>.pt` and `RUN/retrain.json` (or `--out`).
"""

from __future__ import annotations

import copy
import io
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hwflow.artifacts import RETRAIN_FILE, Assignment, RetrainResult
from hwflow.assign.assignment import assignment_tables
from hwflow.assign.correct import apply_corrections, has_corrections
from hwflow.errors import AssignmentError
from hwflow.io import load_torch, save_torch, sha256_bytes
from hwflow.progress import progress

DEFAULT_EPOCHS = 3
DEFAULT_LR = 1e-3


def _val_score(run: Any, model: Any) -> tuple[float, float]:
    """(validation accuracy, -validation loss): checkpoints are chosen by accuracy, ties
    (small validation sets saturate at 100 %) by the lower cross-entropy."""
    import torch
    import torch.nn.functional as F

    was_training = model.training
    model.eval()
    correct, loss, n = 0, 0.0, 0
    with torch.no_grad():
        for x, y in run.data.val.batches(run.config.data.eval_batch_size):
            logits = model(x)
            correct += int((logits.argmax(1) == y).sum())
            loss += float(F.cross_entropy(logits, y, reduction="sum"))
            n += len(y)
    model.train(was_training)
    return correct / max(n, 1), -loss / max(n, 1)


def predict_test_set(run: Any, model: Any) -> Any:
    """Predicted class of every test image (int16 numpy array), in the split's order."""
    import torch

    was_training = model.training
    model.eval()
    out = []
    with torch.no_grad():
        for x, _ in run.data.test.batches(run.config.data.eval_batch_size, augment=False):
            out.append(model(x).argmax(1).to(torch.int16).cpu())
    model.train(was_training)
    return torch.cat(out).numpy() if out else torch.zeros(0, dtype=torch.int16).numpy()


@dataclass(frozen=True)
class Schedule:
    """Optimizer and learning-rate schedule of a retraining.

    `sgd`: SGD with `momentum`, the lr multiplied by `gamma` every `step_every` epochs
    (0: constant), the reference method's recipe; `adam`: Adam at a constant lr."""

    optimizer: str = "adam"
    momentum: float = 0.9
    step_every: int = 0
    gamma: float = 0.1

    def tag(self) -> str:
        return "" if self == Schedule() else f"|{self}"  # default keys as before

    def build(self, params: list, lr: float) -> tuple[Any, Any]:
        import torch

        if self.optimizer not in OPTIMIZERS:
            raise AssignmentError(
                f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}"
            )
        if self.step_every < 0 or not 0 < self.gamma <= 1:
            raise AssignmentError("--step-every must be >= 0 and --gamma in (0, 1]")
        if self.optimizer == "sgd":
            opt: Any = torch.optim.SGD(params, lr=lr, momentum=self.momentum)
        else:
            opt = torch.optim.Adam(params, lr=lr)
        step = self.step_every or 10**9
        return opt, torch.optim.lr_scheduler.StepLR(opt, step, gamma=self.gamma)


OPTIMIZERS = ("adam", "sgd")
DEFAULT_SCHEDULE = Schedule()


def retrain_key(
    assignment_text: bytes,
    epochs: int,
    lr: float,
    seed: int,
    gradient: str = "ste",
    schedule: Schedule = Schedule(),
) -> str:
    """Names the checkpoint of one (assignment, settings) retraining, for resuming."""
    tag = "" if gradient == "ste" else f"|{gradient}"  # STE keys as before
    text = f"|{epochs}|{lr}|{seed}{tag}{schedule.tag()}"
    return sha256_bytes(assignment_text + text.encode())[:12]


def check_retrain_options(epochs: int, lr: float) -> None:
    """Refuse retraining settings before anything is written (sweeps and studies too)."""
    if epochs < 0:
        raise AssignmentError(f"--epochs must be >= 0, got {epochs}")
    if not (lr > 0 and math.isfinite(lr)):  # nan compares false: refused too
        raise AssignmentError(f"--lr must be a finite number > 0, got {lr}")


def retrain_run(
    run_dir: str | os.PathLike[str],
    assignment: str | os.PathLike[str],
    *,
    epochs: int = DEFAULT_EPOCHS,
    lr: float = DEFAULT_LR,
    seed: int = 0,
    library: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    max_steps: int | None = None,
    quiet: bool = True,
    log: Callable[[str], None] = lambda _m: None,
    run: Any = None,
    device: str | None = None,
    gradient: str | None = None,
    predictions_out: str | os.PathLike[str] | None = None,
    schedule: Schedule = Schedule(),
) -> dict[str, Any]:
    """Retrain and return (and write) the retrain.json document. `schedule`: optimizer
    and lr schedule (`Schedule`). `device`: "cpu" or
    "cuda" (default: cuda when available), unless `run` (a loaded run) is given.
    `gradient`: "ste" or "table" (None: the run config's `retrain.gradient`).
    `predictions_out`: also save the kept model's predicted class per test image (.npy),
    for paired tests between models."""
    # Long for its signature and the retrain.json it assembles; the epochs are _fine_tune's.

    from hwflow.nn import apply_tables, approx_layers, set_observing
    from hwflow.nn.kernels import GRADIENTS
    from hwflow.nn.run import load_run, torch_threads

    check_retrain_options(epochs, lr)
    run_dir = Path(run_dir)
    assignment = Path(assignment)
    chosen = Assignment.load(assignment)
    lib_path = chosen.library_path(library)
    run = run if run is not None else load_run(run_dir, device=device)
    gradient = gradient if gradient is not None else run.config.retrain.gradient
    if gradient not in GRADIENTS:
        choices = ", ".join(GRADIENTS)
        raise AssignmentError(f"--gradient must be one of {choices}, got {gradient!r}")
    with torch_threads(run.threads):  # as `hwflow train` does
        tables = _complete_tables(run, chosen, lib_path)
        model = run.fresh_model()
        acc: dict[str, float] = {}
        top5: dict[str, float] = {}

        def test_accuracy(key: str) -> None:
            both = run.accuracies(model, "test")
            acc[key], top5[key] = both["top1"], both["top5"]

        test_accuracy("quant")
        val = {"quant": run.evaluate(model, "val")}
        apply_tables(model, {n: (t, s) for n, (_, t, s) in tables.items()})
        set_observing(model, False)
        for _, layer in approx_layers(model):
            layer.gradient = gradient
        # each lever's share: tables alone, then with the corrections the assignment keeps
        if chosen.corrections is not None or has_corrections(chosen):
            test_accuracy("approx_uncorrected")
            val["approx_uncorrected"] = _val_score(run, model)[0]
            apply_corrections(run, model, chosen, str(assignment))
        test_accuracy("approx_before")
        before = _val_score(run, model)
        val["approx_before"] = before[0]

        key = retrain_key(chosen.raw, epochs, lr, seed, gradient, schedule)
        ckpt_dir = run_dir / "checkpoints"
        last = ckpt_dir / f"retrain-{key}.last.pt"
        best_val, best_epoch, history = _fine_tune(
            run, model, last, schedule, epochs=epochs, lr=lr, seed=seed, max_steps=max_steps,
            quiet=quiet, log=log, before=before,
        )  # fmt: skip
        test_accuracy("approx_after")
        if predictions_out is not None:
            import numpy as np

            from hwflow.io import write_bytes

            buf = io.BytesIO()
            np.save(buf, predict_test_set(run, model))
            write_bytes(predictions_out, buf.getvalue())
        val["approx_after"] = best_val[0]
        assigned = {n: m for n, (m, _, _) in tables.items()}
        save_torch(
            ckpt_dir / f"retrain-{key}.pt",
            {"model": model.state_dict(), "assignment": assigned, "val_acc": best_val[0]},
        )
        result = {
            "assignment": str(assignment.resolve()),
            "checkpoint": str((ckpt_dir / f"retrain-{key}.pt").resolve()),
            "epochs": epochs,
            "best_epoch": best_epoch,
            "lr": lr,
            "seed": seed,
            "gradient": gradient,
            "schedule": asdict(schedule),
            "accuracy": acc,
            "accuracy_top5": top5,
            "val_accuracy": val,
            "energy": chosen.energy.to_dict() if chosen.energy else {},
            "layers": assigned,
            "history": history,
        }
        RetrainResult(result).save(Path(out) if out is not None else run_dir / RETRAIN_FILE)
        last.unlink(missing_ok=True)
        return result


def _fine_tune(
    run: Any,
    model: Any,
    last: Path,
    schedule: Schedule,
    *,
    epochs: int,
    lr: float,
    seed: int,
    max_steps: int | None,
    quiet: bool,
    log: Callable[[str], None],
    before: tuple[float, float],
) -> tuple[tuple[float, float], int, list[dict[str, Any]]]:
    """`schedule`'s optimizer over the weights (not the sigmas), resuming from `last` and
    saving it every epoch; leaves `model` at its best-validation epoch (`before`: epoch 0's score).
    Returns (best score, best epoch, per-epoch history)."""
    import torch

    opt, sched = schedule.build(_weights(model), lr)
    gen = torch.Generator().manual_seed(seed)
    start, best_val, best_epoch = 0, before, 0
    best_state, history = copy.deepcopy(model.state_dict()), []
    if last.is_file():
        state = load_torch(last)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if "scheduler" in state:
            sched.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"])
        start, best_val, best_epoch = state["epoch"], state["best_val"], state["best_epoch"]
        best_state, history = state["best_state"], state["history"]
        log(f"retrain: resuming after epoch {start}")
    for epoch in range(start, epochs):
        desc = f"retrain {epoch + 1}/{epochs}"
        mean_loss = _train_epoch(run, model, opt, gen, max_steps, desc, quiet)
        sched.step()
        v = _val_score(run, model)
        history.append(
            {"epoch": epoch + 1, "train_loss": mean_loss, "val_acc": v[0], "val_loss": -v[1]}
        )
        log(f"retrain epoch {epoch + 1}/{epochs}: loss {mean_loss:.4f} val {v[0]:.4f}")
        if v > best_val:
            best_val, best_epoch, best_state = v, epoch + 1, copy.deepcopy(model.state_dict())
        save_torch(
            last,
            {
                "epoch": epoch + 1,
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "generator": gen.get_state(),
                "best_val": best_val,
                "best_epoch": best_epoch,
                "best_state": best_state,
                "history": history,
            },
        )
    model.load_state_dict(best_state)
    return best_val, best_epoch, history


def _weights(model: Any) -> list:
    """The parameters retraining updates: all but the learned AGN sigmas."""
    from hwflow.nn import approx_layers

    sigma_ids = {id(layer.sigma) for _, layer in approx_layers(model)}
    return [p for p in model.parameters() if id(p) not in sigma_ids]


def recover(run: Any, model: Any, steps: int, *, lr: float = DEFAULT_LR, seed: int = 0) -> None:
    """`steps` training batches of the default schedule on `model` (tables and corrections
    applied), in place: the short recovery a loss budget can be measured after
    (`hwflow.assign.budget`). Observers off and the STE gradient, as `retrain_run` does
    by default; more steps than an epoch has go on into further shuffled epochs."""
    import torch

    from hwflow.nn import approx_layers, set_observing

    set_observing(model, False)
    for _, layer in approx_layers(model):
        layer.gradient = "ste"
    opt, _ = DEFAULT_SCHEDULE.build(_weights(model), lr)
    gen = torch.Generator().manual_seed(seed)
    per_epoch = run.data.train.num_batches(run.config.data.batch_size, None)
    while steps > 0 and per_epoch:
        batches = min(steps, per_epoch)
        _train_epoch(run, model, opt, gen, batches, "recovery", quiet=True)
        steps -= batches
    model.eval()


def _train_epoch(
    run: Any, model: Any, opt: Any, gen: Any, max_steps: int | None, desc: str, quiet: bool
) -> float:
    """One pass over the (shuffled) training split; the mean training loss."""
    import torch.nn.functional as F

    bs = run.config.data.batch_size
    model.train()
    seen = loss_sum = 0.0
    batches = run.data.train.batches(bs, shuffle=True, generator=gen, max_batches=max_steps)
    n = run.data.train.num_batches(bs, max_steps)
    for x, y in progress(batches, total=n, desc=desc, quiet=quiet):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += float(loss.detach()) * len(y)
        seen += len(y)
    return loss_sum / max(seen, 1)


def _complete_tables(
    run: Any, assignment: Assignment, library: Path
) -> dict[str, tuple[str, Any, bool]]:
    """{layer: (multiplier, table, signed)} for every approximable layer of the run."""
    layers = run.summary.signedness()
    tables = assignment_tables(assignment, library, layers)
    missing = sorted(set(layers) - set(tables))
    if missing:
        where = assignment.path or "assignment"
        raise AssignmentError(f"{where}: no multiplier for layers {', '.join(missing)}")
    return tables


def evaluate_assignment(
    run_dir: str | os.PathLike[str],
    assignment: str | os.PathLike[str],
    *,
    split: str = "test",
    data_dir: str | None = None,
    library: str | os.PathLike[str] | None = None,
    retrained: str | os.PathLike[str] | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Accuracy in approx mode with an assignment's tables (`hwflow evaluate --mode approx`).

    `retrained`: a retrain checkpoint (`retrain.json`'s `checkpoint`) whose weights to use;
    by default the run's own (not retrained) weights.
    """

    from hwflow.nn import apply_tables
    from hwflow.nn.run import load_run, load_weights

    run = load_run(run_dir, data_dir, device)
    chosen = Assignment.load(assignment)
    tables = _complete_tables(run, chosen, chosen.library_path(library))
    model = run.fresh_model()
    checkpoint = "checkpoints/agn.pt"
    if retrained is not None:
        load_weights(model, retrained)
        checkpoint = str(retrained)
    apply_tables(model, {n: (t, s) for n, (_, t, s) in tables.items()})
    # retrained weights carry their batch-norm statistics: only the offsets then
    apply_corrections(run, model, chosen, str(assignment), bn=retrained is None)
    acc = run.accuracies(model, split)
    return {
        "run": str(run_dir),
        "mode": "approx",
        "split": split,
        "assignment": str(assignment),
        "checkpoint": checkpoint,
        "accuracy": acc["top1"],
        "accuracy_top5": acc["top5"],
        "device": run.device.type,
        "multipliers": {n: m for n, (m, _, _) in tables.items()},
    }
