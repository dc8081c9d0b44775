# Run: python -m pytest tests/test_harness_download.py -q
from __future__ import annotations

import hashlib
import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from autoresearch_nb.harness.download import DownloadError, NotFound, check_parquet, fetch
from autoresearch_nb.harness.corpus import holdout_bytes
from autoresearch_nb.harness.prepare import REMOTES, cli, prepare_remote


def parquet_bytes(texts) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.table({"text": texts}), buf, row_group_size=50)
    return buf.getvalue()


class Server:
    """A local file server with Range support that can cut connections and lie about checksums."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.cuts: dict[str, int] = {}     # path -> how many responses to cut halfway
        self.etags: dict[str, str] = {}
        self.ranges: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                if rng := self.headers.get("Range"):
                    server.ranges.append(rng)
                    start = int(rng.split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                if self.path in server.etags:
                    self.send_header("ETag", f'"{server.etags[self.path]}"')
                self.end_headers()
                body = data[start:]
                if server.cuts.get(self.path, 0) > 0:
                    server.cuts[self.path] -= 1
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


SHARD = parquet_bytes([f"document number {i}: " + "text " * 40 for i in range(300)])


def test_a_broken_connection_resumes_with_range(server, tmp_path):
    server.files["/a.parquet"] = SHARD
    server.cuts["/a.parquet"] = 2
    dest = fetch(f"{server.url}/a.parquet", tmp_path / "a.parquet", backoff=0.01, progress=False,
                 validate=check_parquet)
    assert dest.read_bytes() == SHARD
    assert len(server.ranges) == 2 and server.ranges[0] != server.ranges[1]
    assert not list(tmp_path.glob("*.part"))


def test_a_connection_that_keeps_breaking_fails_clearly_and_leaves_no_shard(server, tmp_path):
    server.files["/a.parquet"] = SHARD
    server.cuts["/a.parquet"] = 100
    with pytest.raises(DownloadError, match="failed after 3 tries"):
        fetch(f"{server.url}/a.parquet", tmp_path / "a.parquet", retries=2, backoff=0.01, progress=False)
    assert not (tmp_path / "a.parquet").exists()


def test_a_checksum_mismatch_is_removed(server, tmp_path):
    server.files["/a.parquet"] = SHARD
    server.etags["/a.parquet"] = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        fetch(f"{server.url}/a.parquet", tmp_path / "a.parquet", backoff=0.01, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_a_good_checksum_passes(server, tmp_path):
    server.files["/a.parquet"] = SHARD
    server.etags["/a.parquet"] = hashlib.sha256(SHARD).hexdigest()
    assert fetch(f"{server.url}/a.parquet", tmp_path / "a.parquet", progress=False).exists()


def test_a_corrupt_shard_is_removed(server, tmp_path):
    server.files["/a.parquet"] = SHARD[: len(SHARD) // 2] + b"\x00" * (len(SHARD) - len(SHARD) // 2)
    with pytest.raises(DownloadError, match="corrupt"):
        fetch(f"{server.url}/a.parquet", tmp_path / "a.parquet", progress=False, validate=check_parquet)
    assert list(tmp_path.iterdir()) == []


def test_missing_file_is_not_retried(server, tmp_path):
    with pytest.raises(NotFound):
        fetch(f"{server.url}/nope.parquet", tmp_path / "nope.parquet", progress=False, backoff=10)


@pytest.mark.parametrize("name", ["climbmix", "tinystories"])
def test_prepare_remote_against_the_local_server(server, tmp_path, name):
    remote = REMOTES[name]
    for i in range(2):
        server.files["/" + remote.train_pattern.format(i=i)] = parquet_bytes(
            [f"{name} train shard {i} doc {j} " * 10 for j in range(100)])
    for val in remote.val_files:
        server.files["/" + val] = parquet_bytes([f"{name} validation doc {j} " * 10 for j in range(50)])
    server.cuts["/" + remote.train_pattern.format(i=1)] = 1
    corpus = prepare_remote(remote, tmp_path / name, shards=5, base_url=server.url, progress=False, backoff=0.01)
    assert corpus.meta["train_docs"] + corpus.meta["holdout_docs"] == 200 and corpus.meta["val_docs"] == 50
    assert b"validation doc" in bytes(corpus.split_bytes("val"))
    assert b"validation" not in bytes(corpus.split_bytes("train"))
    # a holdout drawn from the train shards (by the hash of each document's key), disjoint from train
    held = bytes(holdout_bytes(corpus)).split(b"\x00")
    assert 0 < len(held) < 40 and not set(held) & set(bytes(corpus.split_bytes("train")).split(b"\x00"))


def test_cli_reports_a_corrupt_shard_and_leaves_no_corpus(server, tmp_path, monkeypatch, capsys):
    remote = REMOTES["climbmix"]
    server.files["/" + remote.train_pattern.format(i=0)] = b"PAR1 this is not parquet PAR1"
    monkeypatch.setenv(remote.url_env, server.url)
    out = tmp_path / "climb"
    code = cli(["--dataset", "climbmix", "--shards", "1", "--out", str(out), "--no-progress", "--retries", "0"])
    err = capsys.readouterr().err
    assert code == 1 and "corrupt" in err and len(err.strip().splitlines()) == 1
    assert not (out / "meta.json").exists()
    assert not [p for p in out.rglob("*") if p.is_file()]
