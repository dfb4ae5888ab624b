import { LRUCache } from 'lru-cache';
import type { LineageEvent, StoredEvent } from '../../domain/lineage/events';
import { decodeCommit } from '../../infra/nats/event-store';
import { decodeRegistryCommit } from '../../infra/nats/registry-events';
import type { ProjectionEvent, StreamName } from './types';

export type DecodedMessage = Readonly<{
  seq: number;
  size: number;
  lineage_id: string;
  events: readonly (ProjectionEvent & { occurred_at?: string })[];
  /** Of a partitioned projection's message (`runner/partitions.ts`). */
  partition?: number;
}>;

/** What the bridge publishes on `edge.rejected.<token>` (SLUICE_REJECTIONS). */
export type UplinkRejected = Readonly<{
  type: 'UplinkRejected';
  occurred_at: string;
  data: {
    device_key: string;
    project_id: string | null;
    kind: string;
    topic: string;
    code: string;
    message: string;
    received_at: string;
    payload_excerpt: string | null;
  };
}>;

const str = (v: unknown, fallback = ''): string => (typeof v === 'string' ? v : fallback);

function decodeRejection(data: Uint8Array): UplinkRejected {
  const raw = JSON.parse(new TextDecoder().decode(data)) as Record<string, unknown>;
  const received = str(raw.received_at);
  return {
    type: 'UplinkRejected',
    occurred_at: received,
    data: {
      device_key: str(raw.device_key),
      project_id: typeof raw.project_id === 'string' ? raw.project_id : null,
      kind: str(raw.kind),
      topic: str(raw.topic),
      code: str(raw.code, 'unknown'),
      message: str(raw.message),
      received_at: received,
      payload_excerpt:
        typeof raw.payload_excerpt === 'string'
          ? raw.payload_excerpt
          : raw.payload_excerpt === undefined || raw.payload_excerpt === null
            ? null
            : JSON.stringify(raw.payload_excerpt),
    },
  };
}

/**
 * Every projection of a process consumes the same stream messages, each on its own consumer:
 * without this, a lineage message (up to a whole row batch of JSON) is parsed once per projection.
 * Decoded messages are shared, read-only, while they are among the most recently used; a hit
 * needs the same stream, sequence and bytes (a recreated stream reuses sequences).
 */
const DECODED_MAX_BYTES = 32 * 1024 * 1024;
const decoded = new LRUCache<string, { data: Uint8Array; message: DecodedMessage }>({
  maxSize: DECODED_MAX_BYTES,
  // The cache counts every entry as at least one byte (an empty message is still an entry).
  sizeCalculation: (v) => Math.max(1, v.data.byteLength),
});

/** Turn a stream message into the events it holds. Throws on a message that is not valid JSON. */
export function decodeMessage(stream: StreamName, seq: number, data: Uint8Array): DecodedMessage {
  const key = `${stream}:${seq}`;
  const hit = decoded.get(key);
  if (hit && Buffer.compare(hit.data, data) === 0) return hit.message;
  const message = decodeOnce(stream, seq, data);
  // A copy: the client may reuse the memory behind `data`.
  if (data.byteLength <= DECODED_MAX_BYTES / 8) decoded.set(key, { data: data.slice(), message });
  return message;
}

function decodeOnce(stream: StreamName, seq: number, data: Uint8Array): DecodedMessage {
  if (stream === 'SLUICE_REJECTIONS') {
    return { seq, size: data.byteLength, lineage_id: '', events: [decodeRejection(data)] };
  }
  if (stream === 'SLUICE_REGISTRY') {
    // Registry commits carry their entry id where lineage commits carry the lineage id.
    const rc = decodeRegistryCommit(data);
    if (typeof rc?.registry_id !== 'string' || !Array.isArray(rc.events)) {
      throw new Error('message is not a registry commit {registry_id, events}');
    }
    return { seq, size: data.byteLength, lineage_id: rc.registry_id, events: rc.events };
  }
  const commit = decodeCommit(data);
  if (typeof commit?.lineage_id !== 'string' || !Array.isArray(commit.events)) {
    throw new Error('message is not a lineage commit {lineage_id, events}');
  }
  const events: readonly StoredEvent<LineageEvent>[] = commit.events;
  return { seq, size: data.byteLength, lineage_id: commit.lineage_id, events };
}
