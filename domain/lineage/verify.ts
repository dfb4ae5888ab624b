/**
 * Verify (docs/verify.md): the cloud asks the device for digests of its table's key buckets, the
 * device reports them, the projector compares them with the mirror, and a divergence asks for a
 * resync of the divergent buckets.
 */
import type { VerifyReport } from '../protocol/contracts';
import { DomainError } from '../shared/errors';
import { requireLineage, requireRows } from './common';
import type { LineageEvent, VerifyOutcome } from './events';
import { resyncEvents } from './resync';
import { gated } from './staging';
import { type ActiveLineage, type LineageState, type RowsLineage, findVerify, lastVerify } from './state';

export type RequestVerifyData = {
  verify_id: string;
  control_id: string;
  now: string;
  trigger: 'operator' | 'schedule';
  /** schedule only: no new run while the last one was requested less than this long ago. */
  interval_minutes?: number;
};

export type ReportVerifyData = { report: VerifyReport; now: string };

export type CompleteVerifyData = {
  verify_id: string;
  outcome: VerifyOutcome;
  divergent_buckets: readonly number[];
  device_rows: number;
  mirror_rows: number;
  detail?: string;
  new_resync_id: string;
  new_control_id: string;
  now: string;
};

function requireApproval(s: RowsLineage, what: 'verify' | 'resync') {
  const code = what === 'verify' ? 'verify_unavailable' : 'resync_unavailable';
  const schema = s.approved_hash ? s.schemas[s.approved_hash] : undefined;
  if (!s.approved_hash || (!schema && !s.coalesced)) {
    throw new DomainError(
      code,
      `no schema of ${s.source_table} is approved yet, so there is no mirror to ${what}. Approve its review first.`,
    );
  }
}

/** Source columns a verify digests: what the mirror holds (mirrored columns), key columns always. */
export function verifyColumns(s: ActiveLineage): string[] {
  return s.bindings.filter((b) => b.action === 'mirror' || b.pk_ordinal > 0).map((b) => b.column);
}

export function decideRequestVerify(state: LineageState, d: RequestVerifyData): LineageEvent[] {
  const l = requireLineage(state);
  // The schedule passes over telemetry lineages; an operator is told they cannot verify.
  if (d.trigger === 'schedule' && l.kind !== 'rows') return [];
  const s = requireRows(l, 'verify_unavailable', 'only row lineages can verify');
  if (d.trigger === 'schedule') {
    // The schedule never stacks runs, nor asks while rows wait for a review or a reset.
    const last = lastVerify(s);
    const due =
      !last || Date.parse(d.now) - Date.parse(last.requested_at) >= (d.interval_minutes ?? 0) * 60_000;
    if (!due || gated(s) || !s.approved_hash) return [];
  }
  requireApproval(s, 'verify');
  const columns = verifyColumns(s);
  if (columns.length === 0) {
    throw new DomainError(
      'verify_unavailable',
      `no column of ${s.source_table} is mirrored; nothing to verify`,
    );
  }
  return [
    {
      type: 'VerifyRequested',
      data: {
        verify_id: d.verify_id,
        control_id: d.control_id,
        columns,
        trigger: d.trigger,
        requested_at: d.now,
      },
    },
    {
      type: 'ControlIssued',
      data: {
        control_id: d.control_id,
        control_kind: 'verify',
        source_table: s.source_table,
        server_watermark: s.last_commit_seq,
        reason: `verify ${d.verify_id} (${d.trigger})`,
        issued_at: d.now,
        verify_id: d.verify_id,
        columns,
      },
    },
  ];
}

const sameColumns = (a: readonly string[], b: readonly string[]) =>
  a.length === b.length && [...a].sort().join('\u0000') === [...b].sort().join('\u0000');

export function decideReportVerify(state: LineageState, d: ReportVerifyData): LineageEvent[] {
  const s = requireRows(state, 'unknown_verify_id', 'no verify was requested for it');
  const r = d.report;
  const v = findVerify(s, r.verify_id);
  if (!v) {
    throw new DomainError(
      'unknown_verify_id',
      `verify ${r.verify_id} was not requested for this lineage (or is too old); the report was not recorded`,
    );
  }
  if (v.status !== 'requested') return []; // a repeated report
  if (!sameColumns(v.columns, r.columns)) {
    throw new DomainError(
      'verify_mismatch',
      `the report of verify ${r.verify_id} digests columns ${r.columns.join(', ')}; ${v.columns.join(', ')} were asked for`,
    );
  }
  return [
    {
      type: 'VerifyReported',
      data: {
        verify_id: r.verify_id,
        journal_epoch: r.journal_epoch,
        through_commit_seq: r.through_commit_seq,
        schema_hash: r.schema_hash,
        columns: r.columns,
        digests: r.digests,
        reported_at: d.now,
      },
    },
  ];
}

export function decideCompleteVerify(state: LineageState, d: CompleteVerifyData): LineageEvent[] {
  const s = requireRows(state, 'unknown_verify_id', 'no verify was requested for it');
  const v = findVerify(s, d.verify_id);
  if (!v)
    throw new DomainError('unknown_verify_id', `verify ${d.verify_id} was not requested for this lineage`);
  if (v.status === 'completed') return []; // the projector reported again (it restarted)
  if (v.status !== 'reported') {
    throw new DomainError('illegal_transition', `verify ${d.verify_id} has no device report yet`);
  }
  const buckets = [...new Set(d.divergent_buckets)].sort((a, b) => a - b);
  const repair = d.outcome === 'divergent' && buckets.length > 0;
  const completed: LineageEvent = {
    type: 'VerifyCompleted',
    data: {
      verify_id: d.verify_id,
      outcome: d.outcome,
      divergent_buckets: buckets,
      device_rows: d.device_rows,
      mirror_rows: d.mirror_rows,
      ...(d.detail !== undefined ? { detail: d.detail } : {}),
      ...(repair ? { resync_id: d.new_resync_id } : {}),
      completed_at: d.now,
    },
  };
  if (!repair) return [completed];
  return [
    completed,
    ...resyncEvents(s, 'verify_repair', buckets, {
      resync_id: d.new_resync_id,
      control_id: d.new_control_id,
      now: d.now,
    }),
  ];
}
