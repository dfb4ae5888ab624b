import fc from 'fast-check';
import {
  CODES,
  MAX_BATCH_ROWS,
  check,
  deepFreeze,
  hostileJson,
  hostileTopic,
  prototypeKeys,
  replaceSomewhere,
  replacement,
  tableName,
  timeoutFor,
  uuid7,
  validRowBatch,
  validSchemaObserve,
  validTelemetryBatch,
} from '../../tests/support/fuzz';
import {
  type Validated,
  MAX_JSON_DEPTH,
  MAX_PAYLOAD_BYTES,
  UPLINK_TOPICS,
  isUuidV7,
  isValidSourceTable,
  parseJsonPayload,
  validateControlAck,
  validateRowBatch,
  validateSchemaObserve,
  validateTelemetryBatch,
} from './contracts';
import { parseUplinkTopic, validateUplink } from './uplink';

/**
 * Every uplink decoder against generated hostile input: it never throws, answers either a valid
 * value or a rejection with a SPEC code, never writes into its input, never pollutes prototypes,
 * and for one thing wrong in a valid payload names exactly that thing.
 */

const PROTO = prototypeKeys();
afterEach(() => expect(prototypeKeys()).toEqual(PROTO));

const rejected = (r: Validated<unknown>): string | undefined => (r.ok ? undefined : r.rejection.code);
const expectCode = (r: Validated<unknown>, code: string) => expect([code, rejected(r)]).toEqual([code, code]);
const expectKnown = (r: Validated<unknown>) => {
  if (!r.ok) expect(CODES.has(r.rejection.code)).toBe(true);
};
const bytes = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
const roundTrip = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

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

