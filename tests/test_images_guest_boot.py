"""Boot the cirros-compatible guest under TCG and check its console against CirrOS 0.3.0's lines.

Integration test: needs root, qemu-system-x86_64, dnsmasq, ``ip`` and the host's apt (to build or
reuse the cached guest). Everything runs in a network namespace created here: a bridge with
10.0.0.1/24, dnsmasq serving 10.0.0.2 statically, and a metadata stub on 169.254.169.254:80.
No traffic leaves the namespace.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

MAC = "fa:16:3e:00:00:09"
NEEDED = ("qemu-system-x86_64", "dnsmasq", "ip", "apt-get")

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or any(shutil.which(t) is None for t in NEEDED),
    reason=f"needs root and {', '.join(NEEDED)}",
)

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


@pytest.fixture(scope="module")
def booted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """Boot the guest once; yield (console text, metadata request log)."""
    from flatbed.images.guest import ensure_guest

    image = ensure_guest(progress=lambda line: print(line, file=sys.stderr))
    assert image.kernel and image.initrd
    work = tmp_path_factory.mktemp("guestboot")
    ns = f"fbimg{os.getpid()}"
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
            "-kernel", str(image.kernel), "-initrd", str(image.initrd), "-append", image.cmdline,
            "-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no",
            "-device", f"virtio-net-pci,netdev=n0,mac={MAC}",
        ], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 120
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


def _expect(text: str, pattern: str) -> re.Match[str]:
    match = re.search(pattern, text, re.M | re.I)
    assert match, f"console lacks /{pattern}/:\n{text[-3000:]}"
    return match


def test_dhcp_lines(booted: tuple[str, str]) -> None:
    text, _ = booted
    _expect(text, r"^Starting network\.\.\.")
    _expect(text, r"^udhcpc(: started, v1\.35\.0| \(v[\d.]+\) started)")
    _expect(text, r"^(udhcpc: )?(sending|broadcasting) discover")
    _expect(text, r"^(udhcpc: )?(sending|broadcasting) select for 10\.0\.0\.2")
    _expect(text, r"^(udhcpc: )?lease of 10\.0\.0\.2 obtained(, | from 10\.0\.0\.1, )lease time 120")
    _expect(text, r"^deleting routers$")
    _expect(text, r"^adding dns 10\.0\.0\.1$")


def test_metadata_lines(booted: tuple[str, str]) -> None:
    text, requests = booted
    _expect(text, r"^cloud-setup: checking http://169\.254\.169\.254/2009-04-04/meta-data/instance-id$")
    _expect(text, r"^cloud-setup: successful after \d+/30 tries: up \d+\.\d\d\. iid=i-00000009$")
    _expect(text, r"^wget: server returned error: HTTP/1\.1 404 Not Found$")
    _expect(text, r"^failed to get http://169\.254\.169\.254/latest/meta-data/public-keys$")
    _expect(text, r"^===== cloud-final: system completely up in \d+\.\d\d seconds ====$")
    assert "\n  instance-id: i-00000009\n  public-ipv4: \n  local-ipv4 : 10.0.0.2\n" in text
    _expect(text, r"^cloud-userdata: user data not a script$")
    order = [line.split()[1] for line in requests.splitlines() if line.startswith("GET ")]
    md = "/2009-04-04/meta-data/"
    assert order[-7:] == [
        md + "instance-id", "/latest/meta-data/public-keys", md + "instance-id", md + "public-ipv4",
        md + "local-ipv4", md + "instance-id", "/2009-04-04/user-data",
    ]


def test_dropbear_and_login(booted: tuple[str, str]) -> None:
    text, _ = booted
    _expect(text, r"^Starting dropbear sshd: (generating \w+ key\.\.\. .*)+OK$")
    _expect(text, r"login as 'cirros' user\. default password: 'cubswin:\)'\. use 'sudo' for root\.")
    _expect(text, r"cirros login:")
