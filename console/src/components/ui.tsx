import type { ComponentChildren } from 'preact';
import { useState } from 'preact/hooks';
import { isApiError } from '../api';
import { ago, time } from '../format';
import { READ_ONLY_HINT, useSignedIn } from '../session';

const TONE: Record<string, string> = {
  active: 'ok',
  approved: 'ok',
  applied: 'ok',
  acknowledged: 'ok',
  equal: 'ok',
  paused: 'warn',
  queued: 'warn',
  in_review: 'info',
  pending: 'info',
  rejected: 'bad',
  deleted: 'muted',
  abandoned: 'muted',
  divergent: 'bad',
};

export const Badge = ({ value }: { value: string }) => (
  <span class={`badge badge-${TONE[value] ?? 'neutral'}`}>{value.replace(/_/g, ' ')}</span>
);

export const Mono = ({ children, title }: { children: ComponentChildren; title?: string }) => (
  <code class="mono" title={title}>
    {children}
  </code>
);

export const Age = ({ at }: { at: string | null | undefined }) => <time title={time(at)}>{ago(at)}</time>;

/** An API failure said plainly: a 403 as what the token may not do, anything else as code and message. */
export function ErrorNote({ error }: { error: unknown }) {
  if (!error) return null;
  if (isApiError(error)) {
    const title =
      error.status === 403
        ? 'Not allowed'
        : error.status === 401
          ? 'Not signed in'
          : error.status === 404
            ? 'Not found'
            : `Error ${error.status || ''}`.trim();
    return (
      <div class="note note-error" role="alert">
        <strong>{title}</strong> <Mono>{error.code}</Mono>: {error.message}
      </div>
    );
  }
  return (
    <div class="note note-error" role="alert">
      {error instanceof Error ? error.message : String(error)}
    </div>
  );
}

export const Note = ({ tone = 'info', children }: { tone?: string; children: ComponentChildren }) => (
  <div class={`note note-${tone}`} role="status">
    {children}
  </div>
);

type ButtonProps = Readonly<{
  children: ComponentChildren;
  /** A mutation: disabled, with the reason as its tooltip, for a read-only token. */
  manage?: boolean;
  onClick?: () => void | Promise<void>;
  kind?: 'primary' | 'danger' | 'plain';
  disabled?: boolean;
  title?: string | undefined;
  type?: 'button' | 'submit';
}>;

/** A button that shows it is busy while its action runs, and says why it is disabled. */
export function Button({ manage, onClick, kind = 'plain', disabled, children, title, type }: ButtonProps) {
  const { session } = useSignedIn();
  const [busy, setBusy] = useState(false);
  const forbidden = manage && !session.can_manage;
  return (
    <button
      type={type ?? 'button'}
      class={`btn btn-${kind}`}
      disabled={disabled || forbidden || busy}
      aria-busy={busy}
      title={forbidden ? READ_ONLY_HINT : title}
      onClick={
        onClick &&
        (async () => {
          setBusy(true);
          try {
            await onClick();
          } finally {
            setBusy(false);
          }
        })
      }
    >
      {children}
    </button>
  );
}

export function Pager({
  page,
  limit,
  total,
  onPage,
  label,
}: {
  page: number;
  limit: number;
  total: number;
  onPage: (p: number) => void;
  label: string;
}) {
  const pages = Math.max(1, Math.ceil(total / limit));
  return (
    <nav class="pager" aria-label={`${label} pages`}>
      <button class="btn btn-plain" disabled={page <= 1} onClick={() => onPage(page - 1)}>
        ‹ Previous
      </button>
      <span>
        page {page} of {pages} · {total.toLocaleString('en-US')} rows
      </span>
      <button class="btn btn-plain" disabled={page >= pages} onClick={() => onPage(page + 1)}>
        Next ›
      </button>
    </nav>
  );
}

export type Column<T> = Readonly<{
  header: string;
  cell: (row: T) => ComponentChildren;
  numeric?: boolean;
}>;

/** A plain table with a caption for screen readers (and for tests that find it by name). */
export function Table<T>({
  label,
  columns,
  rows,
  rowKey,
  empty = 'Nothing here yet.',
}: {
  label: string;
  columns: readonly Column<T>[];
  rows: readonly T[];
  rowKey: (row: T) => string;
  empty?: string;
}) {
  return (
    <div class="table-wrap">
      <table aria-label={label}>
        <thead>
          <tr>
            {columns.map((c) => (
              <th key={c.header} class={c.numeric ? 'num' : undefined} scope="col">
                {c.header}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {rows.length === 0 ? (
            <tr>
              <td colSpan={columns.length} class="empty">
                {empty}
              </td>
            </tr>
          ) : (
            rows.map((r) => (
              <tr key={rowKey(r)}>
                {columns.map((c) => (
                  <td key={c.header} class={c.numeric ? 'num' : undefined}>
                    {c.cell(r)}
                  </td>
                ))}
              </tr>
            ))
          )}
        </tbody>
      </table>
    </div>
  );
}

export const Stat = ({ label, value, hint }: { label: string; value: ComponentChildren; hint?: string }) => (
  <div class="stat" title={hint}>
    <div class="stat-value">{value}</div>
    <div class="stat-label">{label}</div>
  </div>
);

export const Loading = () => (
  <p class="muted" role="status">
    Loading…
  </p>
);
