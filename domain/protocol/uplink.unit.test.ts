import { parseJsonPayload } from './contracts';
import { parseUplinkTopic, validateUplink } from './uplink';

const id = '0190a000-0000-7000-8000-000000000001';
const hash = '3591a22734304fa2d93aa1103dda6ca5670040e0627f591da004adc778866142';

// SPEC §2 row batch example, with the placeholders filled in.
const specRowBatch = {
  format_version: 1,
  capture_strategy: 'sqlite_row_batch_v1',
  batch_id: id,
  journal_epoch: id,
  source_table: 'device_state',
  schema_hash: hash,
  first_commit_seq: 101,
  last_commit_seq: 103,
  rows: [
    { commit_seq: 101, op: 'update', pk: { id: 1 }, row: { id: 1, mode: 'cooling' } },
    { commit_seq: 103, op: 'delete', pk: { id: 1 }, row: null },
  ],
};
const specTelemetry = {
  format_version: 1,
  capture_strategy: 'sqlite_telemetry_batch_v1',
  batch_id: id,
  batch_seq: 42,
  source_table: 'temps',
  schema_hash: hash,
  cursor_start_ts: '2026-04-28T09:00:00Z',
  cursor_end_ts: '2026-04-28T09:00:10Z',
  row_count: 1,
  rows: [{ ts: '2026-04-28T09:00:01Z', row_id: id, fields: { value_c: 22.1 } }],
};

const rows = (patch: Record<string, unknown>) => JSON.stringify({ ...specRowBatch, ...patch });
const tele = (patch: Record<string, unknown>) => JSON.stringify({ ...specTelemetry, ...patch });

describe('uplink validation', () => {
  it('accepts the SPEC example payloads as they stand', () => {
    expect(validateUplink('rows', JSON.stringify(specRowBatch)).ok).toBe(true);
    expect(validateUplink('telemetry', JSON.stringify(specTelemetry)).ok).toBe(true);
    expect(validateUplink('ack', JSON.stringify({ format_version: 1, control_id: id })).ok).toBe(true);
  });

  const cases: [string, 'rows' | 'telemetry' | 'ack', string][] = [
    ['invalid_json', 'rows', '{"format_version":1,'],
    ['invalid_json', 'rows', '{"a": NaN}'],
    ['envelope_unstripped_tenant_fields', 'rows', rows({ device_id: 'x' })],
    ['envelope_unstripped_tenant_fields', 'telemetry', tele({ org_id: 'x' })],
    ['invalid_format_version', 'rows', rows({ format_version: 0 })],
    ['invalid_format_version', 'rows', rows({ format_version: undefined })],
    ['unsupported_format_version', 'rows', rows({ format_version: 2 })],
    ['invalid_batch_id', 'rows', rows({ batch_id: '0190a000-0000-4000-8000-000000000001' })],
    ['invalid_journal_epoch', 'rows', rows({ journal_epoch: 'yesterday' })],
    [
      'batch_too_many_rows',
      'rows',
      rows({
        rows: Array.from({ length: 4097 }, (_, i) => ({
          commit_seq: i + 1,
          op: 'delete',
          pk: { id: i },
          row: null,
        })),
      }),
    ],
    ['payload_too_large', 'rows', rows({ pad: 'x'.repeat(600 * 1024) })],
    ['commit_seq_range_mismatch', 'rows', rows({ first_commit_seq: 100 })],
    ['invalid_schema_hash', 'rows', rows({ schema_hash: hash.toUpperCase() })],
    ['invalid_source_table', 'rows', rows({ source_table: 'sqlite_master' })],
    ['invalid_source_table', 'rows', rows({ source_table: '' })],
    ['row_count_mismatch', 'telemetry', tele({ row_count: 2 })],
    ['cursor_timestamp_mismatch', 'telemetry', tele({ cursor_end_ts: '2026-04-28T08:00:00Z' })],
    [
      'invalid_row_id',
      'telemetry',
      tele({ rows: [{ ts: '2026-04-28T09:00:01Z', row_id: 'r1', fields: {} }] }),
    ],
    [
      'invalid_number_encoding',
      'rows',
      rows({ rows: [{ commit_seq: 101, op: 'insert', pk: { id: 1 }, row: { v: '__INF__' } }] }).replace(
        '"__INF__"',
        '1e999',
      ),
    ],
    ['invalid_payload', 'rows', '{"__proto__": {"polluted": true}, "format_version": 1}'],
    [
      'invalid_payload',
      'rows',
      rows({ rows: [{ commit_seq: 101, op: 'upsert', pk: { id: 1 }, row: {} }], last_commit_seq: 101 }),
    ],
    ['invalid_payload', 'rows', '[]'],
    ['unknown_control_id', 'ack', JSON.stringify({ format_version: 1, control_id: 'nope' })],
  ];
  it.each(cases)('rejects with %s (%s)', (code, kind, body) => {
    const r = validateUplink(kind, body);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.rejection.code).toBe(code);
  });

  it('refuses 100k-deep nesting without blowing the stack', () => {
    const deep = '['.repeat(100_000) + ']'.repeat(100_000);
    const r = validateUplink('rows', deep);
    expect(r).toEqual({
      ok: false,
      rejection: { code: 'invalid_payload', message: 'payload is nested deeper than 32 levels' },
    });
  });
});

describe('uplink topics', () => {
  it.each([
    ['acme/gw-1/sync/rows/batch', 'acme', 'gw-1', 'rows'],
    ['/gw-1/sync/telemetry/batch', '', 'gw-1', 'telemetry'],
    ['acme/gw.1/sync/ingest/ack', 'acme', 'gw.1', 'ack'],
  ])('parses %s', (topic, slug, device, kind) => {
    expect(parseUplinkTopic(topic)).toEqual({
      ok: true,
      value: { topic_slug: slug, device_name: device, kind },
    });
  });
  it.each([
    'acme/gw-1/sync/ingest/control',
    'acme//sync/rows/batch',
    'a/b/c/sync/rows/batch',
    'acme/gw-1/sync/rows',
    'acme/g\u0000w/sync/rows/batch',
  ])('rejects %s', (topic) => {
    const r = parseUplinkTopic(topic);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.rejection.code).toBe('invalid_topic');
  });
});

describe('a payload with several problems', () => {
  // Found by the 100k-run fuzz: the walk used to visit siblings last first, so which code a
  // payload got depended on the walk, not on the text.
  it.each([
    ['{"v":{"__proto__":false},"n":1e999}', 'invalid_payload'],
    ['{"n":1e999,"v":{"__proto__":false}}', 'invalid_number_encoding'],
    ['[1e999,{"__proto__":1}]', 'invalid_number_encoding'],
    ['[{"__proto__":1},-1e999]', 'invalid_payload'],
  ])('%s is refused for its first problem in the text: %s', (text, code) => {
    const r = parseJsonPayload(text);
    expect(r.ok ? 'accepted' : r.rejection.code).toBe(code);
  });
});
