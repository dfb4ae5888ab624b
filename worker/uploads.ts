import type { JsMsg } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { ObjectStore } from '@nats-io/obj';
import { uuidv7 } from 'uuidv7';
import {
  MAX_BATCH_ROWS,
  MAX_PAYLOAD_BYTES,
  type RowChange,
  UPLOAD_GRANT_TTL_MS,
  type UploadFinalize,
  type UrlRequest,
  type VerifyReport,
} from '../domain/protocol/contracts';
import { type LineageState, type UploadState, findUpload, inRanges } from '../domain/lineage/state';
import type { Policy } from '../domain/policy/policy';
import type { RegistryView } from '../domain/registry/decide';
import type { RegistryKey } from '../domain/registry/events';
import { DomainError, isDomainError } from '../domain/shared/errors';
import type { IngressMessage } from '../infra/nats/ingress';
import type { Registry } from '../infra/nats/registry';
import { isUploadContentError, readUploadRows } from '../infra/uploads/jsonl';
import type { UploadObjectMeta } from '../infra/uploads/store';
import type { Logger } from '../infra/log';
import { type Metrics, countDecision } from '../infra/metrics';
import type { LineageCommandHandler } from './handler';

/** Deliveries (500 ms apart) a verify report waits for its rows before it is compared anyway. */
const MAX_EARLY_REPORT_DELIVERIES = 120;

/** Row JSON per chunk: a chunk's decision (its rows plus event envelopes) must fit one JetStream message. */
export const CHUNK_BYTES = MAX_PAYLOAD_BYTES - 32 * 1024;
const WORKING_EVERY_MS = 5_000;

type RequestMessage = Extract<IngressMessage, { kind: 'request' }>;

export type UploadIngestOptions = Readonly<{
  nc: NatsConnection;
  handler: LineageCommandHandler;
  registry: Registry;
  log: Logger;
  metrics?: Metrics;
  uploads?: ObjectStore;
  recordRejection: (msg: IngressMessage, code: string, message: string) => Promise<void>;
  /** Coalescing: uploaded rows are governed by the registry like batch rows (worker/ingress-worker.ts). */
  coalescing?: Coalescing;
}>;

/** The registry side of a rows decision: the view to decide under, then the enrolment after it. */
export type Coalescing = Readonly<{
  gate(
    projectId: string,
    fleetId: string | null,
    lineageId: string,
    table: string,
    schemaHash: string,
    policy: Policy,
  ): Promise<RegistryGate | undefined>;
  settle(gate: RegistryGate, lineageId: string, deviceId: string, state: LineageState): Promise<void>;
}>;
export type RegistryGate = Readonly<{ key: RegistryKey; view?: RegistryView }>;

/**
 * url_request and finalize of the secondary upload flow. A url_request becomes a grant (the
 * dispatcher sends it as a signed url_grant control). A finalize reads the uploaded object in
 * chunks, each decided and appended like a row batch (dedupe on (journal_epoch, commit_seq)), and
 * the ingress message is acked only after the last chunk and the completion are appended. A crash
 * mid-way redelivers the finalize; the chunks already appended are skipped, none is doubled.
 */
export class UploadIngest {
  private readonly active = new Map<string, Promise<void>>();
  private stopping = false;

  constructor(private readonly opts: UploadIngestOptions) {}

  /**
   * A device request. A verify report or a url_request is decided in its partition's order (the
   * promise settles once it is): a report is compared against the mirror at the point it is
   * folded, so the device's changes after it must not be decided first. A finalize may take
   * minutes (a whole object, chunk by chunk): it runs beside the loop (the promise settles at once)
   * and acks its message itself once every chunk is appended.
   */
  async handle(msg: IngressMessage, m: JsMsg): Promise<void> {
    if (msg.kind === 'request' && msg.payload['request_kind'] !== 'finalize') {
      return this.process(msg as RequestMessage, m);
    }
    const key = `${m.info.streamSequence}`;
    if (this.active.has(key)) {
      m.working(); // a redelivery of a finalize this worker is still taking in
      return;
    }
    const run = this.process(msg as RequestMessage, m).finally(() => this.active.delete(key));
    this.active.set(key, run);
  }

