#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
// An independent Kafka client (kafkajs, no librdkafka) for the Kafka exporter
// tests: reads topics from the beginning in a fresh consumer group and writes
// one JSON line per message, {topic, partition, offset, key, value} with key
// and value in base64 (key null when the message has none), in the order
// each partition holds them.
//
//   node consume.js --brokers H:P,H:P --topic T [--topic T2] [--out FILE]
//                   [--min-messages N] [--idle-ms MS] [--timeout-ms MS]
//
// It stops once it has at least N messages (default 0) and nothing new came
// for --idle-ms (default 2000), or at --timeout-ms (default 60000).
// Exit status: 0; 1 when the timeout passed before N messages; 2 on bad usage.
'use strict';

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';
const fs = require('fs');
const { Kafka, logLevel } = require('kafkajs');

function usage(msg) {
  process.stderr.write(`consume.js: ${msg}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const o = { brokers: null, topics: [], out: null, min: 0, idleMs: 2000, timeoutMs: 60000 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    switch (a) {
      case '--brokers': o.brokers = val().split(','); break;
      case '--topic': o.topics.push(val()); break;
      case '--out': o.out = val(); break;
      case '--min-messages': o.min = parseInt(val(), 10); break;
      case '--idle-ms': o.idleMs = parseInt(val(), 10); break;
      case '--timeout-ms': o.timeoutMs = parseInt(val(), 10); break;
      default: usage(`unknown argument ${a}`);
    }
  }
  if (!o.brokers || o.topics.length === 0) usage('--brokers and --topic are required');
  return o;
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const kafka = new Kafka({ clientId: 'otlp-it-consumer', brokers: o.brokers,
                            logLevel: logLevel.ERROR, retry: { retries: 10 } });
  const consumer = kafka.consumer({ groupId: `otlp-it-${process.pid}-${Date.now()}`,
                                    sessionTimeout: 10000, heartbeatInterval: 1000 });
  const lines = [];
  let last = Date.now();
  await consumer.connect();
  for (const t of o.topics) await consumer.subscribe({ topic: t, fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ topic, partition, message }) => {
      lines.push(JSON.stringify({
        topic, partition, offset: message.offset,
        key: message.key === null ? null : message.key.toString('base64'),
        value: message.value === null ? '' : message.value.toString('base64'),
      }));
      last = Date.now();
    },
  });
  const start = Date.now();
  let rc = 0;
  for (;;) {
    await new Promise((r) => setTimeout(r, 100));
    const now = Date.now();
    if (lines.length >= o.min && now - last >= o.idleMs) break;
    if (now - start >= o.timeoutMs) {
      rc = lines.length >= o.min ? 0 : 1;
      break;
    }
  }
  await consumer.disconnect();
  const text = lines.join('\n') + (lines.length ? '\n' : '');
  if (o.out) fs.writeFileSync(o.out, text);
  else process.stdout.write(text);
  process.stderr.write(`consume.js: ${lines.length} messages\n`);
  return rc;
}

main().then((rc) => process.exit(rc), (e) => {
  process.stderr.write(`consume.js: ${e.stack || e}\n`);
  process.exit(1);
});
