import { wire } from '../format';
import type { Row } from '../types';
import { type Column, Mono } from './ui';

/** Table columns for rows of named wire values: key columns first, in monospace. */
export function rowColumns<T>(names: readonly string[], pick: (r: T) => Row | null): Column<T>[] {
  return names.map((name) => ({
    header: name,
    cell: (r: T) => {
      const row = pick(r);
      if (!row) return <span class="muted">—</span>;
      const v = row[name];
      return v === null || v === undefined ? <span class="muted">NULL</span> : <Mono>{wire(v)}</Mono>;
    },
  }));
}

/** Column names of a set of rows, in first-seen order. */
export function namesOf(rows: readonly (Row | null)[]): string[] {
  const seen = new Set<string>();
  for (const r of rows) if (r) for (const k of Object.keys(r)) seen.add(k);
  return [...seen];
}
