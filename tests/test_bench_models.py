"""benchmarks/bench_models.py without timing anything: which models it times, its README table, its accuracy input."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_models  # noqa: E402


def test_the_default_rows_are_every_combination_plus_the_two_lite_models():
    names = [bench_models.spec_of(m, 16).name for m in bench_models.model_list(bench_models.parse_args([]))]
    assert len(names) == len(set(names)) == 5 * 2 * 2 * 2 + 2
    assert {"deeplabv3_resnet18_v2_aspp", "deeplabv3plus_xception65_vortex_sep", "deeplabv3_mobilenetv2_1.0_lite",
            "deeplabv3plus_mobilenetv2_1.0_lite_sep"} <= set(names)
    quick = bench_models.parse_args(["--quick"])
    assert (quick.size, quick.output, len(bench_models.model_list(quick))) == (65, "models_quick", 5)


def test_markdown_table_and_counts():
    spec = bench_models.spec_of(dict(backbone="mobilenetv2_1.0", head="lite", decoder=False, separable=False), 16)
    counts = bench_models.count(spec, 65)
    row = {"model": spec.name, **counts, "timed": {"fp32": {"ms_per_image": 50.4, "images_per_s": 19.84,
                                                           "peak_rss_mib": 364.2}}}
    lines = bench_models.markdown_table([row], 65).splitlines()
    assert lines[1] == "| model | GMACs | params (M) | fp32 ms/image | fp32 images/s | fp32 peak MiB |"
    assert lines[3] == f"| `deeplabv3_mobilenetv2_1.0_lite` | {counts['gmacs']:.2f} | {counts['params_m']:.1f} " \
                       "| 50 | 19.84 | 364 |"
    assert 2.0 < counts["params_m"] < 2.3  # MobileNetV2's 320-channel body + two 256-channel branches


def test_accuracy_files_are_read_and_a_bad_one_is_named(tmp_path):
    good = tmp_path / "good.json"
    good.write_text('{"results": [{"model": "deeplabv3_resnet18_v2_aspp", "mIoU": 0.61, "source": "toy val"}]}')
    assert bench_models.read_accuracy([good]) == {"deeplabv3_resnet18_v2_aspp": {"mIoU": 0.61, "source": "toy val"}}
    bad = tmp_path / "bad.json"
    bad.write_text('{"rows": []}')
    with pytest.raises(SystemExit, match=r"bench_models.py: error: cannot read accuracy figures from .*bad.json"):
        bench_models.read_accuracy([bad])
