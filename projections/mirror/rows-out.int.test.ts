/** `mirror`, given lineage events → rows out, on SQLite and PostgreSQL. */
import type { LineageCommand } from '../../domain/lineage/decide';
import type { RowChange } from '../../domain/protocol/contracts';
import { schemaHash } from '../../domain/protocol/fingerprint';
import { pkHash } from '../../domain/shared/canonical';
import { DEVICE_STATE } from '../../tests/support/fixtures';
import { apply, at, expectRows, type Given, l, type Rows, truncate } from '../test-support/given';
import { bindAll, del, LineageEvents, RecordingCommands, upsert } from '../test-support/lineage';
import { DIALECTS, openTestStore, type TestStore } from '../test-support/stores';
import { mirrorTableName } from '../store/identifiers';
import { mirrorProjection } from './projection';

const S = DEVICE_STATE;
const H = schemaHash(S);
const E1 = '0190a000-0000-7000-8000-0000000000e1';
const E2 = '0190a000-0000-7000-8000-0000000000e2';
const R = '0190a000-0000-7000-8000-0000000000b1';
const P = '0190a000-0000-7000-8000-0000000000f1';
/** The lineage's mirror table. */
const MIRROR = mirrorTableName(l.ids.device_id, 'device_state');

/** Messages 1–3: a new lineage, its review claimed, its schema approved with every column mirrored. */
const approved = [
  [l.registered(), l.observed(S), l.queued(R, S), l.paused('schema_review')],
  [l.claimed(R)],
  [l.approved(R, S, bindAll(S)), l.resumed('schema_review')],
];
const update = (seq: number, row: { id: number; mode: string }): RowChange => ({
  ...upsert(seq, row),
  op: 'update',
});
/** A row of the mirror table, written from journal epoch `epoch` (its ordinal). */
const mirrored = (id: number, mode: string, seq: number, epoch = E1, ordinal = 1) => ({
  id,
  mode,
  device_id: l.ids.device_id,
  source_commit_seq: seq,
  source_journal_epoch: epoch,
  source_epoch_ordinal: ordinal,
});
const telemetry = new LineageEvents({ ...l.ids, source_table: 'temps', kind: 'telemetry' });

type Case = {
  name: string;
  given: Given;
  then: Rows;
  /** Tables that must not exist. */
  dropped?: readonly string[];
  /** The commands sent once the transactions committed. */
  sent?: readonly LineageCommand[];
  /** The failures reported to the domain: the event type and keys of each. */
  reported?: readonly { event_type: string; pks: unknown[] }[];
};

