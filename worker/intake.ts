import { uuidv7 } from 'uuidv7';
import type { LineageCommand } from '../domain/lineage/decide';
import type { Policy } from '../domain/policy/policy';
import type { RegistryView } from '../domain/registry/decide';
import type { IngressMessage } from '../infra/nats/ingress';
import type { DeviceRecord } from '../infra/nats/registry';

/** A row or telemetry batch as it came off the ingress stream. */
export type BatchMessage = Extract<IngressMessage, { kind: 'rows' | 'telemetry' }>;

export const isBatch = (msg: IngressMessage): msg is BatchMessage =>
  msg.kind === 'rows' || msg.kind === 'telemetry';

/**
 * The decision id of a batch. With its content digest: other content under a known batch id is
 * decided (and refused), not mistaken for a retry of the first decision by the event store's dedupe.
 */
export function batchDecisionId(msg: BatchMessage): string {
  return msg.payload_digest !== undefined
    ? `${msg.device_key}:${msg.payload.batch_id}:${msg.payload_digest}`
    : `${msg.device_key}:${msg.payload.batch_id}`;
}

/**
 * The lineage command that takes a batch in, with fresh ids for whatever it may start. `now` is
 * the decision's time (ISO-8601), the one its events are stamped with too.
 */
export function intakeCommand(
  msg: BatchMessage,
  device: DeviceRecord,
  lineageId: string,
  policy: Policy,
  now: string,
  view?: RegistryView,
): LineageCommand {
  const common = {
    project_id: msg.project_id,
    device_id: device.device_id,
    device_name: device.device_name,
    topic_slug: msg.topic_slug,
    new_lineage_id: lineageId,
    new_review_id: uuidv7(),
    new_control_id: uuidv7(),
    new_replay_id: uuidv7(),
    new_write_control_id: uuidv7(),
    now,
    policy,
    fleet_id: device.fleet_id,
    ...(msg.payload_digest !== undefined ? { payload_digest: msg.payload_digest } : {}),
  };
  return msg.kind === 'rows'
    ? {
        type: 'IngestRowBatch',
        data: {
          ...common,
          batch: msg.payload,
          new_resync_id: uuidv7(),
          new_resync_control_id: uuidv7(),
          ...(view ? { registry: view } : {}),
        },
      }
    : {
        type: 'IngestTelemetryBatch',
        data: { ...common, batch: msg.payload, ...(view ? { registry: view } : {}) },
      };
}

/**
 * Messages in delivery order, with the batches of one (kind, device, table) gathered where the
 * first of them stood: each group is one lineage's, decided together; the rest stay alone. A
 * device's other message (a verify report, an ack) closes that device's groups: a batch after it
 * is decided after it, since a verify report must be compared before the changes that follow it.
 */
export function groupBatches<T extends { msg: IngressMessage }>(items: readonly T[]): T[][] {
  const units: T[][] = [];
  const groups = new Map<string, Map<string, T[]>>();
  for (const item of items) {
    const { msg } = item;
    if (!isBatch(msg)) {
      groups.delete(msg.device_key);
      units.push([item]);
      continue;
    }
    let device = groups.get(msg.device_key);
    if (!device) groups.set(msg.device_key, (device = new Map()));
    const key = JSON.stringify([msg.kind, msg.payload.source_table]);
    const group = device.get(key);
    if (group) group.push(item);
    else {
      const fresh = [item];
      device.set(key, fresh);
      units.push(fresh);
    }
  }
  return units;
}
