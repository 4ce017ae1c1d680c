#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
// An OpenTelemetry JavaScript SDK client for the otlp-service integration tests.
// It produces spans, metric points or log records with the real SDK, exports
// them with the real OTLP exporters (OTLP/HTTP proto or JSON, or OTLP/gRPC; gzip
// or not), force-flushes, shuts down, and writes a JSON summary of exactly what
// it exported: every export batch as the OTLP/JSON request the exporter encoded
// (the test decodes these like the upstream decodes what it received) plus a
// short item list.
//
//   node send.js --endpoint http://127.0.0.1:4318 --signal traces|metrics|logs
//                [--protocol http|grpc] [--encoding proto|json] [--gzip] [--count N]
//                [--batch-size B] [--out FILE] [--timeout-ms MS] [--header K=V]...
//                [--resource K=V]...
//
// --protocol grpc uses the OTLP/gRPC exporters (endpoint http://127.0.0.1:4317,
// h2c, always protobuf); --header K=V then becomes gRPC metadata.
//
// Exit status: 0 when every export succeeded and all N items were exported,
// 1 when an export failed, 2 on bad usage.
'use strict';

const fs = require('fs');
const path = require('path');
const api = require('@opentelemetry/api');
const apiLogs = require('@opentelemetry/api-logs');
const { resourceFromAttributes } = require('@opentelemetry/resources');
const { BasicTracerProvider, BatchSpanProcessor } = require('@opentelemetry/sdk-trace-base');
const { MeterProvider, PeriodicExportingMetricReader, AggregationTemporality } =
  require('@opentelemetry/sdk-metrics');
const { LoggerProvider, BatchLogRecordProcessor } = require('@opentelemetry/sdk-logs');
const { JsonTraceSerializer, JsonMetricsSerializer, JsonLogsSerializer } =
  require('@opentelemetry/otlp-transformer');

const EXPORTERS = {
  traces: {
    proto: () => require('@opentelemetry/exporter-trace-otlp-proto').OTLPTraceExporter,
    json: () => require('@opentelemetry/exporter-trace-otlp-http').OTLPTraceExporter,
    grpc: () => require('@opentelemetry/exporter-trace-otlp-grpc').OTLPTraceExporter,
  },
  metrics: {
    proto: () => require('@opentelemetry/exporter-metrics-otlp-proto').OTLPMetricExporter,
    json: () => require('@opentelemetry/exporter-metrics-otlp-http').OTLPMetricExporter,
    grpc: () => require('@opentelemetry/exporter-metrics-otlp-grpc').OTLPMetricExporter,
  },
  logs: {
    proto: () => require('@opentelemetry/exporter-logs-otlp-proto').OTLPLogExporter,
    json: () => require('@opentelemetry/exporter-logs-otlp-http').OTLPLogExporter,
    grpc: () => require('@opentelemetry/exporter-logs-otlp-grpc').OTLPLogExporter,
  },
};
const SERIALIZERS = { traces: JsonTraceSerializer, metrics: JsonMetricsSerializer,
                      logs: JsonLogsSerializer };
const GRPC_PACKAGES = { traces: '@opentelemetry/exporter-trace-otlp-grpc',
                        metrics: '@opentelemetry/exporter-metrics-otlp-grpc',
                        logs: '@opentelemetry/exporter-logs-otlp-grpc' };

// gRPC metadata for --header K=V. The Metadata class comes from the grpc-js the
// exporter itself uses (resolved from the exporter package, not from hoisting).
function grpcMetadata(signal, headers) {
  const from = path.dirname(require.resolve(GRPC_PACKAGES[signal]));
  const base = require(require.resolve('@opentelemetry/otlp-grpc-exporter-base',
                                       { paths: [from] }));
  const md = base.createEmptyMetadata();
  for (const [k, v] of Object.entries(headers)) md.set(k.toLowerCase(), v);
  return md;
}

