import type { ColumnBinding } from '../lineage/events';
import type { SchemaColumns } from '../protocol/fingerprint';
import { canonicalJson, sha256Hex } from '../shared/canonical';

/** Where a registry entry applies: every device of a project, or every device of one fleet. */
export type RegistryScope = 'project' | 'fleet';

export type RegistryKey = Readonly<{
  project_id: string;
  scope: RegistryScope;
  /** The project id (scope `project`) or the fleet id (scope `fleet`). */
  scope_id: string;
  source_table: string;
  schema_hash: string;
}>;

/**
 * The id of the registry entry for a key: hex SHA-256 of its canonical JSON. Deterministic, so
 * every worker that sees the same (scope, table, hash) names the same aggregate, and any table
 * name is safe in a subject (only the hash goes there).
 */
export const registryId = (k: RegistryKey): string =>
  sha256Hex(
    canonicalJson({
      project_id: k.project_id,
      scope: k.scope,
      scope_id: k.scope_id,
      source_table: k.source_table,
      schema_hash: k.schema_hash,
    }),
  );

export type RegistryReviewStatus = 'queued' | 'in_review' | 'approved' | 'rejected' | 'abandoned';

/** Every event of one registry entry `(scope, source_table, schema_hash)`. */
export type RegistryEvent =
  | Readonly<{ type: 'RegistryEntryRegistered'; data: RegistryKey & { registry_id: string } }>
  | Readonly<{ type: 'RegistrySchemaObserved'; data: { schema_columns: SchemaColumns } }>
  | Readonly<{
      type: 'RegistryReviewOpened';
      data: { review_id: string; action_version: number; lineage_id: string; device_id: string };
    }>
  | Readonly<{ type: 'RegistryReviewClaimed'; data: { review_id: string; action_version: number } }>
  | Readonly<{
      type: 'RegistryReviewApproved';
      data: { review_id: string; action_version: number; bindings: readonly ColumnBinding[] };
    }>
  | Readonly<{
      type: 'RegistryReviewRejected';
      data: { review_id: string; action_version: number; reason: string };
    }>
  | Readonly<{
      type: 'RegistryReviewAbandoned';
      data: { review_id: string; action_version: number; reason: string };
    }>
  | Readonly<{
      /** A lineage's own earlier approval of this hash became the entry's (consolidation). */
      type: 'RegistryApprovalAdopted';
      data: { lineage_id: string; review_id: string | null; bindings: readonly ColumnBinding[] };
    }>
  | Readonly<{ type: 'RegistryLineageEnrolled'; data: { lineage_id: string; device_id: string } }>;

export type RegistryEventType = RegistryEvent['type'];

/**
 * The scope a device's new schemas are governed in: the project (`project`), the device's fleet
 * (`fleet`; a device in no fleet is governed on its own), or none (`none`: a review per lineage).
 */
export function coalescingScope(
  mode: 'none' | 'project' | 'fleet',
  projectId: string,
  fleetId: string | null,
): Readonly<{ scope: RegistryScope; scope_id: string }> | null {
  if (mode === 'project') return { scope: 'project', scope_id: projectId };
  if (mode === 'fleet' && fleetId) return { scope: 'fleet', scope_id: fleetId };
  return null;
}
