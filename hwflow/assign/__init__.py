"""Error model, per-layer multiplier assignment, retraining and energy accounting.

Modules: `stats` (operand statistics, RUN/stats.npz), `error_model` (predicted accumulator
error of every layer x multiplier pair), `select` (cheapest fitting multiplier), `energy`
(E_rel, uniform and recorded-operand figures), `assignment` (an assignment's tables,
checked against the library), `validate` (predicted vs measured by table emulation),
`flow` (`hwflow assign`), `retrain` (`hwflow retrain`, STE fine-tuning). Sweeps and
studies built on these: `hwflow.experiments`.
"""

from hwflow.assign.assignment import assignment_tables
from hwflow.assign.error_model import ERROR_MODELS, Prediction, predict

__all__ = ["ERROR_MODELS", "Prediction", "assignment_tables", "predict"]
