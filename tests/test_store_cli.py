"""`cinefuse store info` and the CLI's error handling."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from cinefuse.cli import main as cli_main
from cinefuse.store import FeatureBlock
from fixtures import ok_block, write_store


def test_info_json_and_table(tmp_path, capsys):
    write_store(tmp_path, {"cli": 1}, [(["a", "b", "c"], {
        "visual/effnet": FeatureBlock(np.zeros((3, 4), np.float16), np.array([1, 0, 1], bool), ["ok", "no video", "ok"],
                                      attrs={"backbone": "efficientnet_lite0"}),
        "audio/seq": ok_block(np.zeros((3, 5, 2), np.float32), lengths=np.array([5, 2, 0])),
    }), (["d"], {"visual/effnet": ok_block(np.ones((1, 4), np.float16), attrs={"backbone": "efficientnet_lite0"})})])
    assert cli_main(["store", "info", str(tmp_path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["shards"] == 2 and info["rows"] == 4 and info["ids"] == 4
    assert info["feature_sets"]["visual/effnet"] == {
        "shape": [4], "dtype": "float16", "kind": "matrix", "rows": 4, "valid": 3, "backbone": "efficientnet_lite0"}
    assert info["feature_sets"]["audio/seq"]["shape"] == [5, 2] and info["feature_sets"]["audio/seq"]["rows"] == 3
    assert cli_main(["store", "info", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert "visual/effnet" in table and "efficientnet_lite0" in table and "5x2" in table
    assert cli_main(["store", "verify", str(tmp_path)]) == 0
    assert "2 shards, clean" in capsys.readouterr().out


def test_user_errors_print_one_line_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "cinefuse", "store", "info", str(tmp_path / "nope")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == f"cinefuse store: error: store {tmp_path / 'nope'} does not exist (expected a folder with manifest.json)"
    assert "Traceback" not in result.stderr


def test_every_subcommand_has_help():
    result = subprocess.run([sys.executable, "-m", "cinefuse", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "store" in result.stdout
    for args in (["store", "--help"], ["store", "verify", "--help"], ["store", "push", "--help"],
                 ["store", "merge", "--help"], ["store", "compact", "--help"]):
        out = subprocess.run([sys.executable, "-m", "cinefuse", *args], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and "usage: cinefuse store" in out.stdout
