"""Files under the watched folder and the output folder, reached without following links.

Whoever may write to the watched folder (README's threat model: a shared drop folder) also
controls an output folder inside it, and can plant links there at any moment: a result or a
ledger written through one would overwrite the user's files, a photo read through one would
upload the user's private pictures. So every folder is entered by name from the descriptor of
its parent with ``O_NOFOLLOW`` (a link swapped in between a check and a use is refused too),
and every file is written to a fresh temporary name created with ``O_EXCL`` and renamed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import BinaryIO

_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO planted under a photo's or the ledger's name must not block the open.
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class LinkRefused(OSError):
    """A path goes through a link that watch does not follow; the message names it."""


class OutputFolder:
    """The output folder, opened once: results and the ledger go into the folder that was
    checked, whatever is renamed or linked in its place later, each file whole or not at all."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd

    @classmethod
    def open(cls, root: Path, given: Path) -> OutputFolder:
        """``given`` (made if missing) for the watched folder ``root`` (resolved). Links the
        user has outside ``root`` are followed; one inside it is refused (LinkRefused), as
        whoever writes there could aim the results and the ledger anywhere."""
        path = _locate(root, given)
        if not path.is_relative_to(root):
            path.mkdir(parents=True, exist_ok=True)
            return cls(path, os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
        anchor = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            rel = PurePosixPath(path.relative_to(root).as_posix())
            return cls(path, _enter(anchor, root, rel, create=True))
        finally:
            os.close(anchor)

    def write(self, rel: PurePosixPath, fill: Callable[[BinaryIO], object]) -> Path:
        """Write ``rel`` (its folders made as needed) with what ``fill`` writes into the open
        file; the old file, if any, is replaced only once ``fill`` has returned. Its path."""
        folder = _enter(self._fd, self.path, rel.parent, create=True)
        try:
            part = f".{rel.name}.{secrets.token_hex(4)}.part"
            fd = os.open(part, _NEW_FILE, 0o666, dir_fd=folder)
            try:
                with os.fdopen(fd, "wb") as file:
                    fill(file)
                # Replaces a link planted under the result's name; never follows it.
                os.rename(part, rel.name, src_dir_fd=folder, dst_dir_fd=folder)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(part, dir_fd=folder)
                raise
        finally:
            os.close(folder)
        return self.path / rel

    def read(self, name: str) -> bytes | None:
        """The file ``name`` directly in the folder; None when there is none."""
        try:
            with _open_file(self._fd, self.path / name) as file:
                return file.read()
        except FileNotFoundError:
            return None

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> OutputFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_source(root: Path, path: Path) -> BinaryIO:
    """``path`` under the watched folder ``root``, open for reading. A link that resolves
    inside ``root`` is fine (the file it names is opened); a path that leads outside through
    a link, whichever of its parts is the link, is LinkRefused."""
    root = root.resolve()
    real = path.resolve(strict=True)
    if not real.is_relative_to(root):
        raise LinkRefused(
            "reached through a link to outside the watched folder, which is not followed"
        )
    rel = PurePosixPath(real.relative_to(root).as_posix())
    anchor = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        folder = _enter(anchor, root, rel.parent, create=False)
    finally:
        os.close(anchor)
    try:
        return _open_file(folder, root / rel)
    finally:
        os.close(folder)


def _open_file(folder: int, path: Path) -> BinaryIO:
    """The regular file ``path``, a name in the folder open as ``folder``, for reading; not
    through a link, and without blocking on a FIFO planted under that name."""
    try:
        fd = os.open(path.name, _READ, dir_fd=folder)
    except OSError as exc:
        raise _why(exc, folder, path) from None
    os.set_blocking(fd, True)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    return os.fdopen(fd, "rb")


def _enter(fd: int, base: Path, rel: PurePosixPath, *, create: bool) -> int:
    """A new descriptor of the folder ``rel`` under the folder open as ``fd`` (at ``base``,
    for messages), entered one name at a time without following a link; made when
    ``create``."""
    here, path = os.dup(fd), base
    try:
        for name in rel.parts:
            path = path / name
            if name == "..":  # callers pass paths below the folder; never climb out of it
                raise OSError(errno.EINVAL, "a path that leaves its folder", str(path))
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, dir_fd=here)
            try:
                inner = os.open(name, _FOLDER, dir_fd=here)
            except OSError as exc:
                raise _why(exc, here, path) from None
            os.close(here)
            here = inner
    except BaseException:
        os.close(here)
        raise
    return here


def _why(exc: OSError, folder: int, path: Path) -> OSError:
    """``exc`` from opening ``path`` (a name in ``folder``) with O_NOFOLLOW, as LinkRefused
    where a link was the reason (the system says ELOOP or ENOTDIR then)."""
    try:
        link = stat.S_ISLNK(os.stat(path.name, dir_fd=folder, follow_symlinks=False).st_mode)
    except OSError:
        link = False
    if not link:
        return exc
    return LinkRefused(
        f"{path} is a link, and watch never follows links in the watched or the output "
        "folder (whoever can write there could aim them anywhere); remove it"
    )


def _locate(root: Path, given: Path) -> Path:
    """Where ``given`` leads, following links (as the system would) only while outside
    ``root``: one met inside it is LinkRefused, with the fix."""
    pending = list(Path(os.path.abspath(given)).parts[1:])
    here = Path("/")
    hops = 0
    while pending:
        name = pending.pop(0)
        if name == "..":
            here = here.parent
            continue
        step = here / name
        if not step.is_symlink():
            here = step
            continue
        if here.is_relative_to(root):
            raise LinkRefused(
                f"{step} is a link inside the watched folder, and the output folder is never "
                "reached through one (whoever can write there could aim the results and the "
                f"ledger anywhere); remove it, or give -o a folder outside {root}"
            )
        hops += 1
        if hops > 40:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), str(given))
        target = Path(os.readlink(step))
        if target.is_absolute():
            here = Path("/")
        pending[:0] = [part for part in target.parts if part not in ("/", ".")]
    return here
