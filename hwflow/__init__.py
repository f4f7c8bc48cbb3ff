"""hwflow: approximate-multiplier hardware/software co-design.

characterize -> train (AGN) -> assign -> retrain -> export -> verify. See README.md and docs/.
"""

__version__ = "0.1.0"
