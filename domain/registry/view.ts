import { type RegistryKey, registryId } from './events';
import { type RegistryState, openReview } from './state';
import type { ColumnBinding } from '../lineage/events';

/** What a lineage's decision needs to know of its registry entry (passed in with the batch). */
export type RegistryView = Readonly<{
  registry_id: string;
  scope: RegistryKey['scope'];
  scope_id: string;
  status: 'none' | 'open' | 'approved' | 'rejected';
  review_id: string | null;
  bindings: readonly ColumnBinding[] | null;
}>;

export function registryView(key: RegistryKey, state: RegistryState): RegistryView {
  const base = { registry_id: registryId(key), scope: key.scope, scope_id: key.scope_id };
  if (state.status !== 'registered') return { ...base, status: 'none', review_id: null, bindings: null };
  const d = state.decision;
  if (d?.kind === 'approved')
    return { ...base, status: 'approved', review_id: d.review_id, bindings: d.bindings };
  if (d?.kind === 'rejected') return { ...base, status: 'rejected', review_id: d.review_id, bindings: null };
  const open = openReview(state);
  return { ...base, status: open ? 'open' : 'none', review_id: open?.review_id ?? null, bindings: null };
}
