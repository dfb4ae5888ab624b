/**
 * Staging: which pause reasons hold a batch's rows in staging (and with which staging reason),
 * and the release of staged rows once nothing holds them any more.
 */
import type { LineageEvent, PauseReason, StagingReason } from './events';
import type { ActiveLineage } from './state';

/** Gate reasons that hold rows in staging; volume backpressure alone drains staging instead. */
export const GATING: readonly PauseReason[] = [
  'schema_review',
  'deferred_columns',
  'circuit_breaker',
  'data_points',
];

export const gated = (s: ActiveLineage): boolean => s.pause_reasons.some((r) => GATING.includes(r));

export function stagingReason(s: ActiveLineage, hash: string): StagingReason | null {
  if (s.pause_reasons.includes('schema_review') || s.pause_reasons.includes('deferred_columns'))
    return 'schema_review';
  if (s.pause_reasons.includes('circuit_breaker')) return 'lineage_paused';
  if (s.approved_hash !== hash) return 'schema_review';
  return null;
}

/**
 * Rows left in staging once nothing gates the lineage (e.g. rows that arrived while only volume
 * backpressure held it) go to the mirror ahead of any newer row: the release event precedes them.
 */
export function releaseLeftovers(s: ActiveLineage, replayId: string): LineageEvent[] {
  if (s.staged_rows === 0 || gated(s) || s.approved_hash === null) return [];
  return [{ type: 'StagedRowsReleased', data: { replay_id: replayId, schema_hash: s.approved_hash } }];
}
