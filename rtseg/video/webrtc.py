"""The WebRTC browser view (``--serve PORT --webrtc``): the overlay as a video track, for a browser.

MJPEG sends every frame as a whole JPEG (5-10 MB/s at 1080p) and a browser buffers the multipart stream; WebRTC
sends a VP8/H.264 stream at a controlled bitrate and the browser decodes it as soon as it arrives. aiortc does the
protocol: it runs its own asyncio loop, here on one thread (``rtseg-webrtc``) beside the HTTP server's threads.

  the page        creates an RTCPeerConnection, POSTs its offer (SDP) to /offer, sets the answer; on any failure
                  (no aiortc answer, ICE failed, no frame within a few seconds) it shows the MJPEG <img> instead
  one track/peer  waits for a frame newer than the one it sent last and takes the newest: a slow encoder or link
                  skips frames, nothing queues (as the MJPEG Condition does); timestamps are the wall clock
  ICE             host candidates only (no STUN or TURN: the view is for this machine or its LAN). A view bound to
                  the loopback offers 127.0.0.1 only, one bound to an address offers that address; aioice's own
                  list (every interface but the loopback) only for 0.0.0.0 / ::

The offer endpoint sits behind the same token as every other route (rtseg.access). At most MAX_PEERS viewers at
once: each costs its own encoder, so more are answered 503 and fall back to MJPEG.
"""

from __future__ import annotations

import asyncio
import fractions
import ipaddress
import threading
import time

import numpy as np

from ..errors import RtsegError, require

MAX_PEERS = 4
OFFER_TIMEOUT_S = 10.0
_CLOCK = 90000
_TIME_BASE = fractions.Fraction(1, _CLOCK)
_HOSTS: dict[int, list[str]] = {}  # id(loop) -> the host addresses ICE offers for that view's peers


def require_aiortc():
    """aiortc, or the one line naming the extra that installs it."""
    return require("aiortc", "webrtc")


def _patch_host_addresses() -> None:
    """aioice gathers on every interface but the loopback; each view's loop may narrow that (see the docstring)."""
    import aioice.ice as ice

    if getattr(ice.get_host_addresses, "_rtseg", False):
        return
    original = ice.get_host_addresses

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        try:
            hosts = _HOSTS.get(id(asyncio.get_running_loop()))
        except RuntimeError:
            hosts = None
        return list(hosts) if hosts is not None else original(use_ipv4, use_ipv6)

    get_host_addresses._rtseg = True
    ice.get_host_addresses = get_host_addresses


def ice_hosts(bind_host: str) -> list[str] | None:
    """The addresses ICE offers for a view bound to ``bind_host`` (None: aioice's own list)."""
    host = (bind_host or "").strip("[]")
    if host in ("", "0.0.0.0", "::"):
        return None
    if host == "localhost":
        return ["127.0.0.1"]
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        return None


class PeersFull(RtsegError):
    """MAX_PEERS viewers already (HTTP 503: the page falls back to MJPEG)."""


