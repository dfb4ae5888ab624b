import { partitionOf } from './partitions';

/** Stream and subject names in one place. Device and table names never go raw into a token. */
export const STREAMS = {
  lineage: 'SLUICE_LINEAGE',
  ingress: 'SLUICE_INGRESS',
  rejections: 'SLUICE_REJECTIONS',
  /** Registry entries (coalescing): one subject per (scope, table, schema hash), by its hash id. */
  registry: 'SLUICE_REGISTRY',
  /** One message per control awaiting its ACK, re-delivered by delayed naks (bridge/downlink). */
  controlRetries: 'SLUICE_CONTROL_RETRIES',
} as const;

export const KV_BUCKETS = {
  lineageIndex: 'sluice_lineage_index',
  devices: 'sluice_devices',
  controls: 'sluice_controls',
  policies: 'sluice_policies',
  /** Who owns which partition of the work (infra/nats/leases.ts); entries expire unless renewed. */
  leases: 'sluice_leases',
} as const;

/** base64url of the UTF-8 bytes: only [A-Za-z0-9_-], safe as a NATS subject token and a KV key. */
export function token(value: string): string {
  return Buffer.from(value, 'utf8').toString('base64url') || '_';
}
export function untoken(t: string): string {
  return Buffer.from(t, 'base64url').toString('utf8');
}

export const subjects = {
  lineage: (lineageId: string) => `edge.lineage.${lineageId}`,
  lineageAll: 'edge.lineage.*',
  /** Partitioned by device (infra/nats/partitions.ts): `edge.ingress.<partition>.<kind>.<device>`. */
  ingress: (kind: string, deviceKey: string) =>
    `edge.ingress.${partitionOf(deviceKey)}.${kind}.${token(deviceKey)}`,
  ingressPartition: (partition: number) => `edge.ingress.${partition}.>`,
  ingressAll: 'edge.ingress.>',
  rejected: (deviceKey: string) => `edge.rejected.${token(deviceKey)}`,
  rejectedAll: 'edge.rejected.*',
  cmd: (verb: string) => `edge.cmd.${verb}`,
  registry: (registryId: string) => `edge.registry.${registryId}`,
  registryAll: 'edge.registry.*',
  controlRetry: (controlId: string) => `edge.control.retry.${controlId}`,
  controlRetryAll: 'edge.control.retry.*',
} as const;
