"""One command at a time in a run folder, a work folder or a store.

Two commands writing one place (another terminal, a cluster job submitted twice, a second
``train`` into a run that is still training) would interleave checkpoints and metrics, or
build one store from two runs. So ``fit`` holds its run and work folders, ``train`` its run
folder and ``prepare`` its store while they run, each with an exclusive ``flock`` on a lock
file (:data:`LOCK_NAME` in a folder, ``.NAME.lock`` beside a store ``NAME``) that names the
command and its process. A second command on the same place is refused at once, naming the
first; the first goes on. The system releases the lock when the process ends, however it
ends, so a lock file left by a command that was killed is taken over, with a warning. A
command that calls another on the same place (``fit`` calls ``train`` on its run folder)
holds it once: a thread's own locks are counted, not taken twice (another thread of the process
is refused, as another process is).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import threading
import time
from pathlib import Path

from cryostream.errors import StoreError

__all__ = ["LOCK_NAME", "folder_lock", "store_lock"]

#: In a run folder (and a work folder outside it) while a command uses it: which one holds it.
LOCK_NAME = ".cryostream.lock"

_log = logging.getLogger("cryostream")
_held: dict[tuple[Path, int], int] = {}  # (lock file, thread): how many holders it has
_guard = threading.Lock()


@contextlib.contextmanager
def folder_lock(*folders: Path, command: str, fix: str, what: str, unlockable: int = logging.WARNING):
    """Hold ``folders`` (made if missing) for ``command`` (``"fit"``, ``"train"``) while it
    runs: a :class:`StoreError` naming the holder if another process (or another thread of
    this one) holds one of them, with
    ``fix`` (what to do instead) after it; a folder that is a file is named, with ``what``
    (the options that give the folders). Folders made here (and their missing parents) are
    removed again if the command leaves nothing in them. A folder that cannot be locked (a
    file system without ``flock``) is said at the level ``unlockable`` (``logging.INFO`` for
    a short hold that would otherwise warn on every run there), and not held."""
    places = []
    for folder in dict.fromkeys(Path(f).resolve() for f in folders):  # once each
        if folder.exists() and not folder.is_dir():
            raise StoreError(f"{folder}: is a file; give a folder for {what}")
        places.append((folder, folder / LOCK_NAME, folder))
    with _holding(places, command, fix, unlockable):
        yield


@contextlib.contextmanager
def store_lock(store: Path, *, command: str = "prepare", fix: str,
               unlockable: int = logging.WARNING):
    """Hold the store file ``store`` (or any one file) for ``command`` while it is written: a
    lock file ``.NAME.lock`` beside it (its folder made if missing, and removed again if left
    empty); where it cannot be locked, said at the level ``unlockable``."""
    store = Path(store).resolve()
    with _holding([(store, store.with_name(f".{store.name}.lock"), store.parent)], command, fix,
                  unlockable):
        yield


@contextlib.contextmanager
def _holding(places, command: str, fix: str, unlockable: int = logging.WARNING):
    """Lock each ``(subject, lock file, folder)`` of ``places``, making the folder if
    missing; release them (and remove the folders made, if empty) however the block ends."""
    held, made = [], []
    try:
        for subject, path, folder in places:
            blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()),
                           None)
            if blocker is not None:
                raise StoreError(f"{subject}: not writable ({blocker} is a file, not a folder); "
                                 f"{fix}")
            top = folder
            while not top.parent.exists():
                top = top.parent
            if not folder.exists():
                made.append((folder, top))
            key = (path, threading.get_ident())
            with _guard:
                nested = bool(_held.get(key))  # this thread holds it (fit, then its training)
                if nested:
                    _held[key] += 1
            if nested:
                held.append((key, None, True))
                continue
            try:
                folder.mkdir(parents=True, exist_ok=True)
                fd = _acquire(subject, path, command, fix, unlockable)
            except OSError as exc:  # a folder that cannot be made, a full disk (StoreError:
                if isinstance(exc, StoreError):  # in use)
                    raise
                from cryostream.io.paths import os_fix

                where = f": {exc.filename}" if exc.filename else ""
                space = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
                raise StoreError(f"{subject}: not writable ({exc.strerror or exc}{where}); "
                                 f"{os_fix(exc) if space else fix}") from None
            with _guard:
                _held[key] = 1
            held.append((key, fd, False))
        yield
    finally:
        for key, fd, nested in reversed(held):
            with _guard:
                _held[key] -= 1
                if not nested:
                    del _held[key]
            if not nested:
                _release(key[0], fd)
        for folder, top in reversed(made):  # empty: the command failed before writing anything
            path = folder
            while True:
                if path.exists():
                    try:
                        path.rmdir()  # only if empty
                    except OSError:
                        break
                if path == top:
                    break
                path = path.parent


def _release(path: Path, fd: int | None) -> None:
    """Let go of the lock file ``path`` (``fd`` None: not locked, nothing to let go): removed
    if it is still the file we locked (not one another command made since), then closed."""
    if fd is None:
        return
    try:
        if os.fstat(fd).st_ino == os.stat(path).st_ino:
            path.unlink()
    except FileNotFoundError:
        pass
    os.close(fd)


def _acquire(subject: Path, path: Path, command: str, fix: str,
             unlockable: int = logging.WARNING) -> int | None:
    """``flock`` the lock file ``path`` (made if missing) and write who holds it; a
    :class:`StoreError` naming ``subject`` and the holder if another process holds it; where
    it cannot be locked, said at the level ``unlockable`` and None."""
    try:
        import fcntl
    except ImportError:  # no POSIX locks (Windows): say so, and go on
        _log.log(unlockable, "%s: cannot be locked on this system; make sure no other cryostream "
                     "command writes it", subject)
        return None
    me = json.dumps({"command": command, "pid": os.getpid(), "host": socket.gethostname(),
                     "started": time.strftime("%Y-%m-%d %H:%M:%S")})
    for _ in range(5):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            # a folder it may not write (a finished store read again): nothing to guard here
            _log.log(unlockable, "%s: cannot be locked here (%s); make sure no other cryostream "
                         "command writes it", subject, exc.strerror)
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreError(f"{subject}: in use by {_holder(path)}; wait for it to finish or "
                             f"stop it, or {fix}") from None
        except OSError as exc:  # a file system without locks: say so, and go on
            _log.log(unlockable, "%s: cannot be locked here (%s); make sure no other cryostream "
                         "command writes it", subject, exc.strerror)
            os.close(fd)
            return None
        try:  # the file we locked may have been released and removed meanwhile: lock anew
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            continue
        if os.pread(fd, 4096, 0).strip():
            _log.warning("%s: taking over the lock of %s, which ended without releasing it "
                         "(killed?)", subject, _holder(path))
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, me.encode(), 0)
        except OSError:  # a full disk: no lock file left behind
            _release(path, fd)
            raise
        return fd
    raise StoreError(f"{subject}: another cryostream command took it at the same moment; run "
                     "again")


def _holder(path: Path) -> str:
    """Who a lock file says holds it, in words."""
    text = ""
    try:
        text = path.read_text()
        who = json.loads(text)
        return (f"cryostream {who.get('command', 'fit')}: process {who['pid']} on "
                f"{who['host']}, since {who['started']}")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return ("another cryostream command, just starting" if not text.strip()
                else "another cryostream command (its lock file is damaged)")
