"""Is the middleware tuned for camera images and LiDAR clouds? A check without ROS.

DDS sends a MB-sized sample as hundreds of UDP fragments. Over best effort, one fragment lost because the
receiving socket's buffer was full loses the whole sample, silently. With Linux's default limits
(net.core.rmem_max 208 KiB to 4 MiB) and an untuned middleware, a subscriber in another process receives
only part of a KITTI-size stream (1.4 MB images, 1.8 MB clouds at 10 Hz). The cure is the tuning the ROS 2
documentation asks of any deployment with large messages: a larger socket receive buffer requested by the
middleware (Cyclone DDS: Internal/SocketReceiveBufferSize) and allowed by the kernel (net.core.rmem_max),
or, with Fast DDS, shared-memory segments that hold a whole message where every process runs on one computer
(config/fastdds_same_host.xml), or its large-data transport. See the README's "Deploying the node: DDS tuning".
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Mapping

MIB = 1 << 20
# A few KITTI-size frames (image + cloud ~3.2 MB) must fit in the buffer while the process is busy.
DEFAULT_REQUIRED_BYTES = 8 * MIB
IN_FLIGHT_FRAMES = 3
RMEM_MAX_PATH = Path("/proc/sys/net/core/rmem_max")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)(i?)[bB]?\s*$")
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def parse_size(text: str) -> int | None:
    """Cyclone DDS's size syntax ('16MB', '16 MiB', '1048576', '512kB') in bytes; None for 'default' or junk.
    Cyclone reads kB/MB/GB as powers of 1024, as do we."""
    match = _SIZE.match(text or "")
    if not match:
        return None
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def cyclone_requested_receive_buffer(environ: Mapping[str, str]) -> int | None:
    """The SocketReceiveBufferSize (its `min`, else its text) that CYCLONEDDS_URI asks for, or None where the
    configuration (a file:// URI, a path or inline XML) does not set one or cannot be read."""
    uri = environ.get("CYCLONEDDS_URI", "")
    texts = []
    for part in filter(None, (p.strip() for p in uri.split(","))):
        if part.startswith("<"):
            texts.append(part)
            continue
        path = Path(part[len("file://"):] if part.startswith("file://") else part)
        try:
            texts.append(path.read_text())
        except OSError:
            continue
    requested = None
    for text in texts:
        for match in re.finditer(r"<SocketReceiveBufferSize([^>]*?)(?:/>|>([^<]*)</SocketReceiveBufferSize>)", text):
            attributes, body = match.group(1), match.group(2) or ""
            minimum = re.search(r'min\s*=\s*"([^"]*)"', attributes)
            size = parse_size(minimum.group(1) if minimum else body)
            if size is not None:
                requested = size
    return requested


def fastdds_shared_memory_segment(profiles_file: str | None) -> int | None:
    """The largest <segment_size> of an SHM transport in a Fast DDS profiles file that its participant profile
    uses exclusively (useBuiltinTransports false), or None (no file, unreadable, or no such transport)."""
    if not profiles_file:
        return None
    try:
        text = Path(profiles_file).read_text()
    except OSError:
        return None
    if not re.search(r"<useBuiltinTransports>\s*false\s*</useBuiltinTransports>", text):
        return None
    sizes = [int(size) for descriptor in re.findall(r"<transport_descriptor>(.*?)</transport_descriptor>", text, re.S)
             if re.search(r"<type>\s*SHM\s*</type>", descriptor)
             for size in re.findall(r"<segment_size>\s*(\d+)\s*</segment_size>", descriptor)]
    return max(sizes) if sizes else None


def kernel_receive_buffer_limit(path: Path = RMEM_MAX_PATH) -> int | None:
    """net.core.rmem_max in bytes (Linux), None where it cannot be read."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def required_receive_buffer(message_bytes: int | None = None) -> int:
    """The buffer the inputs need: IN_FLIGHT_FRAMES of the largest message seen, at least the default."""
    if not message_bytes:
        return DEFAULT_REQUIRED_BYTES
    return max(DEFAULT_REQUIRED_BYTES, IN_FLIGHT_FRAMES * int(message_bytes))


def receive_buffer_warning(rmw: str, environ: Mapping[str, str] | None = None,
                           rmem_max: int | None = None, message_bytes: int | None = None) -> str | None:
    """A one-paragraph warning when the middleware `rmw` (rclpy's rmw identifier) is likely to drop large
    input messages, else None. `rmem_max` defaults to the kernel's; `message_bytes` is the largest input
    message seen so far (None at start-up: a KITTI-size stream is assumed)."""
    environ = os.environ if environ is None else environ
    rmem_max = kernel_receive_buffer_limit() if rmem_max is None else rmem_max
    needed = required_receive_buffer(message_bytes)
    needed_mib = f"{needed / MIB:.0f} MiB"
    problems = []
    if "cyclonedds" in rmw:
        requested = cyclone_requested_receive_buffer(environ)
        if requested is None:
            problems.append("CYCLONEDDS_URI sets no Internal/SocketReceiveBufferSize (the default buffer is far "
                            f"too small); set <SocketReceiveBufferSize min=\"{needed_mib.replace(' ', '')}\"/>")
        elif requested < needed:
            problems.append(f"CYCLONEDDS_URI asks for a {requested / MIB:.1f} MiB socket receive buffer; "
                            f"{needed_mib} are needed")
        if rmem_max is not None and rmem_max < needed:
            problems.append(f"the kernel caps socket receive buffers at net.core.rmem_max = "
                            f"{rmem_max / MIB:.1f} MiB; raise it (sysctl -w net.core.rmem_max={2 * needed})")
    elif "fastrtps" in rmw or "fastdds" in rmw:
        transports = environ.get("FASTDDS_BUILTIN_TRANSPORTS", "")
        profiles = environ.get("FASTRTPS_DEFAULT_PROFILES_FILE") or environ.get("FASTDDS_DEFAULT_PROFILES_FILE")
        segment = fastdds_shared_memory_segment(profiles)
        if segment is not None and segment >= needed:
            pass  # same-host traffic through shared memory segments that hold the messages: no UDP involved
        elif segment is not None:
            problems.append(f"the Fast DDS profile {profiles} has {segment / MIB:.1f} MiB shared-memory segments; "
                            f"{needed_mib} are needed")
        else:
            if transports.upper() != "LARGE_DATA" and not profiles:
                problems.append("Fast DDS runs its default transports, whose shared-memory segments cannot hold "
                                "these messages; set FASTRTPS_DEFAULT_PROFILES_FILE to the package's "
                                "config/fastdds_same_host.xml where every ROS 2 process runs on this computer, or to "
                                "a profile with large UDP socket buffers, or FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA")
            if transports.upper() != "LARGE_DATA" and rmem_max is not None and rmem_max < needed:
                problems.append(f"net.core.rmem_max is {rmem_max / MIB:.1f} MiB; raise it to at least {needed_mib}")
    if not problems:
        return None
    size = f"{message_bytes / MIB:.1f} MiB messages" if message_bytes else "camera images and LiDAR clouds"
    return (f"the middleware ({rmw}) is not tuned for {size}: " + "; ".join(problems)
            + ". Large best-effort messages will be lost before they reach this node; see the README, "
            "'Deploying the node: DDS tuning'.")
