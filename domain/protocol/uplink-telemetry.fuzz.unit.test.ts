/** The telemetry batch decoder against generated hostile input (see uplink.fuzz.unit.test.ts). */
import fc from 'fast-check';
import {
  bytes,
  check,
  deepFreeze,
  expectCode,
  expectKnown,
  prototypeKeys,
  replaceSomewhere,
  replacement,
  roundTrip,
  timeoutFor,
  validTelemetryBatch,
} from '../../tests/support/fuzz';
import { isUuidV7, validateTelemetryBatch } from './contracts';
import { validateUplink } from './uplink';

const PROTO = prototypeKeys();
afterEach(() => expect(prototypeKeys()).toEqual(PROTO));

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