const cases: Case[] = [
  {
    name: 'an approval provisions the table of the bound columns, empty',
    given: approved,
    then: {
      edge_mirror_lineages: [
        { lineage_id: l.lineage_id, materialization_errors: 0, failed_rows: 0, last_error: null },
      ],
      edge_mirror_tables: [
        {
          table_name: MIRROR,
          generation: 1,
          status: 'current',
          schema_hash: H,
          columns: [
            { source: 'id', target: 'id', name: 'id', affinity: 'INTEGER', key: 1, bound: true },
            { source: 'mode', target: 'mode', name: 'mode', affinity: 'TEXT', key: 0, bound: true },
          ],
          created_at: at(3),
        },
      ],
      [MIRROR]: [],
    },
  },
  {
    name: 'accepted rows upsert by key and delete; an older position never overwrites or resurrects a row',
    given: [
      ...approved,
      [l.accepted(E1, [upsert(1, { id: 1, mode: 'a' }), upsert(2, { id: 2, mode: 'a' })])],
      [l.accepted(E1, [update(5, { id: 1, mode: 'b' })])],
      [l.accepted(E1, [update(3, { id: 1, mode: 'stale' })])],
      [l.accepted(E1, [del(6, { id: 2 })])],
      [l.accepted(E1, [upsert(4, { id: 2, mode: 'late insert' })])],
    ],
    then: {
      [MIRROR]: [mirrored(1, 'b', 5)],
      edge_mirror_tombstones: [{ pk_hash: pkHash({ id: 2 }), epoch_ordinal: 1, commit_seq: 6 }],
      edge_mirror_epochs: [{ journal_epoch: E1, ordinal: 1 }],
    },
  },
  {
    name: 'a new journal epoch takes the next ordinal, and its changes win over higher positions of the old one',
    given: [
      ...approved,
      [l.accepted(E1, [upsert(9, { id: 1, mode: 'old epoch' }), upsert(10, { id: 2, mode: 'old epoch' })])],
      [l.accepted(E2, [update(1, { id: 1, mode: 'new epoch' })])],
    ],
    then: {
      [MIRROR]: [mirrored(1, 'new epoch', 1, E2, 2), mirrored(2, 'old epoch', 10)],
      edge_mirror_epochs: [
        { journal_epoch: E1, ordinal: 1 },
        { journal_epoch: E2, ordinal: 2 },
      ],
    },
  },
  {
    name: 'holds staged rows while the review is pending, before any table exists',
    given: [approved[0]!, [l.staged(E1, [upsert(1, { id: 1, mode: 'a' }), del(2, { id: 3 })])]],
    then: {
      edge_mirror_held_rows: [
        {
          journal_epoch: E1,
          epoch_ordinal: 1,
          commit_seq: 1,
          op: 'insert',
          pk: { id: 1 },
          row: { id: 1, mode: 'a' },
        },
        { journal_epoch: E1, epoch_ordinal: 1, commit_seq: 2, op: 'delete', pk: { id: 3 }, row: null },
      ],
      edge_mirror_tables: [],
    },
  },
  {
    name: 'writes the held rows at the release, in commit order, and asks the domain to complete the replay',
    given: [
      approved[0]!,
      [l.staged(E1, [upsert(1, { id: 1, mode: 'a' }), upsert(2, { id: 2, mode: 'b' })])],
      [l.staged(E1, [update(3, { id: 1, mode: 'c' })])],
      approved[1]!,
      [l.approved(R, S, bindAll(S)), l.resumed('schema_review'), l.released(P, S)],
    ],
    then: {
      [MIRROR]: [mirrored(1, 'c', 3), mirrored(2, 'b', 2)],
      edge_mirror_held_rows: [],
      edge_mirror_replays: [
        { replay_id: P, stream_seq: 5, rows: 3, status: 'pending', released_at: at(5), completed_at: null },
      ],
    },
    sent: [{ type: 'CompleteReplay', data: { replay_id: P, rows: 3 } }],
  },
  {
    name: 'records the completion of a replay',
    given: [
      approved[0]!,
      [l.staged(E1, [upsert(1, { id: 1, mode: 'a' })])],
      approved[1]!,
      [l.approved(R, S, bindAll(S)), l.resumed('schema_review'), l.released(P, S)],
      [l.completed(P, 1)],
    ],
    then: {
      [MIRROR]: [mirrored(1, 'a', 1)],
      edge_mirror_replays: [{ replay_id: P, rows: 1, status: 'completed', completed_at: at(5) }],
    },
    sent: [{ type: 'CompleteReplay', data: { replay_id: P, rows: 1 } }],
  },
  {
    name: 'writes the rows it can, and records and reports the one without a key value',
    given: [...approved, [l.accepted(E1, [upsert(1, { id: 1, mode: 'a' }), upsert(2, { mode: 'no key' })])]],
    then: {
      [MIRROR]: [mirrored(1, 'a', 1)],
      edge_mirror_failures: [
        {
          stream_seq: 4,
          event_index: 0,
          event_type: 'RowsAccepted',
          failed_rows: 1,
          sample_keys: [{ id: null }],
          occurred_at: at(4),
        },
      ],
      edge_mirror_lineages: [
        { lineage_id: l.lineage_id, materialization_errors: 1, failed_rows: 1, last_error_at: at(4) },
      ],
    },
    reported: [{ event_type: 'RowsAccepted', pks: [{ id: null }] }],
  },
  {
    name: 'takes a reported failure as held rows, and clears the error count at a reset',
    given: [
      ...approved,
      [l.failed(4, E1, [upsert(7, { id: 7, mode: 'failed' })])],
      [{ type: 'MaterializationReset', data: { previous_failures: 1 } }],
    ],
    then: {
      edge_mirror_held_rows: [{ commit_seq: 7, op: 'insert', pk: { id: 7 }, row: { id: 7, mode: 'failed' } }],
      edge_mirror_lineages: [{ lineage_id: l.lineage_id, materialization_errors: 0 }],
    },
  },
  {
    name: 'drops the table of a deleted lineage and forgets it',
    given: [...approved, [l.accepted(E1, [upsert(1, { id: 1, mode: 'a' })])], [l.deleted('retired')]],
    then: {
      edge_mirror_lineages: [],
      edge_mirror_tables: [],
      edge_mirror_epochs: [],
      edge_mirror_tombstones: [],
    },
    dropped: [MIRROR],
  },
  {
    name: 'leaves telemetry lineages to the telemetry projection',
    given: [{ lineage_id: telemetry.lineage_id, events: [telemetry.registered()] }],
    then: { edge_mirror_lineages: [] },
  },
];

describe.each(DIALECTS)('mirror: given events, rows out (%s)', (kind) => {
  let t: TestStore;
  beforeAll(async () => {
    t = await openTestStore(kind);
  });
  afterAll(async () => {
    await t?.cleanup();
  });
  beforeEach(async () => {
    await truncate(t.store, mirrorProjection());
  });

  it.each(cases)('$name', async ({ given, then, dropped = [], sent = [], reported = [] }) => {
    const commands = new RecordingCommands();
    await apply(t.store, mirrorProjection({ commands }), given);
    await expectRows(t.store, then);
    const tables = await t.store.dialect.listTables(t.store.db);
    for (const d of dropped) expect(tables).not.toContain(d);
    expect(commands.sent.map((s) => s.command)).toEqual(sent);
    expect(
      commands.failures.map((f) => ({ event_type: f.info.event_type, pks: f.info.rows.map((r) => r.pk) })),
    ).toEqual(reported);
  });
});
