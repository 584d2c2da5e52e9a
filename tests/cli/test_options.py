"""biounet.cli.options: one vocabulary of flags, built once, and the old spellings kept for a release."""

import argparse

import pytest

from biounet.cli import build_parser
from biounet.cli.options import (
    Deprecated,
    add_config_arguments,
    config_options,
    deprecated,
    inference_options,
    model_options,
    note_deprecated,
    resolve,
    runtime_options,
)
from biounet.core.config import TrainConfig


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _visible(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The flags --help shows (the old spellings are hidden), by name."""
    return {o: a for a in parser._actions if a.help is not argparse.SUPPRESS for o in a.option_strings}


def test_an_old_spelling_stores_where_the_new_one_does_and_says_what_to_use(capsys):
    parser = argparse.ArgumentParser()
    parser.add_argument("--tile-batch", type=int, default=4)
    deprecated(parser, "--batch-size", "--tile-batch", dest="tile_batch", type=int)
    assert parser.parse_args(["--batch-size", "2"]).tile_batch == 2
    assert capsys.readouterr().err == "biounet: --batch-size is deprecated; use --tile-batch\n"
    assert parser.parse_args([]).tile_batch == 4  # the new flag's default stands
    assert parser.parse_args(["--tile-batch", "3"]).tile_batch == 3
    assert capsys.readouterr().err == ""  # the new spelling says nothing


def test_an_old_spelling_can_add_a_hint():
    parser = argparse.ArgumentParser()
    deprecated(parser, "--folds", "--fold", dest="fold_list", hint=" (the folds to run)")
    action = next(a for a in parser._actions if isinstance(a, Deprecated))
    assert (action.new, action.hint, action.default) == ("--fold", " (the folds to run)", argparse.SUPPRESS)


def test_help_names_the_old_spellings_in_the_epilog():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model")
    deprecated(parser, "--checkpoint", "--model", dest="model")
    note_deprecated(parser)
    assert "--checkpoint (now --model)" in parser.format_help()
    assert "--checkpoint REF" not in parser.format_help()  # hidden from the options list
    plain = argparse.ArgumentParser()
    note_deprecated(plain)
    assert plain.epilog is None


OLD_SPELLINGS = {
    "predict": {"--checkpoint": "--model", "--batch-size": "--tile-batch"},
    "evaluate": {"--checkpoint": "--model", "--batch-size": "--tile-batch"},
    "export": {"--checkpoint": "--model"},
    "bench": {"--infer-batch": "--tile-batch"},
    "cv": {"--folds": "--fold"},
}


@pytest.mark.parametrize("command", sorted(OLD_SPELLINGS))
def test_every_renamed_flag_is_kept_as_an_old_spelling(command):
    parser = _commands()[command]
    old = {o: a.new for a in parser._actions if isinstance(a, Deprecated) for o in a.option_strings}
    assert old == OLD_SPELLINGS[command]
    for spelling, new in old.items():
        assert f"{spelling} (now {new})" in parser.epilog


def test_a_shared_flag_has_one_name_one_meaning_and_one_help_everywhere():
    seen: dict[str, tuple[str, object, object]] = {}
    takers: dict[str, set[str]] = {}
    shared = ("--model", "--device", "--precision", "--threads", "--progress", "--tile", "--tile-batch", "--tta")
    for name, parser in _commands().items():
        for flag, action in _visible(parser).items():
            if flag not in shared:
                continue
            takers.setdefault(flag, set()).add(name)
            # export refuses exported models: its --model help is the first part of the others'
            kind = getattr(action.type, "__name__", action.type)  # each parent has its own parser of the type
            meaning = (action.help.split("; or a file")[0], kind, action.choices)
            assert seen.setdefault(flag, meaning) == meaning, (name, flag)
    assert takers["--model"] == {"predict", "evaluate", "export", "serve"}
    assert takers["--tile-batch"] == {"predict", "evaluate", "bench", "serve"}
    assert {"train", "demo", "cv", "predict", "evaluate", "bench", "serve"} <= takers["--device"]
    assert takers["--progress"] == takers["--device"] - {"serve"}  # a service shows no progress bar


def test_the_old_clashes_are_gone():
    commands = _commands()
    # --batch-size is the training batch wherever it is shown, never tiles per inference pass
    for name in ("predict", "evaluate"):
        assert "--batch-size" not in _visible(commands[name])
    assert "global batch" in _visible(commands["bench"])["--batch-size"].help
    assert _visible(commands["bench"])["--batch-size"].help == _visible(commands["train"])["--batch-size"].help
    assert _visible(commands["bench"])["--tile-size"].help == _visible(commands["train"])["--tile-size"].help
    # --folds is the number of folds (train); cv's list of folds is --fold, as train's and evaluate's one fold
    assert "number of cross-validation folds" in _visible(commands["train"])["--folds"].help
    assert "--folds" not in _visible(commands["cv"]) and _visible(commands["cv"])["--fold"].metavar == "LIST"
    assert "--checkpoint" not in _visible(commands["export"])


def test_the_parents_are_built_once():
    assert runtime_options(True) is runtime_options(True) and runtime_options(True) is not runtime_options(False)
    assert model_options(True) is model_options(True)
    assert inference_options() is inference_options()
    assert config_options(("depth",)) is config_options(("depth",))


def test_training_runtime_flags_are_absent_unless_given_and_a_config_file_sets_them(tmp_path):
    parser = argparse.ArgumentParser(parents=[runtime_options(training=True)])
    add_config_arguments(parser, TrainConfig(), skip=("device", "precision", "threads", "progress"))
    assert "device" not in vars(parser.parse_args([]))
    (tmp_path / "c.yaml").write_text("device: cpu\nthreads: 3\n")
    cfg, explicit = resolve(parser.parse_args(["--config", str(tmp_path / "c.yaml"), "--threads", "1"]), TrainConfig())
    assert (cfg.device, cfg.threads, cfg.precision) == ("cpu", 1, "auto")  # flags win over the file
    assert explicit == {"device": "cpu", "threads": 1}


def test_other_commands_get_the_config_defaults():
    args = argparse.ArgumentParser(parents=[runtime_options(training=False)]).parse_args([])
    assert (args.device, args.precision, args.threads, args.progress) == ("auto", "auto", 0, "auto")
    bench = argparse.ArgumentParser(parents=[config_options(("tile_size", "batch_size", "compile"))])
    args = bench.parse_args(["--no-compile"])
    assert (args.tile_size, args.batch_size, args.compile) == (572, 16, False)


def test_a_bad_value_is_an_argparse_error_naming_the_type(capsys):
    parser = argparse.ArgumentParser(parents=[runtime_options(training=False)])
    with pytest.raises(SystemExit):
        parser.parse_args(["--threads", "many"])
    assert "expected int, got 'many'" in capsys.readouterr().err


def test_optional_numbers_take_none():
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, TrainConfig())
    assert parser.parse_args(["--mask-threshold", "none"]).mask_threshold is None
    assert parser.parse_args(["--mask-threshold", "127"]).mask_threshold == 127.0
    assert "--init-from REF" in parser.format_help()


def test_painted_is_one_flag_in_train_cv_and_evaluate():
    """--painted means one thing wherever masks are read; evaluate's default is the model's own setting."""
    commands = _commands()
    helps = {name: _visible(commands[name])["--painted"].help for name in ("train", "cv", "evaluate")}
    meaning = helps["train"].rsplit(" (default", 1)[0]
    assert "0 unlabelled" in meaning and all(h.startswith(meaning) for h in helps.values()), helps
    assert helps["evaluate"].endswith("(default: as the model was trained)")
    evaluate = ["--model", "m.pt", "--data", "d"]
    assert commands["evaluate"].parse_args(evaluate).painted is None
    assert commands["evaluate"].parse_args([*evaluate, "--no-painted"]).painted is False
