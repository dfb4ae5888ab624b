import { useState } from 'preact/hooks';
import { type ApiError, isApiError } from '../api';
import { Age, Badge, Button, ErrorNote, Loading, Mono, Note } from '../components/ui';
import { useResource } from '../hooks';
import { href } from '../router';
import { useSignedIn } from '../session';
import type { Binding, CommandResult, ReviewDetail, SchemaColumn, SchemaDiff } from '../types';

type Kind = 'mirror' | 'rename' | 'ignore' | 'defer' | 'keep';
type Choice = Readonly<{ kind: Kind; name: string }>;
type Choices = Readonly<Record<string, Choice>>;

/** The editor starts from what is bound now: a rename stays a rename, an ignored column stays ignored. */
function prefill(r: ReviewDetail): Choices {
  const bound = new Map(r.current_bindings.map((b) => [b.column, b]));
  const out: Record<string, Choice> = {};
  for (const c of r.schema_columns?.columns ?? []) {
    const b = bound.get(c.name);
    out[c.name] = !b
      ? { kind: 'mirror', name: '' }
      : b.action === 'mirror'
        ? b.target && b.target !== c.name
          ? { kind: 'rename', name: b.target }
          : { kind: 'mirror', name: '' }
        : b.action === 'ignore' || b.action === 'defer'
          ? { kind: b.action, name: '' }
          : { kind: 'keep', name: '' };
  }
  return out;
}

/** The approval's column_actions: every column named, as the editor shows it ("keep" leaves one as bound). */
type ColumnAction = Readonly<{ column: string; action: string; mirror_column_name?: string }>;

function columnActions(choices: Choices): ColumnAction[] {
  return Object.entries(choices).flatMap(([column, c]): ColumnAction[] =>
    c.kind === 'keep'
      ? []
      : c.kind === 'rename'
        ? [{ column, action: 'mirror', mirror_column_name: c.name.trim() }]
        : [{ column, action: c.kind }],
  );
}

function boundText(b: Binding | undefined): string {
  if (!b) return '—';
  if (b.action === 'mirror') return b.target && b.target !== b.column ? `mirror as ${b.target}` : 'mirror';
  return b.action.replace(/_/g, ' ');
}

function changeOf(diff: SchemaDiff | null, column: string): string {
  if (!diff) return '';
  if (diff.added.includes(column)) return diff.against_hash ? 'added' : 'new';
  const t = diff.retyped.find((x) => x.column === column);
  const k = diff.rekeyed.find((x) => x.column === column);
  return (
    [t && `type ${t.from} → ${t.to}`, k && `key ${k.from} → ${k.to}`].filter(Boolean).join(', ') ||
    'unchanged'
  );
}

/** A stale action_version said in words: what moved, that nothing changed, and what to do. */
function staleText(e: ApiError, quoted: number): string {
  const now = e.details.current_action_version;
  const status = typeof e.details.status === 'string' ? e.details.status.replace(/_/g, ' ') : 'changed';
  return (
    `Someone acted on this review since you loaded it: you quoted action_version ${quoted}, ` +
    `it is now at ${String(now ?? 'a newer one')} (${status}). Nothing was changed by your click. ` +
    'The review below is refreshed; check it and try again.'
  );
}

