import type { LineageEvent } from '../../domain/lineage/events';
import type { RowChange, WireValue } from '../../domain/protocol/contracts';
import { check, type Observation, type Write, writeKey } from './checker';

const E = '0190a000-0000-7000-8000-0000000000e1';
const LINEAGE = '0190a000-0000-7000-8000-0000000000a1';
const HASH = 'a'.repeat(64);

const row = (seq: number, id = seq): RowChange => ({
  commit_seq: seq,
  op: 'insert',
  pk: { id },
  row: { id, v: `v${id}` },
});
const registered: LineageEvent = {
  type: 'LineageRegistered',
  data: {
    lineage_id: LINEAGE,
    project_id: '0190a000-0000-7000-8000-000000000001',
    device_id: '0190a000-0000-7000-8000-0000000000d1',
    device_name: 'd',
    source_table: 't',
    kind: 'rows',
  },
};
const accepted = (seqs: number[], batch = 'b'): LineageEvent => ({
  type: 'RowsAccepted',
  data: {
    batch_id: batch,
    journal_epoch: E,
    schema_hash: HASH,
    rows: seqs.map((s) => row(s)),
    duplicates_skipped: 0,
  },
});
const staged = (seqs: number[]): LineageEvent => ({
  type: 'RowsStaged',
  data: {
    batch_id: 's',
    journal_epoch: E,
    schema_hash: HASH,
    reason: 'schema_review',
    rows: seqs.map((s) => row(s)),
    duplicates_skipped: 0,
  },
});
const writes = (n: number): Write[] =>
  Array.from({ length: n }, (_, i) => ({ table: 't', epoch: E, seq: i + 1 }));
const image = (ids: number[]) => new Map(ids.map((id) => [JSON.stringify({ id }), { id, v: `v${id}` }]));

function observe(events: LineageEvent[], extra: Partial<Observation> = {}, n = 4): Observation {
  return {
    writes: writes(n),
    device_pending: new Set(),
    rejections: [],
    lineages: [{ table: 't', lineage_id: LINEAGE, events: [registered, ...events] }],
    ...extra,
  };
}

