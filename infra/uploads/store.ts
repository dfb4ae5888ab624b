import type { NatsConnection } from '@nats-io/transport-node';
import { type ObjectStore, Objm, StorageType } from '@nats-io/obj';
import { MAX_UPLOAD_BYTES } from '../../domain/protocol/contracts';

export const UPLOAD_BUCKET = 'sluice_uploads';

/** Objects nobody finalized (or whose finalize never came) expire after a week. */
const UPLOAD_TTL_MS = 7 * 24 * 3600_000;

export type UploadObjectMeta = Readonly<{
  device_key: string;
  lineage_id: string;
  source_table: string;
  journal_epoch: string;
  row_count: string;
}>;

/** The JetStream object store that holds uploaded objects (zstd JSONL) between PUT and finalize. */
export async function openUploadStore(
  nc: NatsConnection,
  opts: { replicas?: number } = {},
): Promise<ObjectStore> {
  return new Objm(nc).create(UPLOAD_BUCKET, {
    storage: StorageType.File,
    replicas: opts.replicas ?? 1,
    ttl: UPLOAD_TTL_MS * 1_000_000,
    description: `uploads of the secondary flow (each at most ${MAX_UPLOAD_BYTES} bytes)`,
  });
}
