"""The simulator's ceiling: how many pushes per second its firehose sustains.

Starts `python -m ingestor.sim --firehose` as its own process, connects N clients that
authenticate, subscribe to position and wallet and then read as fast as they can, and
reports the server's own count over its own wall time (and its CPU time). Two readers:

- `websockets` (default): the plain library client, parsing every frame; on a small machine
  the readers may be slower than the server, so the figure is a lower bound;
- `raw`: the upgrade and the two requests by hand, then bytes are read and dropped without
  parsing, so the server is the only thing being measured.

    .venv/bin/python benches/sim_firehose.py --connections 8 --seconds 5 --reader raw
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import websockets
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benches.pipelines.common import SUBSCRIBE, auth_request  # noqa: E402


async def read_websockets(url: str, key: str, secret: str, stop: asyncio.Event) -> int:
    """Parse every frame with the `websockets` library; count them."""
    count = 0
    async with websockets.connect(url, max_queue=None, compression=None) as ws:
        await ws.send(auth_request(key, secret))
        await ws.send(SUBSCRIBE)
        try:
            while not stop.is_set():
                await ws.recv()
                count += 1
        except websockets.ConnectionClosed:
            pass
    return count


def client_frame(text: str) -> bytes:
    """A masked text frame (zero mask key: the payload goes as is, which RFC 6455 allows)."""
    payload = text.encode()
    if len(payload) < 126:
        header = struct.pack("!BB", 0x81, 0x80 | len(payload))
    else:
        header = struct.pack("!BBH", 0x81, 0x80 | 126, len(payload))
    return header + b"\0\0\0\0" + payload


async def read_raw(url: str, key: str, secret: str, stop: asyncio.Event) -> int:
    """Upgrade by hand, send auth and subscribe, then drop bytes as fast as they come."""
    host_port = url.split("//", 1)[1].split("/", 1)[0]
    host, port = host_port.split(":")
    reader, writer = await asyncio.open_connection(host, int(port), limit=1 << 22)
    nonce = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /v5/private HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {nonce}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    await reader.readuntil(b"\r\n\r\n")
    writer.write(client_frame(auth_request(key, secret)) + client_frame(SUBSCRIBE))
    received = 0
    while not stop.is_set():
        chunk = await reader.read(1 << 20)
        if not chunk:
            break
        received += len(chunk)
    writer.close()
    return received


async def run_clients(args: argparse.Namespace, url: str, accounts: list[dict]) -> list[int]:
    stop = asyncio.Event()
    reader = read_raw if args.reader == "raw" else read_websockets
    tasks = [
        asyncio.create_task(reader(url, a["api_key"], a["api_secret"], stop))
        for a in accounts[: args.connections]
    ]
    await asyncio.sleep(args.seconds + 1.0)
    stop.set()
    done, _ = await asyncio.wait(tasks, timeout=5)
    return [t.result() for t in done if not t.exception()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--reader", choices=("websockets", "raw"), default="websockets")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        accounts_path, report_path = Path(tmp) / "accounts.yaml", Path(tmp) / "report.json"
        server = subprocess.Popen(
            [
                sys.executable, "-m", "ingestor.sim", "--firehose",
                "--accounts", str(args.connections), "--duration", str(args.seconds),
                "--grace", "0.5", "--write-accounts", str(accounts_path), "--inline-secrets",
                "--truth", str(report_path),
            ],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )  # fmt: skip
        assert server.stdout is not None
        url = json.loads(server.stdout.readline())["ws_url"]
        accounts = yaml.safe_load(accounts_path.read_text())["accounts"]
        client_counts = asyncio.run(run_clients(args, url, accounts))
        server.wait(timeout=30)
        firehose = json.loads(report_path.read_text())["firehose"]
    unit = "bytes" if args.reader == "raw" else "messages"
    print(
        f"| reader | connections | server msgs/s | server CPU s / wall s | client {unit} |\n"
        f"|---|---|---|---|---|\n"
        f"| {args.reader} | {firehose['connections']} | {firehose['msgs_per_s']:,.0f} "
        f"| {firehose['cpu_seconds']:.2f} / {firehose['seconds']:.2f} | {sum(client_counts):,} |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
