"""Property-based fuzzing of the transforms and the dataset: they work, or fail with DataError."""
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from deeplab_gluon.data import DataError, EvalTransform, SegFolderDataset, TrainTransform

IGNORE = 255
DTYPES = st.sampled_from([np.uint8, np.uint16, np.int32, np.int64, np.float32, np.float64, np.bool_])


@st.composite
def image_and_label(draw):
    height, width = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    channels = draw(st.sampled_from([3, 3, 3, 1, 4]))
    image_shape = (height, width, channels) if channels != 1 else (height, width)
    image = draw(hnp.arrays(draw(st.sampled_from([np.uint8, np.uint8, np.uint8, np.float32, np.int64])), image_shape))
    label_shape = draw(st.sampled_from([(height, width), (height, width), (width, height), (height, width, 1)]))
    plausible = hnp.arrays(np.uint8, label_shape, elements=st.sampled_from([0, 1, 2, 3, IGNORE]))
    anything = hnp.arrays(draw(DTYPES), label_shape)  # any value of any dtype: NaN, negatives, 1e30 ...
    return image, draw(st.one_of(plausible, plausible, anything))


def _check_output(image, label, out_image, out_label, shape):
    assert out_image.dtype == np.float32 and out_image.shape == (3, *shape)
    assert np.isfinite(out_image).all()
    assert out_label.dtype == np.float32 and out_label.shape == shape
    allowed = set(np.unique(np.asarray(label).astype(np.int64)).tolist()) | {IGNORE}
    assert set(np.unique(out_label).astype(np.int64).tolist()) <= allowed  # labels never gain values


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pair=image_and_label(), crop=st.integers(1, 40), seed=st.integers(0, 2**32 - 1),
       flip=st.booleans(), blur=st.booleans(), jitter=st.booleans())
def test_train_transform_works_or_raises_data_error(pair, crop, seed, flip, blur, jitter):
    image, label = pair
    transform = TrainTransform(crop_size=crop, flip=flip, blur=blur, color_jitter=jitter)
    try:
        out_image, out_label = transform(image, label, np.random.default_rng(seed))
    except DataError:
        return
    assert image.dtype == np.uint8 and image.ndim == 3 and label.shape == image.shape[:2]
    _check_output(image, label, out_image, out_label, (crop, crop))


@settings(max_examples=200, deadline=None)
@given(pair=image_and_label())
def test_eval_transform_works_or_raises_data_error(pair):
    image, label = pair
    try:
        out_image, out_label = EvalTransform()(image, label)
    except DataError:
        return
    assert image.dtype == np.uint8 and label.shape == image.shape[:2]
    _check_output(image, label, out_image, out_label, label.shape)
    np.testing.assert_array_equal(out_label, label.astype(np.float32))


@st.composite
def label_file_content(draw):
    kind = draw(st.sampled_from(["P", "L", "RGB", "I;16", "bytes"]))
    height, width = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    if kind == "bytes":
        return kind, draw(st.binary(max_size=64))
    channels = (3,) if kind == "RGB" else ()
    dtype = np.uint16 if kind == "I;16" else np.uint8
    return kind, draw(hnp.arrays(dtype, (height, width, *channels)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(image_bytes=st.one_of(st.binary(max_size=64), st.just(None)), label=label_file_content(),
       num_classes=st.integers(1, 30))
def test_dataset_items_are_valid_or_raise_data_error(tmp_path_factory, image_bytes, label, num_classes):
    root = tmp_path_factory.mktemp("fuzz")
    (root / "images").mkdir()
    (root / "labels").mkdir()
    if image_bytes is None:  # a real image of a random size
        Image.fromarray(np.full((7, 9, 3), 120, np.uint8)).save(root / "images" / "a.png")
    else:
        (root / "images" / "a.png").write_bytes(image_bytes)
    kind, content = label
    if kind == "bytes":
        (root / "labels" / "a.png").write_bytes(content)
    else:
        Image.fromarray(content, mode=None if kind == "I;16" else kind).save(root / "labels" / "a.png")
    try:
        dataset = SegFolderDataset(root, num_classes=num_classes)
        image, target = dataset[0]
    except DataError:
        return
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert target.dtype == np.uint8 and target.shape == image.shape[:2]
    assert set(np.unique(target).tolist()) <= set(range(num_classes)) | {IGNORE}
