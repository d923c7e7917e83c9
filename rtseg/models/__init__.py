"""The model zoo: FCN, ICNet, BiSeNet and Fast-SCNN, exact to the public checkpoints.

``create_model(name, num_classes=..., checkpoint=...)`` builds a model in inference form. Model files import
torch; this module does not, so listing names needs only the registry.
"""

from .registry import ModelInfo as ModelInfo
from .registry import create_model as create_model
from .registry import default_preprocessing as default_preprocessing
from .registry import list_models as list_models
from .registry import model_info as model_info
from .registry import register_model as register_model


def load_checkpoint(model, path) -> None:
    """Load a public checkpoint (bare or nested state_dict, ``module.`` prefixes) into ``model``."""
    from .checkpoint import load_checkpoint as _load

    _load(model, path)
