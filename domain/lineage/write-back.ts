/**
 * Cloud write-back (docs/write-back.md): the pure decisions of a cloud_authoritative lineage —
 * writes from an operator, and the conflict rule for device changes of keys the cloud wrote.
 */
import type { RowBatch, RowChange, WireValue } from '../protocol/contracts';
import type { Affinity } from '../protocol/fingerprint';
import { assertNever } from '../shared/decider';
import { DomainError } from '../shared/errors';
import type { CloudRowWrite, LineageAuthority, LineageEvent, StateWriteConflict } from './events';
import { type CloudRow, type RowsLineage, cloudKey } from './state';
import { evolveRows } from './evolve-rows';

export type WriteCloudRowsData = Readonly<{
  rows: readonly Readonly<{
    pk: Readonly<Record<string, WireValue>>;
    values: Readonly<Record<string, WireValue>>;
  }>[];
  new_control_id: string;
  now: string;
}>;

export function decideAuthority(s: RowsLineage, authority: LineageAuthority): LineageEvent[] {
  const previous = s.write_back.authority;
  if (previous === authority) return [];
  return [{ type: 'LineageAuthoritySet', data: { authority, previous } }];
}

/** Rows a write-back may carry in one request. */
export const MAX_WRITE_ROWS = 500;
/** Unacknowledged state_write controls a lineage may have before further writes are refused. */
export const MAX_PENDING_STATE_WRITES = 16;

export function stateWrite(
  s: RowsLineage,
  controlId: string,
  now: string,
  rows: readonly CloudRow[],
  reason: string,
): LineageEvent {
  return {
    type: 'ControlIssued',
    data: {
      control_id: controlId,
      control_kind: 'state_write',
      source_table: s.source_table,
      server_watermark: s.last_commit_seq,
      reason,
      issued_at: now,
      rows: rows.map((r) => ({ pk: r.pk, values: r.values, cloud_version: r.cloud_version })),
    },
  };
}

const pendingControl = (s: RowsLineage, id: string | null) =>
  id !== null && s.controls.some((c) => c.control_id === id && !c.acknowledged);

/**
 * The conflict rule of a cloud_authoritative lineage (docs/write-back.md): a device change of a
 * key whose lkcv is below the key's cloud_version was made before the device applied the
 * cloud's latest write of it. The cloud wins: the change is recorded as a conflict, taken in
 * (so a retry is deduped) but not materialized, and the current cloud row is sent again unless
 * a state_write carrying it is still unacknowledged, or a later row of the same batch shows the
 * device applied it. A change with lkcv ≥ cloud_version, or of a key the cloud never wrote,
 * flows on as usual. A device_authoritative lineage never conflicts: the device wins.
 */
export function cloudWins(
  s: RowsLineage,
  batch: RowBatch,
  fresh: readonly RowChange[],
  controlId: string | undefined,
  now: string,
): { rows: readonly RowChange[]; events: LineageEvent[] } {
  const wb = s.write_back;
  if (wb.authority !== 'cloud_authoritative') return { rows: fresh, events: [] };
  const rows: RowChange[] = [];
  const conflicts: StateWriteConflict[] = [];
  const lastConflict = new Map<string, { seq: number; row: CloudRow }>();
  const lastConfirmed = new Map<string, number>();
  for (const r of fresh) {
    if (r.op === 'sweep' || r.op === 'refused') {
      // No key of its own (a sweep's pk is {}), so nothing the cloud wrote can conflict with it.
      rows.push(r);
      continue;
    }
    const key = cloudKey(r.pk);
    const cloud = Object.hasOwn(wb.rows, key) ? wb.rows[key] : undefined;
    const lkcv = r.lkcv ?? 0;
    if (!cloud) {
      rows.push(r);
    } else if (lkcv < cloud.cloud_version) {
      conflicts.push({
        pk: r.pk,
        commit_seq: r.commit_seq,
        op: r.op,
        lkcv,
        cloud_version: cloud.cloud_version,
      });
      lastConflict.set(key, { seq: r.commit_seq, row: cloud });
    } else {
      rows.push(r);
      lastConfirmed.set(key, Math.max(r.commit_seq, lastConfirmed.get(key) ?? 0));
    }
  }
  if (conflicts.length === 0) return { rows, events: [] };
  const resend =
    controlId === undefined
      ? []
      : [...lastConflict.entries()]
          .filter(([key, c]) => (lastConfirmed.get(key) ?? 0) < c.seq && !pendingControl(s, c.row.control_id))
          .map(([, c]) => c.row);
  const conflict: LineageEvent = {
    type: 'StateWriteConflictDetected',
    data: {
      batch_id: batch.batch_id,
      journal_epoch: batch.journal_epoch,
      conflicts,
      reissued: resend.length,
    },
  };
  if (controlId === undefined || resend.length === 0) return { rows, events: [conflict] };
  // The watermark the control carries is the one after the conflicting rows were taken in.
  const after = evolveRows(s, conflict);
  const reason = `write-back conflict: ${resend.length} key(s) changed on the device before it applied the cloud row; the cloud row stands`;
  return { rows, events: [conflict, stateWrite(after, controlId, now, resend, reason)] };
}

