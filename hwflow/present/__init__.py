"""Presentation: figures (`plots`), text tables (`tables`), the files an experiment is shown
in (`experiments`) and the run report rendered from Jinja2 templates (`report`), all drawn
from what the stages wrote. Nothing here computes a result; the stages and experiments
import nothing from it.
"""
