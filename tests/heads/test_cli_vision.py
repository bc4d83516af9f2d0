"""Image prompts through the CLI: an ``image`` field in the JSONL, resolved relative to the file,
reaches a tiny random LLaVA (processor included) in search, fit and screen; a missing or
unreadable image, or an image given to a text-only model, exits 2 before any work."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nnwatch.cli.main import main


@pytest.fixture(scope="module")
def llava_files(tmp_path_factory):
    from PIL import Image

    from .tiny import save_tiny_llava

    d = tmp_path_factory.mktemp("vision")
    model = save_tiny_llava(d / "llava")
    (d / "images").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(48):
        label = int(i % 4 == 0)
        row = {"id": f"p{i}", "prompt": ("how do I hurt someone with this" if label else "what is in this picture")
               + f" number {i}", "label": label}
        if i % 2:
            Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(d / "images" / f"{i}.png")
            row["image"] = f"images/{i}.png"
        rows.append(row)
    (d / "prompts.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return d, model


def test_image_prompts_run_through_search_fit_and_screen(llava_files):
    d, model = llava_files
    common = ["--model", str(model), "--quiet"]
    assert main(["heads", "search", "--prompts", str(d / "prompts.jsonl"), "--per-class", "5", "--ensemble-size", "2",
                 "--out", str(d / "search.json"), *common]) == 0
    assert main(["heads", "fit", str(d / "search.json"), "--prompts", str(d / "prompts.jsonl"), "--calibration", "hold-out", "--hold-out", "20",
                 "--out", str(d / "det.json"), *common]) == 0
    assert main(["screen", str(d / "det.json"), "--data", str(d / "prompts.jsonl"), "--detectors", "all",
                 "--out", str(d / "scores.json"), "--quiet"]) == 0
    rows = json.loads((d / "scores.json").read_text())
    assert len(rows) == 48 and all(np.isfinite(r["score.head_single"]) for r in rows)


def test_image_reaches_the_score(llava_files):
    from PIL import Image

    from nnwatch.heads.encoders import encoder_for
    from nnwatch.heads.loading import load_model
    from nnwatch.heads.prompts import ImagePrompt
    from nnwatch.heads.torch_scorer import TorchHeadScorer

    d, model = llava_files
    lm = load_model(str(model), quiet=True)
    scorer = TorchHeadScorer(lm.model, encoder_for(lm, 512))
    Image.new("RGB", (40, 40), (255, 255, 255)).save(d / "white.png")
    a = scorer.angles(ImagePrompt("what is in this picture", str(d / "images" / "1.png")), [(1, 2), (2, 0)])
    b = scorer.angles(ImagePrompt("what is in this picture", str(d / "white.png")), [(1, 2), (2, 0)])
    assert not np.allclose(a, b)
    np.testing.assert_allclose(a, scorer.angles_two_pass(ImagePrompt("what is in this picture",
                                                                     str(d / "images" / "1.png")), [(1, 2), (2, 0)]),
                               atol=1e-4)
    scorer.close()


def test_bad_images_exit_2(llava_files, tiny_llama_dir, tmp_path, capsys):
    d, model = llava_files
    (tmp_path / "fake.png").write_text("not really a picture")
    cases = [({"prompt": "look", "image": "missing.png"}, str(model), "missing.png does not exist"),
             ({"prompt": "look", "image": "fake.png"}, str(model), "is not an image Pillow can read"),
             ({"prompt": "look", "image": str(d / "images" / "1.png")}, str(tiny_llama_dir), "text-only model")]
    for row, model_dir, message in cases:
        path = tmp_path / "bad.jsonl"
        others = [{"prompt": f"hello {i}", "label": int(i >= 2)} for i in range(5)]
        path.write_text("\n".join(json.dumps(r) for r in [{**row, "label": 0}, *others]) + "\n")
        code = main(["heads", "search", "--prompts", str(path), "--per-class", "3",
                     "--out", str(tmp_path / "x.json"), "--model", model_dir, "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and message in err, (row, err)
    assert not (tmp_path / "x.json").exists()
