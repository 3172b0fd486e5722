"""Files given by path in the shell (`/file`, `/image`): regular files only, never past the size limit."""

from __future__ import annotations

import asyncio
import mimetypes
import os
import stat
import uuid
from pathlib import Path
from urllib.parse import unquote, urlsplit

from bot.conversations.backend import FileKind
from bot.conversations.files import BYTES_PER_MB, IMAGE_TYPES, classify
from bot.conversations.turn import SharedFile
from bot.errors import FileRefused
from bot.shell.text import printable


class LocalFiles:
    """The shell's way to a file's bytes: the path the person typed, checked when given and again when read.

    Checked again because the file is read when the message is answered, perhaps in a later session, and
    may have changed; and opened without blocking, so that a FIFO or a device named as a file cannot hang
    the shell or feed it endless bytes.
    """

    def __init__(self, *, max_mb: int) -> None:
        self._max_mb = max_mb

    @property
    def max_bytes(self) -> int:
        return self._max_mb * BYTES_PER_MB

    def attach(self, typed: str, *, image: bool = False) -> SharedFile:
        """The file at the typed path, as the platform shares it; FileRefused says why it cannot be."""
        if not typed:
            raise FileRefused("give the file's path, e.g. /file report.pdf")
        path = Path(typed).expanduser()
        try:
            resolved = path.resolve(strict=True)
            found = resolved.stat()
        except FileNotFoundError:
            raise FileRefused(f"there is no file at {printable(typed)}") from None
        except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
            raise FileRefused(f"{printable(typed)} cannot be opened ({type(exc).__name__})") from None
        self._check(found, shown=typed)
        name = printable(resolved.name) or "file"
        mimetype = mimetypes.guess_type(name)[0] or ""
        shared = SharedFile(
            file_id=f"local-{uuid.uuid4().hex[:16]}",
            name=name,
            mimetype=mimetype,
            size=found.st_size,
            filetype=resolved.suffix.lstrip(".").lower(),
            download_url=resolved.as_uri(),
        )
        if image and classify(shared) is not FileKind.IMAGE:
            kinds = ", ".join(sorted(IMAGE_TYPES))
            raise FileRefused(f"{name} is not an image ({kinds}); use /file for other files")
        return shared

    async def fetch(self, file: SharedFile, *, team_id: str) -> bytes:
        if not file.download_url.startswith("file://"):
            raise FileRefused("it was not given by a path in the shell")
        return await asyncio.to_thread(self._read, _path_of(file.download_url))

    def _read(self, path: Path) -> bytes:
        try:
            descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            raise FileRefused("the file is no longer there") from None
        except OSError as exc:
            raise FileRefused(f"it cannot be opened ({type(exc).__name__})") from None
        with os.fdopen(descriptor, "rb") as opened:
            self._check(os.fstat(opened.fileno()), shown=path.name)
            data = opened.read(self.max_bytes + 1)
        if len(data) > self.max_bytes:  # grown since it was given
            raise FileRefused(self._too_big())
        return data

    def _check(self, found: os.stat_result, *, shown: str) -> None:
        if stat.S_ISDIR(found.st_mode):
            raise FileRefused(f"{printable(shown)} is a folder, not a file")
        if not stat.S_ISREG(found.st_mode):
            raise FileRefused(f"{printable(shown)} is not a regular file (a device, a pipe or a socket)")
        if found.st_size > self.max_bytes:
            raise FileRefused(self._too_big())

    def _too_big(self) -> str:
        return f"it is larger than the {self._max_mb} MB limit (MAX_FILE_MB)"


def _path_of(uri: str) -> Path:
    """The path of a file:// URI that Path.as_uri made (Path.from_uri arrives in Python 3.13)."""
    return Path(unquote(urlsplit(uri).path))
