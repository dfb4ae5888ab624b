/**
 * Materialization (SPEC §6): the projector reports failing writes (the circuit breaker pauses the
 * lineage and the device after `circuit_breaker_threshold` permanent ones), an operator resets
 * it, and a replay of released rows completes.
 */
import type { RowChange } from '../protocol/contracts';
import type { Policy } from '../policy/policy';
import { backpressure, pauseDevice, resumeDevice } from './backpressure';
import { type Minted, push, requireLineage } from './common';
import type { LineageEvent } from './events';
import { releaseLeftovers } from './staging';
import { type LineageState, failureKey } from './state';

export type ReportMaterializationFailureData = Minted & {
  /** Stream sequence of the event that failed: a report is taken once. */
  source_seq: number;
  code: string;
  message: string;
  permanent: boolean;
  rows: readonly RowChange[];
  journal_epoch: string | null;
  policy: Policy;
};

export type ResetMaterializationData = Minted & { policy: Policy };

export type CompleteReplayData = { replay_id: string; rows: number; policy?: Policy } & Partial<Minted>;

export function decideCompleteReplay(state: LineageState, d: CompleteReplayData): LineageEvent[] {
  let s = requireLineage(state);
  if (s.replay?.replay_id !== d.replay_id || s.replay.done) return [];
  const events: LineageEvent[] = [];
  s = push(s, events, [{ type: 'ReplayCompleted', data: { replay_id: d.replay_id, rows: d.rows } }]);
  if (d.policy && d.new_control_id && d.new_replay_id && d.now) {
    const m = { new_control_id: d.new_control_id, new_replay_id: d.new_replay_id, now: d.now };
    push(s, events, backpressure(s, d.policy, m));
  }
  return events;
}

export function decideFailure(state: LineageState, d: ReportMaterializationFailureData): LineageEvent[] {
  let s = requireLineage(state);
  // Reported before (the projector restarted): one report per failing event and journal epoch.
  if (s.reported_failures.includes(failureKey(d.source_seq, d.journal_epoch))) return [];
  const events: LineageEvent[] = [];
  const count = d.permanent ? s.consecutive_failures + 1 : s.consecutive_failures;
  s = push(s, events, [
    {
      type: 'MaterializationFailed',
      data: {
        source_seq: d.source_seq,
        code: d.code,
        message: d.message,
        permanent: d.permanent,
        rows: d.rows,
        journal_epoch: d.journal_epoch,
        consecutive_failures: count,
      },
    },
  ]);
  if (
    d.permanent &&
    count >= d.policy.circuit_breaker_threshold &&
    !s.pause_reasons.includes('circuit_breaker')
  ) {
    s = push(s, events, [
      {
        type: 'LineagePaused',
        data: {
          reason: 'circuit_breaker',
          detail: `${count} permanent materialization errors; last: ${d.message}`,
        },
      },
    ]);
    s = push(s, events, pauseDevice(s, `circuit breaker: ${count} permanent materialization errors`, d));
  }
  push(s, events, backpressure(s, d.policy, d));
  return events;
}

export function decideReset(state: LineageState, d: ResetMaterializationData): LineageEvent[] {
  let s = requireLineage(state);
  const events: LineageEvent[] = [];
  const failing = s.consecutive_failures > 0 || s.pause_reasons.includes('circuit_breaker');
  // A healthy lineage has nothing to reset: no event, so the caller can say so.
  if (failing)
    s = push(s, events, [
      { type: 'MaterializationReset', data: { previous_failures: s.consecutive_failures } },
    ]);
  if (s.pause_reasons.includes('circuit_breaker')) {
    s = push(s, events, [{ type: 'LineageResumed', data: { reason: 'circuit_breaker' } }]);
  }
  s = push(s, events, releaseLeftovers(s, d.new_replay_id));
  s = push(s, events, resumeDevice(s, 'materialization reset by an operator', d));
  push(s, events, backpressure(s, d.policy, d));
  return events;
}
