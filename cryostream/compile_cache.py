"""JAX's persistent compilation cache, on by default in the user's cache folder.

Compiling the ``unet`` training step takes minutes on a GPU; with the cache, a second run of
the same shapes (a resumed ``fit``, a second ``train``, ``denoise`` after ``denoise``) loads the
compiled program from disk instead. The folder is, in order: ``JAX_COMPILATION_CACHE_DIR`` or a
cache folder already set in JAX's config (left as it is), ``CRYOSTREAM_COMPILE_CACHE``, or
``$XDG_CACHE_HOME/cryostream/jax`` (``~/.cache/cryostream/jax``). ``CRYOSTREAM_COMPILE_CACHE=off``
turns it off. A folder that cannot be made leaves the cache off with one log line: compiling
still works, only slower the next time.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

__all__ = ["ENV", "cache_folder", "enable_compile_cache"]

#: The environment variable that names the cache folder, or ``off``.
ENV = "CRYOSTREAM_COMPILE_CACHE"

#: Programs that compile faster than this (seconds) are not written to the cache.
MIN_COMPILE_SECONDS = 1.0

_enabled: str | None = None


def cache_folder() -> Path | None:
    """The folder the cache goes in (see the module's text), or ``None`` when turned off."""
    chosen = os.environ.get(ENV, "").strip()
    if chosen.lower() in ("off", "0", "no", "false", "none"):
        return None
    if chosen:
        return Path(chosen).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cryostream" / "jax"


def enable_compile_cache() -> str | None:
    """Turn JAX's persistent compilation cache on (once per process); the folder in use, or
    ``None`` when it is off. A folder the user gave JAX already is kept."""
    global _enabled
    import jax

    given = os.environ.get("JAX_COMPILATION_CACHE_DIR") or jax.config.jax_compilation_cache_dir
    if given:
        _enabled = str(given)
        return _enabled
    if _enabled is not None:
        return _enabled
    folder = cache_folder()
    if folder is None:
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        logging.getLogger("cryostream").info(
            "compilation cache off: cannot make %s (%s); set %s to a writable folder", folder,
            exc.strerror or exc, ENV)
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    _enabled = str(folder)
    return _enabled
