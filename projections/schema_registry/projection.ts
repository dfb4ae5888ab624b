/**
 * `registry`: registry entries and registry reviews (SPEC §4.6), folded from SLUICE_REGISTRY into
 * `edge_schema_registry` and `edge_registry_reviews`.
 */
import type { RegistryEvent } from '../../domain/registry/events';
import { assertNever } from '../../domain/shared/decider';
import type { StoredRegistryEvent } from '../../infra/nats/registry-events';
import type { ApplyContext, Projection, Tx } from '../runner/types';
import type { EdgeRegistryReviewsTable, EdgeSchemaRegistryTable } from '../store/schema';

const HANDLES = [
  'RegistryEntryRegistered',
  'RegistrySchemaObserved',
  'RegistryReviewOpened',
  'RegistryReviewClaimed',
  'RegistryReviewApproved',
  'RegistryReviewRejected',
  'RegistryReviewAbandoned',
  'RegistryApprovalAdopted',
  'RegistryLineageEnrolled',
] as const satisfies readonly RegistryEvent['type'][];
type Handled = StoredRegistryEvent;

async function entryPatch(
  tx: Tx,
  id: string,
  values: Partial<Omit<EdgeSchemaRegistryTable, 'registry_id'>>,
  at: string,
): Promise<void> {
  await tx
    .updateTable('edge_schema_registry')
    .set({ ...values, updated_at: at })
    .where('registry_id', '=', id)
    .execute();
}

async function reviewPatch(
  tx: Tx,
  reviewId: string,
  values: Partial<Omit<EdgeRegistryReviewsTable, 'review_id'>>,
  at: string,
): Promise<void> {
  await tx
    .updateTable('edge_registry_reviews')
    .set({ ...values, updated_at: at })
    .where('review_id', '=', reviewId)
    .execute();
}

async function apply(tx: Tx, event: Handled, ctx: ApplyContext): Promise<void> {
  const at = ctx.occurred_at;
  const id = ctx.lineage_id; // the registry entry's id (see decode.ts)
  if (event.type === 'RegistryEntryRegistered') {
    const d = event.data;
    await tx
      .insertInto('edge_schema_registry')
      .values({
        registry_id: d.registry_id,
        project_id: d.project_id,
        scope: d.scope,
        scope_id: d.scope_id,
        source_table: d.source_table,
        schema_hash: d.schema_hash,
        schema_columns: null,
        status: 'pending',
        review_id: null,
        bindings: null,
        adopted_from: null,
        reason: null,
        enrolled_lineages: 0,
        created_at: at,
        updated_at: at,
      })
      .onConflict((oc) => oc.column('registry_id').doNothing())
      .execute();
    return;
  }
  const e = await tx
    .selectFrom('edge_schema_registry')
    .selectAll()
    .where('registry_id', '=', id)
    .executeTakeFirst();
  if (!e) return;
  const actor = event.metadata?.actor ?? null;
  switch (event.type) {
    case 'RegistrySchemaObserved':
      await entryPatch(tx, id, { schema_columns: JSON.stringify(event.data.schema_columns) }, at);
      return;
    case 'RegistryReviewOpened': {
      const d = event.data;
      await tx
        .insertInto('edge_registry_reviews')
        .values({
          review_id: d.review_id,
          registry_id: id,
          project_id: e.project_id,
          scope: e.scope,
          scope_id: e.scope_id,
          source_table: e.source_table,
          schema_hash: e.schema_hash,
          status: 'queued',
          action_version: d.action_version,
          opened_by_lineage: d.lineage_id,
          opened_by_device: d.device_id,
          reason: null,
          claimed_by: null,
          decided_by: null,
          created_at: at,
          claimed_at: null,
          decided_at: null,
          updated_at: at,
        })
        .onConflict((oc) => oc.column('review_id').doNothing())
        .execute();
      await entryPatch(tx, id, { review_id: d.review_id }, at);
      return;
    }
    case 'RegistryReviewClaimed':
      await reviewPatch(
        tx,
        event.data.review_id,
        { status: 'in_review', action_version: event.data.action_version, claimed_by: actor, claimed_at: at },
        at,
      );
      return;
    case 'RegistryReviewApproved':
      await reviewPatch(
        tx,
        event.data.review_id,
        { status: 'approved', action_version: event.data.action_version, decided_by: actor, decided_at: at },
        at,
      );
      await entryPatch(
        tx,
        id,
        {
          status: 'approved',
          review_id: event.data.review_id,
          bindings: JSON.stringify(event.data.bindings),
        },
        at,
      );
      return;
    case 'RegistryReviewRejected':
      await reviewPatch(
        tx,
        event.data.review_id,
        {
          status: 'rejected',
          action_version: event.data.action_version,
          reason: event.data.reason,
          decided_by: actor,
          decided_at: at,
        },
        at,
      );
      await entryPatch(
        tx,
        id,
        { status: 'rejected', review_id: event.data.review_id, reason: event.data.reason },
        at,
      );
      return;
    case 'RegistryReviewAbandoned':
      await reviewPatch(
        tx,
        event.data.review_id,
        {
          status: 'abandoned',
          action_version: event.data.action_version,
          reason: event.data.reason,
          decided_by: actor,
          decided_at: at,
        },
        at,
      );
      return;
    case 'RegistryApprovalAdopted':
      await entryPatch(
        tx,
        id,
        {
          status: 'approved',
          review_id: event.data.review_id,
          bindings: JSON.stringify(event.data.bindings),
          adopted_from: event.data.lineage_id,
          enrolled_lineages: e.enrolled_lineages + 1,
        },
        at,
      );
      return;
    case 'RegistryLineageEnrolled':
      await entryPatch(tx, id, { enrolled_lineages: e.enrolled_lineages + 1 }, at);
      return;
    default:
      return assertNever(event, 'registry event');
  }
}

export function registryProjection(): Projection<Handled> {
  return {
    name: 'registry',
    version: 1,
    stream: 'SLUICE_REGISTRY',
    handles: HANDLES,
    apply,
    async truncate(tx) {
      await tx.deleteFrom('edge_schema_registry').execute();
      await tx.deleteFrom('edge_registry_reviews').execute();
    },
  };
}
