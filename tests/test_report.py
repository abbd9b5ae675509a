"""``evaluate --report`` and ``compare``: the HTML reports, their files and numbers, and the one-line refusals."""
import csv
import json
import re
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from deeplab_gluon import report
from deeplab_gluon.compare import main as compare_main
from deeplab_gluon.data import TOY_CLASSES, VOCSegDataset, make_toy_dataset, save_index_png
from deeplab_gluon.evaluate import main as evaluate_main
from deeplab_gluon.inference import image_to_batch
from deeplab_gluon.metrics import ConfusionMatrix, PerImageScores
from deeplab_gluon.runlog import RunLog
from tiny_model import save_tiny_checkpoint, tiny_net

NUM_VAL, WORST = 6, 4
IMAGE_SIZE = (40, 56)  # (height, width) of the toy scenes
CHROMIUM = Path("/usr/bin/chromium")


def write_log(run: Path, final_miou: float) -> None:
    """A run's log.jsonl as training writes it: train lines, and two validations."""
    log = RunLog(run / "log.jsonl")
    for iteration in range(1, 10):
        log.write("train", iteration=iteration, loss=2.0 / iteration, lr=0.01)
    log.write("val", iteration=5, mIoU=final_miou / 2, pixAcc=0.5)
    log.write("val", iteration=9, mIoU=final_miou, pixAcc=0.6)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two run folders (an ASPP and a Vortex tiny net, random weights) on a toy val split of 6 scenes, each
    with a log; both evaluated (JSON beside the checkpoint), the first with ``--report``."""
    root = tmp_path_factory.mktemp("report")
    data_dir = root / "toy"
    make_toy_dataset(data_dir, num_train=1, num_val=NUM_VAL, image_size=IMAGE_SIZE, seed=3)
    found = {"root": root, "data_dir": data_dir}
    for name, head, seed in (("aspp", "aspp", 1), ("vortex", "vortex", 2)):
        net = tiny_net(num_classes=len(TOY_CLASSES), head=head, seed=seed)
        checkpoint = save_tiny_checkpoint(root / name, net, TOY_CLASSES, dataset="toy", data_dir=data_dir,
                                          iteration=9, head=head)
        write_log(root / name, 0.3)
        args = ["--checkpoint", str(root / name), "--progress", "0"]
        if name == "aspp":
            args += ["--report", str(root / "report"), "--report_worst", str(WORST)]
        assert evaluate_main(args) == 0
        found[name] = {"net": net, "run": root / name,
                       "json": checkpoint.with_name(checkpoint.name + ".eval-val.json")}
    found["evaluation"] = json.loads(found["aspp"]["json"].read_text())
    return found


def page_of(folder: Path) -> str:
    return (folder / "index.html").read_text()


def keyed_numbers(page: str) -> dict:
    """``{data-key: shown text}`` of the page's number cells."""
    return dict(re.findall(r'data-key="([^"]+)">([^<]*)<', page))


def referenced_files(page: str) -> list:
    return re.findall(r'(?:src|href)="([^"]+)"', page)


def assert_self_contained(folder: Path) -> None:
    page = page_of(folder)
    links = referenced_files(page)
    assert links
    for link in links:
        assert "://" not in link and not link.startswith("/"), link  # relative: the folder opens anywhere
        assert (folder / link).is_file(), link
    assert "http" not in page.lower() and "<script" not in page  # nothing fetched, nothing run


def test_per_image_scores_from_hand_counted_images():
    scores = PerImageScores(3)
    assert scores.add("a", [[2, 1, 0], [0, 1, 0], [0, 0, 0]]) == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert np.isnan(scores.add("void", np.zeros((3, 3))))  # every pixel ignored: no score
    scores.add("b", [[0, 0, 0], [0, 0, 0], [0, 2, 2]])  # class 2 half right, class 1 only predicted: IoU 0
    assert scores.pixel_accuracy[0] == pytest.approx(3 / 4) and scores.miou[2] == pytest.approx(0.25)
    assert scores.worst(5) == [2, 0]  # lowest first, the unscored image left out
    assert scores.to_dict()["mIoU"][1] is None
    np.testing.assert_array_equal(scores.class_pixels[2], [0, 0, 4])


def test_worst_images_keeps_the_lowest_and_breaks_ties_by_order():
    keeper = report.WorstImages(2)
    for index, miou in enumerate([0.5, 0.1, 0.3, 0.1, 0.9]):
        keeper.offer(index, miou, np.full((2, 2), index))
    assert [(index, miou) for index, miou, _, _ in keeper.kept()] == [(1, 0.1), (3, 0.1)]
    assert keeper.kept()[1][2][0, 0] == 3  # each keeps its own prediction