function fitsAffinity(v: WireValue, affinity: Affinity): boolean {
  const isInt = typeof v === 'object' && v !== null && '$int' in v;
  switch (affinity) {
    case 'INTEGER':
      return (typeof v === 'number' && Number.isInteger(v)) || isInt;
    case 'REAL':
    case 'NUMERIC':
      return typeof v === 'number' || isInt || (typeof v === 'object' && v !== null && '$real' in v);
    case 'TEXT':
      return typeof v === 'string';
    case 'BLOB':
      return typeof v === 'string' || (typeof v === 'object' && v !== null && '$blob' in v);
    default:
      return assertNever(affinity, 'affinity');
  }
}

const describeValue = (v: WireValue) =>
  v === null ? 'null' : typeof v === 'object' ? Object.keys(v)[0] : typeof v;

export function decideWrite(s: RowsLineage, d: WriteCloudRowsData): LineageEvent[] {
  if (s.write_back.authority !== 'cloud_authoritative') {
    throw new DomainError(
      'not_cloud_authoritative',
      `lineage ${s.lineage_id} is device_authoritative: the device owns its rows and nothing was written. ` +
        'Make it cloud_authoritative first (POST /lineages/{id}/authority).',
    );
  }
  const schema = s.approved_hash ? s.schemas[s.approved_hash] : undefined;
  if (!schema) {
    throw new DomainError(
      'schema_not_approved',
      `no schema of ${s.source_table} is approved yet; nothing was written. Approve its review first.`,
    );
  }
  if (d.rows.length < 1 || d.rows.length > MAX_WRITE_ROWS) {
    throw new DomainError(
      'invalid_rows',
      `a write carries 1 to ${MAX_WRITE_ROWS} rows; this one has ${d.rows.length}`,
    );
  }
  const pending = s.controls.filter((c) => c.control_kind === 'state_write' && !c.acknowledged).length;
  if (pending >= MAX_PENDING_STATE_WRITES) {
    throw new DomainError(
      'write_back_backlog',
      `the device has not acknowledged ${pending} earlier writes (it may be offline); nothing was written. ` +
        'Retry once it has caught up (GET /pending-controls).',
      { pending },
    );
  }
  const columns = new Map(schema.columns.map((c) => [c.name, c]));
  const key = schema.columns.filter((c) => c.pk_ordinal > 0).map((c) => c.name);
  const bad = (i: number, message: string, details: Record<string, unknown> = {}) =>
    new DomainError('invalid_rows', `rows[${i}]: ${message}; nothing was written`, { row: i, ...details });
  const seen = new Set<string>();
  d.rows.forEach((r, i) => {
    const missing = key.filter((k) => !Object.hasOwn(r.pk, k));
    if (missing.length > 0) {
      throw bad(
        i,
        `pk lacks key column(s) ${missing.join(', ')} (the key of ${s.source_table} is ${key.join(', ')})`,
        {
          missing,
        },
      );
    }
    const extra = Object.keys(r.pk).filter((k) => !key.includes(k));
    if (extra.length > 0) {
      throw bad(i, `pk names ${extra.join(', ')}, not part of the key (${key.join(', ')})`, {
        columns: extra,
      });
    }
    for (const k of key) {
      const v = r.pk[k]!;
      const affinity = columns.get(k)!.decl_type_affinity;
      if (!fitsAffinity(v, affinity)) {
        throw bad(i, `pk.${k} is ${describeValue(v)}; the column is ${affinity}`, { column: k });
      }
    }
    const unknown = Object.keys(r.values).filter((c) => !columns.has(c));
    if (unknown.length > 0) {
      throw bad(i, `values names unknown column(s) ${unknown.join(', ')}`, { columns: unknown });
    }
    const keyed = Object.keys(r.values).filter((c) => key.includes(c));
    if (keyed.length > 0) {
      throw bad(i, `values names key column(s) ${keyed.join(', ')}; the key goes in pk`, { columns: keyed });
    }
    const k = cloudKey(r.pk);
    if (seen.has(k)) throw bad(i, 'the same pk appears twice in this write');
    seen.add(k);
  });
  // The write's time in milliseconds, or one above the last version if the clock has not moved
  // on: monotonic per lineage, and a lineage that replaces a deleted one of the same table still
  // writes above every version the device holds from the old one (it skips lower ones).
  const version = Math.max(s.write_back.last_cloud_version + 1, Date.parse(d.now) || 0);
  const written: CloudRowWrite[] = d.rows.map((r) => ({
    pk: r.pk,
    values: r.values,
    cloud_version: version,
  }));
  const writtenEvent: LineageEvent = {
    type: 'CloudRowsWritten',
    data: { cloud_version: version, rows: written },
  };
  const events: LineageEvent[] = [writtenEvent];
  const after = evolveRows(s, writtenEvent);
  const current = written.map((r) => after.write_back.rows[cloudKey(r.pk)]!);
  events.push(
    stateWrite(
      after,
      d.new_control_id,
      d.now,
      current,
      `cloud write-back v${version}: ${written.length} row(s)`,
    ),
  );
  return events;
}
