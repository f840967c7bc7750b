"""Network namespaces for the Ray tests: Ray runs where the only addresses are the ones the test made.

``ip netns`` makes them; the test process enters one with setns(2) on its main thread, so the servers it starts
and the client threads it starts afterwards live there too, then returns to its own namespace. Needs root (as
in CI); without ``ip`` or the privilege the tests fail, they never skip.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
from collections.abc import Iterator

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def ip(*args: str) -> str:
    """Run ``ip`` and return its output; a failure raises with ip's own message."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns failed: {os.strerror(errno)}")


class NetworkNamespace:
    """A named network namespace with its loopback up; deleted (with its interfaces) by ``delete``."""

    def __init__(self, name: str) -> None:
        self.name = name
        ip("netns", "add", name)
        ip("-n", name, "link", "set", "lo", "up")

    def interfaces(self) -> list[str]:
        """The names of the namespace's interfaces."""
        lines = ip("-n", self.name, "-o", "link", "show").splitlines()
        return [line.split(":")[1].strip().split("@")[0] for line in lines if line.strip()]

    def addresses(self) -> list[str]:
        """Every IPv4 address in the namespace."""
        lines = ip("-n", self.name, "-o", "-4", "addr", "show").splitlines()
        return [line.split()[3].split("/")[0] for line in lines if line.strip()]

    def command(self, *args: str) -> list[str]:
        """A command line that runs ``args`` inside the namespace (``ip netns exec`` execs, keeping the pid)."""
        return ["ip", "netns", "exec", self.name, *args]

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """Move this thread (and what it starts from now on) into the namespace, and back afterwards."""
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
        try:
            _setns(target)
            try:
                yield
            finally:
                _setns(own)
        finally:
            os.close(own)
            os.close(target)

    def delete(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


def veth_pair(left: NetworkNamespace, left_address: str, right: NetworkNamespace, right_address: str,
              prefix: str = "assay") -> None:
    """Join two namespaces with a veth pair, one end and address (CIDR) in each."""
    a, b = f"{prefix}-a", f"{prefix}-b"
    ip("link", "add", a, "type", "veth", "peer", "name", b)
    ip("link", "set", a, "netns", left.name)
    ip("link", "set", b, "netns", right.name)
    for ns, dev, address in ((left, a, left_address), (right, b, right_address)):
        ip("-n", ns.name, "addr", "add", address, "dev", dev)
        ip("-n", ns.name, "link", "set", dev, "up")
