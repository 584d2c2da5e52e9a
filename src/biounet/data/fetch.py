"""``biounet fetch isbi2012 DIR``: download the ISBI 2012 files and verify their pixels.

The SHA-256 is taken of the decoded (30, 512, 512) uint8 pixels, not of the file bytes, so a copy
in another TIFF container still verifies. Files are written as ``NAME.part`` and renamed only
once verified: an interrupted download never leaves a half-written ``.tif``.
"""

from __future__ import annotations

import hashlib
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import tifffile

from biounet.core.errors import DataError

ISBI2012_SHA256 = {
    "train-volume.tif": "200da3d452d726e6c9ca1ce04b869d4edb727320d23b516d01cce707dc8c4760",
    "train-labels.tif": "a7cb64000a1a7e542682927e19c91339f58f9f178e0bcce4e207371116f0ca36",
    "test-volume.tif": "1b58fa7ec1d0ff9d39a855622db3ff66a97863036339b0d04be51b2f5a99b0e9",
}
# Public locations known to host the three files (tried in order).
ISBI2012_URLS = [
    "https://raw.githubusercontent.com/alexklibisz/isbi-2012/master/data",
    "http://brainiac2.mit.edu/isbi_challenge/sites/default/files",
]
CHALLENGE_PAGE = "https://imagej.net/events/isbi-2012-segmentation-challenge"


def pixel_sha256(path: str | Path) -> str:
    """SHA-256 of a TIFF file's decoded pixel array."""
    try:
        return hashlib.sha256(tifffile.imread(path).tobytes()).hexdigest()
    except (OSError, ValueError, tifffile.TiffFileError) as exc:
        raise DataError(f"{path} is not a readable TIFF ({exc})") from None


def _download(url: str, part: Path, timeout: float) -> None:
    with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as f:
        shutil.copyfileobj(response, f, length=1 << 20)


def fetch_isbi2012(
    folder: str | Path, urls: list[str] | None = None, timeout: float = 60.0, log: Callable[[str], object] = print
) -> dict[str, Path]:
    """Download (or verify, if present) the three ISBI 2012 files into ``folder``.

    Returns the verified paths. Raises DataError with what to do when no source is reachable
    or a download does not match its checksum.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sources = [u.rstrip("/") for u in (urls or ISBI2012_URLS)]
    done: dict[str, Path] = {}
    for name, digest in ISBI2012_SHA256.items():
        dest = folder / name
        if dest.is_file():
            if pixel_sha256(dest) == digest:
                log(f"{dest}: present, pixels verified")
                done[name] = dest
                continue
            raise DataError(
                f"{dest} exists but its pixels do not match the published ISBI 2012 data; "
                f"move it away and run the fetch again"
            )
        errors = []
        part = dest.with_name(dest.name + ".part")
        for base in sources:
            url = f"{base}/{name}"
            try:
                log(f"downloading {url}")
                _download(url, part, timeout)
                ok = pixel_sha256(part) == digest
            except (urllib.error.URLError, OSError, ValueError) as exc:  # DataError is a ValueError
                part.unlink(missing_ok=True)
                errors.append(f"{url}: {getattr(exc, 'reason', exc)}")
                continue
            except BaseException:
                part.unlink(missing_ok=True)
                raise
            if not ok:
                part.unlink(missing_ok=True)
                errors.append(f"{url}: downloaded, but the pixels do not match the expected SHA-256")
                continue
            part.replace(dest)
            log(f"{dest}: pixels verified")
            done[name] = dest
            break
        else:
            raise DataError(
                f"could not fetch {name} ({'; '.join(errors)}). If this machine has no internet access, "
                f"download train-volume.tif, train-labels.tif and test-volume.tif on one that has (from "
                f"{CHALLENGE_PAGE} or a mirror), copy them into {folder} and run this command again to verify "
                f"them; or pass --url BASE_URL for a mirror that serves the three files"
            )
    return done
