"""Stream URLs end to end over loopback HTTP servers: given on the command line, served whole,
dropped part-way (the reconnect continues where it stopped: no frame written twice), and stalled
(a source that sends nothing is given up after the stream timeout, not waited on for ever)."""

from __future__ import annotations

import http.server
import threading
import time

import numpy as np
import pytest
from PIL import Image

from edgeseg import runtime
from edgeseg.export import export_onnx

av = pytest.importorskip("av", reason="video needs the 'video' extra")


@pytest.fixture(scope="module")
def onnx_model(tiny_checkpoint, tmp_path_factory):
    path, _ = export_onnx(tiny_checkpoint, tmp_path_factory.mktemp("stream") / "model.onnx")
    return path


def make_ts(path, frames=30, size=(96, 72)):
    """An MPEG-TS clip (decodable up to wherever it is cut) of synthetic street scenes."""
    from edgeseg.data.synthetic import Synthetic

    ds = Synthetic("val")
    with av.open(str(path), "w", format="mpegts") as out:
        stream = out.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(frames):
            img = np.array(Image.fromarray(ds[i % len(ds)].image).resize(size))
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def frame_count(path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


class Server:
    """A loopback HTTP server of ``data``; ``plan`` says, per connection, how many bytes to send
    before closing (None: all) and whether to stall (send nothing more, keep the socket open)."""

    def __init__(self, data: bytes, plan):
        self.data, self.plan, self.opened = data, list(plan), 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the http.server hook
                n = outer.opened
                outer.opened += 1
                cut, stall = outer.plan[min(n, len(outer.plan) - 1)]
                self.send_response(200)
                self.send_header("Content-Type", "video/mp2t")
                self.send_header("Content-Length", str(len(outer.data)))  # as a file server says; a cut is then a drop
                self.end_headers()
                self.wfile.write(outer.data if cut is None else outer.data[:cut])
                if stall:
                    self.wfile.flush()
                    time.sleep(6)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/drive.ts"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_a_stream_url_on_the_command_line_reaches_the_video_path(onnx_model, tmp_path, cli_run):
    data = make_ts(tmp_path / "drive.ts").read_bytes()
    server = Server(data, [(None, False)])
    try:
        code, _, err = cli_run("predict", "--model", onnx_model, server.url, "--out", tmp_path / "pred", "--quiet")
    finally:
        server.close()
    assert code == 0, err
    (video,) = (tmp_path / "pred").glob("*_overlay.mp4")
    assert "127.0.0.1" in video.name and frame_count(video) == frame_count(tmp_path / "drive.ts")


def test_a_dropped_file_like_stream_continues_where_it_stopped_without_repeating_frames(onnx_model, tmp_path):
    from edgeseg.tasks.video import predict_video

    src = make_ts(tmp_path / "drive.ts", frames=30)
    data, total = src.read_bytes(), frame_count(src)
    server = Server(data, [(len(data) // 2, False), (None, False)])  # the first connection breaks off half-way
    try:
        runner = runtime.load(onnx_model, device="cpu").activate()
        result = predict_video(runner, server.url, tmp_path / "out", reconnects=2)
    finally:
        server.close()
    assert server.opened in (2, 3)  # a reconnect; plus one more where the seek lands nowhere (this server ignores ranges)
    assert result["frames"] == total and frame_count(result["video"]) == total  # each frame once


def test_a_stalled_stream_is_given_up_after_the_timeout(onnx_model, tmp_path, monkeypatch):
    from edgeseg.tasks import video

    monkeypatch.setattr(video, "STREAM_TIMEOUT", 1.0)
    src = make_ts(tmp_path / "drive.ts", frames=30)
    data = src.read_bytes()
    server = Server(data, [(len(data) // 3, True)])  # sends a third, then nothing, on every connection
    t0 = time.perf_counter()
    try:
        runner = runtime.load(onnx_model, device="cpu").activate()
        result = video.predict_video(runner, server.url, tmp_path / "out", reconnects=1)
    finally:
        server.close()
    assert time.perf_counter() - t0 < 60
    assert 0 < result["frames"] < frame_count(src) and frame_count(result["video"]) == result["frames"]


def _raw_avi(path, size, frames=3):
    with av.open(str(path), "w", format="avi") as out:
        stream = out.add_stream("rawvideo", rate=10)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "rgb24"
        for i in range(frames):
            img = np.full((size[1], size[0], 3), 40 * i, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def test_video_frames_the_overlay_encoding_cannot_hold_are_said_or_refused_up_front(onnx_model, tmp_path, cli_run, caplog):
    """Odd frame sizes: the overlay video (yuv420p) is one column/row smaller, said; the frame
    labels keep the full size. Frames under 2x2: refused before any work, nothing written."""
    odd = _raw_avi(tmp_path / "odd.avi", (49, 37))
    with caplog.at_level("WARNING"):
        code, _, err = cli_run("predict", "--model", onnx_model, odd, "--out", tmp_path / "o", "--labels", "--quiet")
    assert code == 0, err
    assert "frames of 49x37; the overlay video is 48x36" in err + caplog.text
    labels = sorted((tmp_path / "o" / "odd_labels").iterdir())
    assert labels and Image.open(labels[0]).size == (49, 37)
    tiny = _raw_avi(tmp_path / "one.avi", (1, 1))
    code, _, err = cli_run("predict", "--model", onnx_model, tiny, "--out", tmp_path / "p", "--labels", "--quiet")
    assert code == 2 and "frames of 1x1" in err and err.count("\n") == 1
    assert not any((tmp_path / "p").glob("*")) if (tmp_path / "p").exists() else True
