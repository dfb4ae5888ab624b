import { useState } from 'preact/hooks';
import { namesOf, rowColumns } from '../components/rows';
import { Age, Badge, ErrorNote, Mono, Pager, Table } from '../components/ui';
import { count } from '../format';
import { useResource } from '../hooks';
import { useSignedIn } from '../session';
import type {
  CloudRow,
  Control,
  CursorPage,
  LineageDetail,
  MirrorPage,
  MirrorRow,
  Page,
  StagedRow,
} from '../types';

const LIMIT = 20;

/** The lineage's mirror table, by key, page by page. */
export function MirrorRows({ lineageId }: { lineageId: string }) {
  const { client } = useSignedIn();
  const [page, setPage] = useState(1);
  const res = useResource(
    // A person reads it: the total (a count of the lineage's rows) is asked for.
    () =>
      client.get<MirrorPage>(`/edge/lineages/${lineageId}/mirror-rows`, {
        page,
        limit: LIMIT,
        count: 'true',
      }),
    [lineageId, page],
  );
  const m = res.data;
  const names = m?.columns.length ? m.columns.map((c) => c.name) : namesOf(m?.items.map((r) => r.row) ?? []);
  return (
    <section class="card" aria-labelledby="mirror-title">
      <h2 id="mirror-title">Mirror rows</h2>
      <p class="muted small">
        {m?.table ? (
          <>
            Table <Mono>{m.table}</Mono>, {count(m.total)} rows, by key.
          </>
        ) : (
          'No mirror table yet: approval of the schema provisions it.'
        )}
      </p>
      <ErrorNote error={res.error} />
      <Table<MirrorRow>
        label="Mirror rows"
        rows={m?.items ?? []}
        rowKey={(r) => JSON.stringify(r.key)}
        empty={m?.table ? 'The mirror is empty.' : 'Rows appear here once the schema is approved.'}
        columns={[
          ...rowColumns<MirrorRow>(names, (r) => r.row),
          { header: 'commit seq', numeric: true, cell: (r) => r.source_commit_seq },
        ]}
      />
      {m && m.total > LIMIT && (
        <Pager label="Mirror rows" page={page} limit={LIMIT} total={m.total} onPage={setPage} />
      )}
    </section>
  );
}

/** Rows waiting in staging, in commit order, followed with the API's cursor. */
export function StagedRows({ lineageId }: { lineageId: string }) {
  const { client } = useSignedIn();
  // The cursors of the pages seen so far: Previous goes back through them.
  const [cursors, setCursors] = useState<(string | undefined)[]>([undefined]);
  const after = cursors[cursors.length - 1];
  const res = useResource(
    () =>
      client.get<CursorPage<StagedRow>>(`/edge/lineages/${lineageId}/staged-rows`, { limit: LIMIT, after }),
    [lineageId, after],
  );
  const p = res.data;
  const names = namesOf(p?.items.map((r) => r.row ?? r.pk) ?? []);
  return (
    <section class="card" aria-labelledby="staged-title">
      <h2 id="staged-title">Staged rows</h2>
      <p class="muted small">
        {count(p?.total)} rows wait in staging, in commit order; they are replayed into the mirror when the
        gate opens.
      </p>
      <ErrorNote error={res.error} />
      <Table<StagedRow>
        label="Staged rows"
        rows={p?.items ?? []}
        rowKey={(r) => `${r.commit_seq}`}
        empty="Nothing is staged."
        columns={[
          { header: 'commit seq', numeric: true, cell: (r) => r.commit_seq },
          { header: 'op', cell: (r) => r.op },
          ...rowColumns<StagedRow>(names, (r) => r.row ?? r.pk),
          { header: 'reason', cell: (r) => r.reason.replace(/_/g, ' ') },
          { header: 'staged', cell: (r) => <Age at={r.staged_at} /> },
        ]}
      />
      <nav class="pager" aria-label="Staged rows pages">
        <button
          class="btn btn-plain"
          disabled={cursors.length <= 1}
          onClick={() => setCursors((c) => c.slice(0, -1))}
        >
          ‹ Previous
        </button>
        <span>page {cursors.length}</span>
        <button
          class="btn btn-plain"
          disabled={!p?.next_cursor}
          onClick={() => p?.next_cursor && setCursors((c) => [...c, p.next_cursor!])}
        >
          Next ›
        </button>
      </nav>
    </section>
  );
}

/** Rows the cloud wrote back to the device (cloud_authoritative lineages), applied or pending. */
export function WriteBackRows({ lineage }: { lineage: LineageDetail }) {
  const { client } = useSignedIn();
  const cloud = lineage.write_back.authority === 'cloud_authoritative';
  const res = useResource(
    async () =>
      cloud
        ? client.get<Page<CloudRow>>(
            `/devices/${lineage.device_id}/edge/state-tables/${lineage.lineage_id}/rows`,
            {
              limit: 100,
            },
          )
        : null,
    [lineage.lineage_id, cloud],
  );
  const rows = res.data?.items ?? [];
  const names = namesOf(rows.map((r) => ({ ...r.pk, ...r.values })));
  return (
    <section class="card" aria-labelledby="writeback-title">
      <h2 id="writeback-title">Write-back rows</h2>
      {!cloud ? (
        <p class="muted small">
          The device owns this table (<Mono>{lineage.write_back.authority}</Mono>); nothing is written back.
          Make it cloud_authoritative to write rows to the device (docs/write-back.md).
        </p>
      ) : (
        <>
          <p class="muted small">Last cloud_version {lineage.write_back.last_cloud_version}.</p>
          <ErrorNote error={res.error} />
          <Table<CloudRow>
            label="Write-back rows"
            rows={rows}
            rowKey={(r) => JSON.stringify(r.pk)}
            empty="No row was written back yet."
            columns={[
              ...rowColumns<CloudRow>(names, (r) => ({ ...r.pk, ...r.values })),
              { header: 'cloud version', numeric: true, cell: (r) => r.cloud_version },
              { header: 'status', cell: (r) => <Badge value={r.status} /> },
              { header: 'device version', numeric: true, cell: (r) => r.device_version ?? '—' },
              { header: 'conflicts', numeric: true, cell: (r) => r.conflicts },
              { header: 'written', cell: (r) => <Age at={r.written_at} /> },
            ]}
          />
        </>
      )}
    </section>
  );
}

/** Signed controls sent to the device for this lineage (pause, resume, resync, …). */
export function ControlsSent({ lineageId }: { lineageId: string }) {
  const { client } = useSignedIn();
  const res = useResource(
    () =>
      client.get<Page<Control>>('/edge/pending-controls', {
        lineage_id: lineageId,
        status: 'all',
        limit: 20,
      }),
    [lineageId],
  );
  return (
    <section class="card" aria-labelledby="controls-title">
      <h2 id="controls-title">Controls sent to the device</h2>
      <ErrorNote error={res.error} />
      <Table<Control>
        label="Controls sent"
        rows={res.data?.items ?? []}
        rowKey={(c) => c.control_id}
        empty="No control was sent for this table."
        columns={[
          { header: 'kind', cell: (c) => c.control_kind.replace(/_/g, ' ') },
          { header: 'reason', cell: (c) => c.reason.replace(/_/g, ' ') },
          { header: 'status', cell: (c) => <Badge value={c.status} /> },
          { header: 'deliveries', numeric: true, cell: (c) => c.deliveries },
          { header: 'issued', cell: (c) => <Age at={c.issued_at} /> },
          { header: 'control', cell: (c) => <Mono title={c.control_id}>{c.control_id.slice(0, 8)}</Mono> },
        ]}
      />
    </section>
  );
}
