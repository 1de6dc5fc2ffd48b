"""The Voila dashboard of the course: flows bending a Gaussian into data, layer by layer.

    from flowedu.app import Dashboard
    Dashboard().show()

Modules: frames (one pass of a flow, every
intermediate kept), canvas (the browser-drawn widgets, with canvas.js and loss_curve.js),
training (training in a background thread) and dashboard (the controls and their wiring).
Importing this package does not import torch; building a Dashboard does.
"""

from .dashboard import Dashboard

__all__ = ["Dashboard"]
