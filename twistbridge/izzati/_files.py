"""
Uploaded files: the items of the callback's C{data} list, and the temporary
files behind them.

Every file part is written, as it arrives, to an anonymous temporary file
(L{tempfile.TemporaryFile}: on Linux it never has a name in the file system,
so nothing is left behind even if the server is killed).  The request's
L{UploadStore} closes them all when the request ends, whatever happened.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import IO, Any, List, Optional, Tuple

from twistbridge.izzati._core import safe_filename

_COPY_BUFFER = 1024 * 1024


class UploadedFile:
    """
    One uploaded file, as the callback sees it.

    @ivar filename: the file name exactly as the client sent it (use
        L{save} with a directory, or L{safe_filename}, before using it as a
        path).
    @ivar name: the form field the file came in (izzati's client uses
        C{"file"}).
    @ivar content_type: the part's content type (C{application/octet-stream}
        when the client gave none).
    @ivar size: the file's size in bytes.
    @ivar stream: the open binary file holding the data, positioned at 0.
    """

    def __init__(
        self, filename: str, content_type: str, stream: IO[bytes], name: str = "file"
    ) -> None:
        self.filename = filename
        self.name = name
        self.content_type = content_type
        self.stream = stream
        self.size = 0

    def __repr__(self) -> str:
        return (
            f"<UploadedFile {self.filename!r} ({self.content_type}, {self.size} bytes)>"
        )

    def read(self, size: int = -1) -> bytes:
        """Read (the rest of) the file, or up to C{size} bytes of it."""
        return self.stream.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        """Move the read position of L{stream}."""
        return self.stream.seek(offset, whence)

    def tell(self) -> int:
        """The read position of L{stream}."""
        return self.stream.tell()

    def save(self, location: Any, buffer_size: int = _COPY_BUFFER) -> Any:
        """
        Save the whole file (whatever has been read of it already).

        @param location: an existing directory: the file is saved there under
            L{safe_filename}C{(self.filename)}, never outside it and never
            through a symbolic link; any other path: the file is written at
            that path; a writable file object: the data is written to it.
        @return: the path written (or the file object).
        """
        if hasattr(location, "write"):
            self._copy_to(location, buffer_size)
            return location
        path = os.fspath(location)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0)
        if os.path.isdir(path):
            directory = os.path.realpath(path)
            target = os.path.join(directory, safe_filename(self.filename))
            if os.path.dirname(target) != directory:  # pragma: no cover - defence
                raise ValueError(f"refusing to save {self.filename!r} outside {path}")
            flags |= getattr(os, "O_NOFOLLOW", 0)
        else:
            target = path
        fd = os.open(target, flags, 0o666)
        with os.fdopen(fd, "wb") as out:
            self._copy_to(out, buffer_size)
        return target

    def _copy_to(self, out: Any, buffer_size: int) -> None:
        position = self.stream.tell()
        try:
            self.stream.seek(0)
            shutil.copyfileobj(self.stream, out, buffer_size)
        finally:
            self.stream.seek(position)

    def close(self) -> None:
        """Close (and so delete) the temporary file."""
        self.stream.close()


class UploadStore:
    """
    The temporary files of one request.

    @ivar directory: where temporary files are made (L{None}: the system's
        temporary directory, C{$TMPDIR}).
    @ivar files: every L{UploadedFile} made so far.
    """

    def __init__(self, directory: Optional[str] = None) -> None:
        self.directory = directory
        self.files: List[UploadedFile] = []
        self.closed = False

    def open_file(
        self, filename: str, content_type: str, name: str = "file"
    ) -> Tuple[UploadedFile, Any]:
        """Make the item and the temporary file for one file part."""
        if self.closed:
            raise OSError(0, "the request has ended")
        stream = tempfile.TemporaryFile(
            prefix="twistbridge-upload-", dir=self.directory
        )
        item = UploadedFile(filename, content_type, stream, name)
        self.files.append(item)
        return item, stream

    @staticmethod
    def done_file(item: UploadedFile, size: int) -> None:
        """A file part is complete: set its size and rewind it."""
        item.size = size
        item.stream.flush()
        item.stream.seek(0)

    def close(self) -> None:
        """Close (and so delete) every temporary file; safe to call twice."""
        self.closed = True
        files, self.files = self.files, []
        for item in files:
            try:
                item.close()
            except OSError:  # pragma: no cover - closing a temp file
                pass

    def release(self) -> None:
        """
        Forget the files without closing them: the callback may still be
        reading them in a thread; they are deleted once it lets them go.
        """
        self.closed = True
        self.files = []
