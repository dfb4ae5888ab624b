import type { ColumnBinding } from '../lineage/events';
import type { SchemaColumns } from '../protocol/fingerprint';
import { assertNever } from '../shared/decider';
import type { RegistryEvent, RegistryKey, RegistryReviewStatus } from './events';

export type RegistryReview = Readonly<{
  review_id: string;
  status: RegistryReviewStatus;
  action_version: number;
  opened_by_lineage: string;
}>;

export type RegistryDecision =
  | Readonly<{ kind: 'approved'; review_id: string | null; bindings: readonly ColumnBinding[] }>
  | Readonly<{ kind: 'rejected'; review_id: string; reason: string }>;

export type RegisteredEntry = RegistryKey &
  Readonly<{
    status: 'registered';
    registry_id: string;
    schema_columns: SchemaColumns | null;
    reviews: readonly RegistryReview[];
    decision: RegistryDecision | null;
    /** Lineages that waited for a decision of this entry (approval fans out to each). */
    lineages: readonly string[];
  }>;

export type RegistryState = Readonly<{ status: 'unregistered' }> | RegisteredEntry;

export const initialRegistryState = (): RegistryState => ({ status: 'unregistered' });

export const openReview = (s: RegisteredEntry): RegistryReview | undefined =>
  s.reviews.find((r) => r.status === 'queued' || r.status === 'in_review');

function setReview(s: RegisteredEntry, id: string, status: RegistryReviewStatus, v: number): RegisteredEntry {
  return {
    ...s,
    reviews: s.reviews.map((r) => (r.review_id === id ? { ...r, status, action_version: v } : r)),
  };
}

export function evolveRegistry(state: RegistryState, event: RegistryEvent): RegistryState {
  if (event.type === 'RegistryEntryRegistered') {
    const { registry_id, project_id, scope, scope_id, source_table, schema_hash } = event.data;
    return {
      status: 'registered',
      registry_id,
      project_id,
      scope,
      scope_id,
      source_table,
      schema_hash,
      schema_columns: null,
      reviews: [],
      decision: null,
      lineages: [],
    };
  }
  if (state.status !== 'registered') return state;
  const s = state;
  switch (event.type) {
    case 'RegistrySchemaObserved':
      return { ...s, schema_columns: event.data.schema_columns };
    case 'RegistryReviewOpened':
      return {
        ...s,
        reviews: [
          ...s.reviews,
          {
            review_id: event.data.review_id,
            status: 'queued',
            action_version: event.data.action_version,
            opened_by_lineage: event.data.lineage_id,
          },
        ],
      };
    case 'RegistryReviewClaimed':
      return setReview(s, event.data.review_id, 'in_review', event.data.action_version);
    case 'RegistryReviewApproved':
      return {
        ...setReview(s, event.data.review_id, 'approved', event.data.action_version),
        decision: { kind: 'approved', review_id: event.data.review_id, bindings: event.data.bindings },
      };
    case 'RegistryReviewRejected':
      return {
        ...setReview(s, event.data.review_id, 'rejected', event.data.action_version),
        decision: { kind: 'rejected', review_id: event.data.review_id, reason: event.data.reason },
      };
    case 'RegistryReviewAbandoned':
      return setReview(s, event.data.review_id, 'abandoned', event.data.action_version);
    case 'RegistryApprovalAdopted':
      return {
        ...s,
        decision: { kind: 'approved', review_id: event.data.review_id, bindings: event.data.bindings },
        lineages: s.lineages.includes(event.data.lineage_id)
          ? s.lineages
          : [...s.lineages, event.data.lineage_id],
      };
    case 'RegistryLineageEnrolled':
      return s.lineages.includes(event.data.lineage_id)
        ? s
        : { ...s, lineages: [...s.lineages, event.data.lineage_id] };
    default:
      return assertNever(event, 'registry event');
  }
}
