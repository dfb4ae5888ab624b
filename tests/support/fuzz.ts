import fc from 'fast-check';
import {
  type RowBatch,
  type TelemetryBatch,
  type Validated,
  type WireValue,
  MAX_BATCH_ROWS,
  REJECTION_CODES,
  UPLINK_TOPICS,
  isValidSourceTable,
} from '../../domain/protocol/contracts';
import { schemaHash } from '../../domain/protocol/fingerprint';

/**
 * Property-based fuzzing of the uplink decoders (`*.fuzz.unit.test.ts`). `SLUICE_FUZZ_RUNS` is
 * the number of generated payloads per decoder, shared out among its properties; `make test` runs
 * the small default, `make faults` 100,000. `SLUICE_FUZZ_SEED` replays a failure fast-check
 * reported.
 */
export const FUZZ_RUNS = Math.max(1, Number(process.env.SLUICE_FUZZ_RUNS ?? 200) || 200);
const SEED = process.env.SLUICE_FUZZ_SEED ? Number(process.env.SLUICE_FUZZ_SEED) : undefined;

/** This property's share of the decoder's runs. */
export const runsFor = (share: number): number => Math.max(1, Math.ceil(FUZZ_RUNS * share));

/**
 * A jest timeout that grows with the runs: a payload costs well under 1 ms of CPU, the margin is
 * for a shared, loaded machine (the timeout only guards against a hang).
 */
export const timeoutFor = (share: number): number => Math.max(60_000, runsFor(share) * 10);

export function check<T>(arb: fc.Arbitrary<T>, share: number, predicate: (v: T) => void): void {
  fc.assert(
    fc.property(arb, (v) => {
      predicate(v);
    }),
    { numRuns: runsFor(share), ...(SEED !== undefined ? { seed: SEED } : {}) },
  );
}

export const CODES: ReadonlySet<string> = new Set(REJECTION_CODES);

/** Freeze every object of a value: a decoder that writes into its input throws (strict mode). */
export function deepFreeze<T>(v: T): T {
  const stack: unknown[] = [v];
  while (stack.length) {
    const x = stack.pop();
    if (typeof x === 'object' && x !== null && !Object.isFrozen(x)) {
      Object.freeze(x);
      for (const k of Object.keys(x)) stack.push((x as Record<string, unknown>)[k]);
    }
  }
  return v;
}

/** Prototype pollution shows as a new key on Object.prototype. */
export const prototypeKeys = (): string[] => Object.getOwnPropertyNames(Object.prototype).sort();

// ---- verdicts ----

/** The rejection code of a decoder's answer; undefined when it accepted. */
export const rejected = (r: Validated<unknown>): string | undefined => (r.ok ? undefined : r.rejection.code);
/** Refused with exactly this code (the code is on both sides so a failure shows which one). */
export const expectCode = (r: Validated<unknown>, code: string) =>
  expect([code, rejected(r)]).toEqual([code, code]);
/** Accepted, or refused with a code the SPEC lists. */
export const expectKnown = (r: Validated<unknown>) => {
  if (!r.ok) expect(CODES.has(r.rejection.code)).toBe(true);
};
export const bytes = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
/** A value as it arrives after JSON on the wire (undefined fields gone). */
export const roundTrip = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

// ---- arbitraries ----

export const uuid7 = fc.uuid({ version: 7 });
const HOSTILE_NAMES = [
  'device_state',
  'a"b',
  '"; DROP TABLE edge_table_lineages; --',
  "'); DELETE FROM x; --",
  'Ünïcödé 日本',
  'semi;colon',
  '🚀 rockets',
  'tab le',
  'x'.repeat(255),
  'device_id',
  '$SYS',
  '../etc/passwd',
  'edge.lineage.>',
  '*',
  '>',
  'a.b',
];
export const tableName = fc
  .oneof(fc.constantFrom(...HOSTILE_NAMES), fc.string({ unit: 'grapheme', minLength: 1, maxLength: 24 }))
  .filter(isValidSourceTable);

