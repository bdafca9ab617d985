"""The izzati upload endpoint's pure core: request bodies in, responses out."""

from __future__ import annotations

from typing import Any


class FileReturn:
    """A file to send back as the response (see L{file_return})."""

    def __init__(self, path: Any) -> None:
        self.path = path


def file_return(path: Any) -> FileReturn:
    """Answer with the file at C{path}, streamed, with a guessed content type."""
    return FileReturn(path)
