#!/usr/bin/env python3
"""The host-side client of the container smoke test (deploy/image-smoke.sh); standard library only.

Against a containerised tidegate whose one static backend is a containerised echo server:

  1. /healthz answers 200 and /readyz 200 (polled until a deadline);
  2. /metrics is the Prometheus text format and shows the backend's capacity;
  3. a WebSocket opened from this host through the proxy gets a 101 with the right
     Sec-WebSocket-Accept (RFC 6455 section 4.2.2), a masked text frame comes back unmasked and
     unchanged (so it crossed the proxy to the echo server and back), and while it is open
     /metrics counts it live on that backend;
  4. the close handshake completes, the live count returns to 0 and the upgrade is counted ok.

Prints one `ok:` line per check; the first failure prints `FAIL:` and exits 1.

    image-smoke-client.py --traffic 127.0.0.1:PORT --admin 127.0.0.1:PORT --backend 127.0.0.1:9000
"""

import argparse
import base64
import hashlib
import http.client
import os
import re
import socket
import struct
import sys
import time

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Failed(Exception):
    pass


def http_get(addr, path, timeout=2.0):
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace")
    finally:
        conn.close()


def poll(what, deadline, attempt):
    """Calls attempt() until it returns a true value or the deadline passes; returns the value."""
    last = None
    while True:
        try:
            value = attempt()
            if value:
                return value
        except (OSError, Failed, http.client.HTTPException) as e:
            last = e
        if time.monotonic() > deadline:
            raise Failed(f"{what}: not true by the deadline (last error: {last})")
        time.sleep(0.1)  # poll interval, bounded by the deadline above


def metric(text, name, labels):
    """The value of NAME{LABELS} in a Prometheus text exposition, or None."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        m = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        if m and m.group(1) == name and (m.group(2) or "") == want:
            return float(m.group(3))
    return None


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise Failed(f"connection closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def send_frame(sock, opcode, payload):
    """One final client frame: masked, as RFC 6455 requires of clients."""
    mask = os.urandom(4)
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    sock.sendall(head + mask + masked)


def recv_frame(sock):
    """(opcode, payload) of one server frame, which must be final and unmasked."""
    b0, b1 = recv_exact(sock, 2)
    if not b0 & 0x80:
        raise Failed("fragmented frame from the server")
    if b1 & 0x80:
        raise Failed("the server sent a masked frame")
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", recv_exact(sock, 2))
    elif n == 127:
        (n,) = struct.unpack("!Q", recv_exact(sock, 8))
    return b0 & 0x0F, recv_exact(sock, n)


def handshake(traffic, timeout):
    """An upgraded socket, or Failed with the proxy's answer."""
    host, port = traffic.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /smoke HTTP/1.1\r\nHost: {traffic}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            sock.close()
            raise Failed(f"closed during the handshake after {head!r}")
        head += chunk
    head, rest = head.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    if not lines[0].startswith("HTTP/1.1 101"):
        sock.close()
        raise Failed(f"handshake answered {lines[0]!r}")
    headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
    accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
    if headers.get("sec-websocket-accept") != accept:
        raise Failed(f"Sec-WebSocket-Accept {headers.get('sec-websocket-accept')!r}, want {accept!r}")
    if headers.get("upgrade", "").lower() != "websocket" or rest:
        raise Failed(f"bad 101: upgrade={headers.get('upgrade')!r}, {len(rest)} stray bytes")
    return sock


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--traffic", required=True)
    ap.add_argument("--admin", required=True)
    ap.add_argument("--backend", required=True, help="the backend label, as the proxy shows it")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds for the whole check")
    args = ap.parse_args()
    deadline = time.monotonic() + args.timeout
    passed = 0

    def ok(msg):
        nonlocal passed
        passed += 1
        print(f"ok: {msg}", flush=True)

    be = {"backend": args.backend}
    try:
        poll("/healthz is 200", deadline, lambda: http_get(args.admin, "/healthz")[0] == 200)
        ok("/healthz 200")
        poll("/readyz is 200", deadline, lambda: http_get(args.admin, "/readyz")[0] == 200)
        ok("/readyz 200")
        status, text = http_get(args.admin, "/metrics")
        cap = metric(text, "tidegate_backend_capacity", be)
        if status != 200 or "# TYPE tidegate_backend_connections gauge" not in text or not cap:
            raise Failed(f"/metrics: status {status}, capacity {cap}, {len(text)} bytes")
        ok(f"/metrics 200, {len(text.splitlines())} lines, capacity of {args.backend} = {cap:g}")

        # The echo container may still be starting: retry until a 101 (eject_for is short).
        sock = poll("a WebSocket through the proxy", deadline, lambda: handshake(args.traffic, 5.0))
        ok("101 Switching Protocols with a valid Sec-WebSocket-Accept")
        payload = f"tidegate smoke {os.urandom(6).hex()}".encode()
        send_frame(sock, 0x1, payload)
        opcode, echoed = recv_frame(sock)
        if (opcode, echoed) != (0x1, payload):
            raise Failed(f"echo: opcode {opcode}, {echoed!r}, want text {payload!r}")
        ok(f"masked text frame echoed through the proxy ({len(payload)} bytes)")
        live = metric(http_get(args.admin, "/metrics")[1], "tidegate_backend_connections", be)
        if live != 1:
            raise Failed(f"tidegate_backend_connections{be} = {live} while the WebSocket is open")
        ok("the open WebSocket counts 1 live on the backend")

        send_frame(sock, 0x8, struct.pack("!H", 1000))
        opcode, body = recv_frame(sock)
        if opcode != 0x8 or body[:2] != struct.pack("!H", 1000):
            raise Failed(f"close handshake: opcode {opcode}, {body!r}")
        sock.close()
        ok("close handshake completed (1000)")

        def settled():
            text = http_get(args.admin, "/metrics")[1]
            done = metric(text, "tidegate_upgrades_total", {**be, "result": "ok"})
            return metric(text, "tidegate_backend_connections", be) == 0 and done and done >= 1
        poll("live back to 0 and the upgrade counted ok", deadline, settled)
        ok("live back to 0, tidegate_upgrades_total{result=\"ok\"} counted")
    except Failed as e:
        print(f"FAIL: {e} (after {passed} checks passed)", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
