/**
 * Given events → rows out: the same events folded by the per-event path (`apply`, one event at a
 * time) and by the set-based path (`applyBatch`, a transaction's events at once, in batches of 1
 * and 500 messages) leave identical stores and send the same after-commit commands.
 */
import { uuidv7 } from 'uuidv7';
import type { RowChange, WireValue } from '../../domain/protocol/contracts';
import type { SchemaColumns } from '../../domain/protocol/fingerprint';
import { bucketOf } from '../../domain/protocol/wire-values';
import { createProjections } from '../registry';
import { dumpStore } from '../test-support/dump';
import { appendHistory } from '../test-support/history';
import { bindAll, del, RecordingCommands, TestLineage, upsert } from '../test-support/lineage';
import { startTestNats, type TestNats } from '../test-support/nats';
import { DIALECTS, openTestStore, type TestStore } from '../test-support/stores';
import { startProjector } from './projector';
import type { AnyProjection, BatchItem, Tx } from './types';

let nats: TestNats;
beforeAll(async () => {
  nats = await startTestNats();
});
afterAll(async () => {
  await nats?.stop();
});

const SCHEMA: SchemaColumns = {
  table_name: 'readings',
  columns: [
    { name: 'id', decl_type_affinity: 'INTEGER', pk_ordinal: 1, not_null: true },
    { name: 'label', decl_type_affinity: 'TEXT', pk_ordinal: 0, not_null: false },
    { name: 'v', decl_type_affinity: 'REAL', pk_ordinal: 0, not_null: false },
    { name: 'any', decl_type_affinity: 'BLOB', pk_ordinal: 0, not_null: false },
  ],
};
/** A later approval that adds a column: applied between row events of the same batch. */
const WIDER: SchemaColumns = {
  ...SCHEMA,
  columns: [...SCHEMA.columns, { name: 'extra', decl_type_affinity: 'TEXT', pk_ordinal: 0, not_null: false }],
};

/** Values of every storage class, exact: integers beyond 2^53, -0.0, ±Infinity, BLOBs, text. */
const ANY: readonly WireValue[] = [
  { $int: '9007199254740993' },
  { $int: '-9223372036854775808' },
  { $real: '-0' },
  { $real: 'Infinity' },
  { $real: '-Infinity' },
  { $real: '5' },
  { $blob: 'AAH/' },
  'tëxt "quoted" \\ {braces}',
  'NULL',
  7,
  null,
];
const V: readonly WireValue[] = [{ $real: '-0' }, { $real: 'Infinity' }, 0.1, { $real: '-Infinity' }, 3];

const row = (id: number, k: number, extra?: string): Record<string, WireValue> => ({
  id,
  label: `l-${k}`,
  v: V[k % V.length]!,
  any: ANY[k % ANY.length]!,
  ...(extra === undefined ? {} : { extra }),
});

/** Per-event path: the same projections without their set-based path. */
const oneByOne = (ps: readonly AnyProjection[]): AnyProjection[] =>
  ps.map((p) => {
    const { applyBatch: _set, ...rest } = p;
    return rest as AnyProjection;
  });

/** Records the most row events the mirror's set-based path received in one call. */
function watchMirror(ps: readonly AnyProjection[], seen: { most: number }): AnyProjection[] {
  return ps.map((p) =>
    p.name !== 'mirror'
      ? p
      : {
          ...p,
          applyBatch: (tx: Tx, items: readonly BatchItem[]) => {
            const rows = items.filter((i) => i.event.type === 'RowsAccepted').length;
            seen.most = Math.max(seen.most, rows);
            return p.applyBatch!(tx, items);
          },
        },
  );
}

/**
 * Several devices' small batches, interleaved: repeated keys across events, deletes, re-inserts
 * after a delete, key changes (delete + insert), a new journal epoch, a sweep, an approval that
 * adds a column between row events, rows that fail (no key value) among good ones, a staged row
 * released (CompleteReplay after commit), and a deleted lineage.
 */
