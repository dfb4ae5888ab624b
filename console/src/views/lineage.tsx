import { useEffect, useRef, useState } from 'preact/hooks';
import { Chart } from '../components/chart';
import { ConfirmDialog } from '../components/confirm';
import { Age, Badge, Button, ErrorNote, Loading, Mono, Note, Stat, Table } from '../components/ui';
import { count, time } from '../format';
import { useResource } from '../hooks';
import { href, navigate } from '../router';
import { useSignedIn } from '../session';
import type { CommandResult, LineageDetail, Review } from '../types';
import { ControlsSent, MirrorRows, StagedRows, WriteBackRows } from './lineage-rows';

/** The lineage's counters are sampled this often while its page is open (the charts' only source). */
const SAMPLE_MS = 2000;
/** Five minutes of samples. */
const MAX_SAMPLES = 150;

export function LineageView({ lineageId }: { lineageId: string }) {
  const { client } = useSignedIn();
  const res = useResource(
    () => client.get<LineageDetail>(`/edge/lineages/${lineageId}`),
    [lineageId],
    SAMPLE_MS,
  );
  const l = res.data;
  if (!l) return res.error ? <ErrorNote error={res.error} /> : <Loading />;
  return (
    <section aria-labelledby="lineage-title">
      <header class="page-head">
        <p class="crumbs">
          <a href={href('lineages')}>Lineages</a> ›
        </p>
        <h1 id="lineage-title">
          {l.source_table} <span class="muted">on</span> {l.device_name} <Badge value={l.status} />
        </h1>
        <p class="muted small">
          lineage <Mono>{l.lineage_id}</Mono> · device <Mono>{l.device_id}</Mono>
          {l.fleet_id && (
            <>
              {' '}
              · fleet <Mono>{l.fleet_id}</Mono>
            </>
          )}{' '}
          · <a href={href('lineages', l.lineage_id, 'audit')}>Audit trail</a>
        </p>
      </header>
      <ErrorNote error={res.error} />
      <NextSteps lineage={l} />
      <div class="stats" aria-label="Counters">
        <Stat label="staged rows" value={count(l.staged_rows)} />
        <Stat label="replaying" value={count(l.replaying_rows)} />
        <Stat label="mirrored rows" value={count(l.materialized_rows)} />
        <Stat label="duplicates skipped" value={count(l.duplicates_skipped)} />
        <Stat label="refused rows" value={count(l.refused_rows)} />
        <Stat label="last batch" value={<Age at={l.last_batch_at} />} />
      </div>
      <LiveCharts lineage={l} />
      <LineageControls lineage={l} onChanged={res.reload} />
      <MaterializationErrors lineage={l} />
      <MirrorRows lineageId={l.lineage_id} />
      <StagedRows lineageId={l.lineage_id} />
      <ReviewsOf reviews={l.reviews} />
      <WriteBackRows lineage={l} />
      <ControlsSent lineageId={l.lineage_id} />
    </section>
  );
}

/** Why the lineage is paused, and what a person does about it. */
function NextSteps({ lineage: l }: { lineage: LineageDetail }) {
  if (l.status === 'deleted')
    return <Note tone="muted">Deleted: {l.deleted_reason ?? 'no reason given'}.</Note>;
  if (l.status === 'active' && l.pause_reasons.length === 0)
    return <Note tone="ok">Active: batches flow into the mirror as they arrive.</Note>;
  const open = l.open_review;
  return (
    <div class="note note-warn" role="status" aria-label="Pause reasons">
      <strong>Paused.</strong> The device keeps sending; its rows wait in staging ({count(l.staged_rows)}).
      <ul class="steps">
        {l.pause_reasons.map((r) => (
          <li key={r}>
            <span class="tag">{r.replace(/_/g, ' ')}</span>{' '}
            {r === 'schema_review' &&
              (open ? (
                <>
                  The table's schema waits for a person's review ({open.status.replace('_', ' ')}).{' '}
                  <a href={href('reviews', open.review_id)}>Open the schema review</a> and approve or reject
                  it.
                </>
              ) : l.registry_state === 'awaiting' ? (
                <>
                  Its schema is decided for the whole project or fleet: see{' '}
                  <a href={href('registry')}>Registry</a>.
                </>
              ) : (
                'The schema waits for a review.'
              ))}
            {r === 'circuit_breaker' &&
              'Materialization failed repeatedly (the errors are below). Fix the cause, then reset materialization.'}
            {r === 'volume_backpressure' &&
              "Staging passed the project's cap and the device was asked to pause this table; it resumes when the backlog drains (approve the review, or raise the cap with PATCH /policy)."}
            {r === 'deferred_columns' &&
              'No key column is mirrored, so no mirror table can exist: approve a schema with its key columns mirrored.'}
          </li>
        ))}
      </ul>
    </div>
  );
}

type Sample = Readonly<{ t: number; materialized: number; staged: number }>;

/**
 * Rows per second and staged rows over time, from the lineage's counters as this page samples
 * them (every SAMPLE_MS while it is open); nothing is stored on the server for it.
 */
function LiveCharts({ lineage }: { lineage: LineageDetail }) {
  const [samples, setSamples] = useState<Sample[]>([]);
  const id = useRef(lineage.lineage_id);
  useEffect(() => {
    const s = { t: Date.now() / 1000, materialized: lineage.materialized_rows, staged: lineage.staged_rows };
    setSamples((prev) => (id.current === lineage.lineage_id ? [...prev, s].slice(-MAX_SAMPLES) : [s]));
    id.current = lineage.lineage_id;
  }, [lineage]);
  const xs = samples.slice(1).map((s) => s.t);
  const rate = samples.slice(1).map((s, i) => {
    const before = samples[i]!;
    return Math.max(0, (s.materialized - before.materialized) / Math.max(0.001, s.t - before.t));
  });
  return (
    <section class="card charts" aria-label="Live charts">
      <Chart title="Rows per second into the mirror" unit="rows/s" xs={xs} ys={rate} />
      <Chart
        title="Staged rows"
        unit="rows"
        xs={samples.map((s) => s.t)}
        ys={samples.map((s) => s.staged)}
        color="#d97706"
      />
      <p class="small muted chart-note">Sampled by this page every {SAMPLE_MS / 1000} s while it is open.</p>
    </section>
  );
}