const columnName = fc
  .oneof(
    fc.constantFrom('id', 'mode', 'a"b', 'select', 'constructor', 'toString', '日本'),
    fc.string({ minLength: 1, maxLength: 10 }),
  )
  .filter((k) => k !== '__proto__');

export const wireValue: fc.Arbitrary<WireValue> = fc.oneof(
  fc.constant(null),
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }).map((d) => (Object.is(d, -0) ? 0 : d)),
  fc.string({ unit: 'binary', maxLength: 16 }),
  fc.boolean(),
  fc.bigInt().map((b) => ({ $int: b.toString() })),
  fc.base64String({ maxLength: 16 }).map((s) => ({ $blob: s })),
);
const record = fc.dictionary(columnName, wireValue, { minKeys: 1, maxKeys: 4 });

const affinity = fc.constantFrom('INTEGER', 'TEXT', 'BLOB', 'REAL', 'NUMERIC') as fc.Arbitrary<
  'INTEGER' | 'TEXT' | 'BLOB' | 'REAL' | 'NUMERIC'
>;
const schemaColumns = (table: string) =>
  fc
    .uniqueArray(columnName, { minLength: 1, maxLength: 4 })
    .chain((names) =>
      fc.tuple(
        ...names.map((name, i) =>
          fc.record({
            name: fc.constant(name),
            decl_type_affinity: affinity,
            pk_ordinal: fc.constant(i === 0 ? 1 : 0),
            not_null: fc.boolean(),
          }),
        ),
      ),
    )
    .map((columns) => ({ table_name: table, columns }));

const seq = fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER });

const op = fc.constantFrom('insert', 'update', 'delete') as fc.Arbitrary<'insert' | 'update' | 'delete'>;
const DEFAULT_SCHEMA = (table: string) => ({
  table_name: table,
  columns: [{ name: 'id', decl_type_affinity: 'INTEGER' as const, pk_ordinal: 1, not_null: true }],
});

const DEFAULT_HASH = schemaHash(DEFAULT_SCHEMA('t'));

export const validRowBatch: fc.Arbitrary<RowBatch> = tableName.chain((table) =>
  fc
    .record({
      batch_id: uuid7,
      journal_epoch: uuid7,
      schema: fc.option(schemaColumns(table), { nil: undefined }),
      rows: fc.uniqueArray(fc.record({ commit_seq: seq, op, pk: record, row: record }), {
        selector: (r) => r.commit_seq,
        minLength: 1,
        maxLength: 6,
      }),
      lkcv: fc.option(fc.nat(), { nil: undefined }),
    })
    .map((g): RowBatch => {
      const seqs = g.rows.map((r) => r.commit_seq);
      return {
        format_version: 1,
        capture_strategy: 'sqlite_row_batch_v1',
        batch_id: g.batch_id,
        journal_epoch: g.journal_epoch,
        source_table: table,
        schema_hash: g.schema ? schemaHash(g.schema) : DEFAULT_HASH,
        ...(g.schema ? { schema_columns: g.schema } : {}),
        first_commit_seq: Math.min(...seqs),
        last_commit_seq: Math.max(...seqs),
        rows: g.rows.map((r, i) => ({
          ...r,
          row: r.op === 'delete' ? null : r.row,
          ...(g.lkcv !== undefined && i === 0 ? { lkcv: g.lkcv } : {}),
        })),
      };
    }),
);

/** A schema observation, as the agent sends it after a drift. */
export const validSchemaObserve = tableName.chain((table) =>
  schemaColumns(table).map((schema_columns) => ({
    format_version: 1 as const,
    source_table: table,
    schema_hash: schemaHash(schema_columns),
    schema_columns,
  })),
);

