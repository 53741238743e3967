"""Boot a guest under TCG in a network namespace of its own, the way the image tests do.

The namespace holds a bridge with 10.0.0.1/24, dnsmasq serving 10.0.0.2 statically (120 s
leases), a metadata stub on 169.254.169.254:80 answering the document's instance i-00000009, and
qemu on a tap of that bridge with the console on a file. No traffic leaves the namespace.
Needs root, qemu-system-x86_64, dnsmasq and ``ip``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MAC = "fa:16:3e:00:00:09"
NEEDED = ("qemu-system-x86_64", "dnsmasq", "ip", "apt-get")
# Why a module that boots guests skips, or None when it can run here.
SKIP = (f"needs root and {', '.join(NEEDED)}"
        if os.geteuid() != 0 or any(shutil.which(t) is None for t in NEEDED) else None)
# Named timeout: TCG boot to the login prompt (≈ 6 s from an initramfs, ≈ 15 s through BIOS + GRUB).
BOOT_TIMEOUT = 120.0

METADATA_STUB = """
import http.server, json, sys
MD = json.load(open(sys.argv[1]))
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # nova's answers are HTTP/1.1; wget prints this status line
    def do_GET(self):
        body = MD.get(self.path)
        data = (body if body is not None else "404 Not Found").encode()
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, fmt, *args):
        sys.stderr.write(self.requestline + "\\n")
        sys.stderr.flush()
http.server.ThreadingHTTPServer(("169.254.169.254", 80), Handler).serve_forever()
"""



def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


@contextmanager
def boot(work: Path, boot_args: list[str], tag: str) -> Iterator[tuple[str, str]]:
    """Boot qemu with ``boot_args`` (kernel + initrd, or a disk) until the login prompt; yield
    (console text, metadata request log). ``tag`` keeps the namespace names of callers apart."""
    ns = f"fb{tag}{os.getpid()}"
    nsx = ["ip", "netns", "exec", ns]
    procs: list[subprocess.Popen[bytes]] = []
    _run("ip", "netns", "add", ns)
    try:
        for cmd in (["ip", "link", "set", "lo", "up"],
                    ["ip", "addr", "add", "169.254.169.254/32", "dev", "lo"],
                    ["ip", "link", "add", "br100", "type", "bridge"],
                    ["ip", "addr", "add", "10.0.0.1/24", "dev", "br100"],
                    ["ip", "link", "set", "br100", "up"],
                    ["ip", "tuntap", "add", "dev", "tap0", "mode", "tap"],
                    ["ip", "link", "set", "tap0", "master", "br100", "up"]):
            _run(*nsx, *cmd)
        (work / "hosts").write_text(f"{MAC},cirros.novalocal,10.0.0.2\n")
        procs.append(subprocess.Popen([
            *nsx, "dnsmasq", "-k", "--strict-order", "--bind-interfaces", "--conf-file=",
            # root: pytest's temp dirs are 0700, so the default "nobody" cannot read the hostsfile.
            "--user=root", "--listen-address=10.0.0.1", "--except-interface=lo",
            f"--pid-file={work}/dnsmasq.pid",
            "--dhcp-range=10.0.0.2,static,120s", f"--dhcp-hostsfile={work}/hosts",
            f"--dhcp-leasefile={work}/leases", "--dhcp-no-override",
            f"--log-facility={work}/dnsmasq.log",
        ]))
        metadata = {
            "/2009-04-04/meta-data/instance-id": "i-00000009",
            "/2009-04-04/meta-data/public-ipv4": "",
            "/2009-04-04/meta-data/local-ipv4": "10.0.0.2",
            "/2009-04-04/user-data": "",
        }
        (work / "md.json").write_text(json.dumps(metadata))
        with open(work / "http.log", "w") as log:
            procs.append(subprocess.Popen([*nsx, sys.executable, "-c", METADATA_STUB, str(work / "md.json")],
                                          stderr=log))
        console = work / "console.log"
        procs.append(subprocess.Popen([
            *nsx, "qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-nodefaults", "-display", "none",
            "-monitor", "none", "-no-reboot", "-serial", f"file:{console}",
            *boot_args,
            "-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no",
            "-device", f"virtio-net-pci,netdev=n0,mac={MAC}",
        ], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + BOOT_TIMEOUT
        text = ""
        while time.monotonic() < deadline and "login:" not in text:
            time.sleep(0.2)
            text = console.read_text(errors="replace") if console.exists() else ""
        yield text.replace("\r", ""), (work / "http.log").read_text()
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        subprocess.run(["ip", "netns", "del", ns], check=False)
