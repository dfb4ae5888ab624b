/**
 * The fault suite's checker: given what was written and what every store holds afterwards, it
 * classifies each write and lists every broken promise. Pure (no IO), so it is unit-tested on
 * synthetic histories, including doubled and lost ones it must flag.
 *
 * A write is one journaled change of a device table: `(table, journal_epoch, commit_seq)`.
 *
 * - applied:   the lineage took it in (RowsAccepted, or RowsStaged while gated);
 * - rejected:  its batch was refused with a code (the rejections stream) and it was never taken in;
 * - pending:   still in the device's journal, not confirmed yet;
 * - lost:      none of these: confirmed end to end (gone from the journal) and yet not applied.
 *
 * A write taken in more than once (two RowsAccepted, a RowsStaged and a RowsAccepted, or the same
 * row twice in one event) is duplicated. A MaterializationFailed re-staging rows it had accepted
 * is the domain's own bookkeeping, not a second intake.
 */
import type { LineageEvent } from '../../domain/lineage/events';
import { wireValueSchema } from '../../domain/protocol/contracts';
import { normalizeWire, storageClassOf } from '../../domain/protocol/wire-values';
import { canonicalJson } from '../../domain/shared/canonical';
import { evolve, initialState } from '../../domain/lineage/state';
import { fold } from '../../domain/shared/decider';

export type Write = Readonly<{
  table: string;
  epoch: string;
  seq: number;
  /** The batch it was sent in, when the sender knows it (injected batches): matches rejections. */
  batch_id?: string;
}>;

export type Rejection = Readonly<{ code: string; batch_id: string | null; message?: string }>;

/**
 * One table as a store holds it: rows keyed by their key's canonical text (`keyText`), each row
 * the approved columns (mirror names) as wire values (`domain/protocol/wire-values.ts`).
 */
export type TableImage = ReadonlyMap<string, Readonly<Record<string, unknown>>>;

export type LineageObservation = Readonly<{
  table: string;
  lineage_id: string;
  events: readonly LineageEvent[];
  /** The device's table at the end, in the mirror's column names (undefined: not compared). */
  device?: TableImage;
  /** The mirror table at the end (undefined: not compared, e.g. the check runs mid-fault). */
  mirror?: TableImage;
  /** `(epoch, seq)` of every row the staged-rows read store holds for this lineage. */
  staged?: readonly (readonly [string, number])[];
  /** Ids of controls the read store lists as pending for this lineage. */
  pending_controls?: readonly string[];
  /** Counters of the lineages read store, compared with the fold of the events. */
  counters?: Readonly<{ staged_rows: number; materialized_rows: number; last_commit_seq: number | null }>;
}>;

export type Observation = Readonly<{
  writes: readonly Write[];
  /** `table|epoch|seq` of changes still in the device's journal. */
  device_pending: ReadonlySet<string>;
  rejections: readonly Rejection[];
  lineages: readonly LineageObservation[];
}>;

export type Verdict = Readonly<{
  writes: number;
  applied: number;
  rejected: number;
  pending: number;
  lost: number;
  duplicated: number;
  /** Every broken promise, one line each; empty when all hold. */
  violations: readonly string[];
}>;

export const writeKey = (table: string, epoch: string, seq: number): string => `${table}|${epoch}|${seq}`;

const MAX_LISTED = 5;
const listed = (xs: readonly string[]): string =>
  xs.length > MAX_LISTED ? `${xs.slice(0, MAX_LISTED).join(', ')} … (${xs.length})` : xs.join(', ');

/** The staged set and pending controls the events imply; counters come from the domain's own fold. */
function foldLineage(events: readonly LineageEvent[]) {
  let staged = new Map<string, readonly [string, number]>();
  const issued = new Map<string, boolean>();
  for (const e of events) {
    switch (e.type) {
      case 'RowsStaged':
        for (const r of e.data.rows)
          staged.set(`${e.data.journal_epoch}|${r.commit_seq}`, [e.data.journal_epoch, r.commit_seq]);
        break;
      case 'MaterializationFailed': {
        const epoch = e.data.journal_epoch ?? '';
        for (const r of e.data.rows) staged.set(`${epoch}|${r.commit_seq}`, [epoch, r.commit_seq]);
        break;
      }
      case 'StagedRowsReleased':
        staged = new Map();
        break;
      case 'ControlIssued':
        issued.set(e.data.control_id, false);
        break;
      case 'ControlAcknowledged':
        if (issued.has(e.data.control_id)) issued.set(e.data.control_id, true);
        break;
      default:
        break;
    }
  }
  const pendingControls = [...issued].filter(([, acked]) => !acked).map(([id]) => id);
  const state = fold({ evolve, initialState }, events);
  const counters =
    state.status === 'registered'
      ? {
          staged_rows: state.staged_rows,
          materialized_rows: state.materialized_rows,
          last_commit_seq:
            state.kind !== 'rows' || state.last_commit_seq === 0 ? null : state.last_commit_seq,
        }
      : undefined;
  return { staged, pendingControls, counters };
}