def test_evaluation_json_has_per_image_scores_that_match_a_hand_count(runs):
    evaluation = runs["evaluation"]
    assert evaluation["format"] == report.EVALUATION_FORMAT and evaluation["model"] == "deeplabv3_resnet18_v2_aspp"
    dataset = VOCSegDataset(runs["data_dir"], "val", classes=TOY_CLASSES)
    assert evaluation["per_image"]["ids"] == dataset.ids
    for index in (0, NUM_VAL - 1):
        image, label = dataset[index]
        one = ConfusionMatrix(len(TOY_CLASSES))
        one.update(runs["aspp"]["net"](image_to_batch(image)).asnumpy()[0].argmax(axis=0), label)
        assert evaluation["per_image"]["mIoU"][index] == pytest.approx(one.miou())
        assert evaluation["per_image"]["pixAcc"][index] == pytest.approx(one.pixel_accuracy())


def test_report_references_only_files_it_wrote(runs):
    folder = runs["root"] / "report"
    assert_self_contained(folder)
    for name in ("iou_sorted.png", "iou_by_class.png", "confusion.png", "per_image.csv", "curves.png"):
        assert name in referenced_files(page_of(folder))
    assert json.loads((folder / "evaluation.json").read_text()) == runs["evaluation"]


def test_report_numbers_equal_the_json(runs):
    evaluation, shown = runs["evaluation"], keyed_numbers(page_of(runs["root"] / "report"))
    for key in ("pixAcc", "mIoU", "mAcc", "fwIoU"):
        assert shown[key] == f"{100 * evaluation['summary'][key]:.2f}"
    for name in TOY_CLASSES:
        value = evaluation["summary"]["IoU"][name]
        assert shown[f"IoU:{name}"] == ("-" if value is None else f"{100 * value:.2f}")
    page = page_of(runs["root"] / "report")
    for text in ("deeplabv3_resnet18_v2_aspp", str(runs["evaluation"]["checkpoint"]), "fp32", "<td>val</td>"):
        assert text in page


