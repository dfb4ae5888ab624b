import { sha256 } from '@noble/hashes/sha256';
import { bytesToHex, utf8ToBytes } from '@noble/hashes/utils';
import {
  type UplinkKind,
  type Validated,
  UPLINK_TOPICS,
  parseJsonPayload,
  validateControlAck,
  validateRowBatch,
  validateSchemaObserve,
  validateTelemetryBatch,
  validateUploadRequest,
} from './contracts';

export type UplinkTopic = Readonly<{ topic_slug: string; device_name: string; kind: UplinkKind }>;

const SUFFIX_TO_KIND = new Map<string, UplinkKind>(
  (Object.entries(UPLINK_TOPICS) as [UplinkKind, string][]).map(([k, v]) => [v, k]),
);
// eslint-disable-next-line no-control-regex -- rejecting control characters is the point
const BAD_NAME = /[\u0000-\u001f\u007f+#]/;

const validName = (s: string, allowEmpty: boolean) =>
  (allowEmpty || s.length > 0) && s.length <= 128 && !BAD_NAME.test(s) && s.isWellFormed();

/**
 * `{topic_slug}/{device_name}/sync/...` or `/{device_name}/sync/...`. The device's identity is
 * what the topic (and so the broker's ACL for its connection) says, never what the payload says.
 */
export function parseUplinkTopic(topic: string): Validated<UplinkTopic> {
  const levels = topic.split('/');
  const [slug, device, ...rest] = levels;
  const kind = SUFFIX_TO_KIND.get(rest.join('/'));
  if (
    slug === undefined ||
    device === undefined ||
    !kind ||
    !validName(slug, true) ||
    !validName(device, false)
  ) {
    return {
      ok: false,
      rejection: {
        code: 'invalid_topic',
        message: `topic ${JSON.stringify(topic.slice(0, 200))} is not a Sluice uplink topic`,
      },
    };
  }
  return { ok: true, value: { topic_slug: slug, device_name: device, kind } };
}

/** Decode and validate one uplink payload of a given kind; a rejection carries a SPEC code. */
export function validateUplink(kind: UplinkKind, bytes: Uint8Array | string): Validated<unknown> {
  const json = parseJsonPayload(bytes);
  if (!json.ok) return json;
  switch (kind) {
    case 'rows':
      return validateRowBatch(json.value);
    case 'telemetry':
      return validateTelemetryBatch(json.value);
    case 'ack':
      return validateControlAck(json.value);
    case 'schema':
      return validateSchemaObserve(json.value);
    case 'request':
      return validateUploadRequest(json.value);
  }
}

/**
 * A batch's content digest: the first 16 hex digits of the SHA-256 of its payload bytes. A batch
 * id names one content; the lineage refuses a known id with another digest (batch_id_conflict).
 */
export function batchDigest(bytes: Uint8Array | string): string {
  return bytesToHex(sha256(typeof bytes === 'string' ? utf8ToBytes(bytes) : bytes)).slice(0, 16);
}

/**
 * The id the ingress stream dedupes on (`Nats-Msg-Id = <device>:<id>`). A batch's id carries its
 * content digest: the same bytes sent again are deduplicated, other content under the same
 * batch_id reaches the lineage, which refuses it visibly instead of it being dropped here.
 */
export function uplinkId(kind: UplinkKind, payload: unknown, bytes?: Uint8Array | string): string {
  const p = payload as Record<string, unknown>;
  if (kind === 'ack') return `ack:${String(p.control_id)}`;
  if (kind === 'schema') return `schema:${String(p.source_table)}:${String(p.schema_hash)}`;
  if (typeof p.batch_id === 'string')
    return bytes === undefined ? p.batch_id : `${p.batch_id}:${batchDigest(bytes)}`;
  if (typeof p.request_id === 'string') return `request:${p.request_id}`;
  return `request:${JSON.stringify(p).length}`;
}
