"""The built-in model: shipped small, with its terms, and it segments ISBI right after install."""

import numpy as np
import pytest
import tifffile

from biounet.cli import main
from biounet.model.pretrained import builtin_models, builtin_path


def test_the_isbi_model_is_listed_with_its_scores_and_the_datas_terms(capsys):
    meta = builtin_models()["isbi2012-membranes"]
    assert builtin_path("isbi2012-membranes").stat().st_size < 2 * 2**20
    assert (
        "TrakEM2" in meta["data_terms"] and "Cardona" in meta["data_terms"] and "non-commercial" in meta["data_terms"]
    )
    assert meta["recipe_scores"]["five_fold_mean"]["v_rand"] > 0.9 and "--fold all" in meta["training_command"]
    assert main(["models"]) == 0
    assert "isbi2012-membranes" in capsys.readouterr().out


def test_predict_with_the_built_in_model_segments_membranes(isbi_dir, tmp_path):
    from biounet.evaluation.metrics import dice_coeff

    image = tifffile.imread(isbi_dir / "train-volume.tif")[0]
    truth = tifffile.imread(isbi_dir / "train-labels.tif")[0]
    tifffile.imwrite(tmp_path / "s.tif", image, photometric="minisblack")
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / "s.tif"), "--model", "isbi2012-membranes", "--out", str(out)]) == 0
    membrane = tifffile.imread(out / "s_membrane.tif").reshape(image.shape)
    probs = np.stack([membrane, 1 - membrane])
    assert dice_coeff(probs, (truth > 127).astype(np.int64)) > 0.9  # an untrained network scores about 0.5


def test_an_unknown_model_name_lists_the_built_in_ones(tmp_path, capsys):
    args = ["predict", str(tmp_path / "x.tif"), "--model", "isbi-membranes", "--out", str(tmp_path / "o")]
    tifffile.imwrite(tmp_path / "x.tif", np.zeros((8, 8), np.uint8))
    assert main(args) == 2
    assert "known: isbi2012-membranes" in capsys.readouterr().err


def test_fine_tuning_starts_from_the_built_in_weights():
    import torch

    from biounet.model.checkpoint import load_init, load_model

    model, cfg, _ = load_model(builtin_path("isbi2012-membranes"), "cpu")
    from biounet.model.unet import build_model

    torch.manual_seed(1)
    target = build_model(cfg)
    assert load_init(target, "isbi2012-membranes") == []
    for key, value in model.state_dict().items():
        torch.testing.assert_close(target.state_dict()[key], value)


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