class WebRtcView:
    """Peers fed from the newest published frame; :meth:`answer` is called from an HTTP handler thread."""

    def __init__(self, bind_host: str):
        self.aiortc = require_aiortc()
        from aiortc.mediastreams import MediaStreamTrack

        _patch_host_addresses()
        self.image: np.ndarray | None = None
        self.seq = 0
        self.closed = False
        self.peers: set = set()
        self.loop = asyncio.new_event_loop()
        hosts = ice_hosts(bind_host)
        if hosts is not None:
            _HOSTS[id(self.loop)] = hosts
        self._event = asyncio.Event()
        started = threading.Event()

        def serve_loop():
            asyncio.set_event_loop(self.loop)
            self.loop.call_soon(started.set)
            self.loop.run_forever()

        self.thread = threading.Thread(target=serve_loop, name="rtseg-webrtc", daemon=True)
        self.thread.start()
        started.wait(10)
        view = self

        class NewestFrameTrack(MediaStreamTrack):
            kind = "video"

            def __init__(self):
                super().__init__()
                self.sent = 0
                self.start = time.monotonic()
                self.last_pts = -1

            async def recv(self):
                import av

                while not view.closed and self.readyState == "live" and view.seq == self.sent:
                    event = view._event
                    if view.seq == self.sent:
                        await event.wait()
                if view.closed or self.readyState != "live":
                    from aiortc.mediastreams import MediaStreamError

                    raise MediaStreamError
                image, self.sent = view.image, view.seq
                frame = av.VideoFrame.from_ndarray(_even(image), format="bgr24")
                pts = max(int((time.monotonic() - self.start) * _CLOCK), self.last_pts + 1)
                frame.pts, frame.time_base, self.last_pts = pts, _TIME_BASE, pts
                return frame

        self._track_type = NewestFrameTrack

    # -- from the pipeline's thread -----------------------------------------------------------------------------
    def push(self, image: np.ndarray) -> None:
        """The newest frame; every peer's track wakes up and takes it (or a newer one)."""
        self.image = image
        self.seq += 1
        if self.peers and not self.closed:
            self.loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()

    # -- from the HTTP handler ----------------------------------------------------------------------------------
    def answer(self, offer: dict) -> dict:
        """The browser's offer ``{"sdp", "type"}`` -> the answer; RtsegError (-> 400/503) for a bad or extra one."""
        if not isinstance(offer, dict) or offer.get("type") != "offer" or not isinstance(offer.get("sdp"), str):
            raise RtsegError("expected a JSON body {\"sdp\": ..., \"type\": \"offer\"}")
        if len(self.peers) >= MAX_PEERS:
            raise PeersFull(f"{MAX_PEERS} WebRTC viewers already: use the MJPEG view")
        future = asyncio.run_coroutine_threadsafe(self._answer(offer["sdp"]), self.loop)
        try:
            return future.result(OFFER_TIMEOUT_S)
        except TimeoutError:
            future.cancel()
            raise RtsegError(f"no WebRTC answer within {OFFER_TIMEOUT_S:.0f} s") from None
        except ValueError as exc:  # aiortc's word for an SDP it cannot use
            raise RtsegError(f"bad offer: {exc}") from None

    async def _answer(self, sdp: str) -> dict:
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.peers.add(pc)

        @pc.on("connectionstatechange")
        async def on_state():
            if pc.connectionState in ("failed", "closed"):
                self.peers.discard(pc)
                await pc.close()

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            pc.addTrack(self._track_type())
            await pc.setLocalDescription(await pc.createAnswer())  # gathers the (host) candidates: no trickle
        except BaseException:
            self.peers.discard(pc)
            await pc.close()
            raise
        return {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}

    def close(self) -> None:
        self.closed = True
        if not self.loop.is_closed() and self.thread.is_alive():
            async def shutdown():
                self._wake()
                await asyncio.gather(*(pc.close() for pc in list(self.peers)), return_exceptions=True)
                self.peers.clear()
                await self.loop.shutdown_default_executor()  # the encoders' threads

            try:
                asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(5)
            except Exception:  # noqa: BLE001 - closing: a peer that will not close must not hold the run
                pass
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
        _HOSTS.pop(id(self.loop), None)
        if not self.thread.is_alive():
            self.loop.close()


def _even(image: np.ndarray) -> np.ndarray:
    """VP8/H.264 in 4:2:0 want even sides: an odd row or column is cut off."""
    h, w = image.shape[:2]
    return image[: h - h % 2, : w - w % 2]


PAGE_SCRIPT = """
async function startWebrtc() {
  const img = document.getElementById('stream'), video = document.getElementById('webrtc');
  const both = new URLSearchParams(location.search).get('view') === 'both';
  const fallback = (why) => {
    console.log('rtseg: WebRTC unavailable (' + why + '), showing MJPEG');
    window.rtsegView = 'mjpeg';
    video.style.display = 'none'; img.style.display = 'block';
    if (!img.src.endsWith('/stream.mjpg')) img.src = '/stream.mjpg';
  };
  try {
    const pc = new RTCPeerConnection({iceServers: []});
    window.rtsegPc = pc;
    pc.addTransceiver('video', {direction: 'recvonly'});
    video.onplaying = () => {
      window.rtsegView = 'webrtc';
      video.style.display = 'block';
      if (!both) { img.style.display = 'none'; img.removeAttribute('src'); }
    };
    pc.ontrack = (e) => {
      // render each frame as soon as it is decoded: no playout delay to smooth a live view
      try { e.receiver.playoutDelayHint = 0; e.receiver.jitterBufferTarget = 0; } catch (err) {}
      video.srcObject = new MediaStream([e.track]);
      video.play().catch((err) => fallback('play: ' + err.message));
    };
    pc.onconnectionstatechange = () => { if (pc.connectionState === 'failed') fallback('ICE failed'); };
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((done) => {
      if (pc.iceGatheringState === 'complete') return done();
      pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === 'complete') done(); };
      setTimeout(done, 3000);
    });
    const r = await fetch('/offer', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                     body: JSON.stringify(pc.localDescription)});
    if (!r.ok) throw new Error((await r.text()).trim());
    await pc.setRemoteDescription(await r.json());
    setTimeout(() => { if (window.rtsegView !== 'webrtc') fallback('no frame in 8 s'); }, 8000);
  } catch (e) { fallback(e.message || e); }
}
startWebrtc();
"""
