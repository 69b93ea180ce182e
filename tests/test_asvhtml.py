"""restartbench.asvhtml: asv's pages rewritten to load local copies (the end-to-end check, a published
page drawing its graphs in headless Chromium offline, is in test_asv.py)."""

from pathlib import Path

import asv
import pytest

from restartbench import asvhtml

ASV_INDEX = Path(asv.__file__).parent / "www" / "index.html"


def test_every_cdn_address_of_this_asv_has_a_local_copy():
    text, needed = asvhtml.rewrite(ASV_INDEX.read_text())
    assert "https://cdn" not in text and "code.jquery.com" not in text
    assert needed == {name for _, name in asvhtml.LOCAL}
    assert 'src="vendor/jquery-3.3.1.min.js"' in text and 'href="vendor/bootstrap-3.1.0.min.css"' in text
    assert "integrity=" not in text.split("<body")[0]


def test_an_unknown_cdn_address_is_an_error_naming_it():
    page = '<script src="https://cdn.example.org/left-pad.js" integrity="x"></script>'
    with pytest.raises(asvhtml.OfflineError, match="cdn.example.org/left-pad.js"):
        asvhtml.rewrite(page)


def test_local_pages_and_links_are_left_alone():
    page = '<script src="asv.js"></script><a href="https://github.com/airspeed-velocity/asv/">asv</a>'
    assert asvhtml.rewrite(page) == (page, set())
