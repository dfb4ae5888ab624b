import { useState } from 'preact/hooks';
import { Badge, ErrorNote, Loading, Mono } from '../components/ui';
import { time } from '../format';
import { useResource } from '../hooks';
import { href, navigate } from '../router';
import { useSignedIn } from '../session';
import type { AuditEvent, AuditState, CursorPage } from '../types';

const PAGE = 100;
/** Events that carry rows rather than decisions: many, alike, and hidden on request. */
const ROW_EVENTS = new Set([
  'RowsStaged',
  'RowsAccepted',
  'RowsRefused',
  'TelemetryStaged',
  'TelemetryAccepted',
]);

/** One line of what an event says, for the timeline (the full data is one click away). */
function summary(e: AuditEvent): string {
  const d = (e.data ?? {}) as Record<string, unknown>;
  const bits: string[] = [];
  for (const k of ['source_table', 'status', 'reason', 'classification', 'control_kind', 'outcome']) {
    if (typeof d[k] === 'string') bits.push(`${k.replace(/_/g, ' ')} ${String(d[k])}`);
  }
  if (Array.isArray(d.rows)) bits.push(`${d.rows.length} rows`);
  if (typeof d.action_version === 'number') bits.push(`action_version ${d.action_version}`);
  if (Array.isArray(d.column_actions) && d.column_actions.length)
    bits.push(`${d.column_actions.length} column actions`);
  return bits.join(' · ');
}

/** ISO time from a datetime-local value (read as UTC, as the timeline shows times). */
const fromLocal = (v: string) => (v ? new Date(`${v}Z`).toISOString() : '');
const toLocal = (iso: string) => iso.replace(/Z$/, '').slice(0, 23);

export function AuditView({ lineageId, asOf }: { lineageId: string; asOf: string | null }) {
  const { client } = useSignedIn();
  const [cursors, setCursors] = useState<string[]>([]);
  const [picked, setPicked] = useState(asOf ? toLocal(asOf) : '');
  const [rowEvents, setRowEvents] = useState(true);
  const after = cursors[cursors.length - 1];
  const events = useResource(
    () => client.get<CursorPage<AuditEvent>>(`/edge/lineages/${lineageId}/events`, { limit: PAGE, after }),
    [lineageId, after],
  );
  const state = useResource(
    async () => (asOf ? client.get<AuditState>(`/edge/lineages/${lineageId}/events`, { as_of: asOf }) : null),
    [lineageId, asOf],
    null,
  );
  const showAt = (iso: string) => {
    setPicked(toLocal(iso));
    navigate(href('lineages', lineageId, 'audit', { as_of: iso }));
  };
  const p = events.data;

  return (
    <section aria-labelledby="audit-title">
      <header class="page-head">
        <p class="crumbs">
          <a href={href('lineages')}>Lineages</a> › <a href={href('lineages', lineageId)}>lineage</a> ›
        </p>
        <h1 id="audit-title">Audit trail</h1>
        <p class="muted small">
          Every decision on lineage <Mono>{lineageId}</Mono>, in order, and its state at any time you choose.
          Times are UTC.
        </p>
      </header>

      <div class="audit">
        <section class="card" aria-labelledby="timeline-title">
          <div class="card-head">
            <h2 id="timeline-title">Timeline</h2>
            <label class="check">
              <input
                type="checkbox"
                checked={rowEvents}
                onChange={(e) => setRowEvents(e.currentTarget.checked)}
              />
              Show row batches
            </label>
          </div>
          <ErrorNote error={events.error} />
          {!p ? (
            <Loading />
          ) : (
            <ol class="timeline" aria-label="Events">
              {p.items
                .filter((e) => rowEvents || !ROW_EVENTS.has(e.type))
                .map((e) => (
                  <li
                    key={`${e.seq}.${e.index}`}
                    class={asOf && e.occurred_at <= asOf ? 'before' : undefined}
                  >
                    <div class="tl-head">
                      <span class="tl-type">{e.type}</span>
                      <span class="muted small">
                        #{e.seq}.{e.index} · <time>{time(e.occurred_at)}</time>
                        {e.metadata?.actor && <> · by {e.metadata.actor}</>}
                      </span>
                      <button class="btn btn-plain btn-small tl-state" onClick={() => showAt(e.occurred_at)}>
                        State after this event
                      </button>
                    </div>
                    <details>
                      <summary class="small">{summary(e) || 'data'}</summary>
                      <pre>{JSON.stringify(e.data, null, 2)}</pre>
                    </details>
                  </li>
                ))}
            </ol>
          )}
          <nav class="pager" aria-label="Timeline pages">
            <button
              class="btn btn-plain"
              disabled={!cursors.length}
              onClick={() => setCursors((c) => c.slice(0, -1))}
            >
              ‹ Earlier
            </button>
            <button
              class="btn btn-plain"
              disabled={!p?.next_cursor}
              onClick={() => p?.next_cursor && setCursors((c) => [...c, p.next_cursor!])}
            >
              Later ›
            </button>
          </nav>
        </section>

        <section class="card sticky" aria-labelledby="asof-title">
          <h2 id="asof-title">State as of a time</h2>
          <form
            class="asof"
            onSubmit={(e) => {
              e.preventDefault();
              if (picked) showAt(fromLocal(picked));
            }}
          >
            <label for="as-of">As of (UTC)</label>
            <input
              id="as-of"
              type="datetime-local"
              step="0.001"
              value={picked}
              onInput={(e) => setPicked(e.currentTarget.value)}
            />
            <button class="btn btn-primary" type="submit" disabled={!picked}>
              Show state
            </button>
          </form>
          <ErrorNote error={state.error} />
          {asOf && !state.data && !state.error && <Loading />}
          {state.data && <StateAt at={state.data} />}
          {!asOf && <p class="muted small">Pick a time, or “State after this event” on the timeline.</p>}
        </section>
      </div>
    </section>
  );
}

