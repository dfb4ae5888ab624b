/**
 * `lineages`: the operator's view of every lineage (status, pause reasons, counters), its schema
 * versions, reviews, column bindings and replay intents. The watermark, pause reasons and refusal
 * codes are folded by the domain's own functions (evolve-rows.ts, evolve-governance.ts), so they
 * equal the decider's state after the same events.
 */
import type { ColumnBinding, LineageEvent, PauseReason, StoredEvent } from '../../domain/lineage/events';
import { withPauseReason, withoutPauseReason } from '../../domain/lineage/evolve-governance';
import { advanceWatermark, refusalCode } from '../../domain/lineage/evolve-rows';
import { assertNever } from '../../domain/shared/decider';
import type { ApplyContext, Projection, Tx } from '../runner/types';
import type { EdgeTableLineagesTable } from '../store/schema';

const HANDLES = [
  'LineageRegistered',
  'SchemaVersionObserved',
  'SchemaReviewQueued',
  'SchemaReviewClaimed',
  'SchemaReviewApproved',
  'SchemaVersionAdopted',
  'SchemaReviewRejected',
  'LineagePaused',
  'LineageResumed',
  'RowsStaged',
  'RowsAccepted',
  'TelemetryStaged',
  'TelemetryAccepted',
  'StagedRowsReleased',
  'ReplayCompleted',
  'MaterializationFailed',
  'MaterializationReset',
  'LineageDeleted',
  'RegistryReviewAwaited',
  'SchemaApprovedByRegistry',
  'LineageFleetAssigned',
  'StateWriteConflictDetected',
  'RowsRefused',
  'SchemaReviewReopened',
  'VerifyRequested',
  'VerifyCompleted',
  'ResyncRequested',
] as const satisfies readonly LineageEvent['type'][];
type Handled = StoredEvent<Extract<LineageEvent, { type: (typeof HANDLES)[number] }>>;

/** How many refusals the lineage detail keeps (the counter counts them all). */
const RECENT_REFUSALS = 10;
export type RefusalView = Readonly<{
  code: string;
  commit_seq: number;
  journal_epoch: string;
  pk: unknown;
  column: string | null;
  message: string;
  at: string;
}>;

type LineagePatch = Partial<Omit<EdgeTableLineagesTable, 'lineage_id'>>;

async function load(tx: Tx, lineageId: string): Promise<EdgeTableLineagesTable | undefined> {
  return tx
    .selectFrom('edge_table_lineages')
    .selectAll()
    .where('lineage_id', '=', lineageId)
    .executeTakeFirst();
}

async function patch(tx: Tx, lineageId: string, values: LineagePatch, at: string): Promise<void> {
  await tx
    .updateTable('edge_table_lineages')
    .set({ ...values, updated_at: at })
    .where('lineage_id', '=', lineageId)
    .execute();
}

const reasonsOf = (l: EdgeTableLineagesTable): PauseReason[] => JSON.parse(l.pause_reasons) as PauseReason[];
const detailsOf = (l: EdgeTableLineagesTable): Record<string, string> =>
  JSON.parse(l.pause_details ?? '{}') as Record<string, string>;

/** The watermark as the decider keeps it (`advanceWatermark`), over the epochs this row lists. */
function takeIn(l: EdgeTableLineagesTable, epoch: string, seqs: readonly number[]): LineagePatch {
  const seen = JSON.parse(l.journal_epochs) as string[];
  const epochSeen = seen.includes(epoch);
  const w = advanceWatermark(
    { last_epoch: l.last_journal_epoch, last_commit_seq: l.last_commit_seq ?? 0 },
    epoch,
    epochSeen,
    seqs,
  );
  return {
    journal_epochs:
      epochSeen || l.last_journal_epoch === epoch ? l.journal_epochs : JSON.stringify([...seen, epoch]),
    last_journal_epoch: w.last_epoch,
    last_commit_seq: w.last_commit_seq,
  };
}

