"""biounet.cli.models: the built-in models listed with what each is for and how well it does."""

from biounet.cli import main
from biounet.model.pretrained import builtin_models


def test_every_builtin_model_is_listed_with_its_use_and_terms(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name, meta in builtin_models().items():
        assert out.count(f"{name}  (") == 1 and meta["description"] in out
    assert "suits:" in out and "terms:" in out and "v_rand" in out
