"""ConfusionMatrix against hand-computed matrices and scores."""
import json
import warnings

import mxnet as mx
import numpy as np
import pytest

from deeplab_gluon.metrics import ConfusionMatrix

# 3 classes, one void pixel. Valid (gt, pred) pairs: (0,0) (0,1) (1,1) (1,1) (2,2) (2,0) (0,0).
LABEL = np.array([[0, 0, 1, 1], [2, 2, 255, 0]])
PRED = np.array([[0, 1, 1, 1], [2, 0, 2, 0]])
MATRIX = np.array([[2, 1, 0],
                   [0, 2, 0],
                   [1, 0, 1]])


def test_hand_computed_matrix_and_scores():
    metric = ConfusionMatrix(3)
    metric.update(PRED, LABEL)
    np.testing.assert_array_equal(metric.matrix, MATRIX)
    assert metric.matrix.dtype == np.int64 and metric.total == 7
    assert metric.pixel_accuracy() == pytest.approx(5 / 7)
    np.testing.assert_allclose(metric.class_accuracy(), [2 / 3, 2 / 2, 1 / 2])
    assert metric.mean_accuracy() == pytest.approx((2 / 3 + 1 + 1 / 2) / 3)
    # IoU = diag / (row + col - diag): 2/(3+3-2), 2/(2+3-2), 1/(2+1-1)
    np.testing.assert_allclose(metric.iou(), [2 / 4, 2 / 3, 1 / 2])
    assert metric.miou() == pytest.approx((1 / 2 + 2 / 3 + 1 / 2) / 3)
    assert metric.fwiou() == pytest.approx(3 / 7 * 1 / 2 + 2 / 7 * 2 / 3 + 2 / 7 * 1 / 2)


def test_accumulates_over_updates_and_ndarrays():
    metric = ConfusionMatrix(3)
    metric.update(mx.nd.array(PRED[:1]), mx.nd.array(LABEL[:1]))  # float NDArrays holding integers
    metric.update(PRED[1:], LABEL[1:])
    np.testing.assert_array_equal(metric.matrix, MATRIX)
    metric.reset()
    assert metric.total == 0 and not metric.matrix.any()


def test_absent_class_is_nan_and_left_out_of_the_mean():
    metric = ConfusionMatrix(4)  # class 3 appears in neither ground truth nor prediction
    metric.update(PRED, LABEL)
    iou = metric.iou()
    assert np.isnan(iou[3]) and np.isnan(metric.class_accuracy()[3])
    assert metric.miou() == pytest.approx((1 / 2 + 2 / 3 + 1 / 2) / 3)  # not / 4 with a zero
    assert metric.mean_accuracy() == pytest.approx((2 / 3 + 1 + 1 / 2) / 3)


def test_class_only_predicted_counts_as_zero_iou():
    metric = ConfusionMatrix(4)
    pred = PRED.copy()
    pred[0, 0] = 3  # a ground-truth 0 predicted as 3, a class absent from the ground truth
    metric.update(pred, LABEL)
    assert metric.iou()[3] == 0.0
    assert np.isnan(metric.class_accuracy()[3])  # mAcc only covers classes in the ground truth
    np.testing.assert_allclose(metric.iou()[:3], [1 / 4, 2 / 3, 1 / 2])
    assert metric.miou() == pytest.approx((1 / 4 + 2 / 3 + 1 / 2 + 0) / 4)


def test_all_ignore_image_gives_nan_without_warnings():
    metric = ConfusionMatrix(3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metric.update(np.zeros((4, 4), int), np.full((4, 4), 255))
        assert metric.total == 0
        assert np.isnan(metric.pixel_accuracy()) and np.isnan(metric.mean_accuracy())
        assert np.isnan(metric.miou()) and np.isnan(metric.fwiou())
        summary = metric.summary()
        table = metric.table()
    assert summary["pixAcc"] is None and summary["mIoU"] is None and summary["IoU"]["class0"] is None
    json.dumps(summary, allow_nan=False)  # strict JSON
    assert "pixAcc        -" in table


def test_out_of_range_values_are_named():
    metric = ConfusionMatrix(3)
    with pytest.raises(ValueError, match=r"ground-truth label values \[3, 7\] outside 0..2"):
        metric.update(np.zeros((2, 2), int), np.array([[0, 3], [7, 255]]))
    with pytest.raises(ValueError, match=r"prediction values \[-1, 5\] outside 0..2"):
        metric.update(np.array([[5, -1], [0, 0]]), np.array([[0, 1], [2, 2]]))
    metric.update(np.array([[9, 1]]), np.array([[255, 1]]))  # predictions at void pixels are not checked
    assert metric.total == 1
    with pytest.raises(ValueError, match="prediction shape"):
        metric.update(np.zeros((2, 3)), np.zeros((3, 2)))


def test_merge_for_distributed_evaluation():
    first, second, whole = ConfusionMatrix(3), ConfusionMatrix(3), ConfusionMatrix(3)
    first.update(PRED[:1], LABEL[:1])
    second.update(PRED[1:], LABEL[1:])
    whole.update(PRED, LABEL)
    first += second
    np.testing.assert_array_equal(first.matrix, whole.matrix)
    assert ConfusionMatrix(3).merge(whole).merge(whole).total == 14
    with pytest.raises(ValueError, match="cannot merge a 4-class matrix"):
        first.merge(ConfusionMatrix(4))


def test_summary_and_table():
    metric = ConfusionMatrix(4)
    metric.update(PRED, LABEL)
    names = ["background", "cat", "dog", "tvmonitor"]
    summary = metric.summary(names)
    assert json.loads(json.dumps(summary, allow_nan=False)) == summary
    assert summary["pixAcc"] == pytest.approx(5 / 7) and summary["num_pixels"] == 7
    assert summary["IoU"] == {"background": 0.5, "cat": pytest.approx(2 / 3), "dog": 0.5, "tvmonitor": None}
    assert set(summary) == {"pixAcc", "mAcc", "mIoU", "fwIoU", "IoU", "num_pixels"}
    lines = metric.table(names).splitlines()
    assert lines[2:6] == ["background    50.00", "cat           66.67", "dog           50.00",
                          "tvmonitor         -"]
    assert "pixAcc        71.43" in lines and "mIoU          55.56" in lines and "fwIoU         54.76" in lines
    assert "mAcc          72.22" in lines
    with pytest.raises(ValueError, match="3 class names for 4 classes"):
        metric.table(names[:3])
