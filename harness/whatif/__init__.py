"""Counterfactual truncation from stored logprobs: what would top_p / top_k / min_p have changed?

    positions.py  a run's generated positions as arrays (returned candidates, sampled token)
    truncate.py   one setting at every position, under the two extreme unseen tails
    estimate.py   per cell and setting: shares, mass, candidate-set size, entropy, with intervals
    suggest.py    which hypothetical settings are worth running

`whatif_frame(rows, settings)` returns the DataFrame that `harness whatif` prints (and that a
report section can render).
"""

from harness.whatif.estimate import (
    DEFAULT_VOCAB,
    Setting,
    as_run,
    cell_setting,
    whatif_frame,
)
from harness.whatif.suggest import suggestions

DEFAULT_SETTINGS = (Setting(top_p=0.9), Setting(top_p=0.95), Setting(top_k=5), Setting(top_k=40),
                    Setting(min_p=0.05), Setting(min_p=0.1))
"""What `harness whatif` and the report estimate when no setting is given: one knob at a time."""

__all__ = ["DEFAULT_SETTINGS", "DEFAULT_VOCAB", "Setting", "as_run", "cell_setting", "suggestions", "whatif_frame"]
