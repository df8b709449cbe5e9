"""What an image needs to start under user-mode emulation (QEMU), where `publish` checks a
foreign platform's image before pushing it.

qemu-user passes the host's /proc/cpuinfo through unchanged: an arm64 process reads x86
lines. ONNX Runtime's CPU detection (the cpuinfo library) parses that file at import, finds
no arm64 fields and crashes the server (SIGSEGV, seen with Debian's qemu 7.2). The check
therefore gives the emulated server a /proc/cpuinfo of its own platform (runc allows a bind
mount there, as lxcfs uses). Pure Python, no dagger import.
"""

from __future__ import annotations

import os

CPUINFO_PATH = "/proc/cpuinfo"

# One core as the Linux kernel of a Neoverse-N1 (a common arm64 server CPU) lists it.
_ARM64_CORE = (
    "processor\t: {n}\n"
    "BogoMIPS\t: 50.00\n"
    "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid "
    "asimdrdm lrcpc dcpop asimddp ssbs\n"
    "CPU implementer\t: 0x41\n"
    "CPU architecture: 8\n"
    "CPU variant\t: 0x3\n"
    "CPU part\t: 0xd0c\n"
    "CPU revision\t: 1\n"
)


def emulated_cpuinfo(platform: str, cpus: int | None = None) -> str | None:
    """A /proc/cpuinfo for `platform`, one entry per host CPU; None where none is needed."""
    if platform != "linux/arm64":
        return None
    count = cpus or os.cpu_count() or 1
    return "\n".join(_ARM64_CORE.format(n=n) for n in range(count))
