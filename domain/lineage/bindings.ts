/**
 * Column bindings (SPEC §4, "Column actions"): how an approval's column actions become one
 * binding per column, and what a binding set means for the rows. Shared by the lineage's own
 * reviews and the registry entry's (domain/registry/decide.ts).
 */
import type { SchemaColumns } from '../protocol/fingerprint';
import { assertNever } from '../shared/decider';
import { DomainError } from '../shared/errors';
import type { ColumnAction, ColumnBinding } from './events';

// eslint-disable-next-line no-control-regex -- rejecting control characters is the point
const MIRROR_NAME = /^[^\u0000-\u001f\u007f]{1,63}$/u;

/**
 * A deferred key or NOT NULL column blocks the rows (the mirror could not write them without
 * it): such bindings hold the lineage with the `deferred_columns` pause.
 */
export const blocksRows = (bindings: readonly ColumnBinding[]): boolean =>
  bindings.some((b) => b.action === 'defer' && (b.pk_ordinal > 0 || b.not_null));

/** The action a column's current binding stands for, so an approval can keep it. */
function actionOf(b: ColumnBinding): ColumnAction {
  switch (b.action) {
    case 'mirror':
      return b.target !== null && b.target !== b.column
        ? { column: b.column, action: 'mirror', mirror_column_name: b.target }
        : { column: b.column, action: 'mirror' };
    case 'map':
    case 'auto_create_and_map':
      return b.target !== null
        ? { column: b.column, action: b.action, data_point: b.target }
        : { column: b.column, action: b.action };
    case 'ignore':
    case 'defer':
      return { column: b.column, action: b.action };
    default:
      return assertNever(b.action, 'column action');
  }
}

/**
 * One binding per column of `schema`: the given actions; for a column without one, its current
 * binding (`previous`: a rename, ignore, defer or map stays as the operator left it); `mirror`
 * under its own name for a new column.
 */
export function bindSchema(
  schema: SchemaColumns | null,
  actions: readonly ColumnAction[] = [],
  previous: readonly ColumnBinding[] = [],
): ColumnBinding[] {
  if (!schema) {
    throw new DomainError(
      'invalid_column_actions',
      'the device has not sent the columns of this schema yet; wait for a batch with schema_columns',
    );
  }
  const byColumn = new Map<string, ColumnAction>();
  for (const a of actions) {
    if (!schema.columns.some((c) => c.name === a.column)) {
      throw new DomainError(
        'invalid_column_actions',
        `column ${JSON.stringify(a.column)} is not in the schema`,
      );
    }
    if (byColumn.has(a.column))
      throw new DomainError('invalid_column_actions', `column ${a.column} has two actions`);
    if (a.mirror_column_name !== undefined && !MIRROR_NAME.test(a.mirror_column_name)) {
      throw new DomainError(
        'invalid_column_actions',
        `mirror_column_name for ${a.column} must be 1-63 printable chars`,
      );
    }
    byColumn.set(a.column, a);
  }
  const kept = new Map(previous.map((b) => [b.column, actionOf(b)]));
  const targets = new Set<string>();
  return schema.columns.map((c) => {
    const carried = kept.get(c.name);
    // A key column may only be mirrored or deferred: a binding it had as a non-key column does not carry.
    const keep =
      carried && (c.pk_ordinal === 0 || carried.action === 'mirror' || carried.action === 'defer')
        ? carried
        : undefined;
    // A new column with no action is mirrored under its own name: the documented default.
    const a = byColumn.get(c.name) ?? keep ?? { column: c.name, action: 'mirror' as const };
    if (c.pk_ordinal > 0 && a.action !== 'mirror' && a.action !== 'defer') {
      throw new DomainError('invalid_column_actions', `key column ${c.name} must be mirrored or deferred`);
    }
    const target =
      a.action === 'mirror'
        ? (a.mirror_column_name ?? c.name)
        : a.action === 'ignore' || a.action === 'defer'
          ? null
          : (a.data_point ?? c.name);
    if (a.action === 'mirror' && target !== null) {
      const folded = target.toLowerCase();
      if (targets.has(folded))
        throw new DomainError('invalid_column_actions', `two columns mirror to ${target}`);
      targets.add(folded);
    }
    return {
      column: c.name,
      action: a.action,
      target,
      affinity: c.decl_type_affinity,
      pk_ordinal: c.pk_ordinal,
      not_null: c.not_null,
    };
  });
}
