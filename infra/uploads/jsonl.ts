import { DecompressStream } from 'zstd-napi';
import {
  MAX_PAYLOAD_BYTES,
  MAX_UPLOAD_BYTES,
  type RowChange,
  parseJsonPayload,
  validateUploadLine,
} from '../../domain/protocol/contracts';

export const UPLOAD_ERROR_CODES = [
  'upload_invalid_zstd',
  'upload_invalid_jsonl',
  'upload_too_large',
  'upload_row_count_mismatch',
  'upload_content_invalid',
] as const;
export type UploadErrorCode = (typeof UPLOAD_ERROR_CODES)[number];

/** An upload whose bytes are not what the grant allows: refused whole, nothing kept. */
export class UploadContentError extends Error {
  override readonly name = 'UploadContentError';
  constructor(
    readonly code: UploadErrorCode,
    message: string,
  ) {
    super(message);
  }
}
export const isUploadContentError = (e: unknown): e is UploadContentError => e instanceof UploadContentError;

/** The range an upload was granted for; every line must fall inside it, in commit order. */
export type UploadBounds = Readonly<{ first_commit_seq: number; last_commit_seq: number; row_count: number }>;

/**
 * Zstd windows above this are refused: a hostile frame must not make the decompressor allocate
 * without bound (2^27 = 128 MiB, zstd's own default limit; the agent compresses with far less).
 */
const WINDOW_LOG_MAX = 27;

export const newDecompressor = () => new DecompressStream({ windowLogMax: WINDOW_LOG_MAX });

/**
 * Splits decompressed JSONL into row changes, holding at most one partial line. Every line must
 * be a row change (as in a row batch) with a commit_seq inside the granted range and above the
 * previous line's; at the end the count must match what the device announced.
 */
export class JsonlRowReader {
  private rest: Buffer = Buffer.alloc(0);
  private lastSeq = 0;
  rows = 0;
  bytes = 0;
  line = 0;

  constructor(private readonly bounds: UploadBounds) {}

  push(chunk: Buffer): RowChange[] {
    this.bytes += chunk.length;
    if (this.bytes > MAX_UPLOAD_BYTES) {
      throw new UploadContentError(
        'upload_too_large',
        `the decompressed upload exceeds ${MAX_UPLOAD_BYTES} bytes`,
      );
    }
    const out: RowChange[] = [];
    let buf = this.rest.length > 0 ? Buffer.concat([this.rest, chunk]) : chunk;
    let start = 0;
    for (;;) {
      const nl = buf.indexOf(0x0a, start);
      if (nl < 0) break;
      this.take(buf.subarray(start, nl), out);
      start = nl + 1;
    }
    buf = buf.subarray(start);
    if (buf.length > MAX_PAYLOAD_BYTES) {
      throw new UploadContentError(
        'upload_invalid_jsonl',
        `line ${this.line + 1} is longer than ${MAX_PAYLOAD_BYTES} bytes`,
      );
    }
    // A copy, so the (possibly large) chunk it came from is not kept alive by a small remainder.
    this.rest = Buffer.from(buf);
    return out;
  }

  /** The last line (if it had no newline) and the final checks. */
  end(): RowChange[] {
    const out: RowChange[] = [];
    if (this.rest.length > 0) this.take(this.rest, out);
    this.rest = Buffer.alloc(0);
    if (this.rows !== this.bounds.row_count) {
      throw new UploadContentError(
        'upload_row_count_mismatch',
        `the upload holds ${this.rows} rows; the grant is for ${this.bounds.row_count}`,
      );
    }
    return out;
  }

  private take(line: Buffer, out: RowChange[]): void {
    this.line++;
    if (line.length === 0 || (line.length === 1 && line[0] === 0x0d)) return;
    const json = parseJsonPayload(line);
    if (!json.ok) {
      throw new UploadContentError('upload_invalid_jsonl', `line ${this.line}: ${json.rejection.message}`);
    }
    const row = validateUploadLine(json.value);
    if (!row.ok) {
      throw new UploadContentError('upload_invalid_jsonl', `line ${this.line}: ${row.rejection.message}`);
    }
    const seq = row.value.commit_seq;
    if (seq <= this.lastSeq) {
      throw new UploadContentError(
        'upload_content_invalid',
        `line ${this.line}: commit_seq ${seq} is not above the previous line's ${this.lastSeq}`,
      );
    }
    if (seq < this.bounds.first_commit_seq || seq > this.bounds.last_commit_seq) {
      throw new UploadContentError(
        'upload_content_invalid',
        `line ${this.line}: commit_seq ${seq} lies outside the granted ${this.bounds.first_commit_seq}..${this.bounds.last_commit_seq}`,
      );
    }
    this.lastSeq = seq;
    this.rows++;
    out.push(row.value);
  }
}

