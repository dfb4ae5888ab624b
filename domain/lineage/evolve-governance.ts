/**
 * How schema governance events fold for a lineage of either kind: schemas, reviews, registry
 * approvals, pauses, fleet.
 */
import { assertNever } from '../shared/decider';
import type { LineageEvent, PauseReason } from './events';
import type { ActiveLineage, ReviewState } from './state-types';

export type GovernanceEvent = Extract<
  LineageEvent,
  {
    type:
      | 'SchemaVersionObserved'
      | 'SchemaObserved'
      | 'SchemaReviewQueued'
      | 'SchemaReviewClaimed'
      | 'SchemaReviewApproved'
      | 'SchemaReviewRejected'
      | 'SchemaReviewReopened'
      | 'SchemaVersionAdopted'
      | 'RegistryReviewAwaited'
      | 'SchemaApprovedByRegistry'
      | 'LineagePaused'
      | 'LineageResumed'
      | 'LineageFleetAssigned';
  }
>;

function withoutKey<T>(record: Readonly<Record<string, T>>, key: string): Record<string, T> {
  const out = { ...record };
  delete out[key];
  return out;
}

/** A pause reason added once (the read side keeps the same list: projections/lineages). */
export const withPauseReason = (reasons: readonly PauseReason[], r: PauseReason): readonly PauseReason[] =>
  reasons.includes(r) ? reasons : [...reasons, r];
export const withoutPauseReason = (reasons: readonly PauseReason[], r: PauseReason): PauseReason[] =>
  reasons.filter((x) => x !== r);

function updateReview<S extends ActiveLineage>(s: S, id: string, patch: Partial<ReviewState>): S {
  return { ...s, reviews: s.reviews.map((r) => (r.review_id === id ? { ...r, ...patch } : r)) };
}

export function evolveGovernance<S extends ActiveLineage>(s: S, event: GovernanceEvent): S {
  switch (event.type) {
    case 'SchemaVersionObserved':
      return {
        ...s,
        schemas: { ...s.schemas, [event.data.schema_hash]: event.data.schema_columns },
        classifications: { ...s.classifications, [event.data.schema_hash]: event.data.classification },
      };
    case 'SchemaObserved':
      return { ...s, observed_schema: event.data };
    case 'SchemaReviewQueued':
      return {
        ...s,
        reviews: [
          ...s.reviews,
          {
            review_id: event.data.review_id,
            schema_hash: event.data.schema_hash,
            classification: event.data.classification,
            status: 'queued',
            action_version: event.data.action_version,
          },
        ],
      };
    case 'SchemaReviewClaimed':
      return updateReview(s, event.data.review_id, {
        status: 'in_review',
        action_version: event.data.action_version,
      });
    case 'SchemaReviewApproved':
      return {
        ...updateReview(s, event.data.review_id, {
          status: 'approved',
          action_version: event.data.action_version,
        }),
        awaiting: withoutKey(s.awaiting, event.data.schema_hash),
        approved_hash: event.data.schema_hash,
        bindings: event.data.bindings,
        // A review of the lineage's own materializes device-scoped again.
        coalesced: null,
        unbound_columns: [],
      };
    case 'SchemaReviewRejected':
      return updateReview(s, event.data.review_id, {
        status: 'rejected',
        action_version: event.data.action_version,
      });
    case 'SchemaReviewReopened':
      return updateReview(s, event.data.review_id, {
        status: 'queued',
        action_version: event.data.action_version,
      });
    case 'SchemaVersionAdopted':
      return {
        ...s,
        approved_hash: event.data.schema_hash,
        bindings: event.data.bindings,
        unbound_columns: [...new Set([...s.unbound_columns, ...event.data.unbound_columns])],
      };
    case 'RegistryReviewAwaited':
      return { ...s, awaiting: { ...s.awaiting, [event.data.schema_hash]: event.data.registry_id } };
    case 'SchemaApprovedByRegistry': {
      return {
        ...s,
        awaiting: withoutKey(s.awaiting, event.data.schema_hash),
        approved_hash: event.data.schema_hash,
        bindings: event.data.bindings,
        coalesced: {
          registry_id: event.data.registry_id,
          scope: event.data.scope,
          scope_id: event.data.scope_id,
        },
      };
    }
    case 'LineagePaused':
      return s.pause_reasons.includes(event.data.reason)
        ? s
        : { ...s, pause_reasons: withPauseReason(s.pause_reasons, event.data.reason) };
    case 'LineageResumed':
      return { ...s, pause_reasons: withoutPauseReason(s.pause_reasons, event.data.reason) };
    case 'LineageFleetAssigned':
      return { ...s, fleet_id: event.data.fleet_id };
    default:
      return assertNever(event, 'lineage event');
  }
}
