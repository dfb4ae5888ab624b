import {
  type JetStreamManager,
  type StreamConfig,
  DiscardPolicy,
  RetentionPolicy,
  StorageType,
} from '@nats-io/jetstream';
import { STREAMS, subjects } from './names';

const MINUTE_NS = 60 * 1_000_000_000;

export type StreamOptions = { replicas?: number; duplicateWindowMs?: number };

/** Create or update every stream Sluice needs. Idempotent; called by every role at start. */
export async function ensureStreams(jsm: JetStreamManager, opts: StreamOptions = {}): Promise<void> {
  const replicas = opts.replicas ?? 1;
  const dupe = (opts.duplicateWindowMs ?? 10 * 60_000) * 1_000_000;
  const wanted: (Partial<StreamConfig> & { name: string })[] = [
    {
      // The event store: events are facts, so the stream forbids deleting and purging them.
      name: STREAMS.lineage,
      subjects: [subjects.lineageAll],
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      deny_delete: true,
      deny_purge: true,
      allow_direct: true,
      duplicate_window: dupe,
      num_replicas: replicas,
    },
    {
      // Validated uplinks; a work queue the workers drain. Msg-Id <device>:<batch_id> dedupes retries.
      name: STREAMS.ingress,
      subjects: [subjects.ingressAll],
      storage: StorageType.File,
      retention: RetentionPolicy.Workqueue,
      discard: DiscardPolicy.Old,
      duplicate_window: dupe,
      num_replicas: replicas,
    },
    {
      // Registry entries' events: facts like the lineages', same guarantees.
      name: STREAMS.registry,
      subjects: [subjects.registryAll],
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      deny_delete: true,
      deny_purge: true,
      allow_direct: true,
      duplicate_window: dupe,
      num_replicas: replicas,
    },
    {
      // Controls awaiting their device's ACK: a work queue whose consumer re-delivers each one by
      // a delayed nak, so no process scans the pending controls.
      name: STREAMS.controlRetries,
      subjects: [subjects.controlRetryAll],
      storage: StorageType.File,
      retention: RetentionPolicy.Workqueue,
      duplicate_window: dupe,
      num_replicas: replicas,
    },
    {
      name: STREAMS.rejections,
      subjects: [subjects.rejectedAll],
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      deny_delete: true,
      deny_purge: true,
      max_age: 30 * 24 * 60 * MINUTE_NS,
      num_replicas: replicas,
    },
  ];
  for (const cfg of wanted) {
    try {
      await jsm.streams.info(cfg.name);
      await jsm.streams.update(cfg.name, cfg);
    } catch (err) {
      if (!isNotFound(err)) throw err;
      await jsm.streams.add(cfg);
    }
  }
}

function isNotFound(err: unknown): boolean {
  return (
    err instanceof Error && (err.name === 'StreamNotFoundError' || /stream not found/i.test(err.message))
  );
}
