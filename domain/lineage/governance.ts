/**
 * Schema governance (SPEC §4): what a batch's schema hash means for the lineage — observe it,
 * classify it, adopt an additive change, queue a review and pause `schema_review`, or, with
 * coalescing on, wait for the registry entry of its scope — and how an approval (a review of the
 * lineage's own, or a registry entry's) ends the pauses and releases the staged rows.
 */
import type { RowBatch } from '../protocol/contracts';
import type { Policy } from '../policy/policy';
import type { RegistryView } from '../registry/view';
import { blocksRows } from './bindings';
import { classifySchema } from './classify';
import { apply, push, requireLineage } from './common';
import type { ColumnBinding, LineageEvent } from './events';
import { gated, releaseLeftovers } from './staging';
import type { ActiveLineage, LineageState } from './state';

/** An approved registry entry, as a lineage takes it. */
export type RegistryApproval = Readonly<{
  registry_id: string;
  review_id: string | null;
  schema_hash: string;
  scope: 'project' | 'fleet';
  scope_id: string;
  bindings: readonly ColumnBinding[];
}>;

export type ApplyRegistryApprovalData = RegistryApproval & { replay_id: string; policy?: Policy };

const hasOpenReview = (s: ActiveLineage, hash: string): boolean =>
  s.reviews.some((r) => r.schema_hash === hash && (r.status === 'queued' || r.status === 'in_review'));

const holdForReview = (s: ActiveLineage): LineageEvent[] =>
  s.pause_reasons.includes('schema_review')
    ? []
    : [{ type: 'LineagePaused', data: { reason: 'schema_review' } }];

/** Decide what a batch's schema hash means for the lineage: observe, classify, maybe review and pause. */
export function governSchema(
  s: ActiveLineage,
  hash: string,
  columns: RowBatch['schema_columns'],
  reviewId: string,
  policy: Policy,
  registry?: RegistryView,
): LineageEvent[] {
  const events: LineageEvent[] = [];
  const known = Object.hasOwn(s.classifications, hash);
  const fromRegistry = registry && s.approved_hash !== hash ? registry : undefined;
  if (known && fromRegistry?.status === 'approved' && s.awaiting[hash] === fromRegistry.registry_id) {
    // Waiting for this entry, and it was approved since: take it now, ahead of the fan-out.
    applyRegistryApproval(s, events, approvalOf(fromRegistry, hash), null);
    return events;
  }
  if (known && !registry && s.awaiting[hash] !== undefined && !hasOpenReview(s, hash)) {
    // It waited for a registry entry, and the project stopped coalescing: a review of its own now.
    events.push({
      type: 'SchemaReviewQueued',
      data: {
        review_id: reviewId,
        schema_hash: hash,
        classification: s.classifications[hash] ?? 'ambiguous',
        action_version: 1,
      },
    });
    return events;
  }
  if (!known || (columns && !s.schemas[hash])) {
    const incoming = columns ?? s.schemas[hash] ?? null;
    const classification =
      !known && fromRegistry?.status === 'approved' ? 'compatible_mapped' : classifySchema(s, hash, incoming);
    events.push({
      type: 'SchemaVersionObserved',
      data: { schema_hash: hash, schema_columns: incoming, classification },
    });
    if (known) return events;
    if (classification === 'compatible_additive' && policy.allow_additive_continue && incoming && !gated(s)) {
      // Keep materializing the bound columns; the new ones stay unbound until a review binds them.
      const bound = new Set(s.bindings.map((b) => b.column));
      const added = incoming.columns.filter((c) => !bound.has(c.name));
      const bindings = [
        ...s.bindings,
        ...added.map((c) => ({
          column: c.name,
          action: 'ignore' as const,
          target: null,
          affinity: c.decl_type_affinity,
          pk_ordinal: c.pk_ordinal,
          not_null: c.not_null,
        })),
      ];
      events.push({
        type: 'SchemaVersionAdopted',
        data: { schema_hash: hash, bindings, unbound_columns: added.map((c) => c.name) },
      });
      return events;
    }
    if (fromRegistry?.status === 'approved') {
      applyRegistryApproval(requireLineage(apply(s, events)), events, approvalOf(fromRegistry, hash), null);
      return events;
    }
    if (fromRegistry) {
      // The registry entry decides for every lineage in scope: no review of the lineage's own.
      if (s.awaiting[hash] !== fromRegistry.registry_id) {
        events.push({
          type: 'RegistryReviewAwaited',
          data: {
            registry_id: fromRegistry.registry_id,
            schema_hash: hash,
            scope: fromRegistry.scope,
            scope_id: fromRegistry.scope_id,
          },
        });
      }
      events.push(...holdForReview(s));
      return events;
    }
    if (classification !== 'compatible_mapped') {
      if (!hasOpenReview(s, hash)) {
        events.push({
          type: 'SchemaReviewQueued',
          data: { review_id: reviewId, schema_hash: hash, classification, action_version: 1 },
        });
      }
      events.push(...holdForReview(s));
    }
  }
  return events;
}