def test_worst_images_are_ordered_and_match_per_image_csv(runs):
    folder = runs["root"] / "report"
    with open(folder / "per_image.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["id"] for row in rows] == runs["evaluation"]["per_image"]["ids"]
    pixels = np.array([[int(row[f"pixels_{name}"]) for name in TOY_CLASSES] for row in rows])
    np.testing.assert_array_equal(pixels.sum(axis=0), np.array(runs["evaluation"]["confusion_matrix"]).sum(axis=1))
    worst = re.findall(r'<figure class="worst" data-id="([^"]+)" data-miou="([^"]+)">', page_of(folder))
    assert len(worst) == WORST
    scores = [float(miou) for _, miou in worst]
    assert scores == sorted(scores)
    lowest = sorted(rows, key=lambda row: float(row["mIoU"]))[:WORST]
    assert [image_id for image_id, _ in worst] == [row["id"] for row in lowest]
    for (image_id, miou), row in zip(worst, lowest):
        assert float(miou) == pytest.approx(float(row["mIoU"]), abs=1e-6)


def test_report_images_have_the_expected_sizes(runs):
    folder = runs["root"] / "report"
    height, width = report.tile_size(*IMAGE_SIZE)
    assert (height, width) == (160, 224)  # 56 px wide toy scenes enlarged 4 times
    panels = sorted((folder / "worst").glob("*.png"))
    assert len(panels) == WORST
    for panel in panels:
        assert cv2.imread(str(panel)).shape == (height, 4 * width + 3 * report.PANEL_GAP, 3)
    side = round(report.confusion_side(len(TOY_CLASSES)) * report.DPI)
    assert cv2.imread(str(folder / "confusion.png")).shape[:2] == (side, side)
    bars = cv2.imread(str(folder / "iou_sorted.png")).shape[:2]
    assert bars == (round(report.bar_height(len(TOY_CLASSES)) * report.DPI), 8 * report.DPI)


def test_a_panel_shows_the_wrong_pixels_in_red():
    label = np.array([[0, 1], [1, 255]], np.uint8)
    entry = report.WorstImage(0, "x", 0.0, 0.0, prediction=np.array([[0, 0], [1, 1]]), label=label)
    panel = report.worst_panel(entry, report.voc_palette(), 255)
    height, width = report.tile_size(2, 2)
    assert panel.shape == (height, 3 * width + 2 * report.PANEL_GAP, 3)  # no image: truth, prediction, errors
    errors = panel[:, 2 * (width + report.PANEL_GAP):]
    assert tuple(errors[0, width - 1]) == report.ERROR_COLOUR  # truth 1 predicted 0
    assert tuple(errors[0, 0]) != report.ERROR_COLOUR and tuple(errors[-1, -1]) == tuple(report.voc_palette()[255])


def test_folder_mode_report(tmp_path, capsys):
    gt_dir, pred_dir, image_dir = (tmp_path / name for name in ("gt", "pred", "images"))
    for folder in (gt_dir, pred_dir, image_dir):
        folder.mkdir()
    truth = np.zeros((8, 10), np.uint8)
    truth[:, 5:] = 1
    save_index_png(gt_dir / "good.png", truth)
    save_index_png(pred_dir / "good.png", truth)
    save_index_png(gt_dir / "bad.png", truth)
    save_index_png(pred_dir / "bad.png", 1 - truth)
    for stem in ("good", "bad"):
        cv2.imwrite(str(image_dir / f"{stem}.png"), np.full((8, 10, 3), 90, np.uint8))
    out = tmp_path / "report"
    code = evaluate_main(["--pred_dir", str(pred_dir), "--gt_dir", str(gt_dir), "--num_classes", "2",
                          "--image_dir", str(image_dir), "--report", str(out), "--report_worst", "1",
                          "--progress", "0"])
    assert code == 0, capsys.readouterr().err
    assert_self_contained(out)
    with open(out / "per_image.csv") as handle:
        rows = {row["id"]: row for row in csv.DictReader(handle)}
    assert float(rows["good"]["mIoU"]) == 1.0 and float(rows["bad"]["mIoU"]) == 0.0
    assert rows["bad"]["pixels_class0"] == "40" and rows["bad"]["pixels_class1"] == "40"
    assert re.findall(r'data-id="([^"]+)"', page_of(out)) == ["bad"]
    height, width = report.tile_size(8, 10)
    assert cv2.imread(str(next((out / "worst").glob("*.png")))).shape == (height, 4 * width + 3 * report.PANEL_GAP, 3)
    assert "curves.png" not in page_of(out)  # no run, no training curves
    assert keyed_numbers(page_of(out))["mIoU"] == "33.33"  # each class: 40 right of 40 + 40 + 40 in its union
    assert evaluate_main(["--pred_dir", str(pred_dir), "--gt_dir", str(gt_dir), "--num_classes", "2",
                          "--report", str(out), "--report_worst", "0", "--progress", "0"]) == 0
    assert "data-id" not in page_of(out) and "worst images" not in page_of(out)
    assert_self_contained(out)


def test_bootstrap_interval_contains_the_mean_and_shrinks_with_more_images():
    rng = np.random.default_rng(1)
    few, many = rng.normal(0.02, 0.1, 20), rng.normal(0.02, 0.1, 500)
    small, large = report.paired_bootstrap(few, 2000, seed=0), report.paired_bootstrap(many, 2000, seed=0)
    for interval, values in ((small, few), (large, many)):
        assert interval["low"] < interval["mean"] < interval["high"]
        assert interval["mean"] == pytest.approx(values.mean()) and interval["images"] == len(values)
    assert large["high"] - large["low"] < 0.5 * (small["high"] - small["low"])  # about sqrt(25) = 5 times narrower
    assert report.paired_bootstrap(few, 2000, seed=0) == small  # seeded: the same report twice
    assert report.paired_bootstrap([0.1, 0.2, -0.1], 500)["wins"] == 2


def test_compare_two_runs(runs, tmp_path, capsys):
    out = tmp_path / "compare"
    assert compare_main([str(runs["aspp"]["run"]), str(runs["vortex"]["run"]), "--report", str(out),
                         "--progress", "0", "--resamples", "1000"]) == 0
    printed = capsys.readouterr().out
    assert "vortex - aspp:" in printed and f"wrote {out / 'index.html'}" in printed
    assert_self_contained(out)
    page = page_of(out)
    assert {"curves.png", "iou_grouped.png", "paired_1.png"} <= set(referenced_files(page))
    first, second = (json.loads(runs[name]["json"].read_text()) for name in ("aspp", "vortex"))
    shown = keyed_numbers(page)
    for label, evaluation in (("aspp", first), ("vortex", second)):
        assert shown[f"{label}:mIoU"] == f"{100 * evaluation['summary']['mIoU']:.2f}"
    for name in TOY_CLASSES:
        a, b = first["summary"]["IoU"][name], second["summary"]["IoU"][name]
        if a is not None and b is not None:
            assert shown[f"diff:vortex:{name}"] == f"{100 * (b - a):+.2f}"
    mean = float(re.search(r'class="paired" data-label="vortex" data-mean="([^"]+)"', page).group(1))
    differences = np.subtract(second["per_image"]["mIoU"], first["per_image"]["mIoU"])
    assert mean == pytest.approx(differences.mean(), abs=1e-6)


def refusal(args, capsys):
    code = compare_main([str(a) for a in args] + ["--progress", "0"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("compare: error: "), err
    return err


def test_compare_refuses_mismatched_older_unevaluated_and_unwritable(runs, tmp_path, capsys):
    good = runs["aspp"]["json"]
    other_classes = tmp_path / "other.json"
    other_classes.write_text(json.dumps({**runs["evaluation"], "classes": ["background", "cat"]}))
    assert "different class lists" in refusal([good, other_classes, "--report", tmp_path / "r"], capsys)

    older = tmp_path / "older.json"
    old = {key: value for key, value in runs["evaluation"].items() if key not in ("format", "per_image")}
    older.write_text(json.dumps(old))
    err = refusal([good, older, "--report", tmp_path / "r"], capsys)
    assert "older format" in err and f"python -m deeplab_gluon.evaluate --checkpoint {old['checkpoint']}" in err
    assert f"--output {older}" in err

    never = tmp_path / "never"
    shutil.copytree(runs["vortex"]["run"] / "checkpoints", never / "checkpoints",
                    ignore=shutil.ignore_patterns("*.json"))
    err = refusal([good, never, "--report", tmp_path / "r"], capsys)
    assert "never evaluated" in err and f"python -m deeplab_gluon.evaluate --checkpoint {never}" in err

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert "is a file, not a folder" in refusal([good, good, "--report", blocker / "report"], capsys)
    assert "give 2 to 6" in refusal([good, "--report", tmp_path / "r"], capsys)
    assert not (tmp_path / "r").exists()  # refused before anything was written


def test_compare_evaluation_files_with_labels_on_other_images(runs, tmp_path, capsys):
    fewer = tmp_path / "fewer.json"
    evaluation = json.loads(runs["vortex"]["json"].read_text())
    evaluation["per_image"] = {key: values[:3] for key, values in evaluation["per_image"].items()}
    fewer.write_text(json.dumps(evaluation))
    out = tmp_path / "compare"
    assert compare_main([str(runs["aspp"]["json"]), str(fewer), "--labels", "A,B", "--report", str(out),
                         "--progress", "0"]) == 0
    assert "B and A were not evaluated on the same images" in capsys.readouterr().out
    assert "A:mIoU" in keyed_numbers(page_of(out)) and "paired_1.png" not in page_of(out)
    assert "curves.png" in page_of(out)  # found through the evaluation's checkpoint


@pytest.mark.skipif(not CHROMIUM.is_file(), reason="no /usr/bin/chromium")
def test_chromium_renders_the_report(runs, tmp_path):
    shot = tmp_path / "shot.png"
    subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1000,1600",
                    (runs["root"] / "report" / "index.html").resolve().as_uri()],
                   capture_output=True, timeout=120, check=False)
    picture = cv2.imread(str(shot))
    assert picture is not None and picture.shape[:2] == (1600, 1000)
    assert (picture < 128).mean() > 0.01  # text and figures drawn, not a blank page


def test_the_demo_ends_with_the_report_of_phase_2(tmp_path):
    # A stand-in interpreter records each command sh_train.sh --demo runs (no training here); the last one
    # must write the report of phase 2, and the script must end by printing where it is.
    calls = tmp_path / "calls.txt"
    stand_in = tmp_path / "python"
    stand_in.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    stand_in.chmod(0o755)
    out = tmp_path / "demo"
    result = subprocess.run(["bash", str(Path(__file__).resolve().parents[1] / "sh_train.sh"), "--demo",
                             f"OUT={out}", f"DATA_DIR={tmp_path / 'toy'}"], capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "PYTHON": str(stand_in)}, timeout=60)
    assert result.returncode == 0, result.stderr
    last = calls.read_text().splitlines()[-1]
    assert last.startswith(f"-m deeplab_gluon.evaluate --checkpoint {out}/phase2 ")
    assert f"--report {out}/report" in last and "--output_stride 8" in last
    assert result.stdout.splitlines()[-1] == f"report: {out}/report/index.html"


def test_a_phase_2_curve_follows_the_run_it_was_initialised_from(tmp_path):
    from deeplab_gluon.compare import training_logs
    from deeplab_gluon.runlog import read_log

    phase1, phase2 = tmp_path / "phase1", tmp_path / "phase2"
    write_log(phase1, 0.2)  # train iterations 1..9, validations at 5 and 9
    write_log(phase2, 0.4)
    (phase2 / "config.json").write_text(json.dumps({"init_from": str(phase1 / "checkpoints" / "iter-0000009.ckpt")}))
    logs = training_logs(phase2)
    assert logs == [phase1 / "log.jsonl", phase2 / "log.jsonl"]
    joined = report.joined_curves([read_log(log) for log in logs])
    assert joined["starts"] == [9]
    assert [iteration for iteration, _ in joined["train"]] == list(range(1, 10)) + list(range(10, 19))
    assert joined["val"] == [(5, 0.1), (9, 0.2), (14, 0.2), (18, 0.4)]
    assert training_logs(phase1) == [phase1 / "log.jsonl"] and training_logs(tmp_path / "none") == []
