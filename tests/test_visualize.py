"""side_by_side panels and overlay blending."""
import numpy as np
import pytest
from PIL import Image

from deeplab_gluon.data import VOC_CLASSES, voc_palette
from deeplab_gluon.visualize import overlay, side_by_side

PALETTE = voc_palette()


@pytest.fixture
def scene():
    rng = np.random.RandomState(0)
    image = rng.randint(0, 256, size=(60, 90, 3)).astype(np.uint8)
    prediction = np.zeros((60, 90), np.uint8)
    prediction[10:50, 20:70] = 15  # person
    truth = np.zeros((60, 90), np.uint8)
    truth[12:52, 20:70] = 12  # dog
    truth[11, :] = 255
    return image, prediction, truth


def panel_pixels(figure, axes, picture):
    """The part of the saved picture (H, W, 3) that ``axes`` covers (figure y runs upwards)."""
    box = axes.get_window_extent()
    height = picture.shape[0]
    return picture[int(height - box.y1) + 1:int(height - box.y0) - 1, int(box.x0) + 1:int(box.x1) - 1]


@pytest.mark.parametrize("with_truth", [True, False])
def test_side_by_side_panels_and_legend(scene, tmp_path, with_truth):
    image, prediction, truth = scene
    path = tmp_path / "compare.png"
    figure = side_by_side(image, prediction, truth if with_truth else None, VOC_CLASSES, path=path)
    titles = [axes.get_title() for axes in figure.axes]
    assert titles == (["image", "prediction", "ground truth"] if with_truth else ["image", "prediction"])
    lefts = [axes.get_position().x0 for axes in figure.axes]
    assert lefts == sorted(lefts)  # one row, in title order
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert legend == (["background", "dog", "person", "ignored"] if with_truth else ["background", "person"])

    with Image.open(path) as png:
        assert png.format == "PNG"
        width, height = png.size
        picture = np.array(png.convert("RGB"))
    inches = figure.get_size_inches()
    assert abs(width - inches[0] * figure.dpi) < 1 and abs(height - inches[1] * figure.dpi) < 1
    panels = [panel_pixels(figure, axes, picture) for axes in figure.axes]
    person, dog = PALETTE[15], PALETTE[12]

    def share(panel, colour):
        return (panel == colour).all(axis=2).mean()

    # the prediction panel is 40x50 of 60x90 person pixels, drawn with the exact palette colour
    assert share(panels[1], person) == pytest.approx(40 * 50 / (60 * 90), abs=0.05)
    assert share(panels[0], person) < 0.01 and share(panels[1], dog) == 0
    if with_truth:
        assert share(panels[2], dog) == pytest.approx(40 * 50 / (60 * 90), abs=0.05)
        assert share(panels[2], PALETTE[255]) > 0 and share(panels[2], person) == 0
    assert width / height == pytest.approx(len(panels) * 90 / 60, rel=0.3)  # panels side by side, not stacked


def test_side_by_side_refuses_mismatched_sizes(scene):
    image, prediction, _ = scene
    with pytest.raises(ValueError, match="prediction is 45x60 but the image is 90x60"):
        side_by_side(image, prediction[:, :45])


def test_overlay_blends_and_keeps_the_background(scene):
    image, prediction, _ = scene
    blended = overlay(image, prediction, alpha=0.25, keep_class=0)
    inside = prediction == 15
    expected = 0.75 * image[inside].astype(float) + 0.25 * PALETTE[15].astype(float)
    assert np.abs(blended[inside] - expected).max() <= 1  # rounding
    np.testing.assert_array_equal(blended[~inside], image[~inside])
    everywhere = overlay(image, prediction, alpha=1.0)
    np.testing.assert_array_equal(everywhere, PALETTE[prediction])
    with pytest.raises(ValueError, match="alpha"):
        overlay(image, prediction, alpha=1.5)