async function appendFleet(lineages: TestLineage[], round: number): Promise<void> {
  const epochs = lineages.map(() => uuidv7());
  const seq = lineages.map(() => round * 1_000);
  const change = (i: number, r: Omit<RowChange, 'commit_seq'>): RowChange => ({
    ...r,
    commit_seq: ++seq[i]!,
  });
  for (let step = 0; step < 12; step++) {
    for (const [i, l] of lineages.entries()) {
      const k = step * 7 + i;
      const extra = round > 1 || step >= 6 ? `x-${k}` : undefined;
      const rows: RowChange[] = [
        change(i, upsert(0, row(step % 4, k, extra))),
        change(i, upsert(0, row(10 + ((k * 3) % 9), k + 1, extra))),
      ];
      if (step % 3 === 1) rows.push(change(i, del(0, { id: (step + 1) % 4 })));
      if (step % 4 === 2) {
        // A key change: the old key goes, the new one comes.
        rows.push(change(i, del(0, { id: 10 + (k % 9) })), change(i, upsert(0, row(40 + k, k, extra))));
      }
      if (i === 0 && step === 5) rows.push(change(i, upsert(0, { label: 'no key' }, ['id'])));
      if (i === 1 && step === 7) {
        rows.push(change(i, upsert(0, row(99, k))));
        const at = seq[i]!;
        rows.push(
          change(i, {
            op: 'sweep',
            pk: {},
            row: null,
            sweep: {
              resync_id: uuidv7(),
              since_commit_seq: at,
              buckets: [bucketOf({ id: 1 }), bucketOf({ id: 2 })],
            },
          }),
        );
      }
      if (i === 2 && step === 6) {
        // A new journal epoch (the device's journal was reset): its positions start again.
        epochs[i] = uuidv7();
        seq[i] = 0;
      }
      await l.append(l.accepted(epochs[i]!, rows));
      if (round === 1 && i === 3 && step === 5) {
        const review = uuidv7();
        await l.append(l.queued(review, WIDER), l.claimed(review));
        await l.append(l.approved(review, WIDER, bindAll(WIDER)));
      }
      if (i === 4 && step === 8) {
        await l.append(l.staged(epochs[i]!, [change(i, upsert(0, row(77, k, extra)))], { schema: WIDER }));
        await l.append(l.released(uuidv7(), WIDER));
      }
    }
  }
  if (round === 2) await lineages[5]!.append(lineages[5]!.deleted('retired'));
}

async function approvedLineages(project: string, n: number): Promise<TestLineage[]> {
  const out: TestLineage[] = [];
  for (let i = 0; i < n; i++) {
    const l = new TestLineage(nats.events, {
      project_id: project,
      device_id: uuidv7(),
      device_name: `fleet-${i}`,
      source_table: SCHEMA.table_name,
    });
    const review = uuidv7();
    await l.append(l.registered(), l.observed(SCHEMA), l.queued(review, SCHEMA), l.paused('schema_review'));
    await l.append(l.claimed(review));
    await l.append(l.approved(review, SCHEMA, bindAll(SCHEMA)), l.resumed('schema_review'));
    out.push(l);
  }
  return out;
}

describe.each(DIALECTS)('set-based projection writes (%s)', (kind) => {
  const stores: TestStore[] = [];
  afterAll(async () => {
    for (const s of stores) await s.cleanup();
  });

  it('leave the same tables and after-commit commands as applying events one by one', async () => {
    const project = uuidv7();
    const fleet = await approvedLineages(project, 6);
    await appendHistory(nats, project, 1);
    await appendFleet(fleet, 1);

    const paths = [
      { name: 'one by one', limits: { maxMessages: 500 }, set: false },
      { name: 'sets of 1 message', limits: { maxMessages: 1 }, set: true },
      { name: 'sets of 500 messages', limits: { maxMessages: 500 }, set: true },
    ];
    const runs: ((typeof paths)[number] & {
      t: TestStore;
      commands: RecordingCommands;
      seen: { most: number };
    })[] = [];
    for (const p of paths) {
      const t = await openTestStore(kind);
      stores.push(t);
      runs.push({ ...p, t, commands: new RecordingCommands(), seen: { most: 0 } });
    }
    const fold = async () => {
      for (const r of runs) {
        const all = createProjections({ commands: r.commands });
        const projections = r.set ? watchMirror(all, r.seen) : oneByOne(all);
        const projector = await startProjector({
          nc: nats.nc,
          store: r.t.store,
          commands: r.commands,
          projections,
          limits: r.limits,
        });
        try {
          await projector.waitForCaughtUp(undefined, { timeoutMs: 60_000 });
        } finally {
          await projector.stop();
        }
      }
      return Promise.all(runs.map((r) => dumpStore(r.t.store)));
    };

    // History folded from sequence 1 (no after-commit actions), then new events caught up from a
    // checkpoint (actions live: failure reports, CompleteReplay).
    const [reference, ...others] = await fold();
    // (The stream is shared by both dialects' runs: the second one folds the first's events too.)
    const tables = Object.keys(reference!).filter((n) => /^edge_mirror_.*_readings/.test(n));
    expect(tables.length).toBeGreaterThanOrEqual(6);
    for (const d of others) expect(d).toEqual(reference);
    await appendFleet(fleet, 2);
    const [reference2, ...others2] = await fold();
    for (const d of others2) expect(d).toEqual(reference2);
    expect(reference2).not.toEqual(reference);

    const [one, ...sets] = runs;
    expect(one!.commands.failures.length).toBeGreaterThan(0);
    expect(one!.commands.sent.length).toBeGreaterThan(0);
    // Each projection runs its after-commit actions in order, but projections run side by side:
    // compare what was sent, not how the projections interleaved.
    const sorted = <T>(xs: readonly T[]) => xs.map((x) => JSON.stringify(x)).sort();
    for (const r of sets) {
      expect(sorted(r.commands.failures)).toEqual(sorted(one!.commands.failures));
      expect(sorted(r.commands.sent)).toEqual(sorted(one!.commands.sent));
    }
    // The sets really were sets: many row events in one call, and one at a time with batches of 1.
    expect(runs[1]!.seen.most).toBe(1);
    expect(runs[2]!.seen.most).toBeGreaterThan(20);
  });
});