/** One spelling per value (`normalizeWire`), as canonical text; a non-wire value says so. */
export function valueKey(v: unknown): string {
  const parsed = wireValueSchema.safeParse(v);
  if (!parsed.success) return `not-a-wire-value:${typeof v}:${String(v)}`;
  try {
    return canonicalJson(normalizeWire(parsed.data));
  } catch {
    return `not-a-wire-value:${String(v)}`;
  }
}

/** A value as a person reads it in a violation: its storage class, then its wire form. */
export function describeValue(v: unknown): string {
  if (v === undefined) return 'absent';
  const parsed = wireValueSchema.safeParse(v);
  if (!parsed.success) return `not a wire value (${typeof v} ${String(v)})`;
  const w = normalizeWire(parsed.data);
  const text = typeof w === 'number' && Object.is(w, -0) ? '-0' : JSON.stringify(w);
  return `${storageClassOf(w)} ${text}`;
}

/**
 * Mirror against device, row by row and column by column: the same keys, and in every approved
 * column the same value of the same storage class (REAL 5.0 is not INTEGER 5, 0.3 is not
 * 0.30000000000000004, -0.0 is not 0). Both images hold wire values (`wire-values.ts`).
 */
function compareImages(table: string, device: TableImage, mirror: TableImage, out: string[]): void {
  const missing: string[] = [];
  const extra: string[] = [];
  const differ: string[] = [];
  // How often each column differs and how (`price: real → integer`), so a systematic loss of a
  // value class reads at a glance among thousands of rows.
  const kinds = new Map<string, number>();
  for (const [k, want] of device) {
    const got = mirror.get(k);
    if (!got) {
      missing.push(k);
      continue;
    }
    const cells: string[] = [];
    for (const c of [...new Set([...Object.keys(want), ...Object.keys(got)])].sort()) {
      if (valueKey(got[c]) === valueKey(want[c]) && c in got === c in want) continue;
      cells.push(`${c}: mirror ${describeValue(got[c])} ≠ device ${describeValue(want[c])}`);
      const kind = `${c}: ${describeValue(want[c]).split(' ')[0]} → ${describeValue(got[c]).split(' ')[0]}`;
      kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
    }
    if (cells.length) differ.push(`${k} {${cells.join('; ')}}`);
  }
  for (const k of mirror.keys()) if (!device.has(k)) extra.push(k);
  if (missing.length)
    out.push(`${table}: ${missing.length} device row(s) missing from the mirror: ${listed(missing)}`);
  if (extra.length)
    out.push(`${table}: ${extra.length} mirror row(s) the device does not have: ${listed(extra)}`);
  if (differ.length) {
    const summary = [...kinds]
      .sort((a, b) => b[1] - a[1])
      .map(([kind, n]) => `${kind} ×${n}`)
      .join(', ');
    out.push(
      `${table}: ${differ.length} mirror row(s) differ from the device in value or storage class (${summary}): ${listed(differ)}`,
    );
  }
}