function usage(msg) {
  process.stderr.write(`send.js: ${msg}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const o = { endpoint: null, signal: 'traces', protocol: 'http', encoding: 'proto', gzip: false,
              count: 20, batchSize: 0, out: null, timeoutMs: 10000, headers: {}, resource: {} };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    const kv = (s) => {
      const j = s.indexOf('=');
      if (j <= 0) usage(`${a} wants K=V, got ${s}`);
      return [s.slice(0, j), s.slice(j + 1)];
    };
    switch (a) {
      case '--endpoint': o.endpoint = val().replace(/\/+$/, ''); break;
      case '--signal': o.signal = val(); break;
      case '--protocol': o.protocol = val(); break;
      case '--encoding': o.encoding = val(); break;
      case '--gzip': o.gzip = true; break;
      case '--count': o.count = parseInt(val(), 10); break;
      case '--batch-size': o.batchSize = parseInt(val(), 10); break;
      case '--out': o.out = val(); break;
      case '--timeout-ms': o.timeoutMs = parseInt(val(), 10); break;
      case '--header': { const [k, v] = kv(val()); o.headers[k] = v; break; }
      case '--resource': { const [k, v] = kv(val()); o.resource[k] = v; break; }
      case '-h': case '--help':
        process.stdout.write(fs.readFileSync(__filename, 'utf8').split('\n').slice(1, 20)
          .join('\n') + '\n');
        process.exit(0);
        break;
      default: usage(`unknown option ${a}`);
    }
  }
  if (!o.endpoint) usage('--endpoint is required');
  const u = new URL(o.endpoint);
  // Loopback, or the benchmarking range 198.18.0.0/15 inside a network
  // namespace a test made (the DPDK suite's userspace stack).
  if (!['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname) &&
      !/^198\.1[89]\.\d{1,3}\.\d{1,3}$/.test(u.hostname)) {
    usage('tests only send to loopback or 198.18.0.0/15');
  }
  if (!EXPORTERS[o.signal]) usage(`bad --signal ${o.signal}`);
  if (!['http', 'grpc'].includes(o.protocol)) usage(`bad --protocol ${o.protocol}`);
  if (!['proto', 'json'].includes(o.encoding)) usage(`bad --encoding ${o.encoding}`);
  if (o.protocol === 'grpc' && o.encoding !== 'proto') usage('--protocol grpc is always proto');
  if (!(o.count >= 1)) usage('--count must be >= 1');
  if (!o.batchSize) o.batchSize = Math.max(1, Math.ceil(o.count / 4));
  return o;
}

// What the test compares is recorded here.
const summary = { ok: false, exports: [], batches: [], items: [], diag: [], errors: [] };
// Exports whose result callback has not run yet; finish() waits for them.
const pending = new Set();

// Wrap an SDK exporter: record the OTLP/JSON form of each batch and the result.
function recordingExporter(inner, signal) {
  const ser = SERIALIZERS[signal];
  const w = {
    export(items, done) {
      const entry = { ok: null, code: null, error: null, items: countItems(signal, items) };
      summary.exports.push(entry);
      const bytes = ser.serializeRequest(items);
      summary.batches.push(JSON.parse(Buffer.from(bytes).toString('utf8')));
      let settle;
      const p = new Promise((r) => { settle = r; });
      pending.add(p);
      inner.export(items, (res) => {
        pending.delete(p);
        settle();
        entry.code = res.code;
        entry.ok = res.code === 0; // ExportResultCode.SUCCESS
        if (res.error) entry.error = String(res.error && res.error.message || res.error);
        done(res);
      });
    },
    shutdown: () => inner.shutdown(),
    forceFlush: () => (inner.forceFlush ? inner.forceFlush() : Promise.resolve()),
  };
  if (signal === 'metrics') {
    // Delta for every instrument, so each point is exported once even when
    // the test flushes several times.
    w.selectAggregationTemporality = () => AggregationTemporality.DELTA;
    if (inner.selectAggregation) w.selectAggregation = (t) => inner.selectAggregation(t);
  }
  return w;
}

function countItems(signal, items) {
  if (signal !== 'metrics') return items.length;
  let n = 0;
  for (const sm of items.scopeMetrics) for (const m of sm.metrics) n += m.dataPoints.length;
  return n;
}

function attrsFor(i) {
  return {
    'seq': i,
    'str': `value-${i}`,
    'utf8': `h\u00e9llo w\u00f6rld \u2713 ${i}`,
    'dbl': i + 0.25,
    'neg': -i - 1,
    'big': 2 ** 52 + i,
    'flag': i % 2 === 0,
    'empty': '',
    'strs': ['a', 'b', String(i)],
    'ints': [1, 2, i],
    'dbls': [0.5, 1.5, i + 0.125],
    'bools': [true, false],
  };
}

const hr = (sec, nanos) => [sec, nanos];

// Flush/shutdown reject when an export failed; record it and carry on, so the
// summary still lists every batch.
async function settle(what, promise) {
  try {
    await promise;
  } catch (e) {
    summary.errors.push(`${what}: ${e && e.message || e}`);
  }
}

async function sendTraces(o, exporter, resource) {
  const bsp = new BatchSpanProcessor(exporter, {
    maxExportBatchSize: o.batchSize, maxQueueSize: Math.max(2048, o.count),
    scheduledDelayMillis: 60000, exportTimeoutMillis: o.timeoutMs * 4,
  });
  const provider = new BasicTracerProvider({ resource, spanProcessors: [bsp] });
  const tracers = [provider.getTracer('otlp-it.a', '0.1.0'), provider.getTracer('otlp-it.b', '2.0.0')];
  const base = Math.floor(Date.now() / 1000);
  let parent = null;
  let prev = null;
  for (let i = 0; i < o.count; i++) {
    const tracer = tracers[i % 2];
    const ctx = (i % 4 !== 0 && parent) ? api.trace.setSpan(api.context.active(), parent)
                                        : api.ROOT_CONTEXT;
    const links = prev ? [{ context: prev.spanContext(), attributes: { 'link.seq': i, 'link.kind': 'prev' } }] : [];
    const span = tracer.startSpan(`span-${i}`, {
      kind: i % 5, attributes: attrsFor(i), links, startTime: hr(base, 100000000 + i * 1000 + 7),
    }, ctx);
    for (let e = 0; e < i % 3; e++) {
      span.addEvent(`event-${i}-${e}`, { 'event.seq': e, 'event.msg': `m${i}` }, hr(base, 200000000 + e));
    }
    if (i % 3 === 1) span.setStatus({ code: api.SpanStatusCode.OK });
    if (i % 3 === 2) span.setStatus({ code: api.SpanStatusCode.ERROR, message: `failed ${i}` });
    span.end(hr(base + 1, 300000000 + i));
    if (i % 4 === 0) parent = span;
    prev = span;
    const sc = span.spanContext();
    summary.items.push({ traceId: sc.traceId, spanId: sc.spanId, name: `span-${i}`, attributes: attrsFor(i) });
  }
  await settle('forceFlush', provider.forceFlush());
  await settle('shutdown', provider.shutdown());
}

async function sendMetrics(o, exporter, resource) {
  const reader = new PeriodicExportingMetricReader({
    exporter, exportIntervalMillis: 3600000, exportTimeoutMillis: o.timeoutMs * 4,
  });
  const provider = new MeterProvider({ resource, readers: [reader] });
  const meter = provider.getMeter('otlp-it.metrics', '0.1.0');
  const inst = [
    meter.createCounter('it.requests', { unit: '1', description: 'requests', valueType: api.ValueType.INT }),
    meter.createUpDownCounter('it.inflight', { unit: '{req}', valueType: api.ValueType.INT }),
    meter.createHistogram('it.latency', { unit: 'ms', description: 'latency',
                                          advice: { explicitBucketBoundaries: [1, 5, 10, 50] } }),
    meter.createGauge('it.temperature', { unit: 'Cel' }),
  ];
  for (let k = 0; k < o.count; k++) {
    const a = { seq: k, route: `/r${k % 3}`, ok: k % 2 === 0, ratio: k + 0.5 };
    switch (k % 4) {
      case 0: inst[0].add(k + 1, a); inst[0].add(k + 1, a); break;
      case 1: inst[1].add(k, a); inst[1].add(-1, a); break;
      case 2: inst[2].record(k * 0.5 + 0.1, a); inst[2].record(k + 3.7, a); break;
      default: inst[3].record(k * 1.25 + 0.5, a); break;
    }
    summary.items.push({ metric: ['it.requests', 'it.inflight', 'it.latency', 'it.temperature'][k % 4], attributes: a });
    if ((k + 1) % o.batchSize === 0) await settle('forceFlush', reader.forceFlush());
  }
  await settle('forceFlush', reader.forceFlush());
  await settle('shutdown', provider.shutdown());
}

async function sendLogs(o, exporter, resource) {
  const proc = new BatchLogRecordProcessor({
    exporter, maxExportBatchSize: o.batchSize, maxQueueSize: Math.max(2048, o.count),
    scheduledDelayMillis: 60000, exportTimeoutMillis: o.timeoutMs * 4,
  });
  const provider = new LoggerProvider({ resource, processors: [proc] });
  const loggers = [provider.getLogger('otlp-it.logs', '0.1.0'), provider.getLogger('otlp-it.audit', '3.0.0')];
  const base = Math.floor(Date.now() / 1000);
  const sev = [apiLogs.SeverityNumber.DEBUG, apiLogs.SeverityNumber.INFO, apiLogs.SeverityNumber.WARN,
               apiLogs.SeverityNumber.ERROR, apiLogs.SeverityNumber.FATAL];
  const sevText = ['DEBUG', 'INFO', 'WARN', 'ERROR', 'FATAL'];
  for (let i = 0; i < o.count; i++) {
    let body = `log line ${i} \u2713`;
    if (i % 5 === 3) body = { msg: `structured ${i}`, n: i, nested: { ok: true, list: [1, 'two'] } };
    if (i % 7 === 5) body = i * 1.5 + 0.25;
    let ctx = api.ROOT_CONTEXT;
    if (i % 2 === 1) {
      const tid = (i + 1).toString(16).padStart(32, '0');
      const sid = (i + 1).toString(16).padStart(16, 'a');
      ctx = api.trace.setSpanContext(api.ROOT_CONTEXT, { traceId: tid, spanId: sid, traceFlags: 1 });
    }
    const attributes = attrsFor(i);
    loggers[i % 2].emit({
      timestamp: hr(base, 500000000 + i), observedTimestamp: hr(base, 600000000 + i),
      severityNumber: sev[i % 5], severityText: sevText[i % 5], body, attributes, context: ctx,
    });
    summary.items.push({ seq: i, severityText: sevText[i % 5], attributes });
  }
  await settle('forceFlush', provider.forceFlush());
  await settle('shutdown', provider.shutdown());
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  Object.assign(summary, { signal: o.signal, protocol: o.protocol, encoding: o.encoding,
                           gzip: o.gzip, endpoint: o.endpoint, count: o.count, batch_size: o.batchSize });
  api.diag.setLogger({
    error: (m, ...a) => summary.diag.push(`error: ${m} ${a.map(String).join(' ')}`),
    warn: (m, ...a) => summary.diag.push(`warn: ${m} ${a.map(String).join(' ')}`),
    info: () => {}, debug: () => {}, verbose: () => {},
  }, api.DiagLogLevel.WARN);

  let inner;
  if (o.protocol === 'grpc') {
    // url is host:port for gRPC; http:// selects plaintext h2c (insecure credentials).
    const Exporter = EXPORTERS[o.signal].grpc();
    inner = new Exporter({
      url: o.endpoint, compression: o.gzip ? 'gzip' : 'none',
      timeoutMillis: o.timeoutMs, metadata: grpcMetadata(o.signal, o.headers),
    });
  } else {
    const Exporter = EXPORTERS[o.signal][o.encoding]();
    const urlPath = { traces: '/v1/traces', metrics: '/v1/metrics', logs: '/v1/logs' }[o.signal];
    inner = new Exporter({
      url: o.endpoint + urlPath, compression: o.gzip ? 'gzip' : 'none',
      timeoutMillis: o.timeoutMs, headers: o.headers,
    });
  }
  const exporter = recordingExporter(inner, o.signal);
  const resAttrs = { 'service.name': 'otlp-it-js', 'service.version': '1.2.3',
                     'host.name': 'it-host', 'deployment.environment': 'test', ...o.resource };
  summary.resource = resAttrs;
  const resource = resourceFromAttributes(resAttrs);

  const fn = { traces: sendTraces, metrics: sendMetrics, logs: sendLogs }[o.signal];
  await fn(o, exporter, resource);
  await drain(o.timeoutMs * 2);

  const exported = summary.exports.reduce((n, e) => n + (e.ok ? e.items : 0), 0);
  const failed = summary.exports.filter((e) => !e.ok);
  summary.exported_items = exported;
  summary.ok = failed.length === 0 && exported === o.count;
  if (!summary.ok) {
    summary.error = failed.length ? `${failed.length} export(s) failed: ${failed.map((e) => e.error).join('; ')}`
                                  : `exported ${exported} items, expected ${o.count}`;
  }
  return o;
}

async function drain(ms) {
  const t = new Promise((r) => setTimeout(r, ms).unref());
  await Promise.race([Promise.all([...pending]), t]);
}

function finish(o, err) {
  if (err) {
    summary.ok = false;
    summary.error = String(err && err.stack || err);
  }
  const text = JSON.stringify(summary, null, 1);
  if (o && o.out) fs.writeFileSync(o.out, text);
  if (!summary.ok) process.stderr.write(`send.js: ${summary.error}\n`);
  process.stdout.write(JSON.stringify({ ok: summary.ok, exports: summary.exports.length,
                                        exported_items: summary.exported_items }) + '\n');
  process.exitCode = summary.ok ? 0 : 1;
}

let opts = null;
try {
  opts = parseArgs(process.argv.slice(2));
} catch (e) {
  usage(String(e));
}
main().then(() => finish(opts, null), (e) => finish(opts, e));
