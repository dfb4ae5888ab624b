import type { Affinity, SchemaColumns } from '../protocol/fingerprint';

/**
 * What a schema under review changes against the approved one (issue "governance continuity"):
 * columns added, removed, with another type affinity, or with another place in the key.
 */
export type SchemaDiff = Readonly<{
  /** null: nothing is approved yet, so every column is added. */
  against_hash: string | null;
  added: readonly string[];
  removed: readonly string[];
  retyped: readonly Readonly<{ column: string; from: Affinity; to: Affinity }>[];
  /** Key position (pk_ordinal, 0 = not in the key) changed. */
  rekeyed: readonly Readonly<{ column: string; from: number; to: number }>[];
}>;

/** Pure: the diff of `review` against `approved` (null when the review's columns are not known yet). */
export function schemaDiff(
  review: SchemaColumns | null,
  approved: SchemaColumns | null,
  approvedHash: string | null,
): SchemaDiff | null {
  if (!review) return null;
  const before = new Map((approved?.columns ?? []).map((c) => [c.name, c]));
  const after = new Map(review.columns.map((c) => [c.name, c]));
  const retyped: { column: string; from: Affinity; to: Affinity }[] = [];
  const rekeyed: { column: string; from: number; to: number }[] = [];
  for (const c of review.columns) {
    const old = before.get(c.name);
    if (!old) continue;
    if (old.decl_type_affinity !== c.decl_type_affinity) {
      retyped.push({ column: c.name, from: old.decl_type_affinity, to: c.decl_type_affinity });
    }
    if (old.pk_ordinal !== c.pk_ordinal)
      rekeyed.push({ column: c.name, from: old.pk_ordinal, to: c.pk_ordinal });
  }
  return {
    against_hash: approved ? approvedHash : null,
    added: review.columns.filter((c) => !before.has(c.name)).map((c) => c.name),
    removed: (approved?.columns ?? []).filter((c) => !after.has(c.name)).map((c) => c.name),
    retyped,
    rekeyed,
  };
}
