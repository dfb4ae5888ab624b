/** Control delivery: the bridge records each delivery of a control, the device acknowledges it once. */
import { DomainError } from '../shared/errors';
import { requireLineage } from './common';
import type { LineageEvent } from './events';
import type { ActiveLineage, LineageState } from './state';

function findControl(s: ActiveLineage, controlId: string) {
  const c = s.controls.find((x) => x.control_id === controlId);
  if (!c) throw new DomainError('unknown_control_id', `control ${controlId} was not issued to this lineage`);
  return c;
}

export function decideControlDelivery(
  state: LineageState,
  d: { control_id: string; delivered_at: string },
): LineageEvent[] {
  const s = requireLineage(state);
  const c = findControl(s, d.control_id);
  if (c.acknowledged) return [];
  return [
    {
      type: 'ControlDelivered',
      data: { control_id: c.control_id, attempt: c.deliveries + 1, delivered_at: d.delivered_at },
    },
  ];
}

export function decideControlAck(
  state: LineageState,
  d: { control_id: string; acknowledged_at: string },
): LineageEvent[] {
  const s = requireLineage(state);
  const c = findControl(s, d.control_id);
  if (c.acknowledged) return []; // a re-ACK of a redelivered control
  return [
    { type: 'ControlAcknowledged', data: { control_id: c.control_id, acknowledged_at: d.acknowledged_at } },
  ];
}
