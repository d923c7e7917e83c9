"""The demo: a labelled synthetic street world, its video, and a Fast-SCNN trained on it shipped in the package.

``rtseg demo`` exports the shipped model, renders the street video with its ground truth, runs it through the
video pipeline, scores it and prints one summary. Light on import: the submodules import NumPy, OpenCV and torch
only where they need them.
"""
