import {
  RECEIPT_TOPIC,
  type Receipt,
  type RowBatch,
  type TelemetryBatch,
  type UplinkKind,
  type UploadRequest,
} from '../../domain/protocol/contracts';
import { batchDigest, parseUplinkTopic, uplinkId, validateUplink } from '../../domain/protocol/uplink';
import type { IngressMessage, RejectionRecord } from '../../infra/nats/ingress';
import { subjects } from '../../infra/nats/names';

/** What the bridge does with one MQTT uplink, decided without IO (and fuzzed: bridge/uplink/decode.fuzz.unit.test.ts). */
export type DecodedUplink =
  | Readonly<{
      ok: true;
      message: IngressMessage;
      /**
       * `edge.ingress.<kind>.<device token>` and its dedupe id `<device_key>:<id>`; for a batch
       * `<device_key>:<batch_id>:<content digest>` (domain/protocol/uplink.ts uplinkId).
       */
      subject: string;
      msgID: string;
      /**
       * Sent to the device once the append is acknowledged (row and telemetry batches, upload
       * finalizes). It confirms that the upload is durable, not that the lineage accepted it: a
       * batch refused later (e.g. batch_id_conflict) is recorded in the rejections stream.
       */
      receipt?: Readonly<{ topic: string; body: Receipt }>;
    }>
  | Readonly<{ ok: false; record: RejectionRecord; subject: string }>;

/**
 * Topic first: the device is who its topic (and so the broker's ACL for its connection) says,
 * never what the payload says. Then the payload, against the wire contract of its kind.
 */
export function decodeUplink(
  topic: string,
  payload: Uint8Array,
  projectOf: (slug: string) => string,
  receivedAt: string,
): DecodedUplink {
  const parsedTopic = parseUplinkTopic(topic);
  if (!parsedTopic.ok) {
    const device_key = topic.split('/').slice(0, 2).join('/');
    return {
      ok: false,
      subject: subjects.rejected(device_key),
      record: {
        device_key,
        // The project its first level maps to (the default project for a slug nobody mapped), so
        // an operator sees it in `GET /rejections`: a topic the cloud cannot read still has a sender.
        project_id: projectOf(topic.split('/')[0] ?? ''),
        kind: null,
        topic,
        ...parsedTopic.rejection,
        received_at: receivedAt,
        payload_excerpt: excerpt(payload),
      },
    };
  }
  const { topic_slug, device_name, kind } = parsedTopic.value;
  const device_key = `${topic_slug}/${device_name}`;
  const project_id = projectOf(topic_slug);
  const validated = validateUplink(kind, payload);
  if (!validated.ok) {
    return {
      ok: false,
      subject: subjects.rejected(device_key),
      record: {
        device_key,
        project_id,
        kind,
        topic,
        ...validated.rejection,
        received_at: receivedAt,
        payload_excerpt: excerpt(payload),
      },
    };
  }
  const batch = kind === 'rows' || kind === 'telemetry';
  const message = {
    kind,
    payload: validated.value,
    project_id,
    topic_slug,
    device_name,
    device_key,
    received_at: receivedAt,
    ...(batch ? { payload_digest: batchDigest(payload) } : {}),
  } as IngressMessage;
  const body = receiptOf(kind, validated.value);
  const receipt = body ? { topic: `${device_key}/${RECEIPT_TOPIC}`, body } : undefined;
  return {
    ok: true,
    message,
    subject: subjects.ingress(kind, device_key),
    msgID: `${device_key}:${uplinkId(kind, validated.value, batch ? payload : undefined)}`,
    ...(receipt ? { receipt } : {}),
  };
}

/**
 * What the device is told once an uplink is in the ingress stream (undefined: nothing). A batch
 * and an upload's finalize may let their journal range go. A verify report lets the table's next
 * changes go: they follow the report in the stream, so the comparison sees none of them
 * (docs/verify.md); its receipt names the verify_id as its batch_id.
 */
function receiptOf(kind: UplinkKind, value: unknown): Receipt | undefined {
  if (kind === 'rows') {
    const b = value as RowBatch;
    return {
      format_version: 1,
      batch_id: b.batch_id,
      source_table: b.source_table,
      journal_epoch: b.journal_epoch,
      last_commit_seq: b.last_commit_seq,
    };
  }
  if (kind === 'telemetry') {
    const b = value as TelemetryBatch;
    return { format_version: 1, batch_id: b.batch_id, source_table: b.source_table, batch_seq: b.batch_seq };
  }
  if (kind !== 'request') return undefined;
  const r = value as UploadRequest;
  if (r.request_kind === 'finalize') {
    return {
      format_version: 1,
      batch_id: r.upload_id,
      source_table: r.source_table,
      journal_epoch: r.journal_epoch,
      last_commit_seq: r.last_commit_seq,
    };
  }
  if (r.request_kind === 'verify_report') {
    return {
      format_version: 1,
      batch_id: r.verify_id,
      source_table: r.source_table,
      journal_epoch: r.journal_epoch,
      last_commit_seq: r.through_commit_seq,
    };
  }
  return undefined;
}

/** The first 256 bytes, printable ASCII only: safe in a log line, a JSON record and a terminal. */
export function excerpt(payload: Uint8Array): string {
  return Buffer.from(payload.buffer, payload.byteOffset, Math.min(payload.byteLength, 256))
    .toString('utf8')
    .replace(/[^\x20-\x7e]/g, '?');
}
