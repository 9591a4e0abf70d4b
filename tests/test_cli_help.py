"""The copynce-fast parser: --help of every subcommand, exit codes, one-line errors."""
import pytest

from copynce_fast.cli import COMMANDS, main

# options each subcommand's --help must mention
EXPECTED = {
    "extract": ["source", "--out", "--split", "--max-images", "--batch-size", "--workers", "--weights", "--format",
                "--random-init", "--img-size", "--amp"],
    "index": ["references", "--out", "--type", "--backend", "--nlist", "--nprobe", "--pq-m"],
    "search": ["--queries", "--references", "--index", "--query-images", "--reference-images", "--out", "--topk",
               "--score-norm", "--aux", "--sn-param"],
    "evaluate": ["predictions", "--gt", "--out", "--topk", "--max-predictions", "--recall-k"],
    "rescore": ["candidates", "--query-images", "--reference-images", "--out", "--local-verification",
                "--chunk-pairs", "--weights"],
    "compare": ["query", "reference", "--out", "--scale", "--panel", "--lines", "--weights"],
    "match-video": ["query", "reference", "--out", "--candidates", "--gt", "--plots", "--tn-param", "--score-norm",
                    "--fps", "--weights"],
    "export": ["--to", "--out", "--opset", "--weights"],
    "bench": ["name", "--quick", "--benchmarks-dir"],
    "train": ["--preset", "--config", "--print-config"],
    "demo": ["--out", "--epochs", "--no-ablation", "--pairs", "--fresh"],
    "knn": ["features", "--source", "--k", "--out", "--backend"],
}


def test_every_command_is_covered():
    assert set(EXPECTED) == set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_exits_zero_and_lists_arguments(command, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: copynce-fast {command}")
    for option in EXPECTED[command] + ["--debug"]:
        assert option in out, f"{command} --help does not mention {option}"


def test_top_level_help_lists_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert command in out


def test_no_command_and_unknown_command_are_usage_errors(capsys):
    assert main([]) == 2
    assert main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'frobnicate'" in err


def test_bad_option_value_is_a_usage_error(capsys):
    assert main(["evaluate", "p.csv", "--gt", "g.csv", "--out", "o", "--topk", "0"]) == 2
    assert "--topk" in capsys.readouterr().err


def test_runtime_error_is_one_line_naming_the_file(tmp_path, capsys):
    missing = tmp_path / "nope.csv"
    code = main(["evaluate", str(missing), "--gt", str(missing), "--out", str(tmp_path / "o")])
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("copynce-fast evaluate: error:") and str(missing) in err


def test_debug_reraises(tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(Exception):
        main(["evaluate", str(missing), "--gt", str(missing), "--out", str(tmp_path / "o"), "--debug"])


def test_unknown_option_names_the_subcommand(capsys):
    assert main(["index", "refs.npz", "--out", "x", "--bogus"]) == 2
    assert "copynce-fast index: error: unrecognized arguments: --bogus" in capsys.readouterr().err