type Pending = 'delete' | 'reset' | null;

function LineageControls({ lineage: l, onChanged }: { lineage: LineageDetail; onChanged: () => void }) {
  const { client } = useSignedIn();
  const [pending, setPending] = useState<Pending>(null);
  const [error, setError] = useState<unknown>(null);
  const [done, setDone] = useState<string | null>(null);
  const path = `/edge/lineages/${l.lineage_id}`;

  const act = async (what: string, run: () => Promise<CommandResult>) => {
    setError(null);
    setDone(null);
    try {
      const r = await run();
      setDone(`${what}: ${r.events.map((e) => e.type).join(', ') || 'nothing to change'}.`);
      onChanged();
    } catch (e) {
      setError(e);
    }
  };
  const deleted = l.status === 'deleted';
  return (
    <section class="card" aria-labelledby="controls-h">
      <h2 id="controls-h">Controls</h2>
      <div class="actions">
        <Button
          manage
          disabled={deleted}
          title="Ask the device for digests of its table and compare them with the mirror"
          onClick={() => act('Verify requested', () => client.send('POST', `${path}/verify`))}
        >
          Verify
        </Button>
        <Button
          manage
          disabled={deleted}
          title="Ask the device to send its whole table again"
          onClick={() => act('Resync requested', () => client.send('POST', `${path}/resync`, {}))}
        >
          Resync
        </Button>
        <Button
          manage
          disabled={deleted}
          title="Clear the materialization failure count (circuit breaker)"
          onClick={() => setPending('reset')}
        >
          Reset materialization…
        </Button>
        <Button manage kind="danger" disabled={deleted} onClick={() => setPending('delete')}>
          Delete lineage…
        </Button>
      </div>
      {l.verify && (
        <p class="small muted">
          Last verify: {l.verify.status}
          {l.verify.outcome && (
            <>
              {' '}
              — <Badge value={l.verify.outcome} />
            </>
          )}
        </p>
      )}
      {done && <Note tone="ok">{done}</Note>}
      <ErrorNote error={error} />
      {pending === 'reset' && (
        <ConfirmDialog
          title="Reset materialization"
          confirmLabel="Reset"
          onClose={() => setPending(null)}
          onConfirm={async () => {
            await client.send<CommandResult>('POST', `${path}/reset-materialization`);
            setDone('Materialization reset: staged rows are replayed into the mirror again.');
            onChanged();
          }}
        >
          Clears the failure count ({l.materialization_errors} now). Do this after fixing what made the mirror
          fail, or it trips again.
        </ConfirmDialog>
      )}
      {pending === 'delete' && (
        <ConfirmDialog
          title="Delete lineage"
          confirmLabel="Delete lineage"
          typeToConfirm={l.source_table}
          askReason
          onClose={() => setPending(null)}
          onConfirm={async (reason) => {
            await client.send<CommandResult>('DELETE', path, reason ? { reason } : {});
            navigate(href('lineages'));
          }}
        >
          Ends the lineage of <strong>{l.source_table}</strong> on {l.device_name}. Its events stay for
          audits; a later batch of the same table starts a new lineage, which asks the device for its schema
          and table again.
        </ConfirmDialog>
      )}
    </section>
  );
}

function MaterializationErrors({ lineage: l }: { lineage: LineageDetail }) {
  const m = l.materialization;
  if (m.errors === 0 && m.recent_failures.length === 0 && !m.last_error) return null;
  return (
    <section class="card" aria-labelledby="errors-title">
      <h2 id="errors-title">Materialization errors</h2>
      <p>
        {m.errors} consecutive failures, {count(m.failed_rows)} rows failed. Last:{' '}
        <Mono>{m.last_error ?? '—'}</Mono> ({time(m.last_error_at)})
      </p>
      <Table
        label="Materialization failures"
        rows={m.recent_failures}
        rowKey={(f) => String(f.stream_seq)}
        columns={[
          { header: 'when', cell: (f) => <Age at={f.occurred_at} /> },
          { header: 'code', cell: (f) => <Mono>{f.code}</Mono> },
          { header: 'message', cell: (f) => f.message },
          { header: 'rows', numeric: true, cell: (f) => f.failed_rows },
        ]}
      />
    </section>
  );
}

function ReviewsOf({ reviews }: { reviews: readonly Review[] }) {
  return (
    <section class="card" aria-labelledby="reviews-of-title">
      <h2 id="reviews-of-title">Schema reviews</h2>
      <Table
        label="Schema reviews of this lineage"
        rows={reviews}
        rowKey={(r) => r.review_id}
        empty="No review yet."
        columns={[
          {
            header: 'review',
            cell: (r) => <a href={href('reviews', r.review_id)}>{r.review_id.slice(0, 8)}</a>,
          },
          { header: 'status', cell: (r) => <Badge value={r.status} /> },
          { header: 'classification', cell: (r) => r.classification.replace(/_/g, ' ') },
          { header: 'schema', cell: (r) => <Mono title={r.schema_hash}>{r.schema_hash.slice(0, 12)}</Mono> },
          { header: 'decided by', cell: (r) => r.decided_by ?? '—' },
          { header: 'opened', cell: (r) => <Age at={r.created_at} /> },
        ]}
      />
    </section>
  );
}
