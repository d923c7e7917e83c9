"""A real RTSP server for the tests: GStreamer's RTSP server serving an H.264 mp4 on 127.0.0.1.

Runs under Debian's own /usr/bin/python3, which has python3-gi (the test suite's Python need not have it):
    /usr/bin/python3 rtsp_server.py VIDEO.mp4 PORT   -> rtsp://127.0.0.1:PORT/test ; prints "ready" when listening
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

Gst.init(None)
video, port = sys.argv[1], sys.argv[2]
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(f'( filesrc location="{video}" ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )')
factory.set_shared(True)
server.get_mount_points().add_factory("/test", factory)
if server.attach(None) == 0:
    sys.exit(f"could not listen on 127.0.0.1:{port}")
print("ready", flush=True)
GLib.MainLoop().run()
