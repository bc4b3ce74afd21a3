"""Is a TCP port free to listen on, and if not, which process holds it (Linux: /proc)."""

from __future__ import annotations

import errno
import os
import re
import socket
from pathlib import Path

#: values of these options are not repeated when another process's command line is shown
_SECRET_OPTION = re.compile(r"(secret|password|passwd|token|key)", re.IGNORECASE)


def port_in_use_message(host: str, port: int, proc: Path = Path("/proc")) -> str | None:
    """None when ``host:port`` can be listened on; else what holds it, for the operator."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return None  # the server will report the bad host itself
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is no obstacle
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                return None
        else:
            return None
    holder = _holder(port, proc)
    return f"port {port} on {host} is in use ({holder}); choose another with --port"


def _holder(port: int, proc: Path) -> str:
    inodes = _listening_inodes(port, proc)
    for pid_dir in proc.iterdir() if inodes else ():
        if not pid_dir.name.isdigit():
            continue
        try:
            fds = list((pid_dir / "fd").iterdir())
        except OSError:  # another user's process, or it just ended
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                return f"by PID {pid_dir.name}, cmdline {_cmdline(pid_dir)}"
    return "by a process this user cannot see" if inodes else "by another process"


def _listening_inodes(port: int, proc: Path) -> set[str]:
    """Inodes of the sockets listening on ``port`` (any address), from /proc/net/tcp and tcp6."""
    found: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                found.add(fields[9])
    return found


def _cmdline(pid_dir: Path) -> str:
    try:
        argv = (pid_dir / "cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return "unknown"
    shown: list[str] = []
    hide_next = False
    for arg in (a for a in argv if a):
        if hide_next:
            shown.append("***")
            hide_next = False
            continue
        name, eq, _ = arg.partition("=")
        if name.startswith("-") and _SECRET_OPTION.search(name):
            if eq:
                arg = f"{name}=***"
            else:
                hide_next = True
        shown.append(arg)
    text = " ".join(shown)
    return repr(text if len(text) <= 160 else text[:157] + "...")
