"""The `cinefuse` command as a user meets it: every subcommand's --help (found from the parser,
not listed by hand) without loading torch or jax, no subcommand, and Ctrl-C part-way through."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fuse_fixtures import write_synthetic_store  # noqa: E402

# Walks the real parser for every subcommand path, asks each for --help in this one process, and
# reports which heavy frameworks got imported on the way.
HELP_SCRIPT = r"""
import argparse, contextlib, io, json, sys
from cinefuse.cli import build_parser, main

def paths(parser, prefix=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield prefix + (name,)
                yield from paths(sub, prefix + (name,))

out = {}
for path in paths(build_parser()):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        try:
            main([*path, "--help"])
            code = None
        except SystemExit as exc:
            code = exc.code
    out[" ".join(path)] = {"code": code, "head": buf.getvalue()[:200]}
print(json.dumps({"help": out, "loaded": sorted(m for m in ("torch", "jax", "flax", "optax", "torchaudio")
                                                 if m in sys.modules)}))
"""


def run(args, **kw):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, **kw)


def test_every_subcommand_has_help_and_none_loads_torch_or_jax():
    result = run(["-c", HELP_SCRIPT])
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    helps = report["help"]
    # the top-level commands and the nested ones are all found (store's and data's subcommands)
    assert {"extract", "fuse", "evaluate", "recommend", "store", "demo", "data"} <= set(helps), sorted(helps)
    assert {"store info", "store verify", "store push", "store pull", "data movielens"} <= set(helps), sorted(helps)
    for path, h in helps.items():
        assert h["code"] == 0 and h["head"].startswith(f"usage: cinefuse {path}"), (path, h)
    assert report["loaded"] == [], report["loaded"]
    top = run(["-m", "cinefuse", "--help"])
    assert top.returncode == 0
    for name in {p.split()[0] for p in helps}:
        assert name in top.stdout, name


def test_no_subcommand_prints_usage_and_exits_2():
    result = run(["-m", "cinefuse"])
    assert result.returncode == 2
    assert result.stdout.startswith("usage: cinefuse [-h] [--version] COMMAND ...")
    assert "Traceback" not in result.stderr


class TrickleServer:
    """A real HTTP server on 127.0.0.1 that announces a MovieLens zip and sends it a kilobyte at a
    time, so a download is still running when the test interrupts it."""

    def __init__(self):
        import http.server
        import threading

        stop = self.stop = threading.Event()

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path.endswith(".md5"):
                    body = b"MD5 (ml-100k.zip) = " + b"0" * 32 + b"\n"
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(4_924_029))
                self.end_headers()
                try:
                    while not stop.is_set():
                        self.wfile.write(b"\0" * 1024)
                        self.wfile.flush()
                        time.sleep(0.02)
                except OSError:
                    pass   # the client went away

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


def with_sigint(command: list[str], **kwargs) -> subprocess.Popen:
    """Popen ``command`` with SIGINT at its default in the child even when this test process was
    started with SIGINT ignored (a shell's background job, ``nohup ... &``): an ignored signal is
    inherited across exec, a handler is not, so Python in the child installs KeyboardInterrupt."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen(command, **kwargs)
    finally:
        signal.signal(signal.SIGINT, previous)


def interrupt(proc: subprocess.Popen, ready, timeout: float = 240) -> str:
    """SIGINT ``proc`` once ``ready()`` holds; its stderr."""
    deadline = time.time() + timeout
    while proc.poll() is None and time.time() < deadline and not ready():
        time.sleep(0.05)
    assert proc.poll() is None, "the command ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    try:
        _, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, stderr = proc.communicate()
        raise AssertionError(f"still running 120 s after SIGINT: {stderr[-2000:]}") from None
    return stderr


def test_ctrl_c_during_a_download_exits_130_with_one_line(tmp_path):
    """SIGINT to a real `cinefuse data movielens` mid-download: exit code 130, the one line
    "interrupted" on stderr, no traceback, and no partial file left behind."""
    server = TrickleServer()
    try:
        out = tmp_path / "data"
        proc = with_sigint([sys.executable, "-m", "cinefuse", "data", "movielens", "--version", "ml-100k",
                            "--out", str(out), "--base-url", server.url], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
        part = out / ".ml-100k.zip.part"
        stderr = interrupt(proc, lambda: part.is_file() and part.stat().st_size > 8192)
    finally:
        server.close()
    assert proc.returncode == 130, stderr[-2000:]
    assert stderr.splitlines()[-1] == "interrupted", stderr[-2000:]
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == []


def test_ctrl_c_during_training_exits_130_with_one_line(tmp_path):
    """SIGINT to a real `cinefuse fuse` part-way through training: exit code 130, the last line
    of stderr is "interrupted", no traceback."""
    env = write_synthetic_store(tmp_path)
    config = tmp_path / "fuse.toml"
    config.write_text("[model]\ntoken_dim = 16\nhidden = 32\nembed_dim = 16\n"
                      "[train]\nbatch_size = 32\nsteps = 100000\nsteps_per_call = 50\neval_every = 50\n"
                      "checkpoint_every = 50\npatience = 0\n")
    workdir = tmp_path / "w"
    proc = with_sigint([sys.executable, "-m", "cinefuse", "fuse", "--store", env["store"], "--ratings",
                        env["ratings"], "--movies", env["movies"], "--workdir", str(workdir), "--config",
                        str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       env={**os.environ, "JAX_PLATFORMS": "cpu"})
    # interrupted once the first evaluation is logged (the default objective's run, whatever its name)
    logged = lambda: any(p.read_text().strip() for p in (workdir / "runs").glob("*/metrics.jsonl"))  # noqa: E731
    stderr = interrupt(proc, logged)
    assert proc.returncode == 130, stderr[-2000:]
    assert stderr.rstrip("\n").splitlines()[-1] == "interrupted", stderr[-2000:]
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-2000:]
