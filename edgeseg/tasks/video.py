"""``edgeseg predict`` on a video file, a camera or a stream: an overlay video out.

A small pipeline (``VideoJob``): decoding (PyAV, the `video` extra), inference and encoding run
in three threads joined by small bounded queues, so the three overlap; the summary splits the
time between them. Ctrl-C stops after the current frame and the output is closed properly
(encoder flushed, container trailer written), so what was written so far plays. A source that
drops is reopened a bounded number of times: a file-like source (a file over HTTP) continues
after the last frame read (by seeking where it can, and by skipping frames already read), a
live one from its live position. The video is written as ``<name>_overlay.mp4.partial`` and
takes its name only when it is complete; a failure removes it.
"""

from __future__ import annotations

import logging
import queue
import re
import shutil
import threading
import time
from pathlib import Path

import numpy as np

from edgeseg.errors import ConfigError, DataError
from edgeseg.fileio import atomic_path, check_replaceable, move_in
from edgeseg.limits import check_size
from edgeseg.progress import Progress
from edgeseg.runtime.processing import AspectCheck, Preprocess, native_labels, overlay

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".ts")
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
MAX_EVERY = 100_000  # --every: beyond this an output video would hold a frame every few hours
STREAM_TIMEOUT = 10.0  # seconds a stream may send nothing (opening or reading) before it counts as dropped
_DONE = object()


def names_live_source(source: str) -> bool:
    """A camera index (digits that are no path here) or a stream URL: a video that is no file."""
    s = str(source)
    return is_stream(s) or (s.isdigit() and not Path(s).exists())


def names_video(source: str) -> bool:
    """Whether an input of predict names a video (a camera, a stream, a file by its suffix), from
    its text alone: what a video-only option is checked against before anything runs."""
    return names_live_source(source) or Path(str(source)).suffix.lower() in VIDEO_SUFFIXES


def is_stream(source: str) -> bool:
    return str(source).lower().startswith(STREAM_SCHEMES)


def is_video_source(source: str) -> bool:
    """A camera index, a stream URL or a video file name."""
    s = str(source)
    return s.isdigit() or is_stream(s) or Path(s).suffix.lower() in VIDEO_SUFFIXES


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
        if not is_stream(s) and not Path(s).is_file():
            raise DataError(f"{s}: video file not found")
        return av.open(s, timeout=STREAM_TIMEOUT) if is_stream(s) else av.open(s)
    except DataError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise DataError(f"{s}: cannot open this video source ({str(exc)[:160]})") from None


FRAME_LABEL = re.compile(r"\d{6}\.png")  # what a labels folder of predict holds


def video_outputs(out_dir: Path, stem: str, labels: bool, exist_ok: bool) -> tuple[Path, Path | None]:
    """``<stem>_overlay.mp4`` in ``out_dir`` and, with ``labels``, the ``<stem>_labels`` folder of
    frame labels. One that exists is refused unless ``exist_ok``; a labels folder holding files
    predict did not write (anything but its frame PNGs) is refused even so: it is never emptied."""
    path = Path(out_dir) / f"{stem}_overlay.mp4"
    check_replaceable([path, path.with_name(path.name + ".partial")])  # a link, pipe or device there: never written through or replaced
    if path.exists() and not exist_ok:
        raise ConfigError(f"{path}: already exists; use --exist-ok to replace it or another --out")
    labels_dir = Path(out_dir) / f"{stem}_labels" if labels else None
    stage = Path(out_dir) / f"{stem}_labels.partial"  # a killed run's frames, removed when this one starts
    if labels and stage.is_dir() and any(not FRAME_LABEL.fullmatch(p.name) for p in stage.iterdir()):
        raise ConfigError(f"{stage}: holds files predict did not write; give another --out or move them")
    if labels_dir is not None and (labels_dir.exists() or labels_dir.is_symlink()):
        held = [p.name for p in labels_dir.iterdir()] if labels_dir.is_dir() and not labels_dir.is_symlink() else None
        foreign = [n for n in held if not FRAME_LABEL.fullmatch(n)] if held is not None else [labels_dir.name]
        if foreign:
            raise ConfigError(f"{labels_dir}: holds files predict did not write ({', '.join(sorted(foreign)[:3])}); "
                              "give another --out or move them")
        if held and not exist_ok:
            raise ConfigError(f"{labels_dir}: already holds frame labels; use --exist-ok to replace them or another --out")
    return path, labels_dir


