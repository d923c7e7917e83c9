"""``rtseg run ... --stream rtp://HOST:PORT``: the overlay as H.264 over RTP, with an SDP file that describes it.

FFmpeg's own RTP muxer (through PyAV) packetises libx264's output (RFC 6184, packetization-mode 1, payload type
96), a keyframe every second, so a player that joins late (or loses packets) starts within a second; the SDP file
written beside the run just before the first packet (with the encoder's SPS and PPS) (``ffplay -protocol_whitelist
file,udp,rtp stream.sdp``, VLC, a VMS) is all a receiver needs. RTP is UDP: nothing waits for a receiver, and a
frame nobody receives is lost, never queued.
"""

from __future__ import annotations

import socket
from fractions import Fraction
from pathlib import Path
from urllib.parse import urlparse

from ..errors import RtsegError
from ..files import write_text_atomic
from .decoders import import_av, import_cv2
from .sinks import VideoFileSink

PAYLOAD_TYPE = 96


def parse_rtp_url(url: str) -> tuple[str, int]:
    parsed = urlparse(str(url))
    if parsed.scheme != "rtp" or not parsed.hostname or not parsed.port:
        raise RtsegError(f"--stream {url!r}: expected rtp://HOST:PORT, e.g. rtp://127.0.0.1:5004")
    return parsed.hostname, parsed.port


def sdp_text(host: str, port: int, extradata: bytes | None = None) -> str:
    """The session description (RFC 6184): with the encoder's SPS and PPS (Annex B ``extradata``) as
    sprop-parameter-sets, so a receiver decodes from the first keyframe it gets (an Annex B packet holding them
    does as well)."""
    import base64

    family = "IP6" if ":" in host else "IP4"
    fmtp = "packetization-mode=1"
    units = [u.lstrip(b"\x00") for u in bytes(extradata or b"").split(b"\x00\x00\x01")]
    units = [u.rstrip(b"\x00") for u in units if u]
    sps = [u for u in units if u[0] & 31 == 7]
    if sps and len(sps[0]) >= 4:
        fmtp += f"; profile-level-id={sps[0][1:4].hex()}; sprop-parameter-sets=" + ",".join(
            base64.b64encode(u).decode() for u in units if u[0] & 31 in (7, 8))
    return "\n".join(["v=0", f"o=- 0 0 IN {family} {host}", "s=rtseg", f"c=IN {family} {host}", "t=0 0",
                      f"m=video {port} RTP/AVP {PAYLOAD_TYPE}", f"a=rtpmap:{PAYLOAD_TYPE} H264/90000",
                      f"a=fmtp:{PAYLOAD_TYPE} {fmtp}", ""])


def check_stream(url: str) -> tuple[str, int]:
    """``rtp://HOST:PORT`` read, and the host resolved and routable (one line if not), before any model loads."""
    host, port = parse_rtp_url(url)
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((host, port))
    except OSError as exc:
        raise RtsegError(f"--stream {url}: cannot send there ({exc.strerror or exc}); check the host") from None
    return host, port


class RtpSink(VideoFileSink):
    """Every frame it is given, H.264 over RTP to ``url``; the SDP file is written before the first packet, to
    ``sdp``, else beside the saved video ``beside`` (same name, .sdp), else ``stream.sdp``."""

    name = "stream"

    def __init__(self, url: str, sdp, fps: float | None, beside=None):
        sdp = sdp or (Path(beside).with_suffix(".sdp") if beside else "stream.sdp")
        host, port = check_stream(url)  # an unknown host or an unroutable address: one line, before any frame
        self.av, self.cv2 = import_av(), import_cv2()
        self.url, self.path, self.codec = url, Path(sdp), "libx264"
        self.preset, self.threads = "ultrafast", 1
        self.rate = Fraction(fps or 30).limit_denominator(1001)
        try:
            self.av.codec.Codec(self.codec, "w")
        except Exception:  # noqa: BLE001 - PyAV raises different errors for an unknown encoder by version
            raise RtsegError("--stream needs FFmpeg's libx264 encoder, which this PyAV build lacks") from None
        try:
            self.path.unlink(missing_ok=True)  # no stale SDP: a receiver waits for this run's
            self.rtp = self.av.open(f"rtp://{host}:{port}", "w", format="rtp")
        except (OSError, self.av.error.FFmpegError) as exc:
            raise RtsegError(f"--stream {url}: cannot open it ({getattr(exc, 'strerror', None) or exc})") from None
        self.container = self  # VideoFileSink.write muxes through self.mux (the SDP goes first)
        self.stream, self.frames, self.resized, self.broken, self.sdp_written = None, 0, False, False, False

    def add_stream(self, *args, **kwargs):
        return self.rtp.add_stream(*args, **kwargs)

    def mux(self, packet) -> None:
        self._mux(packet)

    def _start(self, height: int, width: int) -> None:
        super()._start(height, width)
        self.stream.options = {"preset": "ultrafast", "tune": "zerolatency", "threads": "1"}
        self.stream.codec_context.gop_size = max(1, int(round(float(self.rate))))  # a keyframe every second

    def _mux(self, packet) -> None:
        """The muxer's ``mux``: the SDP first, with the parameter sets of the encoder (its extradata, or the
        first keyframe's in-band SPS and PPS)."""
        if not self.sdp_written:
            headers = self.stream.codec_context.extradata or bytes(packet)  # the first keyframe carries them
            write_text_atomic(self.path, sdp_text(*parse_rtp_url(self.url), headers))
            self.sdp_written = True
        self.rtp.mux(packet)

    def _failed(self, exc: BaseException) -> RtsegError:
        self.broken = True
        return RtsegError(f"--stream {self.url}: could not send ({getattr(exc, 'strerror', None) or exc})")

    def close(self) -> dict:
        try:
            if self.stream is not None and not self.broken:
                for packet in self.stream.encode(None):
                    self.container.mux(packet)
        except (OSError, self.av.error.FFmpegError):
            pass
        finally:
            self.rtp.close()
        return {"stream": self.url, "sdp": str(self.path), "frames": self.frames}

