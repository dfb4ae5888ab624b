import { validateUplink } from './uplink';

const ok = {
  format_version: 1,
  request_kind: 'url_request',
  request_id: '0190a000-0000-7000-8000-0000000000a1',
  upload_id: '0190a000-0000-7000-8000-0000000000d1',
  source_table: 'items',
  journal_epoch: '0190a000-0000-7000-8000-0000000000e1',
  schema_hash: 'a'.repeat(64),
  first_commit_seq: 1,
  last_commit_seq: 10,
  row_count: 10,
};
const code = (p: unknown) => {
  const r = validateUplink('request', JSON.stringify(p));
  return r.ok ? 'ok' : r.rejection.code;
};

describe('sync/ingest/request payloads', () => {
  it('takes a url_request and a finalize', () => {
    expect(code(ok)).toBe('ok');
    expect(code({ ...ok, request_kind: 'finalize' })).toBe('ok');
  });

  it.each([
    [{ ...ok, request_kind: 'download' }, 'invalid_payload'],
    [{ ...ok, upload_id: 'nope' }, 'invalid_batch_id'],
    [{ ...ok, request_id: undefined }, 'invalid_batch_id'],
    [{ ...ok, journal_epoch: 'x' }, 'invalid_journal_epoch'],
    [{ ...ok, source_table: '__sluice_journal' }, 'invalid_source_table'],
    [{ ...ok, schema_hash: 'A'.repeat(64) }, 'invalid_schema_hash'],
    [{ ...ok, row_count: 11 }, 'commit_seq_range_mismatch'],
    [{ ...ok, first_commit_seq: 11 }, 'commit_seq_range_mismatch'],
    [{ ...ok, row_count: 0 }, 'invalid_payload'],
    [{ ...ok, device_id: 'other' }, 'envelope_unstripped_tenant_fields'],
    [{ ...ok, format_version: 2 }, 'unsupported_format_version'],
    [
      {
        ...ok,
        schema_columns: {
          table_name: 'other',
          columns: [{ name: 'id', decl_type_affinity: 'INTEGER', pk_ordinal: 1, not_null: true }],
        },
      },
      'invalid_payload',
    ],
  ])('refuses %j with %s', (payload, expected) => {
    expect(code(payload)).toBe(expected);
  });
});
