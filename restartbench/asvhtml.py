"""asv's published HTML without the network: its pages load jQuery, flot, bootstrap, stupidtable and
md5 from CDNs (asv 0.6), so offline (air-gapped CI, a laptop on a plane) they show asv's "failed to
load" page. ``make_offline(html_dir)`` puts local copies next to the pages and points the pages at them.

The copies are the ones asv itself shipped before it moved to CDNs: the ``asv/www/vendor`` files of
the asv 0.5.1 source release, fetched once from PyPI (pip, like every other dependency; its SHA-256 is
pinned here) into ``<venv>/asv-www/``. A CDN address this module does not know (a newer asv) is an
error naming it, never a silently broken page. The pages still need a web server (``asv preview``,
any static server): browsers refuse asv's data requests from ``file://`` pages.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

SDIST = "asv-0.5.1.tar.gz"
SDIST_SHA256 = "805fc3cc46c0bcf3e7baeaa16a12e4b92f1276c25490db4cb80fc541afa52bfc"
VENDOR_IN_SDIST = "asv-0.5.1/asv/www/vendor/"
VENDOR_DIR = "vendor"                 # under the published HTML dir
#: a CDN address asv's pages use (regex on the URL) -> the local copy
LOCAL = (
    (r"/jquery-3\.3\.1\.min\.js$", "jquery-3.3.1.min.js"),
    (r"/flot/0\.8\.3/jquery\.flot\.min\.js$", "jquery.flot-0.8.3.min.js"),
    (r"/flot/0\.8\.3/jquery\.flot\.time\.min\.js$", "jquery.flot-0.8.3.time.min.js"),
    (r"/flot/0\.8\.3/jquery\.flot\.selection\.min\.js$", "jquery.flot-0.8.3.selection.min.js"),
    (r"/flot/0\.8\.3/jquery\.flot\.categories\.min\.js$", "jquery.flot-0.8.3.categories.min.js"),
    (r"/jquery\.flot\.orderBars\.js$", "jquery.flot.orderBars.js"),
    (r"/stupidtable(?:\.min)?\.js$", "stupidtable.js"),
    (r"/md5(?:\.min)?\.js$", "md5.js"),
    (r"/bootstrap@3\.[0-9.]+/dist/js/bootstrap\.min\.js$", "bootstrap-3.1.0.min.js"),
    (r"/bootstrap@3\.[0-9.]+/dist/css/bootstrap\.min\.css$", "bootstrap-3.1.0.min.css"),
)
_TAG = re.compile(r'<(?P<tag>script|link)\b(?P<attrs>[^>]*?)\b(?P<attr>src|href)="(?P<url>https?://[^"]+)"'
                  r'(?P<rest>[^>]*)>')
FETCH_TIMEOUT_S = 300.0


class OfflineError(RuntimeError):
    """The local copies cannot be had, or a page loads something this module has no copy of."""


def cache_dir() -> Path:
    return Path(sys.prefix) / "asv-www" / SDIST.removesuffix(".tar.gz")


def vendor_files() -> Path:
    """The directory of local copies (fetched and checked on first use)."""
    out = cache_dir()
    if all((out / name).is_file() for _, name in LOCAL):
        return out
    out.mkdir(parents=True, exist_ok=True)
    sdist = out / SDIST
    if not sdist.is_file():
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
               "--dest", str(out), "asv==0.5.1"]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=FETCH_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            done = None
        if done is None or done.returncode != 0 or not sdist.is_file():
            why = (done.stderr.strip().splitlines() or ["no output"])[-1] if done else "timed out"
            raise OfflineError(f"cannot fetch {SDIST} from PyPI for asv's offline HTML ({why}): put it into {out}")
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    if digest != SDIST_SHA256:
        sdist.unlink()
        raise OfflineError(f"{SDIST} has SHA-256 {digest}, not the pinned {SDIST_SHA256}: deleted; fetch again")
    with tarfile.open(sdist) as tar:
        for _, name in LOCAL:
            member = tar.getmember(VENDOR_IN_SDIST + name)
            (out / name).write_bytes(tar.extractfile(member).read())
    return out


def local_name(url: str) -> str | None:
    """The local copy standing for a CDN ``url`` (None: none)."""
    return next((name for pattern, name in LOCAL if re.search(pattern, url)), None)


def rewrite(html: str) -> tuple[str, set[str]]:
    """``html`` with every CDN script/stylesheet pointing at ``vendor/<copy>`` (integrity and
    crossorigin attributes dropped: same-origin files); the copies it needs. Raises OfflineError for
    an address without a copy."""
    needed: set[str] = set()

    def local(m: re.Match) -> str:
        name = local_name(m.group("url"))
        if name is None:
            raise OfflineError(f"asv's page loads {m.group('url')}, which has no local copy: asv changed its "
                               f"dependencies; add it to restartbench/asvhtml.py LOCAL")
        needed.add(name)
        attrs = re.sub(r'\s(?:integrity|crossorigin|referrerpolicy)="[^"]*"', "",
                       m.group("attrs") + " " + m.group("rest"))
        attrs = " ".join(attrs.split())
        return f'<{m.group("tag")} {attrs + " " if attrs else ""}{m.group("attr")}="{VENDOR_DIR}/{name}">'

    return _TAG.sub(local, html), needed


def make_offline(html_dir: Path | str) -> list[Path]:
    """Make the asv pages under ``html_dir`` load nothing from the network; return the pages changed."""
    html_dir = Path(html_dir)
    pages = sorted(html_dir.glob("*.html"))
    if not pages:
        raise OfflineError(f"{html_dir} has no asv pages: run `asv publish` first")
    rewritten = {}
    needed: set[str] = set()
    for page in pages:
        text, names = rewrite(page.read_text())
        if names:
            rewritten[page] = text
            needed |= names
    if needed:
        src = vendor_files()
        (html_dir / VENDOR_DIR).mkdir(exist_ok=True)
        for name in sorted(needed):
            shutil.copyfile(src / name, html_dir / VENDOR_DIR / name)
    for page, text in rewritten.items():
        page.write_text(text)
    return list(rewritten)
