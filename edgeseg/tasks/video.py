"""``edgeseg predict`` on a video file, a camera or a stream: an overlay video out.

Decoding (PyAV, the `video` extra), inference and encoding run in three threads joined by
small bounded queues, so the three overlap; the summary splits the time between them. Ctrl-C
stops after the current frame and the output is closed properly (encoder flushed, container
trailer written), so what was written so far plays. A stream that drops is reopened a bounded
number of times, then the run stops with what it has.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from pathlib import Path

import numpy as np

from edgeseg.errors import ConfigError, DataError
from edgeseg.progress import Progress
from edgeseg.runtime.processing import Preprocess, native_labels, overlay

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".ts")
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
_DONE = object()


def is_video_source(source: str) -> bool:
    """A camera index, a stream URL or a video file name."""
    s = str(source)
    return s.isdigit() or s.lower().startswith(STREAM_SCHEMES) or Path(s).suffix.lower() in VIDEO_SUFFIXES


def _av():
    from edgeseg.optional import require

    return require("av", "video, camera and stream input")


def open_source(source: str):
    """A PyAV input container for a file, a camera index (``0`` is /dev/video0) or a URL."""
    av = _av()
    s = str(source)
    try:
        if s.isdigit():
            device = f"/dev/video{s}"
            if not Path(device).exists():
                raise DataError(f"camera {s}: {device} does not exist; no camera with that index on this machine")
            return av.open(device, format="v4l2")
        if not s.lower().startswith(STREAM_SCHEMES) and not Path(s).is_file():
            raise DataError(f"{s}: video file not found")
        return av.open(s, timeout=10.0) if s.lower().startswith(STREAM_SCHEMES) else av.open(s)
    except DataError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise DataError(f"{s}: cannot open this video source ({str(exc)[:160]})") from None


class _Closed:
    """Stands in for a container that could not be reopened (closing it is a no-op)."""

    def close(self) -> None:
        pass


def _out_path(out_dir: Path, source: str) -> Path:
    s = str(source)
    stem = f"camera{s}" if s.isdigit() else (re.sub(r"[^A-Za-z0-9_.-]+", "_", s.split("://", 1)[-1])[:60] if "://" in s else Path(s).stem)
    return out_dir / f"{stem}_overlay.mp4"


def predict_video(runner, source: str, out_dir: Path, every: int = 1, alpha: float = 0.5, labels: bool = False,
                  exist_ok: bool = False, reconnects: int = 3, progress: bool = True, max_frames: int | None = None) -> dict:
    """Segment ``source`` frame by frame with an active ``runner``; write ``<name>_overlay.mp4``
    (same frame rate divided by ``every``, same size) and, with ``labels``, a label PNG per frame."""
    av = _av()
    if every < 1:
        raise ConfigError(f"--every: must be at least 1, got {every}")
    out_dir = Path(out_dir)
    out_path = _out_path(out_dir, source)
    if out_path.exists() and not exist_ok:
        raise ConfigError(f"{out_path}: already exists; use --exist-ok to replace it or another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    labels_dir = out_path.with_name(out_path.stem.replace("_overlay", "") + "_labels")
    if labels:
        labels_dir.mkdir(exist_ok=True)
    container = open_source(source)
    if not container.streams.video:
        container.close()
        raise DataError(f"{source}: has no video stream")
    vstream = container.streams.video[0]
    rate = vstream.average_rate or vstream.guessed_rate or 25
    total = vstream.frames or None
    is_stream = str(source).isdigit() or str(source).lower().startswith(STREAM_SCHEMES)

    pre = Preprocess.from_meta(runner.meta)
    palette = runner.meta.palette
    decoded: queue.Queue = queue.Queue(maxsize=4)
    encoded: queue.Queue = queue.Queue(maxsize=4)
    times = {"decode": 0.0, "infer": 0.0, "encode": 0.0}
    stop = threading.Event()
    errors: list[BaseException] = []

    def decode():
        nonlocal container
        tries = 0
        index = 0
        try:
            while not stop.is_set():
                try:
                    t0 = time.perf_counter()
                    for frame in container.decode(video=0):
                        if stop.is_set() or (max_frames is not None and index >= max_frames * every):
                            return
                        if index % every == 0:
                            image = frame.to_ndarray(format="rgb24")
                            times["decode"] += time.perf_counter() - t0
                            decoded.put(image)
                        index += 1
                        t0 = time.perf_counter()
                    return  # end of the file or stream
                except (av.error.FFmpegError, OSError) as exc:
                    if not is_stream or tries >= reconnects:
                        if index == 0:
                            errors.append(DataError(f"{source}: cannot decode this video ({str(exc)[:160]})"))
                        else:
                            logger.warning(f"{source}: the stream stopped after {index} frames ({str(exc)[:120]}); keeping what was written")
                        return
                    tries += 1
                    logger.warning(f"{source}: the stream dropped; reconnecting ({tries}/{reconnects})")
                    time.sleep(min(2.0 * tries, 5.0))
                    container.close()
                    try:
                        container = open_source(source)
                    except DataError as again:
                        logger.warning(f"{again}; stopping with the {index} frames read")
                        container = _Closed()
                        return
        finally:
            decoded.put(_DONE)

    out = av.open(str(out_path.with_name(out_path.name + ".partial")), "w", format="mp4")
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    ostream = None
    written = 0

    def encode():
        try:
            _encode()
        except BaseException as exc:  # a dead encoder must not leave the inference loop waiting on a full queue
            errors.append(DataError(f"{out_path}: cannot encode the overlay video ({str(exc)[:160]})"))
            stop.set()
            while encoded.get() is not _DONE:
                pass

    def _encode():
        nonlocal ostream, written
        while True:
            item = encoded.get()
            if item is _DONE:
                return
            t0 = time.perf_counter()
            image = overlay(item[0], item[1], palette, alpha)  # blended here, off the inference thread
            if ostream is None:
                # a fast x264 preset: encoding a 1024x512 overlay at the default preset costs more than the model
                options = {"preset": "veryfast"} if codec == "libx264" else {}
                ostream = out.add_stream(codec, rate=rate / every if every > 1 else rate, options=options)
                ostream.width, ostream.height = image.shape[1] - image.shape[1] % 2, image.shape[0] - image.shape[0] % 2
                ostream.pix_fmt = "yuv420p"
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[: ostream.height, : ostream.width]), format="rgb24")
            for packet in ostream.encode(frame):
                out.mux(packet)
            written += 1
            times["encode"] += time.perf_counter() - t0

    decoder = threading.Thread(target=decode, name="edgeseg-decode", daemon=True)
    encoder = threading.Thread(target=encode, name="edgeseg-encode", daemon=True)
    decoder.start()
    encoder.start()
    bar = Progress(None if is_stream or not total else -(-total // every), f"predict {Path(str(source)).name}", "frame",
                   enabled=progress)
    n = 0
    interrupted = failed = False
    t_start = time.perf_counter()
    try:
        while True:
            image = decoded.get()
            if image is _DONE:
                break
            t0 = time.perf_counter()
            label = native_labels(runner.infer(pre([image])), [image.shape[:2]])[0].numpy().astype(np.uint8)
            times["infer"] += time.perf_counter() - t0
            encoded.put((image, label))
            if stop.is_set() and errors:  # the encoder died: stop decoding and report it
                break
            if labels:
                from PIL import Image

                Image.fromarray(label).save(labels_dir / f"{n:06d}.png")
            n += 1
            bar.update()
    except KeyboardInterrupt:
        interrupted = True
        logger.warning(f"interrupted after {n} frames; closing {out_path.name} so that it plays")
    except BaseException:
        failed = True
        raise
    finally:
        stop.set()
        while decoder.is_alive():  # let a decoder blocked on a full queue finish
            try:
                decoded.get_nowait()
            except queue.Empty:
                time.sleep(0.01)
        encoded.put(_DONE)
        encoder.join()
        if ostream is not None:
            for packet in ostream.encode():  # flush the encoder
                out.mux(packet)
        try:
            out.close()
        except Exception:  # noqa: BLE001 - a container that never got a stream cannot write a trailer
            pass
        container.close()
        bar.close()
        if failed:
            out_path.with_name(out_path.name + ".partial").unlink(missing_ok=True)
    if errors:
        out_path.with_name(out_path.name + ".partial").unlink(missing_ok=True)
        raise errors[0]
    if written == 0:
        out_path.with_name(out_path.name + ".partial").unlink(missing_ok=True)
        raise DataError(f"{source}: no frames could be decoded")
    out_path.with_name(out_path.name + ".partial").replace(out_path)
    wall = time.perf_counter() - t_start
    return {"source": str(source), "video": str(out_path), "frames": written, "every": every, "codec": codec,
            "fps": round(written / wall, 2) if wall > 0 else None, "interrupted": interrupted,
            "seconds": {k: round(v, 3) for k, v in times.items()} | {"wall": round(wall, 3)},
            "labels": str(labels_dir) if labels else None}
