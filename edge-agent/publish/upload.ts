import http from 'node:http';
import https from 'node:https';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Logger } from 'pino';
import { CompressStream } from 'zstd-napi';
import type { Control } from '../../domain/protocol/contracts';
import { type Journal, SchemaChangedError } from '../capture/journal';
import type { StateStore } from '../state/state-store';
import type { UploadRecord } from '../state/uploads';
import type { StepFailed } from './lane';
import { changeJson, refuseTooLarge } from './row-batch';

/**
 * Without a grant after this many url_requests and this long, the agent gives up on the upload
 * and sends the rows as ordinary batches (a cloud without an upload store never grants).
 */
export const MAX_UPLOAD_REQUESTS = 3;
export const GRANT_WAIT_MS = 60_000;
const PAGE_ROWS = 1000;
const PUT_RETRY_MS = 5_000;

export type PutResult = Readonly<{ status: number; body: { code?: string; message?: string } }>;
export type PutFn = (url: string, body: AsyncIterable<Buffer>) => Promise<PutResult>;

export type UploadJobDeps = Readonly<{
  journal: Journal;
  state: StateStore;
  tid: () => number;
  log: Logger;
  now: () => number;
  newId: () => string;
  connected: () => boolean;
  publish: (topic: string, payload: string) => Promise<void>;
  requestTopic: string;
  receiptTimeoutMs: number;
  wake: () => void;
  failed: StepFailed;
  lkcvOf?: (pkCanonical: string, commitSeq: number) => number | undefined;
  /** A line larger than this travels as refused (row_too_large), like in a batch. */
  maxLineBytes: number;
  put?: PutFn;
}>;

export type UploadOutcome = 'confirmed' | 'abandoned';

/**
 * One upload of a journal range through the secondary flow: url_request → (signed) url_grant →
 * HTTP PUT of zstd JSONL streamed from the journal → finalize → receipt. Every step is recorded
 * in state.db first, so a restart picks it up where it was; the journal rows stay until the
 * finalize's receipt says the cloud holds them durably.
 */
export class UploadJob {
  private lastSentAt = 0;
  private putting = false;
  private retryAt = 0;
  private firstRequestAt = 0;
  outcome: UploadOutcome | null = null;

  constructor(
    readonly rec: UploadRecord,
    private readonly d: UploadJobDeps,
  ) {}

  get uploadId(): string {
    return this.rec.uploadId;
  }

  private save(patch: Partial<UploadRecord>): void {
    Object.assign(this.rec, patch);
    this.d.state.uploads.save(this.rec);
  }

  /** Drive the job one step (every tick): send what is due, start the PUT when granted. */
  step(): void {
    if (this.outcome) return;
    const now = this.d.now();
    const due = this.lastSentAt === 0 || now - this.lastSentAt >= this.d.receiptTimeoutMs;
    switch (this.rec.status) {
      case 'requesting': {
        if (!due || !this.d.connected()) return;
        if (this.firstRequestAt === 0) this.firstRequestAt = now;
        if (this.rec.requests >= MAX_UPLOAD_REQUESTS && now - this.firstRequestAt >= GRANT_WAIT_MS) {
          this.abandon(
            `no url_grant came for ${this.rec.requests} url_requests; the rows go as ordinary batches instead`,
          );
          return;
        }
        this.save({ requests: this.rec.requests + 1 });
        this.lastSentAt = now;
        this.send('url_request', this.d.newId());
        return;
      }
      case 'uploading': {
        if (this.putting || now < this.retryAt) return;
        if (this.rec.expiresAt && Date.parse(this.rec.expiresAt) <= now) {
          this.d.log.info(
            { event: 'upload_grant_expired', upload_id: this.rec.uploadId, table: this.rec.table },
            'the upload URL expired before the upload finished; asking for a new one',
          );
          this.requestAgain();
          return;
        }
        this.startPut();
        return;
      }
      case 'finalizing':
        if (!due || !this.d.connected()) return;
        this.lastSentAt = now;
        this.send('finalize', this.rec.finalizeId);
        return;
    }
  }

