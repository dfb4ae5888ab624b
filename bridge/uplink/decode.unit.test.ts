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
