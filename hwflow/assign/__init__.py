"""Error model, per-layer multiplier assignment, retraining, sweep and energy accounting.

Modules: `stats` (operand statistics, RUN/stats.npz), `error_model` (predicted accumulator
error of every layer x multiplier pair), `select` (cheapest fitting multiplier), `energy`
(E_rel, uniform and recorded-operand figures), `assignment` (assignment.yaml, reading it
back validated), `validate` (predicted vs measured by table emulation), `flow` (`hwflow
assign`), `retrain` (`hwflow retrain`, STE fine-tuning), `sweep` (`hwflow sweep`).
"""

from hwflow.assign.assignment import load_assignment
from hwflow.assign.error_model import MODELS, Prediction, predict

__all__ = ["MODELS", "Prediction", "load_assignment", "predict"]