type FoldedReview = { review_id: string; status: string; action_version: number };

function StateAt({ at }: { at: AuditState }) {
  const s = at.state as {
    status?: string;
    pause_reasons?: string[];
    reviews?: FoldedReview[];
    staged_rows?: number;
    approved_hash?: string | null;
  };
  // The fold says registered/deleted; the lineage is paused while it has a pause reason.
  const shown =
    s.status === 'registered'
      ? s.pause_reasons?.length
        ? 'paused'
        : 'active'
      : (s.status ?? 'unregistered');
  return (
    <div aria-label="State at the chosen time" role="region">
      <p>
        At <time>{time(at.as_of)}</time>: {at.events} events folded, version {at.version}.
      </p>
      <dl class="facts">
        <dt>status</dt>
        <dd>
          <Badge value={shown} />
        </dd>
        <dt>staged rows</dt>
        <dd>{s.staged_rows ?? 0}</dd>
        <dt>approved schema</dt>
        <dd>
          {s.approved_hash ? <Mono title={s.approved_hash}>{s.approved_hash.slice(0, 16)}</Mono> : 'none'}
        </dd>
        <dt>pause reasons</dt>
        <dd>{s.pause_reasons?.length ? s.pause_reasons.join(', ') : 'none'}</dd>
        <dt>reviews</dt>
        <dd>
          {s.reviews?.length ? (
            <ul class="plain">
              {s.reviews.map((r) => (
                <li key={r.review_id}>
                  <Mono>{r.review_id.slice(0, 8)}</Mono> <Badge value={r.status} /> action_version{' '}
                  {r.action_version}
                </li>
              ))}
            </ul>
          ) : (
            'none'
          )}
        </dd>
      </dl>
      <details>
        <summary class="small">full state</summary>
        <pre>{JSON.stringify(at.state, null, 2)}</pre>
      </details>
    </div>
  );
}
