/**
 * Uploads (docs/upload.md): a device asks for a URL to upload a large range of changes, the cloud
 * grants it (url_grant control), and the uploaded object's chunks enter the lineage like row
 * batches, in order, until the upload completes or fails.
 */
import type { RowChange, UrlRequest } from '../protocol/contracts';
import type { Policy } from '../policy/policy';
import type { RegistryView } from '../registry/view';
import { DomainError } from '../shared/errors';
import { type Identity, type Minted, apply, requireRows } from './common';
import type { LineageEvent } from './events';
import { governSchema } from './governance';
import { intake } from './intake';
import { register } from './lifecycle';
import { stagingReason } from './staging';
import { type LineageState, type RowsLineage, findUpload, inRanges } from './state';

/** A device's url_request; `expires_at` is when the grant's URL stops working. */
export type RequestUploadData = Identity &
  Minted & { request: UrlRequest; new_lineage_id: string; expires_at: string };

/** The next chunk (numbered from 0) of an uploaded object, in the object's order. */
export type IngestUploadChunkData = Minted & {
  upload_id: string;
  chunk: number;
  rows: readonly RowChange[];
  new_review_id: string;
  policy: Policy;
  /** Coalescing on: the registry entry of (scope, table, hash), as for a row batch. */
  registry?: RegistryView;
};

export type CompleteUploadData = { upload_id: string; chunks: number; rows_read: number };
export type FailUploadData = { upload_id: string; code: string; message: string };

function requireUpload(s: RowsLineage, uploadId: string) {
  const u = findUpload(s, uploadId);
  if (!u) throw new DomainError('unknown_upload', `upload ${uploadId} was not granted to this lineage`);
  return u;
}

export function decideRequestUpload(state: LineageState, d: RequestUploadData): LineageEvent[] {
  const r = d.request;
  const events = register(state, d, r.source_table, 'rows');
  const s = requireRows(apply(state, events), 'invalid_upload', 'uploads carry row changes');
  const u = findUpload(s, r.upload_id);
  if (u) {
    if (u.status !== 'granted') return events; // finished: a late request grants nothing
    if (
      u.journal_epoch !== r.journal_epoch ||
      u.schema_hash !== r.schema_hash ||
      u.first_commit_seq !== r.first_commit_seq ||
      u.last_commit_seq !== r.last_commit_seq ||
      u.row_count !== r.row_count
    ) {
      throw new DomainError('upload_mismatch', `upload ${r.upload_id} was granted for another range`);
    }
    // Its grant still works (and is re-delivered until ACKed): a repeated request adds nothing.
    if (Date.parse(d.now) < Date.parse(u.expires_at)) return events;
  }
  events.push(
    {
      type: 'UploadGranted',
      data: {
        upload_id: r.upload_id,
        request_id: r.request_id,
        control_id: d.new_control_id,
        journal_epoch: r.journal_epoch,
        schema_hash: r.schema_hash,
        schema_columns: r.schema_columns ?? s.schemas[r.schema_hash] ?? null,
        first_commit_seq: r.first_commit_seq,
        last_commit_seq: r.last_commit_seq,
        row_count: r.row_count,
        expires_at: d.expires_at,
      },
    },
    {
      type: 'ControlIssued',
      data: {
        control_id: d.new_control_id,
        control_kind: 'url_grant',
        source_table: s.source_table,
        server_watermark: s.last_commit_seq,
        reason: `upload ${r.upload_id}`,
        issued_at: d.now,
      },
    },
  );
  return events;
}

/**
 * A chunk of an uploaded object enters the lineage like a row batch (same dedupe on
 * (journal_epoch, commit_seq), same staging and backpressure), with the upload id as batch id.
 */
export function decideUploadChunk(state: LineageState, d: IngestUploadChunkData): LineageEvent[] {
  const s = requireRows(state, 'unknown_upload', 'no upload was granted to it');
  const u = requireUpload(s, d.upload_id);
  if (u.status !== 'granted' || d.chunk < u.chunks) return []; // taken before (a resumed finalize)
  if (d.chunk > u.chunks) {
    throw new DomainError(
      'upload_chunk_out_of_order',
      `chunk ${d.chunk} of ${u.upload_id}; expected ${u.chunks}`,
    );
  }
  for (const r of d.rows) {
    if (r.commit_seq < u.first_commit_seq || r.commit_seq > u.last_commit_seq) {
      throw new DomainError(
        'upload_content_invalid',
        `commit_seq ${r.commit_seq} lies outside the granted ${u.first_commit_seq}..${u.last_commit_seq}`,
      );
    }
  }
  const seen = s.accepted[u.journal_epoch] ?? [];
  const fresh = d.rows.filter((r) => !inRanges(seen, r.commit_seq));
  const duplicates = d.rows.length - fresh.length;
  const events: LineageEvent[] = [];
  const refused = fresh.filter((r) => r.op === 'refused');
  const flowing = refused.length > 0 ? fresh.filter((r) => r.op !== 'refused') : fresh;
  if (fresh.length > 0) {
    events.push(
      ...governSchema(s, u.schema_hash, u.schema_columns ?? undefined, d.new_review_id, d.policy, d.registry),
    );
    if (refused.length > 0) {
      events.push({
        type: 'RowsRefused',
        data: {
          batch_id: u.upload_id,
          journal_epoch: u.journal_epoch,
          schema_hash: u.schema_hash,
          rows: refused,
        },
      });
    }
  }
  if (flowing.length > 0) {
    const governed = requireRows(apply(s, events));
    const common = {
      batch_id: u.upload_id,
      journal_epoch: u.journal_epoch,
      schema_hash: u.schema_hash,
      rows: flowing,
      duplicates_skipped: duplicates,
    };
    intake(
      governed,
      events,
      d,
      stagingReason(governed, u.schema_hash),
      (r) => ({ type: 'RowsStaged', data: { ...common, reason: r } }),
      { type: 'RowsAccepted', data: common },
    );
  }
  events.push({
    type: 'UploadChunkAppended',
    data: { upload_id: u.upload_id, chunk: d.chunk, rows: fresh.length, duplicates_skipped: duplicates },
  });
  return events;
}

export function decideCompleteUpload(state: LineageState, d: CompleteUploadData): LineageEvent[] {
  const s = requireRows(state, 'unknown_upload', 'no upload was granted to it');
  const u = requireUpload(s, d.upload_id);
  if (u.status !== 'granted') return [];
  if (d.chunks !== u.chunks || d.rows_read !== u.row_count) {
    return [
      {
        type: 'UploadFailed',
        data: {
          upload_id: u.upload_id,
          code: 'upload_row_count_mismatch',
          message:
            `the object held ${d.rows_read} rows in ${d.chunks} chunks; the device announced ${u.row_count} ` +
            `and ${u.chunks} chunks were taken in`,
        },
      },
    ];
  }
  return [
    {
      type: 'UploadCompleted',
      data: { upload_id: u.upload_id, chunks: u.chunks, rows: u.rows, duplicates_skipped: u.duplicates },
    },
  ];
}

export function decideFailUpload(state: LineageState, d: FailUploadData): LineageEvent[] {
  const s = requireRows(state, 'unknown_upload', 'no upload was granted to it');
  const u = requireUpload(s, d.upload_id);
  if (u.status !== 'granted') return [];
  return [{ type: 'UploadFailed', data: { ...d, upload_id: u.upload_id } }];
}
