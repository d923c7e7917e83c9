"""Streaming segmentation of video files, images, webcams and stream URLs (``rtseg run``).

    from rtseg.video import open_source, iter_results, run_pipeline

Importing this package needs no heavy dependency; PyAV and OpenCV are imported when a source or sink opens.
"""

from .pipeline import Result as Result
from .pipeline import SourceFailed as SourceFailed
from .pipeline import iter_results as iter_results
from .pipeline import run_pipeline as run_pipeline
from .sources import Frame as Frame
from .sources import FrameSource as FrameSource
from .sources import open_source as open_source
from .stats import RunSummary as RunSummary
