"""What the kernel knows about a TCP connection that the sender cannot see otherwise (Linux)."""

from __future__ import annotations

import fcntl
import socket
import struct
import termios

__all__ = ["peer_window", "unacked_bytes"]

_TCP_INFO_SND_WND = 228  # offsetof(struct tcp_info, tcpi_snd_wnd), Linux >= 6.2


def unacked_bytes(sock: socket.socket) -> int | None:
    """Bytes sent that the peer's TCP has not acknowledged (SIOCOUTQ; still valid after a reset)."""
    try:
        value: int = struct.unpack("i", fcntl.ioctl(sock, termios.TIOCOUTQ, b"\0\0\0\0"))[0]
    except OSError:
        return None
    return value


def peer_window(sock: socket.socket) -> int | None:
    """The receive window the peer advertised last, in bytes (None where the kernel does not say)."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_SND_WND + 4)
    except OSError:
        return None
    if len(info) < _TCP_INFO_SND_WND + 4:
        return None
    window: int = struct.unpack_from("I", info, _TCP_INFO_SND_WND)[0]
    return window
