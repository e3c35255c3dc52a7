"""The one decoder path for image files: every image read from data (image folders, dataset zips,
StyleGAN2-ADA's dataset_tool, the metrics' reference sets, the bench's sample grids) goes through
`open_image` / `read_header`.

Only the formats we support are ever decoded: PNG and JPEG, chosen by the file name's extension
(`.png`, `.jpg`, `.jpeg`), plus WebP for the records of an LSUN lmdb (the README's dataset_tool
source; its records have keys, not file names, so the caller names the formats). A file whose name
has any other extension is refused by name, and a file whose bytes do not start with the signature of
the format its name promises is refused too: Pillow is only ever handed the one plugin we chose, so it
never picks a decoder from the file's bytes (an EPS file renamed `x.png` never reaches Ghostscript,
nor does any other plugin that starts an external program).

Every refusal is an `ImageFormatError` (a ValueError) whose message names the file.
"""
from __future__ import annotations

import io
import os

from PIL import Image

# extension -> the Pillow format that decodes it (the only formats a file name can select)
FORMAT_BY_EXTENSION = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
IMAGE_EXTENSIONS = tuple(FORMAT_BY_EXTENSION)
# formats of an LSUN lmdb's records (no file names there); WebP only comes in through this list
LMDB_FORMATS = ("WEBP", "JPEG", "PNG")
SUPPORTED_FORMATS = ("PNG", "JPEG", "WEBP")

_HEAD_BYTES = 16


def _is_png(head: bytes) -> bool:
    return head.startswith(b"\x89PNG\r\n\x1a\n")


def _is_jpeg(head: bytes) -> bool:
    return head.startswith(b"\xff\xd8\xff")


def _is_webp(head: bytes) -> bool:
    return len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP"


_SIGNATURE = {"PNG": _is_png, "JPEG": _is_jpeg, "WEBP": _is_webp}


class ImageFormatError(ValueError):
    """An image file in a format we do not decode, or whose bytes are not the format its name says."""


def is_image_name(name: str) -> bool:
    """Whether a file found in a dataset folder or zip is one of its images: True for a supported name
    (.png, .jpg, .jpeg), False for a file that is no image (dataset.json, notes.txt), and ImageFormatError
    for an image format we do not read (the extension of any other format Pillow can open: .eps, .bmp,
    .gif, .webp, ...),
    so such a file is refused by name instead of being left out without a word."""
    name = str(name)
    if name.lower().endswith(IMAGE_EXTENSIONS):
        return True
    ext = os.path.splitext(name)[1].lower()
    if ext and ext in _pillow_extensions():
        format_of_name(name)  # raises, naming the file
    return False


# Pillow's stubs for scientific data containers (they only identify the file): such files may sit next
# to a dataset's images and are left alone like any other non-image file
_NOT_IMAGES = ("BUFR", "GRIB", "HDF5")


def _pillow_extensions() -> frozenset:
    """The file extensions of every format Pillow can open (names only: nothing is decoded), less the
    data-container stubs; a PDF (which Pillow only writes) is not among them."""
    global _PILLOW_EXTENSIONS
    if _PILLOW_EXTENSIONS is None:
        _PILLOW_EXTENSIONS = frozenset(ext.lower() for ext, fmt in Image.registered_extensions().items()
                                       if fmt in Image.OPEN and fmt not in _NOT_IMAGES)
    return _PILLOW_EXTENSIONS


_PILLOW_EXTENSIONS = None


def format_of_name(name: str) -> str:
    """The Pillow format a file name selects; ImageFormatError for any other extension."""
    ext = os.path.splitext(str(name))[1].lower()
    if ext not in FORMAT_BY_EXTENSION:
        raise ImageFormatError(f"{name}: unsupported image format {ext or '(no extension)'!r}: only PNG and "
                               f"JPEG files ({', '.join(IMAGE_EXTENSIONS)}) are read")
    return FORMAT_BY_EXTENSION[ext]


def _allowed_formats(name: str, formats) -> tuple[str, ...]:
    if formats is None:
        return (format_of_name(name),)
    formats = tuple(formats)
    unknown = [f for f in formats if f not in SUPPORTED_FORMATS]
    if not formats or unknown:
        raise ValueError(f"internal: image formats must be among {SUPPORTED_FORMATS}, got {formats}")
    return formats


def _check_signature(head: bytes, name: str, formats: tuple[str, ...], by_name: bool) -> None:
    if not any(_SIGNATURE[f](head) for f in formats):
        why = "an image is decoded only as the format its name says (PNG or JPEG)" if by_name else \
            "nothing else is decoded from this source"
        raise ImageFormatError(f"{name}: not a {' or '.join(formats)} file (its first bytes are "
                               f"{head[:10]!r}): {why}")


def _as_stream(data):
    """(binary stream positioned at 0, its first bytes) for bytes or a seekable binary file object."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        stream = io.BytesIO(bytes(data))
    else:
        stream = data
    head = stream.read(_HEAD_BYTES)
    stream.seek(0)
    return stream, head


def _open(stream, name: str, formats: tuple[str, ...]):
    try:
        return Image.open(stream, formats=list(formats))
    except Image.DecompressionBombError as error:
        raise ImageFormatError(f"{name}: image too large to decode ({error})") from error


def open_image(data, name: str, formats=None) -> Image.Image:
    """Decode `data` (bytes or a seekable binary file) named `name` into a fully loaded PIL image.
    The format comes from `name`'s extension (PNG or JPEG), or from `formats` for sources without file
    names (an lmdb's records); the bytes must carry that format's signature. Only that Pillow plugin is
    used. Raises ImageFormatError for a refused format; Pillow's own errors for a corrupt file pass
    through (callers wrap them with the file name)."""
    allowed = _allowed_formats(name, formats)
    stream, head = _as_stream(data)
    _check_signature(head, name, allowed, by_name=formats is None)
    image = _open(stream, name, allowed)
    try:
        image.load()
    except Exception:
        image.close()
        raise
    return image


def read_header(data, name: str, formats=None) -> tuple[tuple[int, int], str]:
    """((width, height), mode) of an image without decoding its pixels; the same checks as open_image."""
    allowed = _allowed_formats(name, formats)
    stream, head = _as_stream(data)
    _check_signature(head, name, allowed, by_name=formats is None)
    with _open(stream, name, allowed) as image:
        return image.size, image.mode
