import { Age, Badge, ErrorNote, Loading, Mono, Table } from '../components/ui';
import { count } from '../format';
import { useResource } from '../hooks';
import { useSignedIn } from '../session';
import type { CoalescedMirror, Page, RegistryEntry, RegistryReview } from '../types';

const scopeOf = (scope: string, id: string) => (
  <>
    {scope} <Mono title={id}>{id.slice(0, 8)}</Mono>
  </>
);

/**
 * Registry coalescing (docs/registry.md): one review per table schema for a whole project or
 * fleet, and the coalesced tables their devices' rows land in.
 */
export function RegistryView() {
  const { client } = useSignedIn();
  const res = useResource(async () => {
    const [reviews, entries, mirrors] = await Promise.all([
      client.get<Page<RegistryReview>>('/edge/registry-reviews', { limit: 200 }),
      client.get<Page<RegistryEntry>>('/edge/registry', { limit: 200 }),
      client.get<Page<CoalescedMirror>>('/edge/coalesced-mirrors', { limit: 200 }),
    ]);
    return { reviews: reviews.items, entries: entries.items, mirrors: mirrors.items };
  }, []);
  const d = res.data;
  return (
    <section aria-labelledby="registry-title">
      <header class="page-head">
        <h1 id="registry-title">Registry</h1>
        <p class="muted">
          With schema coalescing on, one review covers every device with the same table schema in the project
          or fleet, and their rows land in one coalesced table. Decide registry reviews with{' '}
          <Mono>sluice registry approve|reject|abandon</Mono>.
        </p>
      </header>
      <ErrorNote error={res.error} />
      {!d ? (
        <Loading />
      ) : (
        <>
          <section class="card" aria-labelledby="rr-title">
            <h2 id="rr-title">Registry reviews</h2>
            <Table<RegistryReview>
              label="Registry reviews"
              rows={d.reviews}
              rowKey={(r) => r.review_id}
              empty="No registry review: coalescing is off, or no table has shown a schema yet."
              columns={[
                { header: 'Table', cell: (r) => <span class="strong">{r.source_table}</span> },
                { header: 'Scope', cell: (r) => scopeOf(r.scope, r.scope_id) },
                { header: 'Status', cell: (r) => <Badge value={r.status} /> },
                { header: 'Version', numeric: true, cell: (r) => r.action_version },
                { header: 'Opened by', cell: (r) => r.opened_by_device },
                { header: 'Claimed by', cell: (r) => r.claimed_by ?? '—' },
                { header: 'Opened', cell: (r) => <Age at={r.created_at} /> },
                { header: 'Review', cell: (r) => <Mono title={r.review_id}>{r.review_id.slice(0, 8)}</Mono> },
              ]}
            />
          </section>
          <section class="card" aria-labelledby="re-title">
            <h2 id="re-title">Registry entries</h2>
            <Table<RegistryEntry>
              label="Registry entries"
              rows={d.entries}
              rowKey={(e) => e.registry_id}
              empty="No registry entry."
              columns={[
                { header: 'Table', cell: (e) => <span class="strong">{e.source_table}</span> },
                { header: 'Scope', cell: (e) => scopeOf(e.scope, e.scope_id) },
                { header: 'Status', cell: (e) => <Badge value={e.status} /> },
                { header: 'Enrolled', numeric: true, cell: (e) => e.enrolled_lineages },
                { header: 'Coalesced', numeric: true, cell: (e) => e.coalesced_lineages },
                {
                  header: 'Schema',
                  cell: (e) => <Mono title={e.schema_hash}>{e.schema_hash.slice(0, 12)}</Mono>,
                },
                { header: 'Updated', cell: (e) => <Age at={e.updated_at} /> },
              ]}
            />
          </section>
          <section class="card" aria-labelledby="cm-title">
            <h2 id="cm-title">Coalesced tables</h2>
            <Table<CoalescedMirror>
              label="Coalesced tables"
              rows={d.mirrors}
              rowKey={(m) => m.table_name}
              empty="No coalesced table yet."
              columns={[
                { header: 'Table', cell: (m) => <Mono>{m.table_name}</Mono> },
                { header: 'Source table', cell: (m) => m.source_table },
                { header: 'Scope', cell: (m) => scopeOf(m.scope, m.scope_id) },
                { header: 'Generation', numeric: true, cell: (m) => m.generation },
                { header: 'Lineages', numeric: true, cell: (m) => m.lineages },
                { header: 'Rows', numeric: true, cell: (m) => count(m.rows) },
                { header: 'Columns', cell: (m) => m.columns.map((c) => c.name).join(', ') },
              ]}
            />
          </section>
        </>
      )}
    </section>
  );
}
