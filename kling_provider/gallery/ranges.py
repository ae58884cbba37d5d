"""HTTP ``Range`` requests (RFC 9110 section 14) for one byte range, as video players send them.

Pure: the route turns the decision into 200, 206 + ``Content-Range``, or 416. A header this does
not understand (another unit, several ranges, bad syntax) is ignored, which RFC 9110 allows: the
whole file is sent with 200. Numbers are bounded before they are converted: a position of more
than :data:`MAX_DIGITS` digits cannot name a byte of any file (and ``int()`` of thousands of
digits raises), so it is unsatisfiable (416), never a 500.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SPEC = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)
#: 18 digits address up to an exabyte; anything longer is absurd for a stored video.
MAX_DIGITS = 18


@dataclass(frozen=True)
class ByteRange:
    """Inclusive first and last byte of a satisfiable range."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end}/{size}"


#: The range lies wholly past the end of the file (or names an absurd position): answer 416
#: with ``bytes */size``.
UNSATISFIABLE = "unsatisfiable"


def parse_range(header: str | None, size: int) -> ByteRange | str | None:
    """``None``: send everything; :class:`ByteRange`: send that part; ``UNSATISFIABLE``: 416."""
    if not header:
        return None
    match = _SPEC.match(header)
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if len(first) > MAX_DIGITS or len(last) > MAX_DIGITS:
        return UNSATISFIABLE
    if not first:  # suffix range: the last N bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            return UNSATISFIABLE
        return ByteRange(max(size - suffix, 0), size - 1)
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None  # invalid: ignored, not refused
    if start >= size:
        return UNSATISFIABLE
    return ByteRange(start, min(end, size - 1))
