# SPDX-License-Identifier: Apache-2.0
"""A userspace Ethernet relay between two interfaces that loses, reorders and
duplicates frames, for kernels without sch_netem (tc netem). Runs inside the
test's network namespace:

    impair_relay.py --a vethB --b tapX --loss 0.02 --reorder 0.25 --dup 0.01 \
                    --seed 7 --stats FILE

Every frame received on one interface (AF_PACKET, all protocols) is sent out
of the other, in both directions, except that with probability `loss` it is
dropped, with `dup` sent twice, and with `reorder` held back and sent after
the next frame of the same direction (or after 5 ms when none follows).
A TCP segment is lost at most once (its retransmission passes). Frames this
relay sent itself (PACKET_OUTGOING) are ignored. On SIGTERM the
counts are written to FILE as JSON."""

import argparse
import json
import random
import select
import signal
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
HOLD_S = 0.005


def tcp_key(frame):
    """(addresses, ports, seq, payload length) of an IPv4/TCP frame, else None."""
    if len(frame) < 54 or frame[12:14] != b"\x08\x00" or frame[23] != 6:
        return None
    ihl = (frame[14] & 15) * 4
    tot = struct.unpack("!H", frame[16:18])[0]
    t = 14 + ihl
    doff = (frame[t + 12] >> 4) * 4
    return (frame[26:34], frame[t:t + 4], frame[t + 4:t + 8], tot - ihl - doff)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--a", required=True)
    ap.add_argument("--b", required=True)
    ap.add_argument("--loss", type=float, default=0.0)
    ap.add_argument("--reorder", type=float, default=0.0)
    ap.add_argument("--dup", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--stats", required=True)
    ap.add_argument("--pcap", help="also write every forwarded frame here (for debugging)")
    o = ap.parse_args()
    pcap = None
    if o.pcap:
        pcap = open(o.pcap, "wb")
        pcap.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    rnd = random.Random(o.seed)
    socks = {}
    for name in (o.a, o.b):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        s.bind((name, 0))
        s.setblocking(False)
        socks[name] = s
    peer = {socks[o.a]: socks[o.b], socks[o.b]: socks[o.a]}
    held = {}  # output socket -> (frame, time held)
    # A TCP segment is lost at most once: its retransmission always passes,
    # so recovery is tested without chains of backed-off timeouts (the stack
    # has no SACK or timestamps; docs/dpdk.md).
    lost_once = set()
    st = {"frames": 0, "forwarded": 0, "lost": 0, "duplicated": 0, "reordered": 0}
    running = [True]

    def stop(*_):
        running[0] = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def send(out, frame):
        try:
            out.send(frame)
            st["forwarded"] += 1
        except OSError:
            return
        if pcap is not None:
            t = time.time()
            pcap.write(struct.pack("<IIII", int(t), int((t % 1) * 1e6), len(frame), len(frame)))
            pcap.write(frame)

    print("ready", flush=True)
    while running[0]:
        try:
            ready, _, _ = select.select(list(peer), [], [], HOLD_S)
        except InterruptedError:
            continue
        now = time.monotonic()
        for s in ready:
            while True:
                try:
                    frame, addr = s.recvfrom(65536)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
                if addr[2] == PACKET_OUTGOING:
                    continue
                st["frames"] += 1
                out = peer[s]
                if rnd.random() < o.loss:
                    key = tcp_key(frame)
                    if key is None or key not in lost_once:
                        if key is not None:
                            lost_once.add(key)
                        st["lost"] += 1
                        continue
                copies = 2 if rnd.random() < o.dup else 1
                st["duplicated"] += copies - 1
                if out not in held and rnd.random() < o.reorder:
                    held[out] = (frame, now)
                    st["reordered"] += 1
                    continue
                for _ in range(copies):
                    send(out, frame)
                if out in held:  # the held frame goes after this one
                    send(out, held.pop(out)[0])
        for out, (frame, t) in list(held.items()):
            if now - t >= HOLD_S:
                send(out, frame)
                del held[out]
    if pcap is not None:
        pcap.close()
    with open(o.stats, "w") as f:
        json.dump(st, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
