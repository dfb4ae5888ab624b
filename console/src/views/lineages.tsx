import { useState } from 'preact/hooks';
import { Age, Badge, ErrorNote, Loading, Mono, Pager, Stat, Table } from '../components/ui';
import { count } from '../format';
import { useResource } from '../hooks';
import { href, navigate } from '../router';
import { useSignedIn } from '../session';
import type { Lineage, Page } from '../types';

export const PAUSE_REASONS = ['schema_review', 'volume_backpressure', 'circuit_breaker', 'deferred_columns'];
const PER_PAGE = 25;
/** The API filters by status, device and fleet; pause reason and table are filtered here, over this many. */
const FETCH = 500;

type Filters = Readonly<{ status: string; reason: string; device: string; fleet: string; table: string }>;

function useFilters(query: URLSearchParams): [Filters, (f: Partial<Filters>) => void] {
  const f: Filters = {
    status: query.get('status') ?? '',
    reason: query.get('reason') ?? '',
    device: query.get('device') ?? '',
    fleet: query.get('fleet') ?? '',
    table: query.get('table') ?? '',
  };
  // Filters live in the URL, so a filtered list can be bookmarked and shared.
  return [f, (next) => navigate(href('lineages', { ...f, ...next }))];
}

export function LineagesView({ query }: { query: URLSearchParams }) {
  const { client } = useSignedIn();
  const [filters, setFilters] = useFilters(query);
  const [page, setPage] = useState(1);
  const fleetOk = !filters.fleet || /^[0-9a-f-]{36}$/i.test(filters.fleet);

  const list = useResource(
    () =>
      client.get<Page<Lineage>>('/edge/lineages', {
        limit: FETCH,
        status: filters.status,
        device_id: filters.device.trim(),
        fleet_id: fleetOk ? filters.fleet.trim() : '',
      }),
    [filters.status, filters.device, filters.fleet],
  );

  const all = list.data?.items ?? [];
  const shown = all.filter(
    (l) =>
      (!filters.reason || l.pause_reasons.includes(filters.reason)) &&
      (!filters.table || l.source_table.toLowerCase().includes(filters.table.toLowerCase())),
  );
  const pageRows = shown.slice((page - 1) * PER_PAGE, page * PER_PAGE);
  const sum = (k: 'staged_rows' | 'materialized_rows') => shown.reduce((n, l) => n + l[k], 0);

  return (
    <section aria-labelledby="lineages-title">
      <header class="page-head">
        <h1 id="lineages-title">Lineages</h1>
        <p class="muted">One per device table. Refreshes every few seconds.</p>
      </header>
      <form class="filters" aria-label="Filters" onSubmit={(e) => e.preventDefault()}>
        <label>
          Status
          <select value={filters.status} onChange={(e) => setFilters({ status: e.currentTarget.value })}>
            <option value="">any (not deleted)</option>
            <option value="active">active</option>
            <option value="paused">paused</option>
            <option value="deleted">deleted</option>
          </select>
        </label>
        <label>
          Pause reason
          <select value={filters.reason} onChange={(e) => setFilters({ reason: e.currentTarget.value })}>
            <option value="">any</option>
            {PAUSE_REASONS.map((r) => (
              <option key={r} value={r}>
                {r.replace(/_/g, ' ')}
              </option>
            ))}
          </select>
        </label>
        <label>
          Device
          <input
            value={filters.device}
            placeholder="name or id"
            onChange={(e) => setFilters({ device: e.currentTarget.value })}
          />
        </label>
        <label>
          Fleet
          <input
            value={filters.fleet}
            placeholder="fleet id"
            aria-invalid={!fleetOk}
            onChange={(e) => setFilters({ fleet: e.currentTarget.value })}
          />
        </label>
        <label>
          Table
          <input
            value={filters.table}
            placeholder="source table"
            onInput={(e) => {
              setPage(1);
              setFilters({ table: e.currentTarget.value });
            }}
          />
        </label>
      </form>
      {!fleetOk && (
        <p class="small warn-text">A fleet id is a UUID; the fleet filter is off until it is one.</p>
      )}

      <div class="stats" aria-label="Counters">
        <Stat label="lineages" value={count(shown.length)} />
        <Stat label="active" value={count(shown.filter((l) => l.status === 'active').length)} />
        <Stat label="paused" value={count(shown.filter((l) => l.status === 'paused').length)} />
        <Stat label="staged rows" value={count(sum('staged_rows'))} hint="rows waiting in staging" />
        <Stat label="mirrored rows" value={count(sum('materialized_rows'))} hint="rows materialized so far" />
      </div>

      <ErrorNote error={list.error} />
      {list.loading && !list.data ? (
        <Loading />
      ) : (
        <>
          <Table
            label="Lineages"
            rowKey={(l) => l.lineage_id}
            rows={pageRows}
            empty="No lineage matches. A device's first batch of a table creates its lineage."
            columns={[
              {
                header: 'Table',
                cell: (l) => (
                  <a href={href('lineages', l.lineage_id)} class="strong">
                    {l.source_table}
                  </a>
                ),
              },
              { header: 'Device', cell: (l) => l.device_name },
              { header: 'Status', cell: (l) => <Badge value={l.status} /> },
              {
                header: 'Pause reasons',
                cell: (l) =>
                  l.pause_reasons.length ? (
                    <span class="reasons">
                      {l.pause_reasons.map((r) => (
                        <span key={r} class="tag">
                          {r.replace(/_/g, ' ')}
                        </span>
                      ))}
                    </span>
                  ) : (
                    <span class="muted">—</span>
                  ),
              },
              { header: 'Staged', numeric: true, cell: (l) => count(l.staged_rows) },
              { header: 'Mirrored', numeric: true, cell: (l) => count(l.materialized_rows) },
              { header: 'Last batch', cell: (l) => <Age at={l.last_batch_at} /> },
              {
                header: 'Lineage',
                cell: (l) => <Mono title={l.lineage_id}>{l.lineage_id.slice(0, 8)}</Mono>,
              },
            ]}
          />
          {shown.length > PER_PAGE && (
            <Pager label="Lineages" page={page} limit={PER_PAGE} total={shown.length} onPage={setPage} />
          )}
          {(list.data?.total ?? 0) > FETCH && (
            <p class="small muted">
              Showing the first {FETCH} of {count(list.data?.total)}; narrow with status, device or fleet.
            </p>
          )}
        </>
      )}
    </section>
  );
}
