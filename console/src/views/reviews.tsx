import { Age, Badge, ErrorNote, Loading, Mono, Table } from '../components/ui';
import { useResource } from '../hooks';
import { href, navigate } from '../router';
import { useSignedIn } from '../session';
import type { Page, Review } from '../types';

const STATUSES = ['queued', 'in_review', 'approved', 'rejected'];

export function ReviewsView({ query }: { query: URLSearchParams }) {
  const { client } = useSignedIn();
  const status = query.get('status') ?? '';
  const res = useResource(
    () => client.get<Page<Review>>('/edge/schema-reviews', { status, limit: 200 }),
    [status],
  );
  return (
    <section aria-labelledby="reviews-title">
      <header class="page-head">
        <h1 id="reviews-title">Schema reviews</h1>
        <p class="muted">A table's first schema, and every change to it, waits here for a person.</p>
      </header>
      <form class="filters" aria-label="Filters" onSubmit={(e) => e.preventDefault()}>
        <label>
          Status
          <select
            value={status}
            onChange={(e) => navigate(href('reviews', { status: e.currentTarget.value }))}
          >
            <option value="">any</option>
            {STATUSES.map((s) => (
              <option key={s} value={s}>
                {s.replace('_', ' ')}
              </option>
            ))}
          </select>
        </label>
      </form>
      <ErrorNote error={res.error} />
      {!res.data ? (
        <Loading />
      ) : (
        <Table<Review>
          label="Schema reviews"
          rows={res.data.items}
          rowKey={(r) => r.review_id}
          empty="No review matches."
          columns={[
            {
              header: 'Table',
              cell: (r) => (
                <a class="strong" href={href('reviews', r.review_id)}>
                  {r.source_table}
                </a>
              ),
            },
            { header: 'Status', cell: (r) => <Badge value={r.status} /> },
            { header: 'Classification', cell: (r) => r.classification.replace(/_/g, ' ') },
            { header: 'Version', numeric: true, cell: (r) => r.action_version },
            { header: 'Claimed by', cell: (r) => r.claimed_by ?? '—' },
            { header: 'Opened', cell: (r) => <Age at={r.created_at} /> },
            {
              header: 'Lineage',
              cell: (r) => (
                <a href={href('lineages', r.lineage_id)}>
                  <Mono title={r.lineage_id}>{r.lineage_id.slice(0, 8)}</Mono>
                </a>
              ),
            },
          ]}
        />
      )}
    </section>
  );
}
