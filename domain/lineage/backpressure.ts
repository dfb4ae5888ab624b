/**
 * Volume backpressure, and the pause_lineage / resume_lineage controls that stop and restart the
 * device (SPEC §5): the cloud stages while a review is pending, it stops the device only for
 * volume and for the circuit breaker.
 */
import type { Policy } from '../policy/policy';
import type { Minted } from './common';
import type { LineageEvent, PauseReason } from './events';
import { type ActiveLineage, watermarkOf } from './state';

/** Volume backpressure with hysteresis: pause above a cap, resume below resume_threshold_percent of both. */
export function backpressure(s: ActiveLineage, policy: Policy, m: Minted): LineageEvent[] {
  const rows = s.staged_rows + s.replaying_rows;
  const bytes = s.staged_bytes + s.replaying_bytes;
  const paused = s.pause_reasons.includes('volume_backpressure');
  const over = rows > policy.max_pending_rows_per_lineage || bytes > policy.max_pending_bytes_per_lineage;
  if (over && !paused) {
    const detail =
      rows > policy.max_pending_rows_per_lineage ? 'staged row cap exceeded' : 'staged byte cap exceeded';
    return [
      {
        type: 'LineagePaused',
        data: { reason: 'volume_backpressure', detail: `${rows} rows, ${bytes} bytes pending` },
      },
      ...pauseDevice(s, `backpressure: ${detail}`, m),
    ];
  }
  const pct = policy.resume_threshold_percent / 100;
  if (
    paused &&
    rows < policy.max_pending_rows_per_lineage * pct &&
    bytes < policy.max_pending_bytes_per_lineage * pct
  ) {
    const after: ActiveLineage = {
      ...s,
      pause_reasons: s.pause_reasons.filter((r) => r !== 'volume_backpressure'),
    };
    return [
      { type: 'LineageResumed', data: { reason: 'volume_backpressure' } },
      ...resumeDevice(after, 'backpressure: backlog drained', m),
    ];
  }
  return [];
}

/** Reasons that stop the device itself (schema review never does: the cloud stages instead). */
const DEVICE_PAUSING: readonly PauseReason[] = ['volume_backpressure', 'circuit_breaker'];

export function pauseDevice(s: ActiveLineage, reason: string, m: Minted): LineageEvent[] {
  if (s.device_paused) return [];
  return [control(s, 'pause_lineage', reason, m)];
}

export function resumeDevice(s: ActiveLineage, reason: string, m: Minted): LineageEvent[] {
  if (!s.device_paused || s.pause_reasons.some((r) => DEVICE_PAUSING.includes(r))) return [];
  return [control(s, 'resume_lineage', reason, m)];
}

function control(
  s: ActiveLineage,
  kind: 'pause_lineage' | 'resume_lineage',
  reason: string,
  m: Minted,
): LineageEvent {
  return {
    type: 'ControlIssued',
    data: {
      control_id: m.new_control_id,
      control_kind: kind,
      source_table: s.source_table,
      server_watermark: watermarkOf(s),
      reason,
      issued_at: m.now,
    },
  };
}
