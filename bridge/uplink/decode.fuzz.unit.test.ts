import fc from 'fast-check';
import {
  CODES,
  check,
  hostileJson,
  hostileTopic,
  prototypeKeys,
  replaceSomewhere,
  replacement,
  timeoutFor,
  validRowBatch,
  validTelemetryBatch,
} from '../../tests/support/fuzz';
import { UPLINK_TOPICS } from '../../domain/protocol/contracts';
import { partitionOf } from '../../infra/nats/partitions';
import { untoken } from '../../infra/nats/names';
import { decodeUplink } from './decode';

/**
 * The bridge's whole decision for one uplink (topic, then payload, then the subject and dedupe id
 * of the ingress append, and the receipt) on hostile input: never a throw, never a subject a
 * device name could steer, never an identity other than the topic's first two levels.
 */
const PROJECT = '0190a000-0000-7000-8000-0000000000aa';
const AT = '2026-01-01T00:00:00.000Z';
const PROTO = prototypeKeys();
afterEach(() => expect(prototypeKeys()).toEqual(PROTO));

const TOKEN = /^[A-Za-z0-9_-]+$/;

const payload: fc.Arbitrary<Uint8Array> = fc.oneof(
  validRowBatch.map((b) => Buffer.from(JSON.stringify(b))),
  validTelemetryBatch.map((b) => Buffer.from(JSON.stringify(b))),
  fc
    .tuple(validRowBatch, replacement)
    .map(([b, r]) => Buffer.from(JSON.stringify(replaceSomewhere(b, r.path, r.value, r.remove)) ?? '')),
  hostileJson.map((v) => Buffer.from(JSON.stringify(v) ?? '')),
  fc.uint8Array({ maxLength: 300 }),
);

const topic = fc.oneof(
  hostileTopic,
  fc
    .tuple(
      fc.constantFrom('acme', '', 'a.b', '日本'),
      fc.constantFrom('gw-01', 'gw.01', '*', '>', '$SYS', '🚀'),
      fc.constantFrom(...Object.values(UPLINK_TOPICS)),
    )
    .map(([a, b, s]) => `${a}/${b}/${s}`),
);

describe('bridge decoding of uplinks', () => {
  it(
    'appends only to a subject of the topic’s own device, and refuses the rest with a code',
    () => {
      check(fc.tuple(topic, payload), 1, ([t, p]) => {
        const before = Buffer.from(p);
        const d = decodeUplink(t, p, () => PROJECT, AT);
        expect(Buffer.from(p).equals(before)).toBe(true); // the payload is not touched
        const levels = t.split('/');
        if (d.ok) {
          const m = d.message;
          expect(m.device_key).toBe(`${levels[0]}/${levels[1]}`);
          expect(`${m.device_key}/${UPLINK_TOPICS[m.kind]}`).toBe(t);
          const tokens = d.subject.split('.');
          expect(tokens).toEqual(['edge', 'ingress', String(partitionOf(m.device_key)), m.kind, tokens[4]]);
          expect(tokens[4]).toMatch(TOKEN);
          expect(untoken(tokens[4]!)).toBe(m.device_key);
          expect(d.msgID.startsWith(`${m.device_key}:`)).toBe(true);
          expect(m.project_id).toBe(PROJECT);
          expect(JSON.parse(JSON.stringify(m))).toEqual(m); // encodes as it is
          for (const f of ['device_id', 'org_id', 'project_id', 'fleet_id'])
            expect(Object.hasOwn(m.payload as object, f)).toBe(false);
          const p = m.payload as Record<string, unknown>;
          const receipted =
            m.kind === 'rows' || m.kind === 'telemetry'
              ? p['batch_id']
              : m.kind !== 'request'
                ? undefined
                : p['request_kind'] === 'finalize'
                  ? p['upload_id']
                  : p['request_kind'] === 'verify_report'
                    ? p['verify_id']
                    : undefined;
          if (receipted !== undefined) {
            expect(d.receipt?.topic).toBe(`${m.device_key}/sync/ingest/receipt`);
            expect(d.receipt?.body.batch_id).toBe(receipted);
          } else expect(d.receipt).toBeUndefined();
        } else {
          expect(CODES.has(d.record.code)).toBe(true);
          const tokens = d.subject.split('.');
          expect(tokens.slice(0, 2)).toEqual(['edge', 'rejected']);
          expect(tokens).toHaveLength(3);
          expect(tokens[2]).toMatch(TOKEN);
          expect(d.record.payload_excerpt).toMatch(/^[\x20-\x7e]{0,256}$/);
          expect(d.record.topic).toBe(t);
          expect(JSON.parse(JSON.stringify(d.record))).toEqual(d.record);
        }
      });
    },
    timeoutFor(1),
  );
});
