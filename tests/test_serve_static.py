"""The class server's static files (flowedu.app.serve): text files go out gzip-compressed to
browsers that accept it, byte for byte the same once decompressed, with their own ETag, and
nothing else about serving them changes (paths are checked as before, ranges still work)."""

from __future__ import annotations

import gzip
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from voila_server import serve

from flowedu.app.serve import (
    CHUNKS_FILE,
    MIN_COMPRESSED_BYTES,
    PAGE_CHUNKS,
    chunk_bundle,
    gzipped,
    page_chunk_names,
)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "dashboard.ipynb"
# One file of each of Voila's static handlers the page uses.
FILES = [
    "voila/static/voila.js",
    "voila/templates/lab/static/index.css",
    "voila/labextensions/@jupyter-widgets/jupyterlab-manager/package.json",
]


def fetch(url: str, **headers) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), b""


@pytest.fixture(scope="module")
def server():
    with serve(NOTEBOOK, cwd=ROOT, args=["--pool_size=1"], timeout=120) as running:
        yield running


@pytest.mark.parametrize("path", FILES)
def test_text_files_are_sent_compressed_and_decompress_to_the_file(server, path):
    status, plain_headers, plain = fetch(server.url + path)
    assert status == 200 and "Content-Encoding" not in plain_headers
    status, headers, body = fetch(server.url + path, **{"Accept-Encoding": "gzip, deflate"})
    assert status == 200
    assert headers["Content-Encoding"] == "gzip" and "Accept-Encoding" in headers["Vary"]
    assert int(headers["Content-Length"]) == len(body) < len(plain)
    assert gzip.decompress(body) == plain
    assert headers["Content-Type"] == plain_headers["Content-Type"]
    if "Etag" in plain_headers:  # a cached copy is asked about by its own tag
        assert headers["Etag"] != plain_headers["Etag"]
        again = fetch(
            server.url + path, **{"Accept-Encoding": "gzip", "If-None-Match": headers["Etag"]}
        )
        assert again[0] == 304


def test_a_range_request_gets_the_plain_bytes(server):
    path = FILES[0]
    _, _, plain = fetch(server.url + path)
    status, headers, body = fetch(
        server.url + path, **{"Accept-Encoding": "gzip", "Range": "bytes=0-99"}
    )
    assert status == 206 and "Content-Encoding" not in headers and body == plain[:100]


@pytest.mark.parametrize(
    "path", ["voila/static/../../../../etc/passwd", "voila/static/no-such-file.js"]
)
def test_paths_are_checked_as_without_compression(server, path):
    plain = fetch(server.url + path)[0]
    compressed = fetch(server.url + path, **{"Accept-Encoding": "gzip"})[0]
    assert plain == compressed and plain in (403, 404)


def test_gzipped_keeps_up_with_the_file_and_skips_small_or_binary_ones(tmp_path):
    script = tmp_path / "a.js"
    script.write_text("let x = 1;\n" * 500)
    first = gzipped(str(script))
    assert gzip.decompress(first) == script.read_bytes()
    assert gzipped(str(script)) is first  # compressed once
    script.write_text("let y = 2;\n" * 600)
    later = time.time() + 5
    os.utime(script, (later, later))
    assert gzip.decompress(gzipped(str(script))) == script.read_bytes()
    small = tmp_path / "b.js"
    small.write_text("x" * (MIN_COMPRESSED_BYTES - 1))
    assert gzipped(str(small)) is None
    image = tmp_path / "c.png"
    image.write_bytes(b"\x89PNG" + bytes(4096))
    assert gzipped(str(image)) is None


def test_with_a_class_password_static_files_stay_public_and_the_page_does_not():
    with serve(NOTEBOOK, cwd=ROOT, args=["--pool_size=1", "--token=class-secret"]) as server:
        for path in FILES:
            status, headers, body = fetch(server.url + path, **{"Accept-Encoding": "gzip"})
            assert status == 200 and headers["Content-Encoding"] == "gzip", path
            assert "/login" not in headers.get("Location", "")
        request = urllib.request.Request(server.url)
        with urllib.request.urlopen(request, timeout=60) as response:
            assert "/login" in response.url  # the page itself asks for the password


def test_the_listed_chunks_are_voilas_and_arrive_as_one_script(server):
    import voila.paths

    static = [Path(d) for d in voila.paths.collect_static_paths(["voila", "nbconvert"], "lab")]
    names = page_chunk_names(PAGE_CHUNKS)
    files = {n: next((d / n for d in static if (d / n).is_file()), None) for n in names}
    missing = [n for n, f in files.items() if f is None]
    assert names and not missing, (
        f"not among Voila's static files: {missing}; run scripts/record_page_chunks.py"
    )
    status, headers, body = fetch(server.url + "voila/static/" + CHUNKS_FILE)
    assert status == 200 and "javascript" in headers["Content-Type"]
    assert all(f.read_bytes() in body for f in files.values())
    status, headers, sent = fetch(
        server.url + "voila/static/" + CHUNKS_FILE, **{"Accept-Encoding": "gzip"}
    )
    assert headers["Content-Encoding"] == "gzip" and gzip.decompress(sent) == body


def test_a_chunk_bundle_takes_only_chunk_files_that_exist(tmp_path):
    (tmp_path / "12.voila.js").write_text("chunk12();")
    (tmp_path / "voila.js").write_text("main();")
    (tmp_path / "notes.txt").write_text("secret")
    listing = tmp_path / "chunks.txt"
    listing.write_text(
        "# a comment\n12.voila.js\n34.voila.js  # not there\nvoila.js\n../notes.txt\n"
    )
    assert page_chunk_names(listing) == ["12.voila.js", "34.voila.js", "voila.js", "../notes.txt"]
    body = chunk_bundle(page_chunk_names(listing), [str(tmp_path)]).decode()
    assert "chunk12();" in body
    assert "main();" not in body and "secret" not in body  # only NNNN.voila.js chunks