  /** A finalize in progress stops at its next chunk; its message comes back to a worker later. */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.allSettled([...this.active.values()]);
  }

  private async process(msg: RequestMessage, m: JsMsg): Promise<void> {
    const timer = setInterval(() => m.working(), WORKING_EVERY_MS);
    try {
      const payload = msg.payload as unknown as UrlRequest | UploadFinalize | VerifyReport;
      if (payload.request_kind === 'verify_report') {
        if (await this.verifyReport(msg, payload, m.info.deliveryCount)) m.ack();
        // Its rows are in the ingress stream but not decided yet: come back once they are.
        else m.nak(500);
        return;
      }
      if (!this.opts.uploads) {
        throw new DomainError('invalid_upload', 'this cloud has no upload store; send the rows as batches');
      }
      if (payload.request_kind === 'url_request') await this.grant(msg, payload);
      else await this.finalize(msg, payload, m, this.opts.uploads);
      m.ack();
    } catch (err) {
      if (isDomainError(err)) {
        await this.opts.recordRejection(msg, err.code, err.message).then(
          () => m.ack(),
          () => m.nak(1_000),
        );
        return;
      }
      this.opts.log.warn(
        { err: (err as Error).message, device: msg.device_key },
        'upload request failed; will retry',
      );
      m.nak(1_000);
    } finally {
      clearInterval(timer);
    }
  }

  /** The decision's time, from the handler's clock: the command's `now` and its events' time. */
  private now(): Date {
    return this.opts.handler.clock();
  }

  private async lineageOf(msg: RequestMessage, table: string, create: boolean) {
    const { registry } = this.opts;
    const device = await registry.resolveDevice(msg.project_id, msg.topic_slug, msg.device_name, uuidv7());
    const { lineageId } = await registry.resolveLineage(device.device_id, table, uuidv7());
    const loaded = await this.opts.handler.load(lineageId);
    if (!create && loaded.state.status !== 'registered') {
      throw new DomainError('unknown_upload', `no upload is open for ${table} on this device`);
    }
    return { device, lineageId, state: loaded.state };
  }

  /**
   * The device's digests for a verify this lineage requested (docs/verify.md). An unknown
   * verify_id is a rejection; a repeated report changes nothing. False while the report is ahead
   * of the rows it covers (the caller naks it).
   */
  private async verifyReport(msg: RequestMessage, r: VerifyReport, deliveries: number): Promise<boolean> {
    const { lineageId, state } = await this.lineageOf(msg, r.source_table, true);
    if (state.status !== 'registered') {
      throw new DomainError(
        'unknown_verify_id',
        `verify ${r.verify_id}: no lineage of ${r.source_table} asked for it`,
      );
    }
    if (await this.reportAhead(lineageId, state, r, deliveries)) return false;
    const now = this.now().toISOString();
    const result = await this.opts.handler.execute(
      lineageId,
      { type: 'ReportVerify', data: { report: r, now } },
      { decision_id: `${msg.device_key}:request:${r.request_id}`, now },
    );
    this.opts.log.info(
      {
        device: msg.device_key,
        verify_id: r.verify_id,
        buckets: r.digests.length,
        recorded: result.events.length > 0,
      },
      'verify report received',
    );
    return true;
  }

  /**
   * A report must be decided after the rows it covers: the comparison folds it against the mirror
   * at its position. The agent sends it only once the cloud has receipted those rows, but a
   * receipt means "in the ingress stream", and a batch decision that failed is retried after a
   * delay (or another worker holds the partition for a moment), so the report can reach the
   * lineage first. Until the lineage has
   * taken in `through_commit_seq` of the report's epoch it waits (nak); after many deliveries it
   * goes on anyway, and a comparison that is too early says `divergent` and resyncs, which is safe.
   */
  private async reportAhead(
    lineageId: string,
    cached: LineageState,
    r: VerifyReport,
    deliveries: number,
  ): Promise<boolean> {
    if (r.through_commit_seq === 0 || deliveries > MAX_EARLY_REPORT_DELIVERIES) return false;
    const taken = (s: LineageState) =>
      s.status !== 'registered' ||
      s.kind !== 'rows' ||
      inRanges(s.accepted[r.journal_epoch] ?? [], r.through_commit_seq);
    if (taken(cached)) return false;
    // The cached state may be behind another worker's decisions: look at the stream itself.
    return !taken((await this.opts.handler.load(lineageId, true)).state);
  }

  private async grant(msg: RequestMessage, r: UrlRequest): Promise<void> {
    const { device, lineageId } = await this.lineageOf(msg, r.source_table, true);
    const now = this.now();
    const result = await this.opts.handler.execute(
      lineageId,
      {
        type: 'RequestUpload',
        data: {
          project_id: msg.project_id,
          device_id: device.device_id,
          device_name: device.device_name,
          topic_slug: msg.topic_slug,
          new_lineage_id: lineageId,
          new_control_id: uuidv7(),
          new_replay_id: uuidv7(),
          now: now.toISOString(),
          expires_at: new Date(now.getTime() + UPLOAD_GRANT_TTL_MS).toISOString(),
          request: r,
        },
      },
      { decision_id: `${msg.device_key}:request:${r.request_id}`, now: now.toISOString() },
    );
    this.opts.log.info(
      {
        device: msg.device_key,
        upload_id: r.upload_id,
        granted: result.events.some((e) => e.type === 'UploadGranted'),
      },
      'upload requested',
    );
  }

  private async finalize(
    msg: RequestMessage,
    f: UploadFinalize,
    m: JsMsg,
    store: ObjectStore,
  ): Promise<void> {
    const { device, lineageId, state } = await this.lineageOf(msg, f.source_table, false);
    if (state.status !== 'registered') return;
    const u = state.kind === 'rows' ? findUpload(state, f.upload_id) : undefined;
    if (!u)
      throw new DomainError('unknown_upload', `upload ${f.upload_id} was not granted to this device table`);
    if (u.status !== 'granted') return; // finalized before: nothing more to do
    if (
      u.journal_epoch !== f.journal_epoch ||
      u.first_commit_seq !== f.first_commit_seq ||
      u.last_commit_seq !== f.last_commit_seq ||
      u.row_count !== f.row_count ||
      u.schema_hash !== f.schema_hash
    ) {
      throw new DomainError(
        'upload_mismatch',
        `the finalize of ${f.upload_id} names another range than its grant`,
      );
    }
    const obj = await store.get(f.upload_id);
    const meta = obj?.info.metadata as Partial<UploadObjectMeta> | undefined;
    if (!obj) {
      await this.fail(
        msg,
        lineageId,
        u,
        'upload_not_stored',
        'the finalize came but no uploaded object exists',
      );
      return;
    }
    if (meta?.device_key !== msg.device_key || meta.lineage_id !== lineageId) {
      throw new DomainError(
        'upload_mismatch',
        `object ${f.upload_id} was uploaded for another device or lineage`,
      );
    }
    const started = Date.now();
    const policy = await this.opts.registry.policy(msg.project_id);
    let chunk = 0;
    let rowsRead = 0;
    let buf: RowChange[] = [];
    let bytes = 0;
    const flush = async () => {
      if (buf.length === 0) return;
      const rows = buf;
      buf = [];
      bytes = 0;
      if (this.stopping) throw new Error('worker stopping; the finalize resumes from its next chunk later');
      // Chunks are cut the same way on every read, so a resumed finalize skips exactly those taken.
      if (chunk >= u.chunks)
        await this.appendChunk(msg, lineageId, device, f.source_table, u, chunk, rows, policy);
      chunk++;
      m.working();
    };
    try {
      for await (const rows of readUploadRows(obj.data, u)) {
        for (const r of rows) {
          const size = JSON.stringify(r).length + 1;
          if (buf.length >= MAX_BATCH_ROWS || (buf.length > 0 && bytes + size > CHUNK_BYTES)) await flush();
          buf.push(r);
          bytes += size;
          rowsRead++;
        }
      }
      await flush();
      const err = await obj.error;
      if (err) throw err;
    } catch (err) {
      if (isUploadContentError(err)) {
        await this.fail(msg, lineageId, u, err.code, err.message);
        return;
      }
      throw err;
    }
    await this.opts.handler.execute(
      lineageId,
      { type: 'CompleteUpload', data: { upload_id: u.upload_id, chunks: chunk, rows_read: rowsRead } },
      { decision_id: `${msg.device_key}:upload:${u.upload_id}:complete` },
    );
    // The rows are events now; the object has served its purpose.
    await store.delete(f.upload_id).catch(() => undefined);
    this.opts.log.info(
      {
        device: msg.device_key,
        upload_id: u.upload_id,
        rows: rowsRead,
        chunks: chunk,
        ms: Date.now() - started,
      },
      'upload taken in',
    );
  }

  private async appendChunk(
    msg: RequestMessage,
    lineageId: string,
    device: Readonly<{ device_id: string; fleet_id: string | null }>,
    table: string,
    u: UploadState,
    chunk: number,
    rows: RowChange[],
    policy: Awaited<ReturnType<Registry['policy']>>,
  ): Promise<void> {
    const gate = await this.opts.coalescing?.gate(
      msg.project_id,
      device.fleet_id,
      lineageId,
      table,
      u.schema_hash,
      policy,
    );
    const now = this.now().toISOString();
    const command = {
      type: 'IngestUploadChunk' as const,
      data: {
        upload_id: u.upload_id,
        chunk,
        rows,
        policy,
        new_review_id: uuidv7(),
        new_control_id: uuidv7(),
        new_replay_id: uuidv7(),
        now,
        ...(gate?.view ? { registry: gate.view } : {}),
      },
    };
    const meta = { decision_id: `${msg.device_key}:upload:${u.upload_id}:${chunk}`, now };
    let result;
    try {
      result = await this.opts.handler.execute(lineageId, command, meta);
    } catch (err) {
      if (!isDomainError(err) || err.code !== 'upload_chunk_out_of_order') throw err;
      // Decided on a state another decision had overtaken: read the lineage again and retry once.
      await this.opts.handler.load(lineageId, true);
      result = await this.opts.handler.execute(lineageId, command, meta);
    }
    if (gate) await this.opts.coalescing!.settle(gate, lineageId, device.device_id, result.state);
    countDecision(this.opts.metrics, result.events);
  }

  private async fail(msg: RequestMessage, lineageId: string, u: UploadState, code: string, message: string) {
    await this.opts.handler.execute(
      lineageId,
      { type: 'FailUpload', data: { upload_id: u.upload_id, code, message } },
      { decision_id: `${msg.device_key}:upload:${u.upload_id}:fail` },
    );
    await this.opts.recordRejection(msg, code, `upload ${u.upload_id}: ${message}`);
    this.opts.log.error(
      { device: msg.device_key, upload_id: u.upload_id, code, reason: message },
      'upload could not be taken in; the rows taken before stay, the rest is not in the lineage',
    );
  }
}
