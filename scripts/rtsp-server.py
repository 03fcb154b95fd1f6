#!/usr/bin/python3
"""A real RTSP server on 127.0.0.1 for tests and benchmarks (GStreamer's RTSP server).

usage: rtsp-server.py PORT [--mount /cam] [--size 1280x720] [--fps 25] [--codec h264|h265]
       [--user USER --password PASS] [--pattern smpte|black|snow|ball|...] [--speed N]
       [--preset ultrafast|veryfast|...] [--bitrate KBITS]
--preset (x264/x265 speed preset, default ultrafast) and --bitrate (kbit/s, default 2048):
"veryfast" gives CABAC and the High profile, closer to what IP cameras send.
--speed scrolls the pattern N pixels per frame (videotestsrc horizontal-speed): a moving
picture, so the stream is neither frozen nor trivially cheap to decode.
Prints "READY rtsp://127.0.0.1:PORT/cam" on stdout once it listens.
"""
import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("--mount", default="/cam")
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--codec", choices=["h264", "h265"], default="h264")
    ap.add_argument("--pattern", default="smpte")
    ap.add_argument("--speed", type=int, default=0)
    ap.add_argument("--preset", default="ultrafast")
    ap.add_argument("--bitrate", type=int, default=2048)
    ap.add_argument("--user")
    ap.add_argument("--password")
    a = ap.parse_args()
    w, h = a.size.split("x")
    enc = (
        f"x264enc tune=zerolatency speed-preset={a.preset} bitrate={a.bitrate} key-int-max=25 ! rtph264pay name=pay0 pt=96"
        if a.codec == "h264"
        else f"x265enc tune=zerolatency speed-preset={a.preset} bitrate={a.bitrate} key-int-max=25 ! rtph265pay name=pay0 pt=96"
    )
    launch = (
        f"( videotestsrc is-live=true pattern={a.pattern} horizontal-speed={a.speed} ! video/x-raw,width={w},height={h},framerate={a.fps}/1 ! {enc} )"
    )
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(a.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch)
    factory.set_shared(True)
    if a.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "user")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(a.user, a.password or ""), token)
        server.set_auth(auth)
        perms = GstRtspServer.RTSPPermissions()
        perms.add_permission_for_role("user", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS, True)
        perms.add_permission_for_role("user", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, True)
        factory.set_permissions(perms)
    server.get_mount_points().add_factory(a.mount, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{a.port}", file=sys.stderr)
        sys.exit(1)
    print(f"READY rtsp://127.0.0.1:{a.port}{a.mount}", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
