"""sh_train.sh: the VOC recipe refuses to start without ImageNet weights, a recipe of recipes/ runs its phases
into OUT/phase*, links OUT/final and scores it, and the paper table reads the evaluations."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from train_runs import REPO

sys.path.insert(0, str(REPO / "scripts"))
import paper_table  # noqa: E402


def sh_train(*args, env=None, timeout=300):
    environment = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([str(REPO / "sh_train.sh"), *args], cwd=REPO, capture_output=True, text=True,
                          env=environment, timeout=timeout)


def test_voc_recipe_without_imagenet_weights_stops_before_any_work(tmp_path):
    out = tmp_path / "run"
    result = sh_train(f"OUT={out}", f"DATA_DIR={tmp_path}", "ARCH=resnet_v2_50", env={"PRETRAINED": ""})
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "expected pretrained/resnet50_v2-*.params" in result.stderr
    assert "vision.get_model('resnet50_v2', pretrained=True, root='pretrained')" in result.stderr
    assert "SCRATCH=1" in result.stderr
    assert not out.exists()


def test_unknown_recipe_and_missing_data_dir(tmp_path):
    result = sh_train("--recipe", "nope", "--data_dir", str(tmp_path))
    assert result.returncode == 2 and "no recipe 'nope'" in result.stderr and "camvid" in result.stderr
    result = sh_train("--recipe", "camvid")
    assert result.returncode != 0 and "--recipe needs --data_dir" in result.stderr


def camvid_like(root, rng):
    """A CamVid-layout folder (train/, trainannot/, val/, valannot/, 'image label' list files), 11 classes
    + void 11, 6 train and 2 val images of 48x64."""
    for split, count in (("train", 6), ("val", 2)):
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        lines = []
        for index in range(count):
            label = rng.integers(0, 12, size=(48, 64)).astype(np.uint8)
            image = (label[..., None] * 20 + rng.integers(0, 20, size=(48, 64, 3))).astype(np.uint8)
            cv2.imwrite(str(root / split / f"{index}.png"), image)
            cv2.imwrite(str(root / f"{split}annot" / f"{index}.png"), label)
            lines.append(f"{split}/{index}.png {split}annot/{index}.png")
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def test_recipe_runs_its_phases_links_final_and_scores_val(tmp_path):
    data = camvid_like(tmp_path / "camvid", np.random.default_rng(0))
    out = tmp_path / "out"
    short = ["--max_iter", "2", "--crop_size", "32", "--batch_size", "2", "--val_every_iter", "0", "--progress", "0",
             "--class_weights", "", "--num_workers", "0", "--warmup_iters", "0", "--base_architecture", "resnet_v2_18"]
    result = sh_train("--recipe", "camvid", "--data_dir", str(data), "--output_dir", str(out), "--", *short)
    assert result.returncode == 0, result.stderr[-2000:]
    phases = sorted(path.stem for path in (REPO / "recipes" / "camvid").glob("phase*.json"))
    assert (out / "final").is_symlink() and os.readlink(out / "final") == phases[-1]
    for phase in phases:
        assert json.loads((out / phase / "summary.json").read_text())["iteration"] == 2
    assert "wall time" in result.stdout and "on folder val: 2 images" in result.stdout
    # the final model's evaluation JSON sits beside its checkpoint, scored on val
    scores = list((out / "final" / "checkpoints").glob("*.eval-val.json"))
    assert len(scores) == 1 and json.loads(scores[0].read_text())["num_images"] == 2
    # a second call finds every phase finished and only scores again
    again = sh_train("--recipe", "camvid", "--data_dir", str(data), "--output_dir", str(out), "--", *short)
    assert again.returncode == 0 and "already finished" in again.stdout


def test_paper_table_rows(tmp_path, capsys):
    for stem, pix, miou in (("phase1_os16", 0.9, 0.7), ("phase1_os8_msflip", 0.95, 0.8)):
        (tmp_path / f"{stem}.json").write_text(json.dumps({"summary": {"pixAcc": pix, "mIoU": miou}}))
    rows = paper_table.table_rows(tmp_path)
    assert [(round(pix, 2), round(miou, 2), paper) for _, pix, miou, paper, _ in rows] == [(90.0, 70.0, 77.21),
                                                                                          (95.0, 80.0, 79.77)]
    assert paper_table.main([str(tmp_path), "--markdown"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| evaluation |") and "| 70.00 | 77.21 |" in lines[2]
    assert paper_table.main([str(tmp_path / "none")]) == 2
    (tmp_path / "phase2_os8.json").write_text("{}")
    with pytest.raises(SystemExit, match="not an evaluation JSON"):
        paper_table.table_rows(tmp_path)
