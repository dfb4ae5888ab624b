/**
 * From an approval's bindings to the physical columns of a mirror table, and how a later
 * approval changes an existing table: in place (new columns only) or as a new generation.
 */
import type { ColumnBinding } from '../../domain/lineage/events';
import type { Affinity } from '../../domain/protocol/fingerprint';
import { physicalColumnName } from '../store/identifiers';

export type MirrorColumn = Readonly<{
  /** Source column on the device. */
  source: string;
  /** The approved name (mirror_column_name, or the source name). */
  target: string;
  /** Column name in the table: `target` when safe, else derived (see identifiers.ts). */
  name: string;
  affinity: Affinity;
  /** 1..N for key columns, 0 otherwise. */
  key: number;
  /** Whether the current approval writes it (an unbound column keeps its old values). */
  bound: boolean;
}>;

/** Columns every mirror table has besides the bound ones. */
export const SYSTEM_COLUMNS = [
  'device_id',
  'source_commit_seq',
  'source_journal_epoch',
  'source_epoch_ordinal',
] as const;

export type TablePlan =
  | Readonly<{ kind: 'create'; columns: readonly MirrorColumn[] }>
  | Readonly<{ kind: 'alter'; columns: readonly MirrorColumn[]; added: readonly MirrorColumn[] }>
  | Readonly<{ kind: 'recreate'; columns: readonly MirrorColumn[]; why: string }>
  | Readonly<{ kind: 'no_key'; why: string }>;

const mirrored = (bindings: readonly ColumnBinding[]) =>
  bindings.filter((b): b is ColumnBinding & { target: string } => b.action === 'mirror' && b.target !== null);

function freshColumns(bindings: readonly ColumnBinding[]): MirrorColumn[] {
  const taken = new Set<string>(SYSTEM_COLUMNS);
  return mirrored(bindings).map((b) => {
    const name = physicalColumnName(b.target, taken);
    taken.add(name.toLowerCase());
    return { source: b.column, target: b.target, name, affinity: b.affinity, key: b.pk_ordinal, bound: true };
  });
}

const keySignature = (cols: readonly MirrorColumn[]): string =>
  JSON.stringify(
    cols
      .filter((c) => c.key > 0)
      .sort((a, b) => a.key - b.key)
      .map((c) => [c.target, c.affinity]),
  );

export const keyColumns = (cols: readonly MirrorColumn[]): MirrorColumn[] =>
  cols.filter((c) => c.key > 0).sort((a, b) => a.key - b.key);

/** Decide what an approval does to the lineage's current table (`existing`, null if none). */
export function planTable(
  bindings: readonly ColumnBinding[],
  existing: readonly MirrorColumn[] | null,
): TablePlan {
  const unkeyed = bindings.filter((b) => b.pk_ordinal > 0 && b.action !== 'mirror').map((b) => b.column);
  if (unkeyed.length > 0)
    return { kind: 'no_key', why: `key column(s) ${unkeyed.join(', ')} are not mirrored` };
  if (!bindings.some((b) => b.pk_ordinal > 0)) return { kind: 'no_key', why: 'the schema has no key' };
  const fresh = freshColumns(bindings);
  if (existing === null) return { kind: 'create', columns: fresh };

  if (keySignature(fresh) !== keySignature(existing)) {
    return { kind: 'recreate', columns: fresh, why: 'the key changed' };
  }
  const byTarget = new Map(existing.map((c) => [c.target, c]));
  const taken = new Set<string>([...SYSTEM_COLUMNS, ...existing.map((c) => c.name.toLowerCase())]);
  const next = new Map<string, MirrorColumn>(existing.map((c) => [c.target, { ...c, bound: false }]));
  const added: MirrorColumn[] = [];
  for (const b of mirrored(bindings)) {
    const old = byTarget.get(b.target);
    if (old) {
      if (old.affinity !== b.affinity) {
        return { kind: 'recreate', columns: fresh, why: `column ${b.target} changed type` };
      }
      next.set(b.target, { ...old, source: b.column, bound: true });
    } else {
      const name = physicalColumnName(b.target, taken);
      taken.add(name.toLowerCase());
      const col: MirrorColumn = {
        source: b.column,
        target: b.target,
        name,
        affinity: b.affinity,
        key: 0,
        bound: true,
      };
      added.push(col);
      next.set(b.target, col);
    }
  }
  return { kind: 'alter', columns: [...next.values()], added };
}