const approvalOf = (v: RegistryView, hash: string): RegistryApproval => ({
  registry_id: v.registry_id,
  review_id: v.review_id,
  schema_hash: hash,
  scope: v.scope,
  scope_id: v.scope_id,
  bindings: v.bindings ?? [],
});

/** Reviews of the lineage's own still open, and registry entries it still waits for. */
const openGates = (s: ActiveLineage): boolean =>
  s.reviews.some((r) => r.status === 'queued' || r.status === 'in_review') ||
  Object.keys(s.awaiting).length > 0;

/**
 * One rule for every approval (SchemaReviewApproved or SchemaApprovedByRegistry): the bindings
 * it brings, the deferred-columns gate they imply, the end of the schema_review pause when no
 * other review or registry entry is pending, and (with a replay id) the release of staged rows.
 * A batch releases its own leftovers instead (`intake`).
 */
export function settleApproval(
  s: ActiveLineage,
  events: LineageEvent[],
  approved: Extract<LineageEvent, { type: 'SchemaReviewApproved' | 'SchemaApprovedByRegistry' }>,
  replayId: string | null,
): ActiveLineage {
  s = push(s, events, [approved]);
  const blocking = blocksRows(approved.data.bindings);
  if (blocking && !s.pause_reasons.includes('deferred_columns')) {
    s = push(s, events, [{ type: 'LineagePaused', data: { reason: 'deferred_columns' } }]);
  }
  if (!blocking && s.pause_reasons.includes('deferred_columns')) {
    s = push(s, events, [{ type: 'LineageResumed', data: { reason: 'deferred_columns' } }]);
  }
  if (!openGates(s) && s.pause_reasons.includes('schema_review')) {
    s = push(s, events, [{ type: 'LineageResumed', data: { reason: 'schema_review' } }]);
  }
  if (replayId) s = push(s, events, releaseLeftovers(s, replayId));
  return s;
}

/** The lineage takes a registry entry's approval (coalescing, docs/registry.md). */
function applyRegistryApproval(
  s: ActiveLineage,
  events: LineageEvent[],
  a: RegistryApproval,
  replayId: string | null,
): ActiveLineage {
  return settleApproval(s, events, { type: 'SchemaApprovedByRegistry', data: a }, replayId);
}

export function decideRegistryApproval(state: LineageState, d: ApplyRegistryApprovalData): LineageEvent[] {
  const s = requireLineage(state);
  if (s.coalesced?.registry_id === d.registry_id) return [];
  const waiting = s.awaiting[d.schema_hash] === d.registry_id;
  // Not waiting and not already on this hash: the approval does not concern this lineage (any more).
  if (!waiting && s.approved_hash !== d.schema_hash) return [];
  const events: LineageEvent[] = [];
  const { replay_id, policy: _policy, ...approval } = d;
  applyRegistryApproval(s, events, approval, replay_id);
  return events;
}
