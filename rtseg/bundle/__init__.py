"""The bundle format: what ``rtseg export`` writes and every other part of rtseg reads.

A bundle is a folder holding ``rtseg.json`` (a :class:`Manifest`: the model and its classes, the input sizes and
normalisation, the output and the upsample still owed, each artifact's sha256, the verification report, the build
stamp) and the graphs it names. This package owns the format: the names and version (:mod:`.format`), the types
(:mod:`.manifest`, :mod:`.inputs`, :mod:`.preprocessing`, :mod:`.classes`), the one reader and writer
(:mod:`.store`) and the engine-stamp check (:mod:`.engine`). It imports only rtseg's base modules.
"""

from .classes import DATASETS as DATASETS
from .classes import class_table as class_table
from .engine import check_engine_fits as check_engine_fits
from .engine import stamp_problems as stamp_problems
from .format import ENGINE_FILE as ENGINE_FILE
from .format import FAILED_MANIFEST as FAILED_MANIFEST
from .format import FORMAT_VERSION as FORMAT_VERSION
from .format import FP16_FILE as FP16_FILE
from .format import MANIFEST as MANIFEST
from .format import ONNX_FILE as ONNX_FILE
from .format import STEPS as STEPS
from .inputs import InputSpec as InputSpec
from .manifest import Artifact as Artifact
from .manifest import Manifest as Manifest
from .manifest import ModelMeta as ModelMeta
from .manifest import Upsample as Upsample
from .preprocessing import IMAGENET as IMAGENET
from .preprocessing import Preprocessing as Preprocessing
from .preprocessing import normalize as normalize
from .store import Bundle as Bundle
from .store import check_artifact as check_artifact
from .store import open_bundle as open_bundle
from .store import read_document as read_document
from .store import read_manifest as read_manifest
from .store import rebuild_command as rebuild_command
from .store import write_manifest as write_manifest