describe('fault checker', () => {
  it('passes a clean history and classifies every write', () => {
    const v = check(
      observe([accepted([1, 2]), accepted([3])], { device_pending: new Set([writeKey('t', E, 4)]) }),
    );
    expect(v).toEqual({
      writes: 4,
      applied: 3,
      rejected: 0,
      pending: 1,
      lost: 0,
      duplicated: 0,
      violations: [],
    });
  });

  it('flags a row accepted twice (a re-delivery that was not deduplicated)', () => {
    const v = check(observe([accepted([1, 2]), accepted([2, 3], 'b2'), accepted([4])]));
    expect(v.duplicated).toBe(1);
    expect(v.lost).toBe(0);
    expect(v.violations.join('\n')).toMatch(/t\|.*\|2 ×2/);
  });

  it('flags a row staged and then accepted again, and a row doubled inside one event', () => {
    expect(check(observe([staged([1, 2]), accepted([2, 3, 4])])).duplicated).toBe(1);
    expect(check(observe([accepted([1, 1, 2, 3, 4])])).duplicated).toBe(1);
  });

  it('flags a confirmed write that never reached the lineage as lost, and the gap it leaves', () => {
    const v = check(observe([accepted([1, 2]), accepted([4])]));
    expect(v.lost).toBe(1);
    expect(v.applied).toBe(3);
    expect(v.violations.join('\n')).toMatch(/lost.*\|3/);
    expect(v.violations.join('\n')).toMatch(/gap\(s\) 3/);
  });

  it('counts a write whose batch was refused as rejected, not lost', () => {
    const ws: Write[] = [...writes(2), { table: 't', epoch: 'bogus', seq: 1, batch_id: 'bad-1' }];
    const v = check({
      ...observe([accepted([1, 2])]),
      writes: ws,
      rejections: [{ code: 'invalid_journal_epoch', batch_id: 'bad-1' }],
    });
    expect(v).toMatchObject({ writes: 3, applied: 2, rejected: 1, lost: 0, violations: [] });
    const unrecorded = check({ ...observe([accepted([1, 2])]), writes: ws });
    expect(unrecorded.lost).toBe(1);
    const stray = check({
      ...observe([accepted([1, 2])]),
      writes: ws,
      rejections: [{ code: 'invalid_schema_hash', batch_id: 'other' }],
    });
    expect(stray.violations.join('\n')).toMatch(/refused that nobody meant to be: invalid_schema_hash/);
  });

  it('flags rows taken in that nobody wrote', () => {
    expect(check(observe([accepted([1, 2, 3, 4, 5])])).violations.join('\n')).toMatch(/nobody wrote/);
  });

  it('compares the mirror with the device table', () => {
    const base = observe([accepted([1, 2, 3, 4])]);
    const lineage = base.lineages[0]!;
    const ok = check({ ...base, lineages: [{ ...lineage, device: image([1, 2]), mirror: image([1, 2]) }] });
    expect(ok.violations).toEqual([]);
    const changed = new Map(image([1, 2]));
    changed.set(JSON.stringify({ id: 2 }), { id: 2, v: 'stale' });
    const bad = check({ ...base, lineages: [{ ...lineage, device: image([1, 2, 3]), mirror: changed }] });
    expect(bad.violations.join('\n')).toMatch(/missing from the mirror/);
    expect(bad.violations.join('\n')).toMatch(/differ from the device/);
    const extra = check({ ...base, lineages: [{ ...lineage, device: image([1]), mirror: image([1, 2]) }] });
    expect(extra.violations.join('\n')).toMatch(/the device does not have/);
  });

  it('compares values with their storage class, not only rows', () => {
    const base = observe([accepted([1, 2, 3, 4])]);
    const lineage = base.lineages[0]!;
    const one = (v: WireValue) => new Map([[JSON.stringify({ id: 1 }), { id: 1, v }]]);
    const verdict = (device: WireValue, mirror: WireValue) =>
      check({
        ...base,
        lineages: [{ ...lineage, device: one(device), mirror: one(mirror) }],
      }).violations.join('\n');
    // REAL 5.0 on the device, INTEGER 5 in the mirror: same number, another class.
    expect(verdict({ $real: '5' }, 5)).toMatch(
      /1 mirror row\(s\) differ from the device in value or storage class \(v: real → integer ×1\).*v: mirror integer 5 ≠ device real \{"\$real":"5"\}/,
    );
    // A REAL that lost its 17th digit.
    expect(verdict(0.30000000000000004, 0.3)).toMatch(/v: mirror real 0.3 ≠ device real 0.30000000000000004/);
    // -0.0 is not 0.0, ±Infinity is not the text "Infinity", a 64-bit integer keeps its digits.
    expect(verdict({ $real: '-0' }, { $real: '0' })).toMatch(/differ/);
    expect(verdict({ $real: 'Infinity' }, 'Infinity')).toMatch(/real → text/);
    expect(verdict({ $int: '9007199254740993' }, 9007199254740992)).toMatch(/differ/);
    expect(verdict({ $blob: '' }, '')).toMatch(/blob → text/);
    expect(verdict(null, '')).toMatch(/null → text/);
    // A column the mirror lacks, and a value that is no wire value at all.
    expect(
      check({
        ...base,
        lineages: [{ ...lineage, device: one(1), mirror: new Map([[JSON.stringify({ id: 1 }), { id: 1 }]]) }],
      }).violations.join('\n'),
    ).toMatch(/v: mirror absent ≠ device integer 1/);
    expect(verdict(1, { $int: 'x' } as unknown as WireValue)).toMatch(/not a wire value/);
    // One value, two spellings of the wire: equal.
    for (const [a, b] of [
      [{ $int: '5' }, 5],
      [{ $real: '0.5' }, 0.5],
      [{ $real: '-0' }, { $real: '-0' }],
      [{ $blob: 'AAE=' }, { $blob: 'AAE=' }],
      ['Grüße 🚀', 'Grüße 🚀'],
      [null, null],
    ] as [WireValue, WireValue][])
      expect(verdict(a, b)).toBe('');
  });

  it('reconciles staged rows, pending controls and counters with the events', () => {
    const base = observe([staged([1, 2, 3, 4])]);
    const l = base.lineages[0]!;
    const counters = { staged_rows: 4, materialized_rows: 0, last_commit_seq: 4 };
    const ok = check({
      ...base,
      lineages: [{ ...l, staged: [1, 2, 3, 4].map((s) => [E, s] as const), counters }],
    });
    expect(ok.violations).toEqual([]);
    const short = check({
      ...base,
      lineages: [{ ...l, staged: [[E, 1]], counters: { ...counters, staged_rows: 3 } }],
    });
    expect(short.violations.join('\n')).toMatch(/in the events but not the read store/);
    expect(short.violations.join('\n')).toMatch(/read-store counters/);

    const control: LineageEvent = {
      type: 'ControlIssued',
      data: {
        control_id: 'c1',
        control_kind: 'pause_lineage',
        source_table: 't',
        server_watermark: 4,
        reason: 'backpressure',
        issued_at: '2026-01-01T00:00:00Z',
      },
    };
    const withControl = observe([accepted([1, 2, 3, 4]), control]);
    const lc = withControl.lineages[0]!;
    expect(check({ ...withControl, lineages: [{ ...lc, pending_controls: ['c1'] }] }).violations).toEqual([]);
    expect(
      check({ ...withControl, lineages: [{ ...lc, pending_controls: [] }] }).violations.join('\n'),
    ).toMatch(/pending controls/);
  });
});