describe('row batches', () => {
  it(
    'accept every valid batch as it was sent',
    () => {
      check(validRowBatch, 0.25, (b) => {
        const r = validateUplink('rows', bytes(b));
        expect(r).toEqual({ ok: true, value: roundTrip(b) });
      });
    },
    timeoutFor(0.25),
  );

  const badId = fc
    .oneof(fc.string({ maxLength: 40 }), fc.uuid({ version: 4 }), fc.integer(), fc.constant(null))
    .filter((x) => !isUuidV7(x));
  const badTable = fc
    .oneof(
      fc.constantFrom(
        '',
        'sqlite_master',
        '__sluice_journal',
        'SQLITE_x',
        'a\u0000b',
        'line\nbreak',
        '\ud800',
        'x'.repeat(256),
      ),
      fc.integer(),
      fc.constant(null),
    )
    .filter((x) => !isValidSourceTable(x));
  const badHash = fc
    .oneof(
      fc.string({ maxLength: 70 }),
      fc.constant('A'.repeat(64)),
      fc.constant('a'.repeat(63)),
      fc.integer(),
    )
    .filter((x) => typeof x !== 'string' || !/^[0-9a-f]{64}$/.test(x));
  type Mutant = { input: unknown; code: string };
  const mutants: fc.Arbitrary<Mutant> = fc.oneof(
    fc
      .tuple(validRowBatch, fc.constantFrom('device_id', 'org_id', 'project_id', 'fleet_id'), hostileJson)
      .map(([b, f, v]) => ({ input: { ...b, [f]: v }, code: 'envelope_unstripped_tenant_fields' })),
    fc
      .tuple(validRowBatch, fc.constantFrom(0, null, undefined))
      .map(([b, v]) => ({ input: { ...b, format_version: v }, code: 'invalid_format_version' })),
    fc
      .tuple(
        validRowBatch,
        fc.oneof(fc.integer({ min: -5, max: -1 }), fc.double({ min: 0.1, max: 0.9 }), fc.string()),
      )
      .map(([b, v]) => ({ input: { ...b, format_version: v }, code: 'invalid_format_version' })),
    fc
      .tuple(validRowBatch, fc.integer({ min: 2, max: 1e6 }))
      .map(([b, v]) => ({ input: { ...b, format_version: v }, code: 'unsupported_format_version' })),
    fc
      .tuple(validRowBatch, badId)
      .map(([b, v]) => ({ input: { ...b, batch_id: v }, code: 'invalid_batch_id' })),
    fc
      .tuple(validRowBatch, badId)
      .map(([b, v]) => ({ input: { ...b, journal_epoch: v }, code: 'invalid_journal_epoch' })),
    fc
      .tuple(validRowBatch, badTable)
      .map(([b, v]) => ({ input: { ...b, source_table: v }, code: 'invalid_source_table' })),
    fc
      .tuple(validRowBatch, badHash)
      .map(([b, v]) => ({ input: { ...b, schema_hash: v }, code: 'invalid_schema_hash' })),
    fc.tuple(validRowBatch, fc.integer({ min: 1, max: 5 })).map(([b, d]) => ({
      input: {
        ...b,
        last_commit_seq:
          b.last_commit_seq + d <= Number.MAX_SAFE_INTEGER ? b.last_commit_seq + d : b.last_commit_seq - d,
      },
      code: 'commit_seq_range_mismatch',
    })),
    validRowBatch.map((b) => ({
      input: { ...b, rows: [...b.rows, b.rows[0]] },
      code: 'commit_seq_range_mismatch',
    })),
    validRowBatch.map((b) => ({
      input: { ...b, rows: b.rows.map((r, i) => (i === 0 ? { ...r, op: 'delete', row: { x: 1 } } : r)) },
      code: 'invalid_payload',
    })),
    validRowBatch.map((b) => ({
      input: { ...b, rows: b.rows.map((r, i) => (i === 0 ? { ...r, op: 'upsert' } : r)) },
      code: 'invalid_payload',
    })),
    validRowBatch.map((b) => ({ input: { ...b, rows: [] }, code: 'invalid_payload' })),
    fc.tuple(validRowBatch, fc.constantFrom(0, -1, 1.5, 2 ** 53)).map(([b, s]) => ({
      input: { ...b, rows: b.rows.map((r, i) => (i === 0 ? { ...r, commit_seq: s } : r)) },
      code: 'invalid_payload',
    })),
    fc
      .tuple(validRowBatch, tableName)
      .filter(([b, t]) => t !== b.source_table)
      .map(([b, t]) => ({
        input: {
          ...b,
          schema_columns: {
            table_name: t,
            columns: [{ name: 'id', decl_type_affinity: 'INTEGER', pk_ordinal: 1, not_null: true }],
          },
        },
        code: 'invalid_payload',
      })),
  );

  it(
    'name the one thing wrong in an otherwise valid batch',
    () => {
      check(fc.tuple(mutants, fc.boolean()), 0.35, ([m, viaBytes]) => {
        // Half through the bytes path (undefined fields vanish in JSON, as they would on the wire).
        const r = viaBytes
          ? validateUplink('rows', JSON.stringify(m.input))
          : validateRowBatch(deepFreeze(m.input));
        expectCode(r, m.code);
      });
    },
    timeoutFor(0.35),
  );

  it(
    'survive any field replaced or removed, and what they accept is still a valid batch',
    () => {
      check(fc.tuple(validRowBatch, replacement), 0.38, ([b, rep]) => {
        const input = deepFreeze(replaceSomewhere(roundTrip(b), rep.path, rep.value, rep.remove));
        const r = validateRowBatch(input);
        expectKnown(r);
        if (r.ok) {
          const v = r.value;
          expect(
            isUuidV7(v.batch_id) && isUuidV7(v.journal_epoch) && isValidSourceTable(v.source_table),
          ).toBe(true);
          expect(v.rows.length).toBeLessThanOrEqual(MAX_BATCH_ROWS);
          expect(Math.min(...v.rows.map((x) => x.commit_seq))).toBe(v.first_commit_seq);
          expect(Math.max(...v.rows.map((x) => x.commit_seq))).toBe(v.last_commit_seq);
          for (const row of v.rows)
            expect(row.op === 'delete' ? row.row === null : row.row !== null).toBe(true);
        }
      });
    },
    timeoutFor(0.38),
  );

  it('refuses more than 4096 rows', () => {
    const b = fc.sample(validRowBatch, { numRuns: 1, seed: 7 })[0]!;
    const rows = Array.from({ length: MAX_BATCH_ROWS + 1 }, (_, i) => ({
      commit_seq: i + 1,
      op: 'delete',
      pk: { id: i },
      row: null,
    }));
    const over = { ...b, rows, first_commit_seq: 1, last_commit_seq: MAX_BATCH_ROWS + 1 };
    expectCode(validateRowBatch(over), 'batch_too_many_rows');
    const at = { ...over, rows: rows.slice(0, MAX_BATCH_ROWS), last_commit_seq: MAX_BATCH_ROWS };
    expect(validateRowBatch(at).ok).toBe(true);
  });

  it(
    'survive arbitrary JSON of any shape',
    () => {
      check(hostileJson, 0.02, (v) => expectKnown(validateUplink('rows', JSON.stringify(v) ?? 'null')));
    },
    timeoutFor(0.02),
  );
});

