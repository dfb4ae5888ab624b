/** The row batch decoder against generated hostile input (see uplink.fuzz.unit.test.ts). */
import fc from 'fast-check';
import {
  MAX_BATCH_ROWS,
  bytes,
  check,
  deepFreeze,
  expectCode,
  expectKnown,
  hostileJson,
  prototypeKeys,
  replaceSomewhere,
  replacement,
  roundTrip,
  tableName,
  timeoutFor,
  validRowBatch,
} from '../../tests/support/fuzz';
import { isUuidV7, isValidSourceTable, validateRowBatch } from './contracts';
import { validateUplink } from './uplink';

const PROTO = prototypeKeys();
afterEach(() => expect(prototypeKeys()).toEqual(PROTO));

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
