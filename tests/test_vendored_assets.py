"""The browser files vendored from the npm registry are the pinned ones (dashboard/vendor.py)."""

from __future__ import annotations

import base64
import hashlib

from dashboard.vendor import VENDORED, check, integrity_matches


def test_committed_files_match_their_pins():
    assert check() == []
    assert [(v.package, v.version) for v in VENDORED] == [("chart.js", "4.6.2")]


def test_integrity_is_the_registrys_sha512_form():
    data = b"tarball bytes"
    pinned = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    assert integrity_matches(data, pinned)
    assert not integrity_matches(data + b"!", pinned)
    assert not integrity_matches(data, "sha1-" + pinned.removeprefix("sha512-"))