async function apply(tx: Tx, event: Handled, ctx: ApplyContext): Promise<void> {
  const at = ctx.occurred_at;
  const id = ctx.lineage_id;
  if (event.type === 'LineageRegistered') {
    const d = event.data;
    await tx
      .insertInto('edge_table_lineages')
      .values({
        lineage_id: d.lineage_id,
        project_id: d.project_id,
        device_id: d.device_id,
        device_name: d.device_name,
        source_table: d.source_table,
        kind: d.kind,
        status: 'active',
        pause_reasons: '[]',
        pause_details: null,
        current_schema_hash: null,
        approved_schema_hash: null,
        staged_rows: 0,
        replaying_rows: 0,
        materialized_rows: 0,
        duplicates_skipped: 0,
        journal_epochs: '[]',
        last_journal_epoch: null,
        last_commit_seq: null,
        last_batch_seq: null,
        replay_id: null,
        replay_state: 'none',
        materialization_errors: 0,
        last_error: null,
        deleted_reason: null,
        created_at: at,
        updated_at: at,
        refused_rows: 0,
        recent_refusals: '[]',
        last_verify_id: null,
        last_verify_status: null,
        last_verify_outcome: null,
        last_verify_divergent: null,
        last_verify_requested_at: null,
        last_verify_completed_at: null,
        last_resync_id: null,
        last_resync_reason: null,
        last_resync_buckets: null,
        last_resync_at: null,
      })
      .onConflict((oc) => oc.column('lineage_id').doNothing())
      .execute();
    return;
  }
  const l = await load(tx, id);
  // Like the decider's evolve: nothing happens to an unknown or deleted lineage.
  if (!l || l.status === 'deleted') return;
  const actor = event.metadata?.actor ?? null;
  switch (event.type) {
    case 'SchemaVersionObserved': {
      const d = event.data;
      const columns = d.schema_columns ? JSON.stringify(d.schema_columns) : null;
      await tx
        .insertInto('edge_schema_versions')
        .values({
          lineage_id: id,
          schema_hash: d.schema_hash,
          project_id: l.project_id,
          classification: d.classification,
          schema_columns: columns,
          first_seen_at: at,
          last_seen_at: at,
        })
        .onConflict((oc) =>
          oc.columns(['lineage_id', 'schema_hash']).doUpdateSet((eb) => ({
            classification: d.classification,
            // A later observation may bring the columns an earlier one lacked; never erase them.
            schema_columns: columns ?? eb.ref('edge_schema_versions.schema_columns'),
            last_seen_at: at,
          })),
        )
        .execute();
      await patch(tx, id, { current_schema_hash: d.schema_hash }, at);
      return;
    }
    case 'SchemaReviewQueued': {
      const d = event.data;
      await tx
        .insertInto('edge_schema_reviews')
        .values({
          review_id: d.review_id,
          lineage_id: id,
          project_id: l.project_id,
          device_id: l.device_id,
          source_table: l.source_table,
          schema_hash: d.schema_hash,
          classification: d.classification,
          status: 'queued',
          action_version: d.action_version,
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
      await patch(tx, id, {}, at);
      return;
    }
    case 'SchemaReviewClaimed':
      await tx
        .updateTable('edge_schema_reviews')
        .set({
          status: 'in_review',
          action_version: event.data.action_version,
          claimed_at: at,
          claimed_by: actor,
          updated_at: at,
        })
        .where('review_id', '=', event.data.review_id)
        .execute();
      await patch(tx, id, {}, at);
      return;
    case 'SchemaReviewApproved': {
      const d = event.data;
      await tx
        .updateTable('edge_schema_reviews')
        .set({
          status: 'approved',
          action_version: d.action_version,
          decided_at: at,
          decided_by: actor ?? d.auto_approved_by ?? null,
          updated_at: at,
        })
        .where('review_id', '=', d.review_id)
        .execute();
      // An approval replaces the lineage's bindings as a whole (SPEC §4: one action per column).
      await tx.deleteFrom('edge_column_bindings').where('lineage_id', '=', id).execute();
      await insertBindings(
        tx,
        { lineage_id: id, project_id: l.project_id, review_id: d.review_id, schema_hash: d.schema_hash, at },
        d.bindings,
        0,
      );
      await patch(
        tx,
        id,
        { approved_schema_hash: d.schema_hash, registry_id: null, registry_state: null },
        at,
      );
      return;
    }
    case 'SchemaVersionAdopted': {
      // An additive schema taken on by policy: the bound columns stay as approved, the new ones are
      // listed unbound (action ignore) under the approval they extend.
      const d = event.data;
      const prev = await tx
        .selectFrom('edge_column_bindings')
        .select(['review_id', (eb) => eb.fn.max('ordinal').as('max_ordinal')])
        .where('lineage_id', '=', id)
        .groupBy('review_id')
        .executeTakeFirst();
      const added = d.bindings.filter((b) => d.unbound_columns.includes(b.column));
      if (prev) {
        const scope = {
          lineage_id: id,
          project_id: l.project_id,
          review_id: prev.review_id,
          schema_hash: d.schema_hash,
          at,
        };
        await insertBindings(tx, scope, added, Number(prev.max_ordinal ?? 0) + 1);
      }
      await patch(tx, id, { approved_schema_hash: d.schema_hash }, at);
      return;
    }
    case 'SchemaReviewRejected':
      await tx
        .updateTable('edge_schema_reviews')
        .set({
          status: 'rejected',
          action_version: event.data.action_version,
          reason: event.data.reason,
          decided_at: at,
          decided_by: actor,
          updated_at: at,
        })
        .where('review_id', '=', event.data.review_id)
        .execute();
      await patch(tx, id, {}, at);
      return;
    case 'LineagePaused': {
      const reasons = withPauseReason(reasonsOf(l), event.data.reason);
      const details = {
        ...detailsOf(l),
        ...(event.data.detail ? { [event.data.reason]: event.data.detail } : {}),
      };
      await patch(
        tx,
        id,
        { pause_reasons: JSON.stringify(reasons), status: 'paused', pause_details: JSON.stringify(details) },
        at,
      );
      return;
    }
    case 'LineageResumed': {
      const reasons = withoutPauseReason(reasonsOf(l), event.data.reason);
      const { [event.data.reason]: _gone, ...details } = detailsOf(l);
      await patch(
        tx,
        id,
        {
          pause_reasons: JSON.stringify(reasons),
          status: reasons.length > 0 ? 'paused' : 'active',
          pause_details: JSON.stringify(details),
        },
        at,
      );
      return;
    }
    case 'RowsStaged':
    case 'RowsAccepted': {
      const d = event.data;
      const n = d.rows.length;
      const staged = event.type === 'RowsStaged';
      await patch(
        tx,
        id,
        {
          staged_rows: l.staged_rows + (staged ? n : 0),
          materialized_rows: l.materialized_rows + (staged ? 0 : n),
          duplicates_skipped: l.duplicates_skipped + d.duplicates_skipped,
          last_batch_at: at,
          ...takeIn(
            l,
            d.journal_epoch,
            d.rows.map((r) => r.commit_seq),
          ),
        },
        at,
      );
      return;
    }
    case 'StateWriteConflictDetected':
      // Taken in by the domain (deduped, the watermark moves) though never materialized.
      await patch(
        tx,
        id,
        takeIn(
          l,
          event.data.journal_epoch,
          event.data.conflicts.map((c) => c.commit_seq),
        ),
        at,
      );
      return;
    case 'TelemetryStaged':
    case 'TelemetryAccepted': {
      const n = event.data.rows.length;
      const staged = event.type === 'TelemetryStaged';
      await patch(
        tx,
        id,
        {
          staged_rows: l.staged_rows + (staged ? n : 0),
          materialized_rows: l.materialized_rows + (staged ? 0 : n),
          last_batch_seq: Math.max(l.last_batch_seq ?? 0, event.data.batch_seq),
          last_batch_at: at,
        },
        at,
      );
      return;
    }
    case 'StagedRowsReleased': {
      const d = event.data;
      await tx
        .insertInto('edge_replay_intents')
        .values({
          replay_id: d.replay_id,
          lineage_id: id,
          project_id: l.project_id,
          schema_hash: d.schema_hash,
          status: 'pending',
          staged_rows: l.staged_rows,
          completed_rows: null,
          created_at: at,
          completed_at: null,
        })
        .onConflict((oc) => oc.column('replay_id').doNothing())
        .execute();
      // Every staged row is now on its way to the mirror; materialized once the replay completes.
      await patch(
        tx,
        id,
        {
          replaying_rows: l.replaying_rows + l.staged_rows,
          staged_rows: 0,
          replay_id: d.replay_id,
          replay_state: 'pending',
        },
        at,
      );
      return;
    }
    case 'ReplayCompleted': {
      const d = event.data;
      await tx
        .updateTable('edge_replay_intents')
        .set({ status: 'completed', completed_rows: d.rows, completed_at: at })
        .where('replay_id', '=', d.replay_id)
        .where('lineage_id', '=', id)
        .execute();
      const current = l.replay_id === d.replay_id;
      await patch(
        tx,
        id,
        current
          ? {
              replay_state: 'completed',
              materialized_rows: l.materialized_rows + l.replaying_rows,
              replaying_rows: 0,
            }
          : {},
        at,
      );
      return;
    }
    case 'MaterializationFailed': {
      const d = event.data;
      await patch(
        tx,
        id,
        {
          // The rows the mirror could not take wait in staging (reason materialization_failed):
          // they were counted as materialized when accepted, and are not.
          staged_rows: l.staged_rows + d.rows.length,
          materialized_rows: l.materialized_rows - d.rows.length,
          materialization_errors: d.consecutive_failures,
          last_error: `${d.code}: ${d.message}`,
        },
        at,
      );
      return;
    }
    case 'MaterializationReset':
      await patch(tx, id, { materialization_errors: 0 }, at);
      return;
    case 'LineageDeleted':
      await patch(tx, id, { status: 'deleted', deleted_reason: event.data.reason }, at);
      return;
    case 'RegistryReviewAwaited':
      await patch(tx, id, { registry_id: event.data.registry_id, registry_state: 'awaiting' }, at);
      return;
    case 'SchemaApprovedByRegistry': {
      const d = event.data;
      await tx.deleteFrom('edge_column_bindings').where('lineage_id', '=', id).execute();
      await insertBindings(
        tx,
        {
          lineage_id: id,
          project_id: l.project_id,
          // Bindings name the approval they come from: the registry review (or the entry itself).
          review_id: d.review_id ?? d.registry_id,
          schema_hash: d.schema_hash,
          at,
        },
        d.bindings,
        0,
      );
      await patch(
        tx,
        id,
        { approved_schema_hash: d.schema_hash, registry_id: d.registry_id, registry_state: 'coalesced' },
        at,
      );
      return;
    }
    case 'LineageFleetAssigned':
      await patch(tx, id, { fleet_id: event.data.fleet_id }, at);
      return;
    case 'RowsRefused': {
      // Journaled changes the device could not encode: counted and shown, never materialized.
      const d = event.data;
      const recent = [
        ...(JSON.parse(l.recent_refusals) as RefusalView[]),
        ...d.rows.map((r): RefusalView => ({
          code: refusalCode(r),
          commit_seq: r.commit_seq,
          journal_epoch: d.journal_epoch,
          pk: r.pk,
          column: r.refusal?.column ?? null,
          message: r.refusal?.message ?? '',
          at,
        })),
      ].slice(-RECENT_REFUSALS);
      await patch(
        tx,
        id,
        {
          refused_rows: Number(l.refused_rows) + d.rows.length,
          recent_refusals: JSON.stringify(recent),
          ...takeIn(
            l,
            d.journal_epoch,
            d.rows.map((r) => r.commit_seq),
          ),
        },
        at,
      );
      return;
    }
    case 'SchemaReviewReopened':
      await tx
        .updateTable('edge_schema_reviews')
        .set({
          status: 'queued',
          action_version: event.data.action_version,
          reason: null,
          claimed_by: null,
          claimed_at: null,
          decided_by: null,
          decided_at: null,
          updated_at: at,
        })
        .where('review_id', '=', event.data.review_id)
        .execute();
      await patch(tx, id, {}, at);
      return;
    case 'VerifyRequested':
      await patch(
        tx,
        id,
        {
          last_verify_id: event.data.verify_id,
          last_verify_status: 'requested',
          last_verify_outcome: null,
          last_verify_divergent: null,
          last_verify_requested_at: event.data.requested_at,
          last_verify_completed_at: null,
        },
        at,
      );
      return;
    case 'VerifyCompleted':
      await patch(
        tx,
        id,
        {
          last_verify_id: event.data.verify_id,
          last_verify_status: 'completed',
          last_verify_outcome: event.data.outcome,
          last_verify_divergent: JSON.stringify(event.data.divergent_buckets),
          last_verify_completed_at: at,
        },
        at,
      );
      return;
    case 'ResyncRequested':
      await patch(
        tx,
        id,
        {
          last_resync_id: event.data.resync_id,
          last_resync_reason: event.data.reason,
          last_resync_buckets: event.data.buckets === null ? null : JSON.stringify(event.data.buckets),
          last_resync_at: at,
        },
        at,
      );
      return;
    default:
      return assertNever(event, 'lineages event');
  }
}

export function lineagesProjection(): Projection<Handled> {
  return {
    name: 'lineages',
    // 2: failures no longer reset by accepted batches; failed rows leave materialized_rows.
    // 3: refused rows, verify and resync state, reopened reviews.
    version: 3,
    stream: 'SLUICE_LINEAGE',
    handles: HANDLES,
    apply,
    async truncate(tx) {
      for (const t of [
        'edge_table_lineages',
        'edge_schema_versions',
        'edge_schema_reviews',
        'edge_column_bindings',
        'edge_replay_intents',
      ] as const) {
        await tx.deleteFrom(t).execute();
      }
    },
  };
}

type BindingScope = Readonly<{
  lineage_id: string;
  project_id: string;
  review_id: string;
  schema_hash: string;
  at: string;
}>;

async function insertBindings(
  tx: Tx,
  scope: BindingScope,
  bindings: readonly ColumnBinding[],
  firstOrdinal: number,
): Promise<void> {
  if (bindings.length === 0) return;
  await tx
    .insertInto('edge_column_bindings')
    .values(
      bindings.map((b, i) => ({
        lineage_id: scope.lineage_id,
        column_name: b.column,
        project_id: scope.project_id,
        review_id: scope.review_id,
        schema_hash: scope.schema_hash,
        ordinal: firstOrdinal + i,
        action: b.action,
        target: b.target,
        affinity: b.affinity,
        pk_ordinal: b.pk_ordinal,
        not_null: b.not_null ? 1 : 0,
        approved_at: scope.at,
      })),
    )
    .execute();
}
