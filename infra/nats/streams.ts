import {
  type JetStreamManager,
  type StreamConfig,
  DiscardPolicy,
  RetentionPolicy,
  StorageType,
} from '@nats-io/jetstream';
import { STREAMS, subjects } from './names';

const MINUTE_NS = 60 * 1_000_000_000;

/** Settings given by the operator; an absent one never changes an existing stream. */
export type StreamOptions = { replicas?: number | undefined; duplicateWindowMs?: number | undefined };

/**
 * Create every stream Sluice needs, and raise an existing stream's replicas or limits to what is
 * asked. Never lowers them: many roles call this at start, and one started with other (or no)
 * settings must not undo what the cluster runs with. A lowering asked for explicitly is refused.
 */
export async function ensureStreams(jsm: JetStreamManager, opts: StreamOptions = {}): Promise<void> {
  const replicas = opts.replicas ?? 1;
  const dupe = (opts.duplicateWindowMs ?? 10 * 60_000) * 1_000_000;
  const given = new Set<Guarded>([
    ...(opts.replicas !== undefined ? (['num_replicas'] as const) : []),
    ...(opts.duplicateWindowMs !== undefined ? (['duplicate_window'] as const) : []),
  ]);
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
    const existing = await jsm.streams.info(cfg.name).then(
      (i) => i.config,
      (err: unknown) => {
        if (isNotFound(err)) return undefined;
        throw err;
      },
    );
    if (!existing) {
      await jsm.streams.add(cfg);
      continue;
    }
    const change = raiseOnly(existing, cfg, given);
    // Only a real change goes to the meta leader: with a node down, a needless update can time out.
    if (Object.keys(change).length > 0) await jsm.streams.update(cfg.name, change);
  }
}

const GUARDED = ['num_replicas', 'max_age', 'max_bytes', 'max_msgs', 'duplicate_window'] as const;
type Guarded = (typeof GUARDED)[number];

/** 0 (max_age) and -1 (max_bytes, max_msgs) mean no limit. */
const asLimit = (key: Guarded, v: number | undefined): number =>
  v === undefined || (key !== 'num_replicas' && v <= 0) ? Number.POSITIVE_INFINITY : v;

/**
 * The fields to update: a given setting that is higher than the stream's; a default only where
 * it raises the stream's (absent settings keep what the stream has). A given setting lower than
 * the stream's throws.
 */
function raiseOnly(
  existing: StreamConfig,
  wanted: Partial<StreamConfig> & { name: string },
  given: ReadonlySet<Guarded>,
): Partial<StreamConfig> {
  const change: Partial<Record<Guarded, number>> = {};
  for (const key of GUARDED) {
    const want = wanted[key];
    if (want === undefined) continue;
    const have = existing[key];
    const [w, h] = [asLimit(key, want), asLimit(key, have)];
    if (w > h) change[key] = want;
    else if (w < h && given.has(key))
      throw new StreamSettingError(wanted.name, key, have ?? Number.POSITIVE_INFINITY, want);
  }
  return change;
}

/** A role asked for a stream setting lower than the stream already has; nothing was changed. */
export class StreamSettingError extends Error {
  readonly code = 'STREAM_SETTING_LOWER';
  constructor(
    readonly stream: string,
    readonly setting: Guarded,
    readonly existing: number,
    readonly wanted: number,
  ) {
    super(
      `STREAM_SETTING_LOWER: stream ${stream} has ${setting} ${show(setting, existing)}; this role asks for ${show(setting, wanted)}. ` +
        'Streams are never lowered at start, so nothing was changed. Start the role with the ' +
        `stream's value (${SETTING_OF[setting]}), or lower the stream on purpose with a NATS tool first.`,
    );
    this.name = 'StreamSettingError';
  }
}
export const isStreamSettingError = (err: unknown): err is StreamSettingError =>
  err instanceof StreamSettingError;

const SETTING_OF: Record<Guarded, string> = {
  num_replicas: 'SLUICE_STREAM_REPLICAS, or leave it unset',
  max_age: 'leave it unset',
  max_bytes: 'leave it unset',
  max_msgs: 'leave it unset',
  duplicate_window: 'leave it unset',
};

function show(setting: Guarded, v: number): string {
  if (!Number.isFinite(v) || (setting !== 'num_replicas' && v <= 0)) return 'unlimited';
  return setting === 'max_age' || setting === 'duplicate_window' ? `${v / 1_000_000_000}s` : String(v);
}

function isNotFound(err: unknown): boolean {
  return (
    err instanceof Error && (err.name === 'StreamNotFoundError' || /stream not found/i.test(err.message))
  );
}
