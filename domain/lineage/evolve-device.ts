/** How a rows lineage's exchanges with the device fold: write-back, uploads, verify runs and resyncs. */
import type { WireValue } from '../protocol/contracts';
import { assertNever } from '../shared/decider';
import type { LineageEvent } from './events';
import {
  type RowsLineage,
  type UploadState,
  type VerifyState,
  type WriteBackState,
  cloudKey,
  findUpload,
} from './state-types';

export type DeviceEvent = Extract<
  LineageEvent,
  {
    type:
      | 'LineageAuthoritySet'
      | 'CloudRowsWritten'
      | 'UploadGranted'
      | 'UploadChunkAppended'
      | 'UploadCompleted'
      | 'UploadFailed'
      | 'VerifyRequested'
      | 'VerifyReported'
      | 'VerifyCompleted'
      | 'ResyncRequested';
  }
>;

const RECENT_VERIFIES = 16;
const RECENT_RESYNCS = 16;

function patchVerify(s: RowsLineage, verifyId: string, patch: Partial<VerifyState>): RowsLineage {
  return { ...s, verifies: s.verifies.map((v) => (v.verify_id === verifyId ? { ...v, ...patch } : v)) };
}

/** A state_write control carries these keys' current versions: each remembers the control. */
export function carriedBy(
  wb: WriteBackState,
  controlId: string,
  carried: readonly Readonly<{ pk: Readonly<Record<string, WireValue>> }>[],
): WriteBackState {
  const rows = { ...wb.rows };
  for (const r of carried) {
    const key = cloudKey(r.pk);
    const row = Object.hasOwn(rows, key) ? rows[key] : undefined;
    if (row) rows[key] = { ...row, control_id: controlId };
  }
  return { ...wb, rows };
}

const MAX_UPLOADS = 16;

function patchUpload(
  s: RowsLineage,
  uploadId: string,
  patch: (u: UploadState) => Partial<UploadState>,
): RowsLineage {
  return {
    ...s,
    uploads: s.uploads.map((u) => (u.upload_id === uploadId ? { ...u, ...patch(u) } : u)),
  };
}

export function evolveDevice(s: RowsLineage, event: DeviceEvent): RowsLineage {
  switch (event.type) {
    case 'LineageAuthoritySet':
      return { ...s, write_back: { ...s.write_back, authority: event.data.authority } };
    case 'CloudRowsWritten': {
      const wb = s.write_back;
      const rows = { ...wb.rows };
      for (const r of event.data.rows) {
        const key = cloudKey(r.pk);
        const prev = Object.hasOwn(rows, key) ? rows[key] : undefined;
        rows[key] = {
          pk: r.pk,
          values: { ...prev?.values, ...r.values },
          cloud_version: r.cloud_version,
          control_id: prev?.control_id ?? null,
        };
      }
      return {
        ...s,
        write_back: {
          ...wb,
          last_cloud_version: Math.max(wb.last_cloud_version, event.data.cloud_version),
          rows,
        },
      };
    }
    case 'UploadGranted': {
      const d = event.data;
      const prev = findUpload(s, d.upload_id);
      const next: UploadState = {
        upload_id: d.upload_id,
        journal_epoch: d.journal_epoch,
        schema_hash: d.schema_hash,
        schema_columns: d.schema_columns,
        first_commit_seq: d.first_commit_seq,
        last_commit_seq: d.last_commit_seq,
        row_count: d.row_count,
        control_id: d.control_id,
        expires_at: d.expires_at,
        status: 'granted',
        chunks: prev?.chunks ?? 0,
        rows: prev?.rows ?? 0,
        duplicates: prev?.duplicates ?? 0,
      };
      const others = s.uploads.filter((u) => u.upload_id !== d.upload_id);
      // Finished uploads are only kept for a while (a late finalize of one is a no-op).
      return { ...s, uploads: [...others.slice(-(MAX_UPLOADS - 1)), next] };
    }
    case 'UploadChunkAppended':
      return patchUpload(s, event.data.upload_id, (u) => ({
        chunks: Math.max(u.chunks, event.data.chunk + 1),
        rows: u.rows + event.data.rows,
        duplicates: u.duplicates + event.data.duplicates_skipped,
      }));
    case 'UploadCompleted':
      return patchUpload(s, event.data.upload_id, () => ({ status: 'completed' }));
    case 'UploadFailed':
      return patchUpload(s, event.data.upload_id, () => ({ status: 'failed' }));
    case 'VerifyRequested': {
      const d = event.data;
      const next: VerifyState = {
        verify_id: d.verify_id,
        control_id: d.control_id,
        columns: d.columns,
        trigger: d.trigger,
        status: 'requested',
        requested_at: d.requested_at,
        reported_at: null,
        completed_at: null,
        journal_epoch: null,
        through_commit_seq: null,
        outcome: null,
        divergent_buckets: [],
        device_rows: null,
        mirror_rows: null,
        detail: null,
        resync_id: null,
      };
      return { ...s, verifies: [...s.verifies.slice(-(RECENT_VERIFIES - 1)), next] };
    }
    case 'VerifyReported':
      return patchVerify(s, event.data.verify_id, {
        status: 'reported',
        reported_at: event.data.reported_at ?? null,
        journal_epoch: event.data.journal_epoch,
        through_commit_seq: event.data.through_commit_seq,
        device_rows: event.data.digests.reduce((n, d) => n + d.rows, 0),
      });
    case 'VerifyCompleted':
      return patchVerify(s, event.data.verify_id, {
        status: 'completed',
        completed_at: event.data.completed_at ?? null,
        outcome: event.data.outcome,
        divergent_buckets: event.data.divergent_buckets,
        device_rows: event.data.device_rows,
        mirror_rows: event.data.mirror_rows,
        detail: event.data.detail ?? null,
        resync_id: event.data.resync_id ?? null,
      });
    case 'ResyncRequested': {
      const d = event.data;
      return {
        ...s,
        resyncs: [
          ...s.resyncs.slice(-(RECENT_RESYNCS - 1)),
          { resync_id: d.resync_id, control_id: d.control_id, buckets: d.buckets, reason: d.reason },
        ],
        ...(d.reason === 're_enrolment' ? { schema_resync: d.resync_id } : {}),
      };
    }
    default:
      return assertNever(event, 'lineage event');
  }
}
