/**
 * Cost of the write-back conflict rule in the lineage decider (not a test):
 *   node --import tsx bench/write-back.bench.ts
 * Decides the same 4,096-row batch on a lineage holding BENCH_CLOUD_ROWS (default 10,000) cloud
 * rows, cloud_authoritative against device_authoritative, interleaved in one run, and prints the
 * ratio. Every row of the batch hits a cloud-written key, half of them in conflict.
 */
import { uuidv7 } from 'uuidv7';
import { type LineageCommand, lineageDecider } from '../domain/lineage/decide';
import type { LineageEvent } from '../domain/lineage/events';
import type { LineageState } from '../domain/lineage/state';
import { DEFAULT_POLICY } from '../domain/policy/policy';
import type { RowChange } from '../domain/protocol/contracts';
import { schemaHash } from '../domain/protocol/fingerprint';
import { fold } from '../domain/shared/decider';

const CLOUD_ROWS = Number(process.env.BENCH_CLOUD_ROWS ?? 10_000);
const BATCH = 4096;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 30);
const schema = {
  table_name: 'settings',
  columns: [
    { name: 'id', decl_type_affinity: 'INTEGER' as const, pk_ordinal: 1, not_null: true },
    { name: 'v', decl_type_affinity: 'TEXT' as const, pk_ordinal: 0, not_null: false },
  ],
};
const hash = schemaHash(schema);
const epoch = uuidv7();
const id = { project_id: 'p', device_id: 'd', device_name: 'bench', new_lineage_id: uuidv7() };
const mint = () => ({ new_control_id: uuidv7(), new_replay_id: uuidv7(), now: new Date().toISOString() });

function decideAll(state: LineageState, cmds: LineageCommand[]): LineageState {
  let s = state;
  for (const c of cmds) s = lineageDecider.decide(c, s).reduce(lineageDecider.evolve, s);
  return s;
}

const rows = (from: number, n: number, lkcv?: (i: number) => number): RowChange[] =>
  Array.from({ length: n }, (_, i) => ({
    commit_seq: from + i,
    op: 'update' as const,
    pk: { id: (i % CLOUD_ROWS) + 1 },
    row: { id: (i % CLOUD_ROWS) + 1, v: `x${i}` },
    ...(lkcv ? { lkcv: lkcv(i) } : {}),
  }));
const ingest = (r: RowChange[]): LineageCommand => ({
  type: 'IngestRowBatch',
  data: {
    ...id,
    ...mint(),
    new_review_id: uuidv7(),
    new_write_control_id: uuidv7(),
    policy: DEFAULT_POLICY,
    batch: {
      format_version: 1,
      capture_strategy: 'sqlite_row_batch_v1',
      batch_id: uuidv7(),
      journal_epoch: epoch,
      source_table: 'settings',
      schema_hash: hash,
      schema_columns: schema,
      first_commit_seq: r[0]!.commit_seq,
      last_commit_seq: r.at(-1)!.commit_seq,
      rows: r,
    },
  },
});

// A lineage approved, cloud_authoritative, with CLOUD_ROWS keys written (writes of 500, acked).
let s = decideAll(fold(lineageDecider, [] as LineageEvent[]), [ingest(rows(1, 1))]);
const review = s.status === 'registered' ? s.reviews[0]!.review_id : '';
s = decideAll(s, [
  { type: 'ClaimReview', data: { review_id: review, action_version: 1 } },
  { type: 'ApproveReview', data: { review_id: review, action_version: 2, replay_id: uuidv7() } },
  { type: 'SetLineageAuthority', data: { authority: 'cloud_authoritative' } },
]);
for (let k = 0; k < CLOUD_ROWS; k += 500) {
  const control = uuidv7();
  s = decideAll(s, [
    {
      type: 'WriteCloudRows',
      data: {
        rows: Array.from({ length: Math.min(500, CLOUD_ROWS - k) }, (_, i) => ({
          pk: { id: k + i + 1 },
          values: { v: 'cloud' },
        })),
        new_control_id: control,
        now: new Date().toISOString(),
      },
    },
    { type: 'AcknowledgeControl', data: { control_id: control, acknowledged_at: new Date().toISOString() } },
  ]);
}
const cloudOwned = s;
const deviceOwned = decideAll(s, [
  { type: 'SetLineageAuthority', data: { authority: 'device_authoritative' } },
]);
// Even rows were made before the device saw the write (lkcv 0), odd ones after it.
const seen = Date.parse('2100-01-01T00:00:00Z');
const batch = ingest(rows(2, BATCH, (i) => (i % 2 === 0 ? 0 : seen)));

function time(state: LineageState): number {
  const t0 = process.hrtime.bigint();
  lineageDecider.decide(batch, state);
  return Number(process.hrtime.bigint() - t0) / 1e6;
}
const cloud: number[] = [];
const device: number[] = [];
for (let r = 0; r < ROUNDS; r++) {
  cloud.push(time(cloudOwned));
  device.push(time(deviceOwned));
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const events = lineageDecider.decide(batch, cloudOwned);
console.log(
  `decide(${BATCH} rows) with ${CLOUD_ROWS} cloud rows: cloud_authoritative ${median(cloud).toFixed(2)} ms, ` +
    `device_authoritative ${median(device).toFixed(2)} ms (ratio ${(median(cloud) / median(device)).toFixed(2)}); ` +
    `events: ${events.map((e) => e.type).join(', ')}`,
);
