import type {
  ControlAck,
  RejectionCode,
  RowBatch,
  SchemaObserve,
  TelemetryBatch,
  UplinkKind,
} from '../../domain/protocol/contracts';

type Source = Readonly<{
  project_id: string;
  topic_slug: string;
  device_name: string;
  /** `<topic_slug>/<device_name>`: the device's identity as its connection proves it. */
  device_key: string;
  received_at: string;
  /** Row and telemetry batches: the digest of the payload bytes (batchDigest), for batch identity. */
  payload_digest?: string;
}>;

/** What the bridge appends to the ingress stream after validation. */
export type IngressMessage = Source &
  (
    | Readonly<{ kind: 'rows'; payload: RowBatch }>
    | Readonly<{ kind: 'telemetry'; payload: TelemetryBatch }>
    | Readonly<{ kind: 'ack'; payload: ControlAck }>
    | Readonly<{ kind: 'schema'; payload: SchemaObserve }>
    | Readonly<{ kind: 'request'; payload: Readonly<Record<string, unknown>> }>
  );

/** A rejected uplink, recorded on the rejections stream (and counted, and visible through the API). */
export type RejectionRecord = Readonly<{
  device_key: string;
  project_id: string | null;
  kind: UplinkKind | null;
  topic: string;
  code: RejectionCode;
  message: string;
  received_at: string;
  payload_excerpt: string;
}>;

export const encodeJson = (v: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(v));
export const decodeJson = <T>(b: Uint8Array): T => JSON.parse(new TextDecoder().decode(b)) as T;
