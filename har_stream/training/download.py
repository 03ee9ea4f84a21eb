"""`har-stream data download`: fetch the official UCI HAPT archive and convert it to npz.

The machine running this may have no internet access; every network failure becomes a
`DownloadError` whose message says what to do instead.
"""

from __future__ import annotations

import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from har_stream.training.hapt import DataError, load_hapt, save_npz

UCI_URL = ("https://archive.ics.uci.edu/static/public/341/"
           "smartphone+based+recognition+of+human+activities+and+postural+transitions.zip")


class DownloadError(Exception):
    """The archive could not be fetched or read (the message says why and what to do)."""


def download(url: str, destination: Path, timeout_s: float = 30.0) -> None:
    """Stream `url` to `destination`, with a progress bar."""
    from tqdm import tqdm

    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response, \
                open(destination, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc="downloading") as bar:
                while block := response.read(1 << 16):
                    out.write(block)
                    bar.update(len(block))
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise DownloadError(
            f"could not download {url}: {exc}. Without internet access, download the UCI "
            "HAPT zip elsewhere and run `har-stream data convert ZIP --out OUT.npz`, or "
            "point --data / HAR_DATA at an existing hapt_raw.npz.") from exc


def download_and_convert(url: str, out: Path, keep_zip: Path | None = None) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        archive = Path(scratch) / "hapt.zip"
        download(url, archive)
        try:
            data = load_hapt(archive)
        except DataError as exc:
            raise DownloadError(f"{url} is not the UCI HAPT archive: {exc}") from exc
        out.parent.mkdir(parents=True, exist_ok=True)
        save_npz(data, out)
        if keep_zip is not None:
            shutil.copyfile(archive, keep_zip)
