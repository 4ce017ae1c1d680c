# SPDX-License-Identifier: Apache-2.0
"""The load-balancing exporter (exporter.protocol: loadbalancing) against
three real upstreams: every trace arrives whole at exactly one upstream and
every span exactly once, also with traces spread over many requests and
connections; one upstream refusing with 503 does not hold up the other two
and gets its traces once it recovers; the dns resolver follows a hosts file
(bind-mounted over /etc/hosts in a private mount namespace) when an address
leaves; gRPC children; metrics and logs go by service.name.

The expected endpoint of every trace is computed here with the same ring as
lib/export/export_lb_ring.c (FNV-1a + MurmurHash3 fmix64, 160 points per
endpoint URL), so the tests also pin the routing a fleet of gateways shares."""

import bisect
import os
import random
import shutil
import subprocess
import sys
import threading
import time

import pytest

import itlib
import otlp_pb
from otlp_pb import common_pb2, resource_pb2

M64 = (1 << 64) - 1
VNODES = 160


def _fnv1a(h, data):
    for b in data:
        h ^= b
        h = (h * 0x100000001b3) & M64
    return h


def _fmix64(k):
    k ^= k >> 33
    k = (k * 0xff51afd7ed558ccd) & M64
    k ^= k >> 33
    k = (k * 0xc4ceb9fe1a85ec53) & M64
    k ^= k >> 33
    return k


def lb_hash(data):
    return _fmix64(_fnv1a(0xcbf29ce484222325, data))


class Ring:
    """export_lb_ring_build() / export_lb_ring_lookup() in Python."""

    def __init__(self, urls):
        self.urls = sorted(set(urls))
        pts = []
        for e, u in enumerate(self.urls):
            base = _fnv1a(0xcbf29ce484222325, u.encode())
            for i in range(VNODES):
                pts.append((_fmix64(_fnv1a(base, i.to_bytes(4, "little"))), e))
        pts.sort()
        self.hashes = [h for h, _ in pts]
        self.owner = [e for _, e in pts]

    def lookup(self, key_bytes):
        i = bisect.bisect_left(self.hashes, lb_hash(key_bytes))
        return self.urls[self.owner[0 if i == len(self.hashes) else i]]


def _kv(k, v):
    return common_pb2.KeyValue(key=k, value=common_pb2.AnyValue(string_value=v))


SERVICES = ["checkout", "cart", "payment", "shipping"]


def trace_requests(n_traces, n_requests, seed, tag):
    """n_traces traces of 2 or 3 spans, each span put in a random one of
    n_requests requests, under the resource of service (trace + span) % 4:
    a trace crosses requests, connections, workers, batches and resources.
    Returns (requests, {trace_id hex: set(span_id hex)})."""
    rnd = random.Random(seed)
    # per request: service -> list of spans
    reqs = [dict() for _ in range(n_requests)]
    expect = {}
    for t in range(n_traces):
        tid = rnd.getrandbits(128).to_bytes(16, "big")
        spans = set()
        for k in range(2 + t % 2):
            sid = rnd.getrandbits(64).to_bytes(8, "big")
            spans.add(sid.hex())
            r = rnd.randrange(n_requests)
            svc = SERVICES[(t + k) % len(SERVICES)]
            reqs[r].setdefault(svc, []).append((tid, sid, "%s-%d-%d" % (tag, t, k)))
        expect[tid.hex()] = spans
    out = []
    for by_svc in reqs:
        req = otlp_pb.trace_service_pb2.ExportTraceServiceRequest()
        for svc, spans in sorted(by_svc.items()):
            rs = req.resource_spans.add()
            rs.resource.CopyFrom(resource_pb2.Resource(attributes=[_kv("service.name", svc),
                                                                   _kv("test.tag", tag)]))
            ss = rs.scope_spans.add()
            ss.scope.name = "lb-test"
            for tid, sid, name in spans:
                sp = ss.spans.add()
                sp.trace_id = tid
                sp.span_id = sid
                sp.name = name
                sp.start_time_unix_nano = 1
                sp.end_time_unix_nano = 2
        if req.resource_spans:
            out.append(req)
    return out, expect


