import { bindSchema } from '../lineage/bindings';
import type { ColumnAction, ColumnBinding } from '../lineage/events';
import type { SchemaColumns } from '../protocol/fingerprint';
import { assertNever } from '../shared/decider';
import { DomainError } from '../shared/errors';
import { findReview, requireStatus } from '../shared/reviews';
import { type RegistryEvent, type RegistryKey, registryId } from './events';
import {
  type RegisteredEntry,
  type RegistryState,
  evolveRegistry,
  initialRegistryState,
  openReview,
} from './state';

/** Commands of a registry entry; ids and time come in with the command, the decider stays pure. */
export type RegistryCommand =
  | Readonly<{
      /**
       * A lineage in scope waits for a decision on this hash. The first one registers the entry
       * and opens its review; later ones only join (exactly one review is open at a time).
       */
      type: 'EnrollLineage';
      data: RegistryKey & {
        lineage_id: string;
        device_id: string;
        schema_columns: SchemaColumns | null;
        new_review_id: string;
      };
    }>
  | Readonly<{
      /** Consolidation: a lineage approved this hash on its own; the entry takes that approval. */
      type: 'AdoptApproval';
      data: RegistryKey & {
        lineage_id: string;
        review_id: string | null;
        bindings: readonly ColumnBinding[];
        schema_columns: SchemaColumns | null;
      };
    }>
  | Readonly<{ type: 'ClaimRegistryReview'; data: { review_id: string; action_version: number } }>
  | Readonly<{
      type: 'ApproveRegistryReview';
      data: { review_id: string; action_version: number; column_actions?: readonly ColumnAction[] };
    }>
  | Readonly<{
      type: 'RejectRegistryReview';
      data: { review_id: string; action_version: number; reason: string };
    }>
  | Readonly<{
      type: 'AbandonRegistryReview';
      data: { review_id: string; action_version: number; reason: string };
    }>;

export type RegistryCommandType = RegistryCommand['type'];

const NOUN = 'registry review';

function register(state: RegistryState, key: RegistryKey): RegistryEvent[] {
  if (state.status === 'registered') {
    if (state.registry_id !== registryId(key)) {
      throw new DomainError('invalid_command', 'the command names another registry entry');
    }
    return [];
  }
  const { project_id, scope, scope_id, source_table, schema_hash } = key;
  return [
    {
      type: 'RegistryEntryRegistered',
      data: { project_id, scope, scope_id, source_table, schema_hash, registry_id: registryId(key) },
    },
  ];
}

function requireEntry(state: RegistryState): RegisteredEntry {
  if (state.status === 'registered') return state;
  throw new DomainError('not_found', 'registry entry not found');
}

const apply = (s: RegistryState, events: readonly RegistryEvent[]) => events.reduce(evolveRegistry, s);

function schemaEvents(s: RegisteredEntry, columns: SchemaColumns | null): RegistryEvent[] {
  return !s.schema_columns && columns
    ? [{ type: 'RegistrySchemaObserved', data: { schema_columns: columns } }]
    : [];
}

function enroll(state: RegistryState, d: Extract<RegistryCommand, { type: 'EnrollLineage' }>['data']) {
  const events = register(state, d);
  const s = requireEntry(apply(state, events));
  // Approved already: nothing to wait for; the caller applies the approval to the lineage itself.
  if (s.decision?.kind === 'approved') return events;
  events.push(...schemaEvents(s, d.schema_columns));
  if (!s.lineages.includes(d.lineage_id)) {
    events.push({
      type: 'RegistryLineageEnrolled',
      data: { lineage_id: d.lineage_id, device_id: d.device_id },
    });
  }
  // A decided entry never opens another review; an abandoned one opens a fresh review on demand.
  if (s.decision === null && !openReview(s)) {
    events.push({
      type: 'RegistryReviewOpened',
      data: {
        review_id: d.new_review_id,
        action_version: 1,
        lineage_id: d.lineage_id,
        device_id: d.device_id,
      },
    });
  }
  return events;
}

function adopt(state: RegistryState, d: Extract<RegistryCommand, { type: 'AdoptApproval' }>['data']) {
  const events = register(state, d);
  const s = requireEntry(apply(state, events));
  events.push(...schemaEvents(s, d.schema_columns));
  // Approved already: the caller moves the lineage onto the entry's approval.
  if (s.decision?.kind === 'approved') return events;
  if (s.decision?.kind === 'rejected') return events; // a person said no to this hash in scope
  const open = openReview(s);
  if (open) {
    events.push({
      type: 'RegistryReviewAbandoned',
      data: {
        review_id: open.review_id,
        action_version: open.action_version + 1,
        reason: `superseded: lineage ${d.lineage_id} had approved this schema already`,
      },
    });
  }
  events.push({
    type: 'RegistryApprovalAdopted',
    data: { lineage_id: d.lineage_id, review_id: d.review_id, bindings: d.bindings },
  });
  return events;
}

export function decideRegistry(command: RegistryCommand, state: RegistryState): readonly RegistryEvent[] {
  switch (command.type) {
    case 'EnrollLineage':
      return enroll(state, command.data);
    case 'AdoptApproval':
      return adopt(state, command.data);
    case 'ClaimRegistryReview': {
      const s = requireEntry(state);
      const r = findReview(s.reviews, command.data.review_id, command.data.action_version, NOUN);
      requireStatus(r, 'queued', 'only a queued review can be claimed', NOUN);
      return [
        {
          type: 'RegistryReviewClaimed',
          data: { review_id: r.review_id, action_version: r.action_version + 1 },
        },
      ];
    }
    case 'ApproveRegistryReview': {
      const s = requireEntry(state);
      const r = findReview(s.reviews, command.data.review_id, command.data.action_version, NOUN);
      requireStatus(r, 'in_review', 'claim it before approving', NOUN);
      const bindings = bindSchema(s.schema_columns, command.data.column_actions);
      return [
        {
          type: 'RegistryReviewApproved',
          data: { review_id: r.review_id, action_version: r.action_version + 1, bindings },
        },
      ];
    }
    case 'RejectRegistryReview': {
      const s = requireEntry(state);
      const r = findReview(s.reviews, command.data.review_id, command.data.action_version, NOUN);
      requireStatus(r, 'in_review', 'claim it before rejecting', NOUN);
      return [
        {
          type: 'RegistryReviewRejected',
          data: { review_id: r.review_id, action_version: r.action_version + 1, reason: command.data.reason },
        },
      ];
    }
    case 'AbandonRegistryReview': {
      const s = requireEntry(state);
      const r = findReview(s.reviews, command.data.review_id, command.data.action_version, NOUN);
      if (r.status !== 'queued' && r.status !== 'in_review') {
        throw new DomainError(
          'illegal_transition',
          `registry review is ${r.status}; only an open review can be abandoned`,
          {
            status: r.status,
          },
        );
      }
      return [
        {
          type: 'RegistryReviewAbandoned',
          data: { review_id: r.review_id, action_version: r.action_version + 1, reason: command.data.reason },
        },
      ];
    }
    default:
      return assertNever(command, 'registry command');
  }
}

export const registryDecider = {
  decide: decideRegistry,
  evolve: evolveRegistry,
  initialState: initialRegistryState,
};

export { type RegistryView, registryView } from './view';
