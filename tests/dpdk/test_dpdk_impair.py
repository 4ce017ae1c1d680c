# SPDX-License-Identifier: Apache-2.0
"""Loss, reordering and duplication in both directions between real clients
and the userspace TCP stack, without tc netem (this kernel has no sch_netem):
the namespace's address moves to a veth pair whose far end impair_relay.py
bridges to the TAP, dropping 1 %, reordering 5 % and duplicating 1 % of the
frames each way (about what tc netem's "loss 2% reorder 25% 50%" on one side
does to a round trip; heavier reordering makes Linux raise its duplicate-ACK
threshold, and without SACK a lost segment then waits for a timeout). Every request still gets its 200 and every span arrives
exactly once and unchanged."""

import json
import os
import random
import signal
import subprocess
import time

import pytest

from conftest import HERE, DpdkRig, itlib, report

RELAY = os.path.join(HERE, "impair_relay.py")


@pytest.fixture(scope="module")
def irig(mod_tmp, upstream, request):
    r = DpdkRig(mod_tmp, upstream=upstream)
    request.addfinalizer(r.stop)
    return r.start()


def ns(r, *args, check=True):
    p = r.ns_run(list(args), timeout=30)
    if check:
        assert p.returncode == 0, (args, p.stderr.decode())
    return p


@pytest.fixture
def relay(irig, mod_tmp):
    """Put impair_relay.py between 198.18.0.1 and the TAP. The client side
    (veth otlpva) takes over the TAP's MAC address, so the stack's ARP entry
    for 198.18.0.1 stays right; the TAP gets a new one and stays up without
    an address, promiscuous, for the relay's packet socket."""
    r = irig
    mac = ns(r, "cat", "/sys/class/net/%s/address" % r.iface).stdout.decode().strip()
    ns(r, "ip", "link", "add", "otlpva", "type", "veth", "peer", "name", "otlpvb")
    ns(r, "ip", "addr", "del", "198.18.0.1/24", "dev", r.iface)
    ns(r, "ip", "link", "set", r.iface, "address", "02:00:c6:12:00:99", "promisc", "on")
    ns(r, "ip", "link", "set", "otlpva", "address", mac)
    ns(r, "ip", "addr", "add", "198.18.0.1/24", "dev", "otlpva")
    # Whole, checksummed frames on the wire: no segmentation or checksum
    # offload on the veth, no GRO merging in front of the packet sockets.
    for dev in ("otlpva", "otlpvb", r.iface):
        ns(r, "ethtool", "-K", dev, "tx", "off", "tso", "off", "gso", "off", "gro", "off",
           check=False)
    ns(r, "ip", "link", "set", "otlpva", "up")
    ns(r, "ip", "link", "set", "otlpvb", "up")
    ns(r, "ip", "neigh", "flush", "all")
    stats = mod_tmp / "relay-stats.json"
    p = subprocess.Popen(["ip", "netns", "exec", r.ns, "/usr/bin/python3", RELAY, "--a",
                          "otlpvb", "--b", r.iface, "--loss", "0.01", "--reorder", "0.05",
                          "--dup", "0.01", "--seed", "7", "--stats", str(stats)]
                         + (["--pcap", os.environ["IMPAIR_PCAP"]] if os.environ.get("IMPAIR_PCAP")
                            else []),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout.readline().strip() == b"ready", p.stderr.read()
    state = {"proc": p, "stats": stats}
    try:
        yield state
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def test_loss_reorder_duplicate_exactly_once(irig, upstream, relay):
    m0 = irig.metrics()
    reqs = [itlib.make_traces(random.choice((5, 50, 400)), "impair-%d" % i) for i in range(30)]
    t0 = time.time()
    took = []
    for i, req in enumerate(reqs):
        body, headers = itlib.encode_request(req, "proto" if i % 2 else "json", False)
        t1 = time.time()
        status = irig.post(body, headers, name="imp%d" % i, timeout=90)
        took.append(time.time() - t1)
        assert status == 200, "request %d: status %d" % (i, status)
    dt = time.time() - t0
    expected = [r for req in reqs for r in itlib.records_of("traces", req)]
    upstream.wait_items("traces", len(expected), timeout=30)
    time.sleep(0.5)
    itlib.assert_same_items(expected, upstream.records("traces"))
    relay["proc"].send_signal(signal.SIGTERM)
    relay["proc"].wait(10)
    st = json.loads(relay["stats"].read_text())
    m = irig.metrics()

    def d(name, **lbl):
        return m.value(name, **lbl) - m0.value(name, **lbl)

    report("impaired link: slowest requests %s s" % sorted("%.1f" % t for t in took)[-5:])
    report("impaired link: 30 requests (%d spans) in %.2f s, all 200, exactly once; relay: %d "
           "frames, %d lost, %d reordered, %d duplicated; stack: retransmits %d, out-of-order "
           "segments %d, duplicate segments %d"
           % (len(expected), dt, st["frames"], st["lost"], st["reordered"], st["duplicated"],
              d("otlp_net_events_total", event="tcp_retransmits"),
              d("otlp_net_events_total", event="tcp_ooo_segments"),
              d("otlp_net_drops_total", reason="tcp_duplicate")))
    # The impairments happened, and the stack saw them.
    assert st["lost"] > 0 and st["reordered"] > 0 and st["duplicated"] > 0, st
    assert d("otlp_net_events_total", event="tcp_ooo_segments") > 0
