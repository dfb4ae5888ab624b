/**
 * Ingress is split into a fixed number of partitions by a hash of the device key: every message of
 * one device (so of each of its lineages) lands in the same partition, which one worker process
 * drains at a time, in order. The count is part of the subject layout (`edge.ingress.<p>.…`), like
 * a Kafka topic's partition count: bridges and workers must agree on it, so it is a constant, not
 * a setting. Sixteen leaves room for sixteen worker processes.
 */
export const INGRESS_PARTITIONS = 16;

/** FNV-1a (32 bit) of the UTF-8 bytes: stable across processes, versions and platforms. */
export function fnv1a(value: string): number {
  let h = 0x811c9dc5;
  for (const b of new TextEncoder().encode(value)) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** The ingress partition of a device (`<topic_slug>/<device_name>`). */
export function partitionOf(deviceKey: string, partitions = INGRESS_PARTITIONS): number {
  return fnv1a(deviceKey) % partitions;
}
