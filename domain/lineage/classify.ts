import type { SchemaColumns } from '../protocol/fingerprint';
import type { Classification } from './events';
import type { ActiveLineage } from './state';

/**
 * Classify a schema hash the lineage has not accepted yet (SPEC §4).
 * `incoming` is the batch's schema_columns or what an earlier batch said about the same hash.
 */
export function classifySchema(
  s: ActiveLineage,
  hash: string,
  incoming: SchemaColumns | null,
): Classification {
  if (s.approved_hash === hash) return 'compatible_mapped';
  if (s.approved_hash === null) return 'ambiguous';
  const bound = s.schemas[s.approved_hash];
  if (!bound || !incoming) return 'ambiguous';

  const byName = new Map(incoming.columns.map((c) => [c.name, c]));
  const boundKey = bound.columns.filter((c) => c.pk_ordinal > 0).map((c) => `${c.name}#${c.pk_ordinal}`);
  const newKey = incoming.columns.filter((c) => c.pk_ordinal > 0).map((c) => `${c.name}#${c.pk_ordinal}`);
  if (boundKey.sort().join() !== newKey.sort().join()) return 'breaking';

  for (const b of s.bindings) {
    if (b.action === 'ignore') continue;
    const now = byName.get(b.column);
    if (!now || now.decl_type_affinity !== b.affinity || now.pk_ordinal !== b.pk_ordinal) return 'breaking';
  }
  const boundNames = new Set(bound.columns.map((c) => c.name));
  const added = incoming.columns.filter((c) => !boundNames.has(c.name));
  const removed = bound.columns.filter((c) => !byName.has(c.name));
  if (removed.length > 0) return 'ambiguous';
  if (added.length > 0 && added.every((c) => !c.not_null)) return 'compatible_additive';
  return 'ambiguous';
}