def video_stem(source: str) -> str:
    """The output name of a source: the file's stem, ``camera<N>``, or the URL made file-safe."""
    s = str(source)
    if s.isdigit():
        return f"camera{s}"
    if "://" in s:
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", s.split("://", 1)[-1])[:60]
    return Path(s).stem


class _SeekMissed(Exception):
    """After a reconnect, the seek did not land at or before the last frame read."""


class _Closed:
    """Stands in for a container that could not be reopened (closing it is a no-op)."""

    def close(self) -> None:
        pass


class VideoJob:
    """One source through the model into ``<stem>_overlay.mp4`` (and, with ``labels``, a label PNG per frame)."""

    def __init__(self, runner, source: str, out_dir: Path, stem: str | None = None, every: int = 1, alpha: float = 0.5,
                 labels: bool = False, exist_ok: bool = False, reconnects: int = 3, progress: bool = True, max_frames: int | None = None,
                 strict: bool = False):

        if not 1 <= every <= MAX_EVERY:
            raise ConfigError(f"--every: expected a whole number from 1 to {MAX_EVERY}, got {every}")
        self.av = _av()
        self.runner, self.source, self.every, self.alpha = runner, str(source), every, alpha
        self.reconnects, self.progress, self.max_frames = reconnects, progress, max_frames
        out_dir = Path(out_dir)
        self.out_path, self.labels_dir = video_outputs(out_dir, stem or video_stem(source), labels, exist_ok)
        self.partial = self.out_path.with_name(self.out_path.name + ".partial")
        # frame labels are written beside, then take the folder's name once the video is whole
        self.labels_stage = self.labels_dir.with_name(self.labels_dir.name + ".partial") if labels else None
        out_dir.mkdir(parents=True, exist_ok=True)
        self.live = self.source.isdigit() or (is_stream(self.source) and Path(self.source.split("?")[0]).suffix.lower() not in VIDEO_SUFFIXES)
        self.pre = Preprocess.from_meta(runner.meta)
        self.aspect = AspectCheck(tuple(runner.meta.input_res), strict)  # frames of a source share one size: the first is checked
        self.decoded: queue.Queue = queue.Queue(maxsize=4)
        self.encoded: queue.Queue = queue.Queue(maxsize=4)
        self.times = {"decode": 0.0, "infer": 0.0, "encode": 0.0}
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.written = 0
        self.ostream = None

    # -- decoding
    def _open(self):
        container = open_source(self.source)
        if not container.streams.video:
            container.close()
            raise DataError(f"{self.source}: has no video stream")
        ctx = container.streams.video[0].codec_context
        check_size(ctx.width or 1, ctx.height or 1, f"{self.source}: its frames", DataError)
        return container

    def _decode(self, container) -> None:
        tries, index, last_pts, seeked = 0, 0, None, False
        try:
            while not self.stop.is_set():
                try:
                    t0 = time.perf_counter()
                    first = True
                    for frame in self._frames(container):
                        if self.stop.is_set() or (self.max_frames is not None and index >= self.max_frames * self.every):
                            return
                        if seeked and first and frame.pts is not None and frame.pts > last_pts:
                            raise _SeekMissed()  # the seek landed past the last frame read: frames would be lost
                        first = False
                        if last_pts is not None and tries and frame.pts is not None and frame.pts <= last_pts and not self.live:
                            continue  # a reopened file-like source: this frame was read before the drop
                        if index % self.every == 0:
                            check_size(frame.width, frame.height, f"{self.source}: frame {index}", DataError)
                            image = frame.to_ndarray(format="rgb24")
                            self.times["decode"] += time.perf_counter() - t0
                            self.decoded.put(image)
                        index += 1
                        last_pts = frame.pts if frame.pts is not None else last_pts
                        t0 = time.perf_counter()
                    if seeked and first:
                        raise _SeekMissed()  # nothing after the seek: read the source again from its start instead
                    return  # end of the file or stream
                except _SeekMissed:
                    container, seeked = self._reopen(container, tries, index, last_pts, seek=False)
                    if isinstance(container, _Closed):
                        return
                except (self.av.error.FFmpegError, OSError) as exc:
                    if not (is_stream(self.source) or self.source.isdigit()) or tries >= self.reconnects:
                        if index == 0:
                            self.errors.append(DataError(f"{self.source}: cannot decode this video ({str(exc)[:160]})"))
                        else:
                            logger.warning(f"{self.source}: the stream stopped after {index} frames ({str(exc)[:120]}); keeping what was written")
                        return
                    tries += 1
                    container, seeked = self._reopen(container, tries, index, last_pts)
                    if isinstance(container, _Closed):
                        return
        except DataError as exc:
            self.errors.append(exc)
        finally:
            self.container = container
            self.decoded.put(_DONE)

    def _frames(self, container):
        """The container's video frames; where reading fails part-way (a dropped connection), the
        frames the decoder still holds are given first, then the error (so none is lost to the drop)."""
        stream = container.streams.video[0]
        try:
            for packet in container.demux(stream):
                yield from packet.decode()
        except (self.av.error.FFmpegError, OSError):
            try:
                yield from stream.codec_context.decode(None)
            except (self.av.error.FFmpegError, OSError, ValueError):
                pass
            raise

    def _reopen(self, container, tries: int, index: int, last_pts, seek: bool = True):
        """The source opened again after a drop, and whether it was sought (``seek``: to the last frame
        read, where it can seek; else from its start, the frames already read skipped as they come)."""
        if seek:
            where = "continuing from its live position" if self.live else f"continuing after frame {index}"
            logger.warning(f"{self.source}: the stream dropped; reconnecting ({tries}/{self.reconnects}), {where}")
            time.sleep(min(2.0 * tries, 5.0))
        container.close()
        try:
            container = open_source(self.source)
        except DataError as again:
            logger.warning(f"{again}; stopping with the {index} frames read")
            return _Closed(), False
        if seek and not self.live and last_pts is not None:
            try:  # where the source can seek, skip what was read without decoding it again
                container.seek(int(last_pts), stream=container.streams.video[0], backward=True)
                return container, True  # checked on the first frame: a seek that overshot is undone
            except (self.av.error.FFmpegError, OSError, ValueError):
                pass  # not seekable: frames already read are skipped as they come
        return container, False

    # -- encoding
    def _encode(self, out) -> None:
        try:
            while True:
                item = self.encoded.get()
                if item is _DONE:
                    return
                t0 = time.perf_counter()
                image = overlay(item[0], item[1], self.runner.meta.palette, self.alpha)  # blended here, off the inference thread
                if self.ostream is None:
                    self._add_stream(out, image)
                frame = self.av.VideoFrame.from_ndarray(np.ascontiguousarray(image[: self.ostream.height, : self.ostream.width]), format="rgb24")
                for packet in self.ostream.encode(frame):
                    out.mux(packet)
                self.written += 1
                self.times["encode"] += time.perf_counter() - t0
        except BaseException as exc:  # a dead encoder must not leave the inference loop waiting on a full queue
            self.errors.append(DataError(f"{self.out_path}: cannot encode the overlay video ({str(exc)[:160]})"))
            self.stop.set()
            while self.encoded.get() is not _DONE:
                pass

    def _add_stream(self, out, image) -> None:
        from fractions import Fraction

        h, w = image.shape[:2]
        if h < 2 or w < 2:  # a live stream's size is known only now; a file's was checked before any work
            raise DataError(f"frames of {w}x{h}; the overlay video needs frames of at least 2x2 pixels")
        if h % 2 or w % 2:
            logger.warning(f"{self.out_path}: frames of {w}x{h}; the overlay video is {w - w % 2}x{h - h % 2} (its encoding, "
                           "yuv420p, needs even sizes): the last column or row is left out of it, not of the frame labels")
        codec = self.codec
        # a fast x264 preset: encoding a 1024x512 overlay at the default preset costs more than the model
        options = {"preset": "veryfast"} if codec == "libx264" else {}
        rate = Fraction(self.rate) / self.every
        self.ostream = out.add_stream(codec, rate=max(rate, Fraction(1, 1000)).limit_denominator(1001000), options=options)
        self.ostream.width, self.ostream.height = w - w % 2, h - h % 2
        self.ostream.pix_fmt = "yuv420p"

    def _close(self, out) -> None:
        """Flush the encoder and write the trailer; a failure (a full disk) is an error, not a short video."""
        if self.ostream is not None:
            for packet in self.ostream.encode():
                out.mux(packet)
        out.close()

    # -- the job
    def run(self) -> dict:
        container = self._open()
        vstream = container.streams.video[0]
        w, h = vstream.codec_context.width or 0, vstream.codec_context.height or 0
        if (w and w < 2) or (h and h < 2):  # before any work (the size is known up front for files)
            container.close()
            raise DataError(f"{self.source}: frames of {w}x{h}; the overlay video needs frames of at least 2x2 pixels")
        if self.labels_stage is not None:
            shutil.rmtree(self.labels_stage, ignore_errors=True)  # a killed run's
            self.labels_stage.mkdir()
        self.rate = vstream.average_rate or vstream.guessed_rate or 25
        total = vstream.frames or None
        self.partial.unlink(missing_ok=True)  # a killed run's (a link there was refused up front): never written through
        out = self.av.open(str(self.partial), "w", format="mp4")
        self.codec = "libx264" if "libx264" in self.av.codecs_available else "mpeg4"
        decoder = threading.Thread(target=self._decode, args=(container,), name="edgeseg-decode", daemon=True)
        encoder = threading.Thread(target=self._encode, args=(out,), name="edgeseg-encode", daemon=True)
        self.container = container
        decoder.start()
        encoder.start()
        bar = Progress(None if (is_stream(self.source) or self.source.isdigit() or not total) else -(-total // self.every),
                       f"predict {Path(self.source).name}", "frame", enabled=self.progress)
        t_start = time.perf_counter()
        interrupted = ok = False
        try:
            interrupted = self._infer_frames(bar)
            ok = True
        finally:
            self.stop.set()
            while decoder.is_alive():  # let a decoder blocked on a full queue finish
                try:
                    self.decoded.get_nowait()
                except queue.Empty:
                    time.sleep(0.01)
            self.encoded.put(_DONE)
            encoder.join()
            try:
                self._close(out)
            except Exception as exc:  # noqa: BLE001 - the container's own errors; the video is incomplete
                if ok and not self.errors and self.written:
                    self.errors.append(DataError(f"{self.out_path}: cannot finish the overlay video ({str(exc)[:160]}); check free space"))
            self.container.close()
            bar.close()
            if not ok or self.errors or self.written == 0:
                self.partial.unlink(missing_ok=True)
                if self.labels_stage is not None:
                    shutil.rmtree(self.labels_stage, ignore_errors=True)
        if self.errors:
            raise self.errors[0]
        if self.written == 0:
            raise DataError(f"{self.source}: no frames could be decoded")
        move_in([(self.partial, self.out_path)])
        if self.labels_stage is not None:  # the earlier frame labels (checked to be only those) give way whole
            if self.labels_dir.is_dir():  # its frame labels only: a file put there since the check stays, and so does the folder
                for frame in self.labels_dir.iterdir():
                    if FRAME_LABEL.fullmatch(frame.name):
                        frame.unlink()
                self.labels_dir.rmdir()
            self.labels_stage.replace(self.labels_dir)
        wall = time.perf_counter() - t_start
        return {"source": self.source, "video": str(self.out_path), "frames": self.written, "every": self.every, "codec": self.codec,
                "fps": round(self.written / wall, 2) if wall > 0 else None, "interrupted": interrupted,
                "seconds": {k: round(v, 3) for k, v in self.times.items()} | {"wall": round(wall, 3)},
                "labels": str(self.labels_dir) if self.labels_dir else None}

    def _infer_frames(self, bar) -> bool:
        """Frames from the decoder through the model to the encoder; True when Ctrl-C stopped it."""
        n = 0
        try:
            while True:
                image = self.decoded.get()
                if image is _DONE:
                    return False
                if n == 0:
                    self.aspect(image.shape, self.source)
                t0 = time.perf_counter()
                label = native_labels(self.runner.infer(self.pre([image])), [image.shape[:2]], self.runner.name)[0].numpy().astype(np.uint8)
                self.times["infer"] += time.perf_counter() - t0
                self.encoded.put((image, label))
                if self.stop.is_set() and self.errors:  # the encoder died: stop decoding and report it
                    return False
                if self.labels_dir is not None:
                    from PIL import Image

                    with atomic_path(self.labels_stage / f"{n:06d}.png") as tmp:
                        Image.fromarray(label).save(tmp, format="PNG")
                n += 1
                bar.update()
        except KeyboardInterrupt:
            logger.warning(f"interrupted after {n} frames; closing {self.out_path.name} so that it plays")
            return True


def predict_video(runner, source: str, out_dir: Path, every: int = 1, alpha: float = 0.5, labels: bool = False,
                  exist_ok: bool = False, reconnects: int = 3, progress: bool = True, max_frames: int | None = None,
                  stem: str | None = None, strict: bool = False) -> dict:
    """Segment ``source`` frame by frame with an active ``runner``; write ``<stem>_overlay.mp4``
    (same frame rate divided by ``every``, same size) and, with ``labels``, a label PNG per frame;
    ``strict``: a source whose frames have another aspect ratio than the model input is refused."""
    return VideoJob(runner, source, out_dir, stem, every, alpha, labels, exist_ok, reconnects, progress, max_frames, strict).run()
