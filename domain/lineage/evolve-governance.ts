/** How schema governance events fold: schemas, reviews, registry approvals, pauses, fleet, deletion. */
import { assertNever } from '../shared/decider';
import type { LineageEvent, PauseReason } from './events';
import type { ActiveLineage, LineageState, ReviewState } from './state-types';

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
      | 'DataPointsCreated'
      | 'LineagePaused'
      | 'LineageResumed'
      | 'LineageFleetAssigned'
      | 'LineageDeleted';
  }
>;

function withoutKey<T>(record: Readonly<Record<string, T>>, key: string): Record<string, T> {
  const out = { ...record };
  delete out[key];
  return out;
}

const withoutReason = (reasons: readonly PauseReason[], r: PauseReason) => reasons.filter((x) => x !== r);

function updateReview(s: ActiveLineage, id: string, patch: Partial<ReviewState>): ActiveLineage {
  return { ...s, reviews: s.reviews.map((r) => (r.review_id === id ? { ...r, ...patch } : r)) };
}

export function evolveGovernance(s: ActiveLineage, event: GovernanceEvent): LineageState {
  switch (event.type) {
    case 'SchemaVersionObserved':
      return {
        ...s,
        schemas: { ...s.schemas, [event.data.schema_hash]: event.data.schema_columns },
        classifications: { ...s.classifications, [event.data.schema_hash]: event.data.classification },
        // Columns arrived: the device answered the re_enrolment resync (or never needed it).
        ...(event.data.schema_columns && s.schema_resync ? { schema_resync: null } : {}),
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
        awaiting: withoutKey(s.awaiting ?? {}, event.data.schema_hash),
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
        unbound_columns: [...new Set([...(s.unbound_columns ?? []), ...event.data.unbound_columns])],
      };
    case 'RegistryReviewAwaited':
      return { ...s, awaiting: { ...s.awaiting, [event.data.schema_hash]: event.data.registry_id } };
    case 'SchemaApprovedByRegistry': {
      return {
        ...s,
        awaiting: withoutKey(s.awaiting ?? {}, event.data.schema_hash),
        approved_hash: event.data.schema_hash,
        bindings: event.data.bindings,
        coalesced: {
          registry_id: event.data.registry_id,
          scope: event.data.scope,
          scope_id: event.data.scope_id,
        },
      };
    }
    case 'DataPointsCreated':
      return {
        ...s,
        data_points: {
          ...s.data_points,
          ...Object.fromEntries(event.data.data_points.map((p) => [p.name, p])),
        },
      };
    case 'LineagePaused':
      return s.pause_reasons.includes(event.data.reason)
        ? s
        : { ...s, pause_reasons: [...s.pause_reasons, event.data.reason] };
    case 'LineageResumed':
      return { ...s, pause_reasons: withoutReason(s.pause_reasons, event.data.reason) };
    case 'LineageFleetAssigned':
      return { ...s, fleet_id: event.data.fleet_id };
    case 'LineageDeleted':
      return { status: 'deleted', lineage_id: s.lineage_id };
    default:
      return assertNever(event, 'lineage event');
  }
}
