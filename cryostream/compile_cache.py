"""JAX's persistent compilation cache, on by default in the user's cache folder.

Compiling the ``unet`` training step takes minutes on a GPU; with the cache, a second run of
the same shapes (a resumed ``fit``, a second ``train``, ``denoise`` after ``denoise``) loads the
compiled program from disk instead. The folder is, in order: ``JAX_COMPILATION_CACHE_DIR`` or a
cache folder already set in JAX's config (left as it is), ``CRYOSTREAM_COMPILE_CACHE``, or
``$XDG_CACHE_HOME/cryostream/jax`` (``~/.cache/cryostream/jax``). ``CRYOSTREAM_COMPILE_CACHE=off``
turns it off. A folder that cannot be made leaves the cache off with one log line: compiling
still works, only slower the next time.

Most of a cold compile on a GPU is XLA autotuning: timing the candidate kernels of every
convolution and fusion (80 of the 83 s of the ``unet`` training step on an H200). XLA keeps
those choices in the cache folder too (``xla_gpu_per_fusion_autotune_cache_dir``, one file
per kernel, keyed by the GPU model, the XLA version and the kernel's HLO), and cryostream
ships the ones measured for its presets (``cryostream/data/autotune_*.tgz``): on that GPU
with that XLA version a first compile takes seconds. Another GPU or version does not match
them and autotunes once, then finds its own choices in the cache.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from pathlib import Path

__all__ = ["ENV", "AUTOTUNE_FOLDER", "cache_folder", "enable_compile_cache",
           "install_autotune_results", "drop_broken_entries"]

#: The environment variable that names the cache folder, or ``off``.
ENV = "CRYOSTREAM_COMPILE_CACHE"

#: Programs that compile faster than this (seconds) are not written to the cache.
MIN_COMPILE_SECONDS = 1.0

#: The folder, inside the compilation cache, where JAX has XLA keep its autotuning choices.
AUTOTUNE_FOLDER = "xla_gpu_per_fusion_autotune_cache_dir"

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
        _install_on_gpu(Path(given))
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
    drop_broken_entries(folder)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    _enabled = str(folder)
    _install_on_gpu(folder)
    return _enabled


#: The file whose time says when :func:`drop_broken_entries` last looked at the cache folder.
CHECKED_STAMP = ".cryostream-checked"


def drop_broken_entries(folder: Path) -> list[Path]:
    """Remove the compiled programs in the cache ``folder`` that JAX wrote only in part, and
    return them. JAX writes an entry in place and never replaces one, so an entry cut short (a
    run killed while writing it, a full disk) would be read, fail with a warning and be
    compiled again on every run after. Only entries written since the last look (the time of
    :data:`CHECKED_STAMP`) are read, so a run looks at what the runs before it wrote; an entry
    that another process is still writing may be removed too, and is compiled again later."""
    try:
        from jax._src.compilation_cache import decompress_executable
    except ImportError:  # another JAX: its entries are left as they are
        return []
    stamp = Path(folder) / CHECKED_STAMP
    since = stamp.stat().st_mtime - 2 if stamp.exists() else -math.inf
    dropped = []
    for path in Path(folder).glob("*-cache"):
        try:
            if path.stat().st_mtime < since:
                continue
            decompress_executable(path.read_bytes())
        except FileNotFoundError:  # removed meanwhile, by JAX's eviction or another run
            continue
        except Exception:  # noqa: BLE001 — zlib's or zstandard's error for a stream cut short
            path.unlink(missing_ok=True)
            dropped.append(path)
    try:
        stamp.touch()
    except OSError:
        pass
    if dropped:
        logging.getLogger("cryostream").info(
            "compilation cache: %d entr%s written only in part removed from %s (compiled again "
            "when next needed)", len(dropped), "y" if len(dropped) == 1 else "ies", folder)
    return dropped


_installed: set[str] = set()
_install_lock = threading.Lock()


def _install_on_gpu(folder: Path) -> None:
    """The shipped autotuning results into ``folder``, once per folder and process, where JAX
    has XLA keep its autotuning in the cache and the backend is a GPU."""
    import jax

    caches = str(getattr(jax.config, "jax_persistent_cache_enable_xla_caches", "") or "")
    if not (caches == "all" or AUTOTUNE_FOLDER in caches):
        return
    with _install_lock:  # denoise's threads load the network together
        if str(folder) in _installed or jax.default_backend() not in ("gpu", "cuda"):
            return
        _installed.add(str(folder))
        install_autotune_results(folder)


def install_autotune_results(folder: Path) -> int:
    """Unpack the autotuning results shipped with cryostream into the compilation cache
    ``folder`` (its :data:`AUTOTUNE_FOLDER`), never replacing a file already there; the number
    of files added. A folder that cannot be written is left as it is, with one log line."""
    import tarfile
    import tempfile
    import zlib
    from importlib import resources

    added = 0
    target = Path(folder)
    shipped = sorted(p for p in resources.files("cryostream.data").iterdir()
                     if p.name.startswith("autotune_") and p.name.endswith(".tgz"))
    for bundle in shipped:
        try:
            with resources.as_file(bundle) as path, tarfile.open(path) as tar:
                for member in tar.getmembers():
                    parts = Path(member.name).parts
                    if not member.isfile() or not parts or parts[0] != AUTOTUNE_FOLDER \
                            or ".." in parts:
                        continue
                    out = target.joinpath(*parts)
                    if out.exists():
                        continue
                    out.parent.mkdir(parents=True, exist_ok=True)
                    data = tar.extractfile(member).read()
                    # a temporary file of its own, renamed: a process unpacking beside this
                    # one writes the same bytes, and XLA never reads half a file
                    handle, partial = tempfile.mkstemp(dir=out.parent, prefix=out.name + ".",
                                                       suffix=".partial")
                    try:
                        with os.fdopen(handle, "wb") as file:
                            file.write(data)
                        os.replace(partial, out)
                    except BaseException:
                        Path(partial).unlink(missing_ok=True)
                        raise
                    added += 1
        except (OSError, tarfile.TarError, EOFError, zlib.error) as exc:
            logging.getLogger("cryostream").info(
                "shipped autotuning results not installed in %s (%s): the first compile on "
                "this GPU autotunes", target, getattr(exc, "strerror", None) or exc)
            break
    return added
