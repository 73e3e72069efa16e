"""A dataset folder or archive seen as one flat {relative path: file} mapping, so that the
readers handle a folder, a .tar(.gz) and a .zip alike."""

import hashlib
import io
import json
import os
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from imgcls.data.console import say
from imgcls.errors import ImgclsError


def _visible(name):
    """Relative posix path, or None for hidden files and folders (.DS_Store, .git/, ../, __MACOSX/._x)."""
    path = PurePosixPath(name.lstrip("/"))
    return None if any(part.startswith(".") for part in path.parts) else str(path)


def list_files(path) -> dict:
    """{relative path: Path} for a folder, {relative path: bytes} for an archive.

    Archive members are read into memory in one pass: a .tar.gz cannot be read out of order
    cheaply, and extracting 60,000 small files to disk is slower than decoding them.
    """
    path = Path(path)
    if path.is_dir():
        files, broken = {}, []
        for folder, dirs, names in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in names:
                key = _visible(os.path.relpath(os.path.join(folder, name), path).replace(os.sep, "/"))
                if not key:
                    continue
                if os.path.isfile(os.path.join(folder, name)):  # False for dangling and looping links
                    files[key] = Path(folder, name)
                else:
                    broken.append(key)
        if broken:
            say(f"{path}: skipped {len(broken)} broken links ({', '.join(broken[:3])}{', ...' if len(broken) > 3 else ''})")
        return files
    try:
        if path.is_file() and tarfile.is_tarfile(path):
            with tarfile.open(path) as tar:
                return {key: tar.extractfile(m).read() for m in tar if m.isfile() and (key := _visible(m.name))}
        if path.is_file() and zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                return {key: archive.read(info) for info in archive.infolist()
                        if not info.is_dir() and (key := _visible(info.filename))}
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error) as e:
        raise ImgclsError(f"{path} is a damaged archive ({e})") from None
    if not path.exists():
        raise ImgclsError(f"{path} does not exist")
    raise ImgclsError(f"{path} is neither a folder nor a .tar, .tar.gz or .zip archive")


def as_file(entry):
    """Something Image.open and open() accept for a list_files value."""
    return io.BytesIO(entry) if isinstance(entry, bytes) else entry


def read_bytes(entry) -> bytes:
    return entry if isinstance(entry, bytes) else entry.read_bytes()


def fingerprint(path, files) -> str:
    """Hash of the file names, sizes and modification times: it changes when a file is added,
    removed or edited, without reading any file."""
    path = Path(path)
    if path.is_file():
        stats = {path.name: path.stat()}
    else:
        stats = {key: entry.stat() for key, entry in files.items()}
    listing = [[key, st.st_size, st.st_mtime_ns] for key, st in sorted(stats.items())]
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()
