import fc from 'fast-check';
import {
  check,
  deepFreeze,
  expectKnown,
  hostileJson,
  hostileTopic,
  prototypeKeys,
  rejected,
  replaceSomewhere,
  replacement,
  timeoutFor,
  uuid7,
  validSchemaObserve,
} from '../../tests/support/fuzz';
import {
  MAX_JSON_DEPTH,
  MAX_PAYLOAD_BYTES,
  UPLINK_TOPICS,
  isUuidV7,
  isValidSourceTable,
  parseJsonPayload,
  validateControlAck,
  validateSchemaObserve,
} from './contracts';
import { parseUplinkTopic } from './uplink';

/**
 * Every uplink decoder against generated hostile input: it never throws, answers either a valid
 * value or a rejection with a SPEC code, never writes into its input, never pollutes prototypes,
 * and for one thing wrong in a valid payload names exactly that thing. Here the JSON layer, the
 * small messages (control ACKs, schema observations) and the topics; row and telemetry batches in
 * uplink-rows.fuzz.unit.test.ts and uplink-telemetry.fuzz.unit.test.ts.
 */

const PROTO = prototypeKeys();
afterEach(() => expect(prototypeKeys()).toEqual(PROTO));

/** An independent model of what parseJsonPayload refuses after JSON.parse. */
function modelProblem(v: unknown, depth = 1): string | undefined {
  if (typeof v === 'number' && !Number.isFinite(v)) return 'invalid_number_encoding';
  if (typeof v !== 'object' || v === null) return undefined;
  if (depth > MAX_JSON_DEPTH) return 'invalid_payload';
  for (const [k, x] of Object.entries(v)) {
    if (k === '__proto__') return 'invalid_payload';
    const p = modelProblem(x, depth + 1);
    if (p) return p;
  }
  return undefined;
}

describe('JSON layer (parseJsonPayload)', () => {
  it(
    'takes any bytes without throwing, and refuses with a JSON code',
    () => {
      check(fc.uint8Array({ maxLength: 512 }), 0.5, (b) => {
        const r = parseJsonPayload(b);
        if (!r.ok)
          expect(['invalid_json', 'invalid_payload', 'invalid_number_encoding']).toContain(r.rejection.code);
      });
    },
    timeoutFor(0.5),
  );

  it(
    'refuses exactly the __proto__ keys, non-finite numbers and too deep nesting of any JSON text',
    () => {
      const text = fc.oneof(
        fc.json({ maxDepth: 5 }),
        fc.json({ maxDepth: 3 }).map((j) => `{"__proto__":${j}}`),
        fc.json({ maxDepth: 3 }).map((j) => `[${j},{"a":{"__proto__":1}}]`),
        fc.json({ maxDepth: 3 }).map((j) => `{"v":${j},"n":1e999}`),
        fc.integer({ min: 1, max: 80 }).map((n) => '['.repeat(n) + ']'.repeat(n)),
        fc.integer({ min: 1, max: 80 }).map((n) => '{"a":'.repeat(n) + '1' + '}'.repeat(n)),
      );
      check(text, 0.5, (t) => {
        const r = parseJsonPayload(t);
        const expected = modelProblem(JSON.parse(t));
        expect(rejected(r)).toBe(expected);
      });
    },
    timeoutFor(0.5),
  );

  it(
    'refuses a payload one byte over 512 KiB and takes one at the limit',
    () => {
      const filler = fc.constantFrom('a', 'é', '日', '🚀');
      check(fc.tuple(filler, fc.boolean()), Math.min(0.1, 200 / 100_000), ([ch, over]) => {
        const unit = Buffer.byteLength(ch);
        const n = Math.floor((MAX_PAYLOAD_BYTES - 2) / unit);
        const pad = MAX_PAYLOAD_BYTES - 2 - n * unit; // fill to the exact limit with ASCII
        const s = `"${ch.repeat(n)}${'a'.repeat(pad + (over ? 1 : 0))}"`;
        expect(Buffer.byteLength(s)).toBe(MAX_PAYLOAD_BYTES + (over ? 1 : 0));
        expect(rejected(parseJsonPayload(s))).toBe(over ? 'payload_too_large' : undefined);
        expect(rejected(parseJsonPayload(Buffer.from(s)))).toBe(over ? 'payload_too_large' : undefined);
      });
    },
    timeoutFor(0.1),
  );
});

describe('control ACKs and schema observations', () => {
  it(
    'ACK: a UUIDv7 control_id is taken, anything else refused with a code',
    () => {
      const ack = fc.oneof(
        uuid7.map((id) => ({ value: { format_version: 1, control_id: id }, ok: true })),
        fc.tuple(uuid7, replacement).map(([id, rep]) => ({
          value: replaceSomewhere({ format_version: 1, control_id: id }, rep.path, rep.value, rep.remove),
          ok: undefined,
        })),
        hostileJson.map((v) => ({ value: v, ok: undefined })),
      );
      check(ack, 1, ({ value, ok }) => {
        const r = validateControlAck(deepFreeze(value));
        expectKnown(r);
        if (ok) expect(r.ok).toBe(true);
        if (r.ok) expect(isUuidV7(r.value.control_id)).toBe(true);
      });
    },
    timeoutFor(1),
  );

  it(
    'schema observation: valid ones taken, any field replaced or removed refused with a code or still valid',
    () => {
      const observed = validSchemaObserve;
      check(fc.tuple(observed, fc.option(replacement, { nil: undefined })), 1, ([o, rep]) => {
        const input = deepFreeze(rep ? replaceSomewhere(o, rep.path, rep.value, rep.remove) : o);
        const r = validateSchemaObserve(input);
        expectKnown(r);
        if (!rep) expect(r.ok).toBe(true);
        if (r.ok)
          expect(isValidSourceTable(r.value.source_table) && /^[0-9a-f]{64}$/.test(r.value.schema_hash)).toBe(
            true,
          );
      });
    },
    timeoutFor(1),
  );
});

describe('uplink topics', () => {
  it(
    'take a device only from the first two levels, and never a wildcard, control character or control topic',
    () => {
      const kinds = new Map(Object.entries(UPLINK_TOPICS).map(([k, v]) => [k, v]));
      check(hostileTopic, 1, (topic) => {
        const r = parseUplinkTopic(topic);
        if (!r.ok) {
          expect(r.rejection.code).toBe('invalid_topic');
          return;
        }
        const { topic_slug, device_name, kind } = r.value;
        // The identity is exactly what the topic says: rebuilt, it is the topic itself.
        expect(`${topic_slug}/${device_name}/${kinds.get(kind)}`).toBe(topic);
        for (const name of [topic_slug, device_name]) {
          // eslint-disable-next-line no-control-regex -- the point of the check
          expect(/[/+#\u0000-\u001f\u007f]/.test(name) || !name.isWellFormed()).toBe(false);
        }
        expect(device_name.length).toBeGreaterThan(0);
        expect(topic.endsWith('/sync/ingest/control') || topic.endsWith('/sync/ingest/receipt')).toBe(false);
      });
    },
    timeoutFor(1),
  );
});
