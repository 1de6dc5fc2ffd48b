"""scripts/make_readme_figure.py remakes the README's opening figure from the shipped flows."""

import importlib.util
from pathlib import Path

import pytest
from PIL import Image

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "make_readme_figure.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("make_readme_figure", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_it_writes_a_small_png_with_a_row_per_dataset(script, tmp_path):
    out = tmp_path / "figure.png"
    assert script.main(["--output", str(out)]) == 0
    assert 20_000 < out.stat().st_size < script.MAX_BYTES
    with Image.open(out) as image:
        assert image.format == "PNG"
        width, height = image.size
    assert width > height > 0.5 * width  # five panels across, three rows down


def test_the_figure_shows_each_dataset_from_z_to_x(script):
    fig = script.draw(("moons",))
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0] == "z ~ N(0, I)" and titles[3] == "x = f(z)"
    assert fig.axes[0].get_ylabel() == "moons"
    assert fig.axes[4].images  # the log-density heatmap


def test_it_refuses_an_output_that_is_not_a_png(script, tmp_path):
    with pytest.raises(SystemExit):
        script.main(["--output", str(tmp_path / "figure.jpg")])
    with pytest.raises(SystemExit):
        script.main(["--output", str(tmp_path / "missing" / "figure.png")])