export const validTelemetryBatch: fc.Arbitrary<TelemetryBatch> = fc
  .record({
    batch_id: uuid7,
    batch_seq: seq,
    table: tableName,
    start: fc.integer({ min: 0, max: 4_000_000_000_000 }),
    span: fc.integer({ min: 0, max: 86_400_000 }),
    rows: fc.array(
      fc.record({
        at: fc.double({ min: 0, max: 1, noNaN: true }),
        fields: fc.dictionary(columnName, wireValue, { maxKeys: 3 }),
        row_id: fc.option(uuid7, { nil: undefined }),
      }),
      { maxLength: 5 },
    ),
  })
  .map((g): TelemetryBatch => {
    const iso = (ms: number) => new Date(ms).toISOString();
    return {
      format_version: 1,
      capture_strategy: 'sqlite_telemetry_batch_v1',
      batch_id: g.batch_id,
      batch_seq: g.batch_seq,
      source_table: g.table,
      schema_hash: 'a'.repeat(64),
      cursor_start_ts: iso(g.start),
      cursor_end_ts: iso(g.start + g.span),
      row_count: g.rows.length,
      rows: g.rows.map((r) => ({
        ts: iso(g.start + Math.floor(r.at * g.span)),
        fields: r.fields,
        ...(r.row_id !== undefined ? { row_id: r.row_id } : {}),
      })),
    };
  });

/** Any JSON value, including the shapes a hostile device would try. */
export const hostileJson: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(null, 0, -1, '', [], {}, 1e308, 'NaN', { $int: 'x' }, { $blob: 5 }),
  },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 30 }) },
);

/** A valid value with one field (anywhere, at any depth) replaced by arbitrary JSON or removed. */
export function replaceSomewhere(
  base: unknown,
  path: readonly number[],
  replacement: unknown,
  remove: boolean,
): unknown {
  if (typeof base !== 'object' || base === null || path.length === 0) return replacement;
  const keys = Object.keys(base);
  if (keys.length === 0) return replacement;
  const key = keys[path[0]! % keys.length]!;
  const copy: Record<string, unknown> = Array.isArray(base)
    ? ([...base] as unknown as Record<string, unknown>)
    : { ...(base as Record<string, unknown>) };
  if (remove && path.length === 1) {
    if (Array.isArray(copy)) (copy as unknown as unknown[]).splice(Number(key), 1);
    else delete copy[key];
    return copy;
  }
  copy[key] = replaceSomewhere((base as Record<string, unknown>)[key], path.slice(1), replacement, remove);
  return copy;
}
export const replacement = fc.record({
  path: fc.array(fc.nat(), { minLength: 1, maxLength: 5 }),
  value: hostileJson,
  remove: fc.boolean(),
});

/** Topic levels a device might try: wildcards, separators, unicode, other devices' roots. */
export const topicLevel = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      'acme',
      'gw-01',
      'gw-02',
      '',
      '+',
      '#',
      '.',
      'a.b',
      '$SYS',
      '$MQTT',
      'sync',
      'ingest',
      'rows',
      'batch',
      'control',
      'receipt',
      '\u0000',
      '\u007f',
      'tab\tx',
      'gw\u201001',
      '日本',
      '🚀',
      '\ud800',
      'x'.repeat(129),
    ),
  },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 8 }) },
);
const SUFFIXES = [
  ...Object.values(UPLINK_TOPICS),
  'sync/ingest/control',
  'sync/ingest/receipt',
  'sync/rows',
  'sync/rows/batch/x',
  'sync/+/batch',
  'sync/#',
  '',
];
export const hostileTopic: fc.Arbitrary<string> = fc.oneof(
  fc
    .tuple(topicLevel, topicLevel, fc.constantFrom(...SUFFIXES))
    .map(([a, b, s]) => `${a}/${b}${s ? `/${s}` : ''}`),
  fc.array(topicLevel, { maxLength: 7 }).map((ls) => ls.join('/')),
  fc.string({ unit: 'binary', maxLength: 60 }),
);

export { MAX_BATCH_ROWS };
