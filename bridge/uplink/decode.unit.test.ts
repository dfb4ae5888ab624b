import { decodeUplink } from './decode';

/**
 * A topic the cloud cannot map still has a sender an operator can find: its rejection is recorded
 * under the project its first level maps to (the default project for a slug nobody mapped), so
 * that project's `GET /rejections` lists it.
 */
const ACME = '0190a000-0000-7000-8000-0000000000a1';
const DEFAULT = '0190a000-0000-7000-8000-000000000001';
const projectOf = (slug: string) => (slug === 'acme' ? ACME : DEFAULT);
const at = '2026-12-04T00:00:00.000Z';

it.each([
  [`acme/${'d'.repeat(129)}/sync/rows/batch`, ACME],
  ['acme/gw-01/sync/rows/batch/extra', ACME],
  ['acme/gw+01/sync/rows/batch', ACME],
  [`${'s'.repeat(129)}/gw-01/sync/rows/batch`, DEFAULT],
  ['/#/sync/rows/batch', DEFAULT],
  ['nowhere', DEFAULT],
])('records the unmappable topic %j as invalid_topic in a project', (topic, project) => {
  const d = decodeUplink(topic, Buffer.from('{}'), projectOf, at);
  expect(d.ok).toBe(false);
  if (d.ok) return;
  expect(d.record).toMatchObject({ code: 'invalid_topic', project_id: project, topic, kind: null });
});

it("receipts a verify report under its verify_id, at the report's position", () => {
  const report = {
    format_version: 1,
    request_kind: 'verify_report',
    request_id: '0190a000-0000-7000-8000-0000000000c1',
    verify_id: '0190a000-0000-7000-8000-0000000000d1',
    source_table: 'meters',
    journal_epoch: '0190a000-0000-7000-8000-0000000000e1',
    through_commit_seq: 42,
    schema_hash: 'a'.repeat(64),
    columns: ['id'],
    digests: [{ bucket: 3, rows: 1, digest: 'b'.repeat(64) }],
  };
  const d = decodeUplink(
    'acme/gw-01/sync/ingest/request',
    Buffer.from(JSON.stringify(report)),
    projectOf,
    at,
  );
  expect(d.ok).toBe(true);
  if (!d.ok) return;
  expect(d.receipt).toEqual({
    topic: 'acme/gw-01/sync/ingest/receipt',
    body: {
      format_version: 1,
      batch_id: report.verify_id,
      source_table: 'meters',
      journal_epoch: report.journal_epoch,
      last_commit_seq: 42,
    },
  });
});
