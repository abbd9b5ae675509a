"""``ModelSpec.from_config``: every spec field comes from the job's flags, and a missing one is an error."""
from dataclasses import dataclass

import pytest

from deeplab_gluon.models import ModelSpec
from deeplab_gluon.train import parse_config


def test_every_spec_field_is_read_from_the_training_flags():
    config = parse_config(["--base_architecture", "resnet50_v2", "--aspp_or_vortex", "vortex", "--num_classes", "5",
                           "--output_stride", "8", "--aux", "1", "--decoder", "1"])
    spec = ModelSpec.from_config(config)
    assert (spec.backbone, spec.head, spec.num_classes, spec.output_stride, spec.aux, spec.decoder) == (
        "resnet50_v2", "vortex", 5, 8, True, True)
    assert ModelSpec.from_config(config, num_classes=3).num_classes == 3


def test_a_config_without_a_spec_field_is_refused_by_name():
    @dataclass
    class Renamed:  # every spec field but ``decoder``, spelled ``use_decoder``
        backbone: str = "resnet50_v2"
        head: str = "aspp"
        num_classes: int = 4
        output_stride: int = 16
        multi_grid: tuple = ()
        vortex_module: str = "A"
        aux: bool = False
        use_decoder: bool = True
        head_variant: str = "deeplab"
        dilation_rule: str = "uniform"
        separable: bool = False

    with pytest.raises(TypeError, match="Renamed has no field for ModelSpec's decoder"):
        ModelSpec.from_config(Renamed())
    assert ModelSpec.from_config(Renamed(), decoder=True).decoder is True