export function ReviewView({ reviewId }: { reviewId: string }) {
  const { client } = useSignedIn();
  const load = () => client.get<ReviewDetail>(`/edge/schema-reviews/${reviewId}`);
  // The copy being decided on is loaded on demand, so the action_version it quotes never changes
  // under the operator's hands; a background poll only tells when it moved.
  const res = useResource(load, [reviewId], null);
  const live = useResource(load, [reviewId]);
  const r = res.data;
  const [edit, setEdit] = useState<{ id: string; choices: Choices } | null>(null);
  const [reason, setReason] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [notice, setNotice] = useState<{ tone: string; text: string } | null>(null);

  if (!r) return res.error ? <ErrorNote error={res.error} /> : <Loading />;

  // Prefilled from the bindings until the operator changes something; their edits survive refreshes.
  const choices = edit?.id === r.review_id ? edit.choices : prefill(r);
  const choose = (column: string, c: Choice) =>
    setEdit({ id: r.review_id, choices: { ...choices, [column]: c } });

  const moved = live.data && live.data.action_version !== r.action_version ? live.data : null;
  const columns = r.schema_columns?.columns ?? [];
  const bound = new Map(r.current_bindings.map((b) => [b.column, b]));
  const renameMissing = Object.entries(choices).some(([, c]) => c.kind === 'rename' && !c.name.trim());

  const base = `/edge/schema-reviews/${r.review_id}`;
  /** Run verbs in order, each quoting the version the previous answer named. */
  const run = async (verbs: readonly ('claim' | 'approve' | 'reject' | 'reopen')[], done: string) => {
    setError(null);
    setNotice(null);
    let version = r.action_version;
    try {
      for (const verb of verbs) {
        const body =
          verb === 'approve'
            ? { action_version: version, column_actions: columnActions(choices) }
            : verb === 'reject'
              ? { action_version: version, reason: reason.trim() }
              : { action_version: version };
        const out = await client.send<CommandResult>('POST', `${base}/${verb}`, body);
        version = out.review?.action_version ?? version + 1;
      }
      setNotice({ tone: 'ok', text: done });
    } catch (e) {
      if (isApiError(e) && e.code === 'stale_action_version') {
        setNotice({ tone: 'warn', text: staleText(e, version) });
      } else setError(e);
    }
    res.reload();
    live.reload();
  };

  const open = r.status === 'queued' || r.status === 'in_review';
  const claimFirst: readonly ('claim' | 'approve')[] =
    r.status === 'queued' ? ['claim', 'approve'] : ['approve'];

  return (
    <section aria-labelledby="review-title">
      <header class="page-head">
        <p class="crumbs">
          <a href={href('reviews')}>Reviews</a> › <a href={href('lineages', r.lineage_id)}>lineage</a> ›
        </p>
        <h1 id="review-title">
          Schema review of {r.source_table} <Badge value={r.status} />
        </h1>
        <p class="muted small">
          review <Mono>{r.review_id}</Mono> · action_version <Mono>{r.action_version}</Mono> · schema{' '}
          <Mono title={r.schema_hash}>{r.schema_hash.slice(0, 16)}</Mono> ·{' '}
          {r.classification.replace(/_/g, ' ')} · opened <Age at={r.created_at} />
          {r.claimed_by && <> · claimed by {r.claimed_by}</>}
          {r.decided_by && <> · decided by {r.decided_by}</>}
        </p>
      </header>

      {moved && (
        <Note tone="warn">
          This review moved since you loaded it: it is now at action_version {moved.action_version} (
          {moved.status.replace(/_/g, ' ')}).{' '}
          <button class="btn btn-plain btn-small" onClick={res.reload}>
            Refresh
          </button>
        </Note>
      )}
      {notice && <Note tone={notice.tone}>{notice.text}</Note>}
      <ErrorNote error={error} />
      {r.reason && <Note tone="muted">Reason given: {r.reason}</Note>}

      <section class="card" aria-labelledby="columns-title">
        <h2 id="columns-title">Columns</h2>
        <DiffSummary diff={r.diff} />
        {columns.length === 0 ? (
          <p class="muted">The device has not sent this schema's columns yet; it does with its next batch.</p>
        ) : (
          <div class="table-wrap">
            <table aria-label="Columns and actions">
              <thead>
                <tr>
                  <th scope="col">column</th>
                  <th scope="col">type</th>
                  <th scope="col" class="num">
                    key
                  </th>
                  <th scope="col">not null</th>
                  <th scope="col">change</th>
                  <th scope="col">bound now</th>
                  <th scope="col">action</th>
                  <th scope="col">mirror name</th>
                </tr>
              </thead>
              <tbody>
                {columns.map((c) => (
                  <ColumnRow
                    key={c.name}
                    column={c}
                    change={changeOf(r.diff, c.name)}
                    bound={boundText(bound.get(c.name))}
                    choice={choices[c.name] ?? { kind: 'mirror', name: '' }}
                    editable={open}
                    hasKeep={
                      !!bound.get(c.name) &&
                      !['mirror', 'ignore', 'defer'].includes(bound.get(c.name)!.action)
                    }
                    onChange={(ch) => choose(c.name, ch)}
                  />
                ))}
                {(r.diff?.removed ?? []).map((name) => (
                  <tr key={`removed-${name}`} class="removed">
                    <td>
                      <Mono>{name}</Mono>
                    </td>
                    <td colSpan={3} class="muted">
                      not in this schema
                    </td>
                    <td>
                      <span class="tag tag-bad">removed</span>
                    </td>
                    <td>{boundText(bound.get(name))}</td>
                    <td colSpan={2} class="muted">
                      its mirror column stays, and is no longer written
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>

      <section class="card" aria-labelledby="decide-title">
        <h2 id="decide-title">Decision</h2>
        {r.status === 'approved' && (
          <p>
            Approved. <a href={href('lineages', r.lineage_id)}>See the lineage and its mirror rows</a>.
          </p>
        )}
        {open && (
          <>
            <p class="muted small">
              Every decision quotes action_version {r.action_version}; if someone else acted first, nothing
              changes and the page says so.
            </p>
            <div class="actions">
              {r.status === 'queued' && (
                <Button manage onClick={() => run(['claim'], 'Claimed: the review is yours (in review).')}>
                  Claim
                </Button>
              )}
              <Button
                manage
                kind="primary"
                disabled={columns.length === 0 || renameMissing}
                title={renameMissing ? 'Give every renamed column its mirror name' : undefined}
                onClick={() =>
                  run(
                    claimFirst,
                    'Approved: the mirror table is provisioned and the staged rows replay into it.',
                  )
                }
              >
                {r.status === 'queued' ? 'Claim and approve' : 'Approve'}
              </Button>
            </div>
            <div class="reject">
              <label for="reject-reason">Reason to reject</label>
              <textarea
                id="reject-reason"
                rows={2}
                value={reason}
                onInput={(e) => setReason(e.currentTarget.value)}
                placeholder="e.g. firmware bug: mode holds garbage"
              />
              <Button
                manage
                kind="danger"
                disabled={!reason.trim()}
                title={!reason.trim() ? 'A rejection needs a reason' : undefined}
                onClick={() =>
                  run(
                    r.status === 'queued' ? ['claim', 'reject'] : ['reject'],
                    'Rejected: the lineage stays paused and keeps its staged rows.',
                  )
                }
              >
                {r.status === 'queued' ? 'Claim and reject' : 'Reject'}
              </Button>
            </div>
          </>
        )}
        {r.status === 'rejected' && (
          <Button manage onClick={() => run(['reopen'], 'Reopened: the review is queued again.')}>
            Reopen
          </Button>
        )}
      </section>
    </section>
  );
}

function DiffSummary({ diff }: { diff: SchemaDiff | null }) {
  if (!diff) return null;
  if (!diff.against_hash)
    return <p class="muted small">Nothing is approved for this lineage yet: every column is new.</p>;
  const parts = [
    `${diff.added.length} added`,
    `${diff.removed.length} removed`,
    `${diff.retyped.length} retyped`,
    `${diff.rekeyed.length} rekeyed`,
  ];
  return (
    <p class="muted small">
      Against the approved schema <Mono title={diff.against_hash}>{diff.against_hash.slice(0, 16)}</Mono>:{' '}
      {parts.join(', ')}.
    </p>
  );
}

function ColumnRow({
  column: c,
  change,
  bound,
  choice,
  editable,
  hasKeep,
  onChange,
}: {
  column: SchemaColumn;
  change: string;
  bound: string;
  choice: Choice;
  editable: boolean;
  hasKeep: boolean;
  onChange: (c: Choice) => void;
}) {
  const key = c.pk_ordinal > 0;
  return (
    <tr>
      <td>
        <Mono>{c.name}</Mono>
      </td>
      <td>{c.decl_type_affinity}</td>
      <td class="num">{key ? c.pk_ordinal : ''}</td>
      <td>{c.not_null ? 'yes' : ''}</td>
      <td>{change && <span class={`tag ${change === 'unchanged' ? '' : 'tag-info'}`}>{change}</span>}</td>
      <td class="small">{bound}</td>
      <td>
        <select
          aria-label={`Action for ${c.name}`}
          value={choice.kind}
          disabled={!editable}
          onChange={(e) => onChange({ kind: e.currentTarget.value as Kind, name: choice.name })}
        >
          <option value="mirror">mirror</option>
          <option value="rename">rename</option>
          {/* A mirror without its key could not upsert: key columns are mirrored or deferred. */}
          <option value="ignore" disabled={key}>
            ignore
          </option>
          <option value="defer">defer</option>
          {hasKeep && <option value="keep">keep as bound</option>}
        </select>
      </td>
      <td>
        {choice.kind === 'rename' && (
          <input
            aria-label={`Mirror name for ${c.name}`}
            value={choice.name}
            disabled={!editable}
            maxLength={63}
            onInput={(e) => onChange({ kind: 'rename', name: e.currentTarget.value })}
          />
        )}
      </td>
    </tr>
  );
}
