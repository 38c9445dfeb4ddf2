"""JAX's persistent compilation cache: on by default, in the user's cache folder, or where
``CRYOSTREAM_COMPILE_CACHE`` says; ``off`` turns it off."""

from __future__ import annotations

from pathlib import Path

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