def send_all(gw, reqs, threads=4):
    """POST every request, `threads` senders at once, one connection per
    request; each must be accepted."""
    errors = []

    def run(part):
        for req in part:
            body, headers = itlib.encode_request(req, "proto", False)
            for _ in range(50):
                r = gw.post("traces", body, headers)
                if r.status == 200:
                    break
                if r.status not in (429, 503):
                    errors.append(r)
                    return
                time.sleep(0.1)
            else:
                errors.append("still refused: %r" % r)

    ts = [threading.Thread(target=run, args=(reqs[i::threads],)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors[:3]


def spans_at(records):
    """{trace hex: [span hex...]} of the accepted span records of one upstream."""
    out = {}
    for r in records:
        it = r["item"]
        out.setdefault(it["traceId"].lower(), []).append(it["spanId"].lower())
    return out


def check_whole_once(expect, got_by_url, ring):
    """Every trace at exactly one upstream (the ring's), every span once."""
    seen_at = {}
    for url, by_trace in got_by_url.items():
        for tid, spans in by_trace.items():
            assert tid not in seen_at, "trace %s at %s and %s" % (tid, seen_at[tid], url)
            seen_at[tid] = url
            assert len(spans) == len(set(spans)), "duplicate spans of %s at %s" % (tid, url)
            assert set(spans) == expect[tid], "trace %s incomplete at %s" % (tid, url)
            assert url == ring.lookup(bytes.fromhex(tid)), \
                "trace %s at %s, the ring says %s" % (tid, url, ring.lookup(bytes.fromhex(tid)))
    missing = set(expect) - set(seen_at)
    assert not missing, "%d traces never arrived, e.g. %s" % (len(missing), sorted(missing)[:3])


class HostUpstream(itlib.Upstream):
    """upstream.py serving OTLP on another 127.x address (control on 127.0.0.1)."""

    def __init__(self, workdir, host, port=0):
        super().__init__(workdir, port)
        self.host = host

    @property
    def url(self):
        return "http://%s:%d" % (self.host, self.port)

    def start(self, timeout=15.0):
        log = open(os.path.join(self.workdir, "upstream-%s.log" % self.host), "ab")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(itlib.HERE, "upstream.py"), "--host", self.host,
             "--port", str(self.port), "--control-port", "0"],
            stdout=subprocess.PIPE, stderr=log, cwd=self.workdir)
        itlib._register(self.proc)
        log.close()
        line = itlib._readline_timeout(self.proc.stdout, timeout)
        if not line:
            self.stop()
            raise RuntimeError("upstream on %s did not start" % self.host)
        info = __import__("json").loads(line)
        self.port = info["port"]
        self.control_port = info["control_port"]
        return self


@pytest.fixture
def upstreams(tmp_path):
    ups = []
    try:
        for i in range(3):
            d = tmp_path / ("up%d" % i)
            d.mkdir()
            ups.append(itlib.Upstream(d).start())
        yield ups
    finally:
        for u in ups:
            u.stop()


def lb_exporter(urls, protocol="otlp_http", **lb):
    conf = {"protocol": protocol, "endpoints": ",".join(urls)}
    conf.update(lb)
    return {"protocol": "loadbalancing", "compression": "gzip", "tls": {"insecure": True},
            "loadbalancing": conf}


def accepted(u):
    return u.stats()["items_accepted"]["traces"]


def test_ten_thousand_traces_arrive_whole_once(start_gateway, upstreams):
    urls = [u.url for u in upstreams]
    ring = Ring(urls)
    gw = start_gateway(None, exporter=lb_exporter(urls),
                       batch={"max_export_batch_size": 1024, "max_concurrent_exports": 4,
                              "max_queue_size": 65536},
                       dataplane={"mode": "socket", "workers": 2})
    reqs, expect = trace_requests(10000, 120, seed=7, tag="lb")
    n_spans = sum(len(s) for s in expect.values())
    send_all(gw, reqs, threads=4)
    itlib.wait_for(lambda: sum(accepted(u) for u in upstreams) >= n_spans, 90,
                   what=lambda: "%d spans upstream (%s)" % (
                       n_spans, [accepted(u) for u in upstreams]))
    time.sleep(0.5)  # anything arriving twice would come now
    got = {u.url: spans_at(u.records("traces")) for u in upstreams}
    check_whole_once(expect, got, ring)
    counts = {u.url: accepted(u) for u in upstreams}
    assert sum(counts.values()) == n_spans
    for url, n in counts.items():
        assert n > n_spans * 0.2, "unbalanced: %s" % counts
    m = gw.metrics()
    assert m.value("otlp_lb_endpoints") == 3
    assert m.value("otlp_spans_exported_total") == n_spans
    for url in urls:
        assert m.value("otlp_lb_items_total", endpoint=url) == counts[url]
        assert m.value("otlp_lb_endpoint_healthy", endpoint=url) == 1
        assert m.value("otlp_lb_exports_total", endpoint=url, result="success") > 0