/**
 * Decompress a zstd byte stream and yield its row changes in groups as the bytes arrive; memory
 * stays at one decompressed chunk plus one partial line, whatever the size of the upload.
 */
/** The stream emitted `event`, or closed (destroyed) first. */
function settle(stream: DecompressStream, event: 'drain' | 'end'): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      stream.off(event, done);
      stream.off('close', done);
      resolve();
    };
    stream.on(event, done);
    stream.on('close', done);
  });
}

/**
 * Validate a compressed upload while it streams past: every chunk is handed on (to the object
 * store) only after the decompressor took it, and the stream fails (so the store keeps nothing)
 * as soon as the bytes are not zstd, not JSONL rows, or not what the grant allows.
 */
export async function* validatedChunks(
  source: AsyncIterable<Uint8Array>,
  bounds: UploadBounds,
  maxCompressedBytes = MAX_UPLOAD_BYTES,
): AsyncGenerator<Uint8Array> {
  const reader = new JsonlRowReader(bounds);
  const zstd = newDecompressor();
  let failure: unknown;
  let size = 0;
  zstd.on('data', (b: Buffer) => {
    try {
      reader.push(b);
    } catch (err) {
      failure ??= err;
      zstd.destroy();
    }
  });
  zstd.on('error', (err: Error) => {
    failure ??= new UploadContentError('upload_invalid_zstd', `the upload is not valid zstd: ${err.message}`);
  });
  try {
    for await (const chunk of source) {
      size += chunk.length;
      if (size > maxCompressedBytes) {
        throw new UploadContentError('upload_too_large', `the upload exceeds ${maxCompressedBytes} bytes`);
      }
      if (failure) throw failure;
      if (!zstd.write(chunk)) await settle(zstd, 'drain');
      if (failure) throw failure;
      yield chunk;
    }
    if (size === 0) throw new UploadContentError('upload_invalid_zstd', 'the upload is empty');
    const ended = settle(zstd, 'end');
    zstd.end();
    await ended;
    if (failure) throw failure;
    reader.end();
  } finally {
    if (!zstd.destroyed) zstd.destroy();
  }
}

export async function* readUploadRows(
  source: AsyncIterable<Uint8Array>,
  bounds: UploadBounds,
): AsyncGenerator<RowChange[]> {
  const reader = new JsonlRowReader(bounds);
  const zstd = newDecompressor();
  const pending: Buffer[] = [];
  let failure: unknown;
  let ended = false;
  let wake: (() => void) | undefined;
  zstd.on('data', (b: Buffer) => {
    pending.push(b);
    // Backpressure: the decompressor waits while the consumer works through what it has.
    if (pending.length >= 4) zstd.pause();
    wake?.();
  });
  zstd.on('error', (err: Error) => {
    failure = new UploadContentError('upload_invalid_zstd', `the upload is not valid zstd: ${err.message}`);
    wake?.();
  });
  zstd.on('end', () => {
    ended = true;
    wake?.();
  });
  const feed = (async () => {
    try {
      for await (const chunk of source) {
        if (failure || zstd.destroyed) return;
        if (!zstd.write(chunk)) {
          await settle(zstd, 'drain');
        }
      }
      zstd.end();
    } catch (err) {
      failure ??= err;
      zstd.destroy();
      wake?.();
    }
  })();
  try {
    for (;;) {
      while (pending.length > 0) {
        if (failure) throw failure;
        const rows = reader.push(pending.shift()!);
        if (rows.length > 0) yield rows;
      }
      if (zstd.isPaused()) zstd.resume();
      if (failure) throw failure;
      if (ended) break;
      await new Promise<void>((r) => (wake = r));
      wake = undefined;
    }
    const last = reader.end();
    if (last.length > 0) yield last;
  } finally {
    if (!ended) zstd.destroy();
    // The feed stops at its next chunk; it never throws (its failure is kept in `failure`).
    void feed;
  }
}