  private requestAgain(): void {
    this.save({ status: 'requesting', url: null, expiresAt: null, requests: 0 });
    this.lastSentAt = 0;
    this.firstRequestAt = 0;
    this.d.wake();
  }

  private send(kind: 'url_request' | 'finalize', requestId: string): void {
    const r = this.rec;
    const schema = this.d.journal.tableSchema(this.d.tid());
    if (!schema || schema.hash !== r.schemaHash) {
      this.abandon(
        `the schema of ${r.table} changed before its upload was finalized; the rows go as ordinary batches, ` +
          'read under the new schema',
      );
      return;
    }
    const body = {
      format_version: 1,
      request_kind: kind,
      request_id: requestId,
      upload_id: r.uploadId,
      source_table: r.table,
      journal_epoch: r.epoch,
      schema_hash: r.schemaHash,
      first_commit_seq: r.firstSeq,
      last_commit_seq: r.lastSeq,
      row_count: r.rowCount,
      ...(kind === 'url_request' ? { schema_columns: schema.fingerprint } : {}),
    };
    this.d.log.info(
      {
        event: kind,
        table: r.table,
        upload_id: r.uploadId,
        rows: r.rowCount,
        first: r.firstSeq,
        last: r.lastSeq,
      },
      kind === 'url_request' ? 'asked for an upload URL' : 'upload finalized; waiting for its receipt',
    );
    this.d
      .publish(this.d.requestTopic, JSON.stringify(body))
      .catch((err: Error) =>
        this.d.log.warn({ event: 'publish_failed', upload_id: r.uploadId, err: err.message }),
      );
  }