def test_one_endpoint_down_others_keep_flowing(start_gateway, upstreams):
    urls = [u.url for u in upstreams]
    ring = Ring(urls)
    down = upstreams[1]
    gw = start_gateway(None, exporter=lb_exporter(urls),
                       batch={"max_export_batch_size": 256, "max_concurrent_exports": 2})
    down.mode(status=503)
    reqs, expect = trace_requests(1500, 40, seed=11, tag="outage")
    share = {u.url: 0 for u in upstreams}
    for tid, spans in expect.items():
        share[ring.lookup(bytes.fromhex(tid))] += len(spans)
    assert all(share.values())
    half = len(reqs) // 2
    send_all(gw, reqs[:half], threads=2)
    # The two healthy upstreams get everything of theirs from the first half
    # while the third refuses ...
    t0 = time.time()
    time.sleep(1.0)
    send_all(gw, reqs[half:], threads=2)
    others = [u for u in upstreams if u is not down]
    itlib.wait_for(lambda: all(accepted(u) == share[u.url] for u in others), 30,
                   what=lambda: "healthy upstreams' shares %s, have %s" % (
                       {u.url: share[u.url] for u in others}, [accepted(u) for u in others]))
    assert accepted(down) == 0
    assert down.stats()["by_status"].get("503", 0) > 0
    m = gw.metrics()
    assert m.value("otlp_lb_endpoint_healthy", endpoint=down.url) == 0
    assert m.value("otlp_lb_exports_total", endpoint=down.url, result="retry") > 0
    for u in others:
        assert m.value("otlp_lb_endpoint_healthy", endpoint=u.url) == 1
    assert m.value("otlp_spans_exported_total") == sum(share[u.url] for u in others)
    # ... for a while; then it recovers and gets its traces, nothing twice.
    assert time.time() - t0 < 25
    down.mode(status=200)
    itlib.wait_for(lambda: accepted(down) >= share[down.url], 30,
                   what=lambda: "%d spans at the recovered upstream, have %d" % (
                       share[down.url], accepted(down)))
    time.sleep(0.5)
    got = {u.url: spans_at(u.records("traces")) for u in upstreams}
    check_whole_once(expect, got, ring)
    m = gw.metrics()
    assert m.value("otlp_spans_exported_total") == sum(share.values())
    assert m.value("otlp_lb_endpoint_healthy", endpoint=down.url) == 1
    assert sum(v for k, v in m.series("otlp_spans_dropped_total")) == 0


def test_logs_and_metrics_go_by_service_name(start_gateway, upstreams):
    urls = [u.url for u in upstreams]
    ring = Ring(urls)
    gw = start_gateway(None, exporter=lb_exporter(urls))
    for i in range(12):
        logs = itlib.make_logs(5, tag="svc%d" % i)
        mets = itlib.make_metrics(4, tag="svc%d" % i)
        for entries in (logs.resource_logs, mets.resource_metrics):
            for j, e in enumerate(entries):
                for a in e.resource.attributes:
                    if a.key == "service.name":
                        a.value.string_value = "svc-%d-%d" % (i, j)
        assert gw.send("logs", logs).status == 200
        assert gw.send("metrics", mets).status == 200
    for sig in ("logs", "metrics"):
        itlib.wait_for(lambda: sum(u.stats()["items_accepted"][sig] for u in upstreams) >=
                       (60 if sig == "logs" else 1), 20, what=sig)
    time.sleep(1.0)
    for sig in ("logs", "metrics"):
        services_at = {}
        for u in upstreams:
            for r in u.records(sig):
                names = [a["value"].get("stringValue") for a in r["resource"]["attributes"]
                         if a["key"] == "service.name"]
                assert len(names) == 1
                assert ring.lookup(names[0].encode()) == u.url, (sig, names, u.url)
                services_at.setdefault(u.url, set()).add(names[0])
        assert len(services_at) >= 2, services_at  # the services spread over the endpoints


def _grpc_upstream_class():
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from test_grpc_export import GrpcUpstream
    return GrpcUpstream


def test_grpc_children(start_gateway, tmp_path):
    GrpcUpstream = _grpc_upstream_class()
    ups = [GrpcUpstream(tmp_path, name="lb-grpc%d" % i) for i in range(3)]
    try:
        for u in ups:
            u.start()
        urls = [u.endpoint for u in ups]
        ring = Ring(urls)
        gw = start_gateway(None, exporter=lb_exporter(urls, protocol="grpc"))
        reqs, expect = trace_requests(600, 20, seed=5, tag="grpc")
        n_spans = sum(len(s) for s in expect.values())
        send_all(gw, reqs, threads=2)
        itlib.wait_for(lambda: sum(u.items("traces") for u in ups) >= n_spans, 30,
                       what="spans at the gRPC upstreams")
        time.sleep(0.5)
        got = {}
        for u in ups:
            by_trace = {}
            for r in u.records("traces"):
                it = r["item"]
                by_trace.setdefault(it["traceId"].lower(), []).append(it["spanId"].lower())
            got[u.endpoint] = by_trace
        check_whole_once(expect, got, ring)
        m = gw.metrics()
        assert m.value("otlp_spans_exported_total") == n_spans
        for url in urls:
            assert m.value("otlp_lb_items_total", endpoint=url) > 0
    finally:
        for u in ups:
            u.stop()


