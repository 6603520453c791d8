"""Typed errors of the imaging layer.

Every failure a bad file can cause while fingerprinting is an :class:`ImagingError`
with a short machine ``code`` (stable, used in ``--json`` output) and a sentence a
data manager understands. pydicom raises a wide variety of exceptions on damaged
input; :mod:`imaging.fingerprint` maps all of them onto these.
"""

from __future__ import annotations


class ImagingError(Exception):
    """A file cannot be fingerprinted. ``code`` is stable; the message is for people."""

    code = "imaging_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotDicomError(ImagingError):
    """No DICOM Part 10 header (128-byte preamble, ``DICM``, file meta group)."""

    code = "not_dicom"


class TruncatedError(ImagingError):
    """The file ends inside an element, or an image's pixel data is missing or short."""

    code = "truncated"


class MalformedError(ImagingError):
    """The dataset cannot be parsed (bad lengths, bad sequences, bad values)."""

    code = "malformed"


class MissingAttributeError(ImagingError):
    """An attribute the fingerprint needs (e.g. SOP Instance UID) is absent or invalid."""

    code = "missing_attribute"


class UndecodablePixelsError(ImagingError):
    """The pixel data cannot be decoded (unsupported transfer syntax, corrupt codestream)."""

    code = "undecodable_pixels"


class TooLargeError(ImagingError):
    """The image declares more decoded pixel bytes than the limit, or than its data can hold.

    Checked from Rows, Columns, Samples per Pixel, Number of Frames and Bits
    Allocated before anything is decoded, so a small file claiming a huge image
    cannot make the decoder allocate gigabytes.
    """

    code = "too_large"


class WorkerDiedError(ImagingError):
    """The process reading the file died (killed by a signal, e.g. out of memory)."""

    code = "worker_died"


class UnreadableFileError(ImagingError):
    """The operating system refused to read the file."""

    code = "unreadable"