  /** A verified url_grant control for this table. */
  onGrant(c: Control): string {
    if (this.outcome) return 'upload already over';
    if (c.upload_id !== this.rec.uploadId) return `grant for another upload (${String(c.upload_id)})`;
    if (this.rec.status !== 'requesting') return `grant not needed (${this.rec.status})`;
    const url = c.presigned_url;
    const exp = c.presigned_url_expires_at ? Date.parse(c.presigned_url_expires_at) : NaN;
    if (!url || !/^https?:\/\//i.test(url)) return 'grant without an http(s) presigned_url: refused';
    if (Number.isNaN(exp) || exp <= this.d.now()) {
      this.d.log.warn(
        {
          event: 'upload_grant_refused',
          upload_id: this.rec.uploadId,
          expires_at: c.presigned_url_expires_at,
        },
        'url_grant refused: its URL has expired; the agent asks again',
      );
      this.requestAgain();
      return 'expired grant refused';
    }
    this.save({ status: 'uploading', url, expiresAt: c.presigned_url_expires_at! });
    this.d.wake();
    return 'granted';
  }

  /** The finalize's receipt: the cloud holds the rows. */
  onReceipt(): boolean {
    if (this.rec.status !== 'finalizing') return false;
    this.outcome = 'confirmed';
    return true;
  }

  private abandon(why: string): void {
    this.d.log.warn({ event: 'upload_abandoned', upload_id: this.rec.uploadId, table: this.rec.table }, why);
    this.outcome = 'abandoned';
    this.d.wake();
  }

  private startPut(): void {
    this.putting = true;
    const r = this.rec;
    const started = this.d.now();
    const put = this.d.put ?? putUpload;
    put(r.url!, this.lines())
      .then((res) => {
        if (res.status >= 200 && res.status < 300) {
          this.d.log.info(
            {
              event: 'upload_put',
              upload_id: r.uploadId,
              table: r.table,
              rows: r.rowCount,
              ms: this.d.now() - started,
            },
            'upload stored in the cloud',
          );
          this.save({ status: 'finalizing' });
          this.lastSentAt = 0;
          this.d.wake();
          return;
        }
        const code = res.body.code ?? `http_${res.status}`;
        if (code === 'upload_url_expired' || code === 'upload_url_invalid') {
          this.d.log.warn(
            { event: 'upload_refused', upload_id: r.uploadId, code },
            `the cloud refused the upload URL (${code}); asking for a new one`,
          );
          this.requestAgain();
        } else if (res.status >= 400 && res.status < 500) {
          this.abandon(
            `the cloud refused the upload content (${code}: ${res.body.message ?? ''}); nothing was stored there, ` +
              'the rows go as ordinary batches instead',
          );
        } else {
          this.retryLater(`HTTP ${res.status} ${code}`);
        }
      })
      .catch((err: Error) => {
        if (err instanceof SchemaChangedError) {
          this.abandon(
            `the schema of ${r.table} changed during its upload; nothing of it is taken in, the rows go as ` +
              'ordinary batches read under the new schema',
          );
        } else this.retryLater(err.message);
      })
      .catch((err: unknown) =>
        this.d.failed(err, 'upload_put_failed', 'recording an upload step failed; it is tried again'),
      )
      .finally(() => {
        this.putting = false;
      });
  }

  private retryLater(why: string): void {
    this.d.log.warn(
      { event: 'upload_put_failed', upload_id: this.rec.uploadId, err: why },
      'upload PUT failed; the journal rows are kept and the upload is tried again',
    );
    this.retryAt = this.d.now() + PUT_RETRY_MS;
  }

  /**
   * The range as JSONL, a page of changes at a time (never the whole range in memory), each page
   * read with its rows in one read transaction under the upload's schema (a schema change ends
   * the upload: SchemaChangedError).
   */
  private async *lines(): AsyncGenerator<Buffer> {
    const r = this.rec;
    let after = r.firstSeq - 1;
    while (after < r.lastSeq) {
      const page = this.d.journal.read(this.d.tid(), after, PAGE_ROWS, r.schemaHash);
      if (!page || page.throughSeq === 0) return;
      const parts: string[] = [];
      for (const c of page.changes) {
        if (c.commit_seq > r.lastSeq) break;
        let line = changeJson(c, this.d.lkcvOf);
        const bytes = Buffer.byteLength(line, 'utf8');
        if (bytes > this.d.maxLineBytes) line = JSON.stringify(refuseTooLarge(c, bytes, this.d.maxLineBytes));
        parts.push(line);
      }
      after = page.throughSeq;
      if (parts.length > 0) yield Buffer.from(`${parts.join('\n')}\n`, 'utf8');
    }
  }
}

/**
 * HTTP PUT of a zstd stream of `body`, chunked: memory stays at a few buffers whatever the size.
 * Resolves with the status and the (small) JSON answer, also when the server answers early.
 */
export function putUpload(
  url: string,
  body: AsyncIterable<Buffer>,
  tls: Readonly<{ ca?: Buffer }> = {},
): Promise<PutResult> {
  const u = new URL(url);
  const mod = u.protocol === 'https:' ? https : http;
  return new Promise<PutResult>((resolve, reject) => {
    let settled = false;
    const req = mod.request(u, {
      method: 'PUT',
      headers: { 'content-type': 'application/zstd' },
      ...(u.protocol === 'https:' && tls.ca ? { ca: tls.ca } : {}),
    });
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (b: Buffer) => {
        size += b.length;
        if (size <= 65_536) chunks.push(b);
      });
      res.on('end', () => {
        settled = true;
        let parsed: PutResult['body'] = {};
        try {
          parsed = JSON.parse(Buffer.concat(chunks).toString('utf8')) as PutResult['body'];
        } catch {
          // not JSON: the status says enough
        }
        resolve({ status: res.statusCode ?? 0, body: parsed });
      });
      res.on('error', (err) => {
        if (!settled) reject(err);
      });
    });
    req.on('error', (err) => {
      // A server that refuses early closes the connection while we still write; its answer may
      // still be on its way.
      setTimeout(() => {
        if (!settled) reject(err);
      }, 500);
    });
    pipeline(Readable.from(body), new CompressStream({ compressionLevel: 3 }), req).catch(() => undefined);
  });
}
