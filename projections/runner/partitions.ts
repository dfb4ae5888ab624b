import type { JetStreamManager } from '@nats-io/jetstream';
import { LRUCache } from 'lru-cache';
import { decodeCommit } from '../../infra/nats/event-store';
import { subjects } from '../../infra/nats/names';
import { fnv1a } from '../../infra/nats/partitions';

/**
 * Row-heavy projections split their work into this many partitions, by a hash of the lineage's
 * device: every lineage of one device (a re-created one too) is folded by one projector, in
 * stream order, so names a projection derives from the order of a device's lineages come out the
 * same in every rebuild. Like the ingress count, it is part of what every projector must agree
 * on (the checkpoints are kept per partition), so it is a constant.
 */
export const PROJECTION_PARTITIONS = 16;

const LINEAGE_PREFIX = subjects.lineage('');

/** The partition of a device's lineages. */
export function devicePartition(deviceId: string, partitions = PROJECTION_PARTITIONS): number {
  return fnv1a(deviceId) % partitions;
}

/**
 * Tells the partition of a lineage-stream message from its subject (`edge.lineage.<id>`) without
 * reading its body: the lineage's device comes from its first message (LineageRegistered), read
 * once per lineage by a direct get and then cached. A lineage whose first message names no device
 * (never written by Sluice) falls back to a hash of its id, the same in every process.
 */
export class LineagePartitions {
  private readonly cache = new LRUCache<string, number>({ max: 200_000 });

  constructor(
    private readonly jsm: JetStreamManager,
    private readonly stream: string,
    private readonly partitions = PROJECTION_PARTITIONS,
  ) {}

  /** The partition of a lineage, by its id. */
  ofLineage(lineageId: string): Promise<number> {
    return this.of(subjects.lineage(lineageId), new Uint8Array());
  }

  /** `data` is the message itself; when it is the lineage's first, no read is needed. */
  async of(subject: string, data: Uint8Array): Promise<number> {
    const lineageId = subject.startsWith(LINEAGE_PREFIX) ? subject.slice(LINEAGE_PREFIX.length) : subject;
    const cached = this.cache.get(lineageId);
    if (cached !== undefined) return cached;
    const device = registeredDevice(data) ?? (await this.firstDevice(subject));
    const partition =
      device !== undefined ? devicePartition(device, this.partitions) : fnv1a(lineageId) % this.partitions;
    this.cache.set(lineageId, partition);
    return partition;
  }

  private async firstDevice(subject: string): Promise<string | undefined> {
    const query = { seq: 1, next_by_subj: subject };
    const m =
      (await this.jsm.direct.getMessage(this.stream, query)) ??
      // A lagging replica answered "not found": ask the leader. An error other than "no such
      // message" propagates (the consumer retries): a wrong fallback would be cached for good.
      (await this.jsm.streams
        .getMessage(this.stream, query as unknown as { seq: number })
        .catch((err: unknown) => {
          if (err instanceof Error && /no message found|not found/i.test(err.message)) return null;
          throw err;
        }));
    return m ? registeredDevice(m.data) : undefined;
  }
}

function registeredDevice(data: Uint8Array): string | undefined {
  try {
    for (const e of decodeCommit(data).events) {
      if (e.type === 'LineageRegistered') return e.data.device_id;
    }
  } catch {
    // Not a commit: the caller falls back to the lineage id.
  }
  return undefined;
}
