"""JAX's persistent compilation cache: on by default, in the user's cache folder, or where
``CRYOSTREAM_COMPILE_CACHE`` says; ``off`` turns it off."""

from __future__ import annotations

from pathlib import Path

import pytest

from cryostream.compile_cache import ENV, cache_folder


def test_the_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV, str(tmp_path / "mine"))
    assert cache_folder() == tmp_path / "mine"
    for off in ("off", "OFF", "0"):
        monkeypatch.setenv(ENV, off)
        assert cache_folder() is None
    monkeypatch.delenv(ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_folder() == tmp_path / "xdg" / "cryostream" / "jax"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_folder() == tmp_path / "home" / ".cache" / "cryostream" / "jax"


def test_training_writes_its_compiled_step_to_the_cache(tiny_run, compile_cache):
    """After a training (the shared run), JAX's cache folder is the session's and holds the
    compiled programs, so a second run of the same shapes loads them instead of compiling."""
    import jax

    assert Path(jax.config.jax_compilation_cache_dir) == compile_cache
    written = [p for p in compile_cache.rglob("*") if p.is_file()]
    assert written, f"nothing was written to the compilation cache {compile_cache}"


def test_shipped_autotuning_results_unpack_into_the_cache_once(tmp_path):
    """The autotuning choices shipped for the presets land where XLA looks for them (one file
    per kernel under the GPU's key), a second install adds nothing, and a file already there
    (the user's own autotuning) is never replaced."""
    from cryostream.compile_cache import AUTOTUNE_FOLDER, install_autotune_results

    added = install_autotune_results(tmp_path)
    files = sorted((tmp_path / AUTOTUNE_FOLDER).rglob("*.pb"))
    assert added == len(files) > 100
    assert all(f.parent.parent == tmp_path / AUTOTUNE_FOLDER for f in files)
    mine = files[0]
    mine.write_bytes(b"the user's own")
    assert install_autotune_results(tmp_path) == 0
    assert mine.read_bytes() == b"the user's own"
    assert not list(tmp_path.rglob("*.partial"))


def test_a_cache_folder_that_cannot_be_written_keeps_the_autotuning_out(tmp_path, caplog):
    """A cache "folder" that is a file (no folder can be made in it, not even by root): nothing
    is installed, one log line says so, and no error stops the work."""
    import logging

    from cryostream.compile_cache import install_autotune_results

    folder = tmp_path / "a-file"
    folder.write_text("not a folder")
    with caplog.at_level(logging.INFO, logger="cryostream"):
        assert install_autotune_results(folder) == 0
    assert "first compile on this GPU autotunes" in caplog.text
    assert folder.read_text() == "not a folder"


def test_threads_unpacking_together_each_file_once_and_quietly(tmp_path, caplog):
    """denoise's threads load the network together: installs racing into one folder leave
    every file whole, count each once, leave no temporary file and log nothing."""
    import concurrent.futures
    import logging

    from cryostream.compile_cache import AUTOTUNE_FOLDER, install_autotune_results

    with caplog.at_level(logging.INFO, logger="cryostream"):
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            added = list(pool.map(install_autotune_results, [tmp_path] * 4))
    files = sorted((tmp_path / AUTOTUNE_FOLDER).rglob("*"))
    whole = [f for f in files if f.is_file()]
    assert not [f for f in whole if f.name.endswith(".partial")]
    assert sum(added) >= len(whole) > 100  # a file two threads both wrote counts twice
    assert "not installed" not in caplog.text
    alone = tmp_path / "alone"
    install_autotune_results(alone)
    for f in whole:
        assert f.read_bytes() == (alone / f.relative_to(tmp_path)).read_bytes()


_COMPILE_ONE = """
import jax, jax.numpy as jnp
from cryostream.compile_cache import enable_compile_cache
enable_compile_cache()
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
print(float(jax.jit(lambda x: jnp.sin(x) @ x.T + 3)(jnp.ones((64, 64))).sum()))
"""


@pytest.mark.slow  # (the suite's time: kept for make test-all)
def test_an_entry_written_in_part_is_removed_and_written_again(tmp_path):
    """JAX writes a compiled program in place and never replaces an entry: one cut short (a
    run killed while writing it) failed to load, with a warning, and was compiled again on
    every run after. The next run now removes it, and the one after loads it whole."""
    import os
    import subprocess
    import sys

    folder = tmp_path / "cache"
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env.update({ENV: str(folder), "JAX_PLATFORMS": "cpu"})

    def run() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", _COMPILE_ONE], env=env, capture_output=True,
                              text=True, check=True, timeout=300)

    first = run()
    (entry,) = folder.glob("jit__lambda-*-cache")
    entry.write_bytes(entry.read_bytes()[:100])  # as a run killed while JAX wrote it
    second = run()
    assert "Error reading persistent compilation cache entry" not in second.stderr
    assert entry.stat().st_size > 100 and second.stdout == first.stdout  # written again
    third = run()
    assert "Error reading persistent" not in third.stderr and third.stdout == first.stdout
