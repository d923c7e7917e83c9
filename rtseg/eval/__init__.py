"""``rtseg eval``: the FCN paper's metrics over a labelled set, parity between two backends or bundles.

Light on import: metrics and readers need NumPy (and Pillow when labels are read); the runtime is imported only
by the command that segments frames.
"""

from .metrics import ConfusionMatrix as ConfusionMatrix
from .metrics import Scores as Scores
from .metrics import scores as scores
from .readers import Dataset as Dataset
from .readers import open_dataset as open_dataset
