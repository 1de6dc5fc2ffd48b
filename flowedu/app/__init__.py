"""The Voila dashboard of the course: flows bending a Gaussian into data, layer by layer.

    from flowedu.app import Dashboard
    Dashboard().show()

Modules: numpy_flow (the shipped flows' passes with NumPy alone), frames (one pass of a
flow, every intermediate kept), canvas (the browser-drawn widgets, with canvas.js and
loss_curve.js), training (training in a background thread, importing torch when Train is
first pressed), dashboard (the controls and their wiring) and serve (the server for a
class: python -m flowedu.app.serve). Showing the shipped flows never imports torch.
"""

__all__ = ["Dashboard"]


def __getattr__(name: str):
    # Lazy, so that the server (flowedu.app.serve) does not load the widgets.
    if name == "Dashboard":
        from .dashboard import Dashboard

        return Dashboard
    raise AttributeError(f"module 'flowedu.app' has no attribute {name!r}")
