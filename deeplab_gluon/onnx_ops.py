"""ONNX conversion of ``BilinearResize2D(mode='like')``, which MXNet 1.9.1's exporter refuses.

DeepLabV3 upsamples its logits to the input's size with ``F.contrib.BilinearResize2D(logits, x,
mode="like")``, so that one hybridized network takes any image size. ``mx.onnx.export_model`` only
converts the ``mode='size'`` form (fixed ``height``/``width`` or scales) and stops with "height, width
or scale_height, scale_width cannot be 0". The ``like`` form maps directly onto ONNX: take
``(N, C)`` from the data's shape and ``(H, W)`` from the reference's, and ``Resize`` to that with
``coordinate_transformation_mode="align_corners"`` (MXNet's default ``align_corners=True`` maps corner
pixels onto corner pixels, which is exactly that mode). The size is then computed in the graph, so
the ONNX model keeps dynamic height and width and the model code stays as it is.

The converter is added to the exporter's registry (its own extension mechanism,
``MXNetGraph.register``) and hands every other form to the built-in converter.
"""
from __future__ import annotations

OP_NAME = "_contrib_BilinearResize2D"
_OPSET = 12  # the exporter looks converters up from the model's opset down to 12; it keeps this op at 12


def register_resize_like() -> None:
    """Make ``mx.onnx.export_model`` convert ``BilinearResize2D(mode='like')``; safe to call repeatedly.

    Needs the ``onnx`` package (the exporter's registry is only filled when it imports).
    """
    import onnx  # noqa: F401  (fail here, clearly, when it is missing)
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph
    from mxnet.onnx.mx2onnx._op_translations._op_translations_opset12 import create_tensor, get_inputs

    registry = MXNetGraph.registry_.setdefault(_OPSET, {})
    builtin = registry.get(OP_NAME)
    if getattr(builtin, "handles_mode_like", False):
        return

    def convert_resize(node, **kwargs):
        from onnx.helper import make_node

        name, inputs, attrs = get_inputs(node, kwargs)
        if attrs.get("mode", "size") != "like":
            return builtin(node, **kwargs)
        if str(attrs.get("align_corners", "True")) != "True":
            raise NotImplementedError(f"{name}: BilinearResize2D(mode='like', align_corners=False) is not converted")
        initializer = kwargs["initializer"]
        create_tensor([], f"{name}_roi", initializer, dtype="float32")
        create_tensor([], f"{name}_scales", initializer, dtype="float32")  # empty: the sizes input decides
        for index in (0, 2, 4):  # slice bounds: (N, C) is shape[0:2], (H, W) shape[2:4]
            create_tensor([index], f"{name}_{index}", initializer)
        return [
            make_node("Shape", [inputs[0]], [f"{name}_data_shape"]),
            make_node("Slice", [f"{name}_data_shape", f"{name}_0", f"{name}_2"], [f"{name}_batch_channels"]),
            make_node("Shape", [inputs[1]], [f"{name}_like_shape"]),
            make_node("Slice", [f"{name}_like_shape", f"{name}_2", f"{name}_4"], [f"{name}_height_width"]),
            make_node("Concat", [f"{name}_batch_channels", f"{name}_height_width"], [f"{name}_sizes"], axis=0),
            make_node("Resize", [inputs[0], f"{name}_roi", f"{name}_scales", f"{name}_sizes"], [name],
                      mode="linear", coordinate_transformation_mode="align_corners", name=name),
        ]

    convert_resize.handles_mode_like = True
    registry[OP_NAME] = convert_resize