export function check(o: Observation): Verdict {
  const violations: string[] = [];
  // Intake: how often each (table, epoch, seq) was taken in, across every lineage of the table.
  const intake = new Map<string, number>();
  for (const l of o.lineages) {
    for (const e of l.events) {
      if (e.type !== 'RowsAccepted' && e.type !== 'RowsStaged') continue;
      for (const r of e.data.rows) {
        const k = writeKey(l.table, e.data.journal_epoch, r.commit_seq);
        intake.set(k, (intake.get(k) ?? 0) + 1);
      }
    }
  }
  const rejectedBatches = new Map<string, string>();
  for (const r of o.rejections) if (r.batch_id) rejectedBatches.set(r.batch_id, r.code);

  let applied = 0;
  let rejected = 0;
  let pending = 0;
  const lost: string[] = [];
  const written = new Set<string>();
  for (const w of o.writes) {
    const k = writeKey(w.table, w.epoch, w.seq);
    if (written.has(k)) violations.push(`write ${k} listed twice in the workload`);
    written.add(k);
    if ((intake.get(k) ?? 0) > 0) applied++;
    else if (w.batch_id !== undefined && rejectedBatches.has(w.batch_id)) rejected++;
    else if (o.device_pending.has(k)) pending++;
    else lost.push(k);
  }
  // The workload refuses batches only on purpose (injected ones): any other refusal is a bug.
  const meant = new Set(o.writes.flatMap((w) => (w.batch_id ? [w.batch_id] : [])));
  const unexpected = o.rejections.filter((r) => !r.batch_id || !meant.has(r.batch_id));
  if (unexpected.length)
    violations.push(
      `${unexpected.length} batch(es) refused that nobody meant to be: ${listed(unexpected.map((r) => `${r.code} (${r.message ?? r.batch_id ?? ''})`))}`,
    );
  const duplicated = [...intake].filter(([, n]) => n > 1).map(([k, n]) => `${k} ×${n}`);
  const phantom = [...intake.keys()].filter((k) => !written.has(k));
  if (lost.length)
    violations.push(`${lost.length} write(s) lost (confirmed, never applied): ${listed(lost)}`);
  if (duplicated.length)
    violations.push(`${duplicated.length} write(s) taken in more than once: ${listed(duplicated)}`);
  if (phantom.length)
    violations.push(`${phantom.length} row(s) taken in that nobody wrote: ${listed(phantom)}`);

  for (const l of o.lineages) {
    // No gaps: in each epoch the lineage's seqs, plus what the device still holds, are 1..max.
    const byEpoch = new Map<string, Set<number>>();
    for (const e of l.events) {
      if (e.type !== 'RowsAccepted' && e.type !== 'RowsStaged') continue;
      const s = byEpoch.get(e.data.journal_epoch) ?? new Set<number>();
      for (const r of e.data.rows) s.add(r.commit_seq);
      byEpoch.set(e.data.journal_epoch, s);
    }
    for (const [epoch, seqs] of byEpoch) {
      for (const k of o.device_pending) {
        const [t, ep, seq] = k.split('|');
        if (t === l.table && ep === epoch) seqs.add(Number(seq));
      }
      // A loop, not Math.max(...seqs): spreading ~125k arguments overflows the stack, and an
      // offline device's epoch holds that many.
      let max = 0;
      for (const q of seqs) if (q > max) max = q;
      const holes: string[] = [];
      for (let s = 1; s <= max; s++) if (!seqs.has(s)) holes.push(String(s));
      if (holes.length) violations.push(`${l.table} epoch ${epoch}: commit_seq gap(s) ${listed(holes)}`);
    }

    const folded = foldLineage(l.events);
    if (l.staged) {
      const have = new Set(l.staged.map(([e, s]) => `${e}|${s}`));
      const want = new Set(folded.staged.keys());
      const notHeld = [...want].filter((k) => !have.has(k));
      const notStaged = [...have].filter((k) => !want.has(k));
      if (notHeld.length)
        violations.push(
          `${l.table}: ${notHeld.length} staged row(s) in the events but not the read store: ${listed(notHeld)}`,
        );
      if (notStaged.length)
        violations.push(
          `${l.table}: ${notStaged.length} row(s) staged in the read store that the events released or never staged: ${listed(notStaged)}`,
        );
      if (l.staged.length !== have.size)
        violations.push(`${l.table}: a staged row is held twice in the read store`);
    }
    if (l.pending_controls) {
      const have = [...l.pending_controls].sort();
      const want = [...folded.pendingControls].sort();
      if (JSON.stringify(have) !== JSON.stringify(want))
        violations.push(
          `${l.table}: pending controls ${JSON.stringify(have)} in the read store, ${JSON.stringify(want)} in the events`,
        );
    }
    if (l.counters) {
      const want = folded.counters;
      const have = { ...l.counters, last_commit_seq: l.counters.last_commit_seq || null };
      if (JSON.stringify(have) !== JSON.stringify(want))
        violations.push(
          `${l.table}: read-store counters ${JSON.stringify(have)}, events say ${JSON.stringify(want)}`,
        );
    }
    if (l.device && l.mirror) compareImages(l.table, l.device, l.mirror, violations);
  }
  return {
    writes: o.writes.length,
    applied,
    rejected,
    pending,
    lost: lost.length,
    duplicated: duplicated.length,
    violations,
  };
}