describe('telemetry batches', () => {
  it(
    'accept every valid batch as it was sent',
    () => {
      check(validTelemetryBatch, 0.3, (b) => {
        expect(validateUplink('telemetry', bytes(b))).toEqual({ ok: true, value: roundTrip(b) });
      });
    },
    timeoutFor(0.3),
  );

  const mutants = fc.oneof(
    fc
      .tuple(validTelemetryBatch, fc.integer({ min: 1, max: 3 }))
      .map(([b, d]) => ({ input: { ...b, row_count: b.row_count + d }, code: 'row_count_mismatch' })),
    validTelemetryBatch.map((b) => ({
      input: { ...b, cursor_start_ts: 'yesterday' },
      code: 'cursor_timestamp_mismatch',
    })),
    validTelemetryBatch
      .filter((b) => b.cursor_start_ts !== b.cursor_end_ts)
      .map((b) => ({
        input: { ...b, cursor_start_ts: b.cursor_end_ts, cursor_end_ts: b.cursor_start_ts },
        code: 'cursor_timestamp_mismatch',
      })),
    validTelemetryBatch
      .filter((b) => b.rows.length > 0)
      .map((b) => ({
        input: {
          ...b,
          rows: [
            { ...b.rows[0]!, ts: new Date(Date.parse(b.cursor_end_ts) + 1000).toISOString() },
            ...b.rows.slice(1),
          ],
        },
        code: 'cursor_timestamp_mismatch',
      })),
    fc
      .tuple(
        validTelemetryBatch.filter((b) => b.rows.length > 0),
        fc.oneof(fc.string(), fc.uuid({ version: 4 })).filter((x) => !isUuidV7(x)),
      )
      .map(([b, id]) => ({
        input: { ...b, rows: [{ ...b.rows[0]!, row_id: id }, ...b.rows.slice(1)] },
        code: 'invalid_row_id',
      })),
    fc
      .tuple(validTelemetryBatch, fc.constantFrom(0, -1, 1.5))
      .map(([b, s]) => ({ input: { ...b, batch_seq: s }, code: 'invalid_payload' })),
    fc
      .tuple(validTelemetryBatch, fc.constantFrom('project_id', 'device_id'))
      .map(([b, f]) => ({ input: { ...b, [f]: 'x' }, code: 'envelope_unstripped_tenant_fields' })),
    validTelemetryBatch.map((b) => ({
      input: { ...b, capture_strategy: 'sqlite_row_batch_v1' },
      code: 'invalid_payload',
    })),
  );

  it(
    'name the one thing wrong in an otherwise valid batch',
    () => {
      check(mutants, 0.3, (m) => expectCode(validateTelemetryBatch(deepFreeze(m.input)), m.code));
    },
    timeoutFor(0.3),
  );

  it(
    'survive any field replaced or removed',
    () => {
      check(fc.tuple(validTelemetryBatch, replacement), 0.4, ([b, rep]) => {
        const input = deepFreeze(replaceSomewhere(roundTrip(b), rep.path, rep.value, rep.remove));
        const r = validateTelemetryBatch(input);
        expectKnown(r);
        if (r.ok) expect(r.value.row_count).toBe(r.value.rows.length);
      });
    },
    timeoutFor(0.4),
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