class NsGateway(itlib.Gateway):
    """otlp-service in a private mount namespace with `hosts` over /etc/hosts."""

    def __init__(self, workdir, config, hosts):
        super().__init__(workdir, config, name="gw-dns")
        self.hosts = str(hosts)

    def start(self, wait_ready=True, timeout=15.0):
        self.write_config()
        self._log = open(self.log_path, "ab")
        script = 'mount --bind "$1" /etc/hosts && exec "$2" --config "$3"'
        self.proc = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", self.hosts,
             itlib.gateway_bin(), self.config_path],
            stdout=self._log, stderr=self._log, cwd=self.workdir)
        itlib._register(self.proc)
        if wait_ready:
            self.wait_ready(timeout)
        return self


def _write_in_place(path, text):
    # truncate + write on the same inode: the bind mount keeps seeing it
    with open(path, "r+") as f:
        f.seek(0)
        f.truncate()
        f.write(text)


def test_dns_resolver_follows_the_name(tmp_path):
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare for a private mount namespace")
    name = "otlp-lb-it.test"
    first = HostUpstream(tmp_path / "a", "127.0.0.1")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "c").mkdir()
    ups = [first.start()]
    gw = None
    try:
        port = first.port
        ups.append(HostUpstream(tmp_path / "b", "127.0.0.2", port).start())
        ups.append(HostUpstream(tmp_path / "c", "127.0.0.3", port).start())
        hosts = tmp_path / "hosts"
        base = "127.0.0.1 localhost\n"
        hosts.write_text(base + "".join("%s %s\n" % (u.host, name) for u in ups))
        cfg = itlib.base_config(tmp_path, None, exporter={
            "protocol": "loadbalancing", "compression": "none", "tls": {"insecure": True},
            "loadbalancing": {"resolver": "dns", "hostname": name, "port": port,
                              "resolve_interval_ms": 200}})
        gw = NsGateway(tmp_path, cfg, hosts).start()
        urls3 = [u.url for u in ups]
        m = gw.metrics()
        assert m.value("otlp_lb_endpoints") == 3, gw.log_tail()
        ring3 = Ring(urls3)
        reqs, expect = trace_requests(900, 20, seed=3, tag="dns1")
        n1 = sum(len(s) for s in expect.values())
        send_all(gw, reqs, threads=2)
        itlib.wait_for(lambda: sum(accepted(u) for u in ups) >= n1, 30, what="wave 1")
        time.sleep(0.3)
        check_whole_once(expect, {u.url: spans_at(u.records("traces")) for u in ups}, ring3)
        assert all(accepted(u) > 0 for u in ups)

        # 127.0.0.3 leaves the name
        _write_in_place(hosts, base + "".join("%s %s\n" % (u.host, name) for u in ups[:2]))
        itlib.wait_for(lambda: gw.metrics().value("otlp_lb_endpoints") == 2, 15,
                       what="the endpoint set to shrink to 2")
        m = gw.metrics()
        assert m.value("otlp_lb_endpoint_healthy", endpoint=ups[2].url) == 0
        assert m.value("otlp_lb_resolves_total", result="success") >= 2
        before = [accepted(u) for u in ups]
        for u in ups:
            u.reset()
        reqs, expect = trace_requests(900, 20, seed=4, tag="dns2")
        n2 = sum(len(s) for s in expect.values())
        send_all(gw, reqs, threads=2)
        itlib.wait_for(lambda: sum(accepted(u) for u in ups[:2]) >= n2, 30, what="wave 2")
        time.sleep(0.5)
        assert accepted(ups[2]) == 0, "spans went to the removed address"
        ring2 = Ring(urls3[:2])
        check_whole_once(expect, {u.url: spans_at(u.records("traces")) for u in ups[:2]}, ring2)
        assert sum(before) == n1
        m = gw.metrics()
        assert m.value("otlp_spans_exported_total") == n1 + n2
        # counters of the removed endpoint stay, frozen
        assert m.value("otlp_lb_items_total", endpoint=ups[2].url) == before[2]
    finally:
        if gw is not None:
            gw.stop()
        for u in ups:
            u.stop()
