import pytest

from biounet.cli import build_parser, main


def test_serve_takes_the_shared_flags_and_its_own():
    args = build_parser().parse_args(["serve", "--tile-batch", "2", "--tile", "92", "--device", "cpu"])
    assert (args.model, args.tile_batch, args.tile, args.device) == ("isbi2012-membranes", 2, 92, "cpu")
    assert (args.host, args.port, args.queue_size) == ("127.0.0.1", 8000, 8)
    assert not hasattr(args, "progress")  # a service shows no progress bar


def test_serve_has_no_batch_size_flag(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--batch-size", "2"])
    assert "unrecognized arguments: --batch-size" in capsys.readouterr().err


def test_a_bad_value_is_one_line_before_the_model_loads(capsys):
    assert main(["serve", "--tile-batch", "0", "--model", "no-such-model"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["biounet serve: error: --tile-batch must be at least 1, got 0"]
