import { schemaHash } from '../protocol/fingerprint';
import type { RowBatch, RowChange } from '../protocol/contracts';
import { DEFAULT_POLICY } from '../policy/policy';
import { fold } from '../shared/decider';
import { deciderSpec } from '../../tests/support/decider-spec';
import { DEVICE_STATE_SETPOINT } from '../../tests/support/fixtures';
import { type LineageCommand, MAX_PENDING_STATE_WRITES, lineageDecider } from './decide';
import type { LineageEvent } from './events';
import type { RowsLineage } from './state';

const spec = deciderSpec(lineageDecider);
const L = '0190a000-0000-7000-8000-0000000000aa';
const R1 = '0190a000-0000-7000-8000-0000000000b1';
const EPOCH = '0190a000-0000-7000-8000-0000000000e1';
const W1 = '0190a000-0000-7000-8000-0000000000d1';
const W2 = '0190a000-0000-7000-8000-0000000000d2';
const RE = '0190a000-0000-7000-8000-0000000000d9';
const NOW = '2026-11-22T00:00:00.000Z';
/** Versions are the write's time in ms (or one above the last): the first write here is V. */
const V = Date.parse(NOW);
const DEVICE = { project_id: 'p', device_id: 'd', device_name: 'gw-1' };
const MINT = {
  new_control_id: '0190a000-0000-7000-8000-0000000000c1',
  new_replay_id: '0190a000-0000-7000-8000-0000000000f2',
  now: NOW,
};

let batchNo = 0;
function batch(rows: RowChange[]): RowBatch {
  batchNo++;
  return {
    format_version: 1,
    capture_strategy: 'sqlite_row_batch_v1',
    batch_id: `0190a000-0000-7000-8000-${String(batchNo).padStart(12, '0')}`,
    journal_epoch: EPOCH,
    source_table: 'device_state',
    schema_hash: schemaHash(DEVICE_STATE_SETPOINT),
    schema_columns: DEVICE_STATE_SETPOINT,
    first_commit_seq: Math.min(...rows.map((r) => r.commit_seq)),
    last_commit_seq: Math.max(...rows.map((r) => r.commit_seq)),
    rows,
  };
}
const change = (commit_seq: number, id: number, mode: string, lkcv?: number): RowChange => ({
  commit_seq,
  op: 'update',
  pk: { id },
  row: { id, mode, setpoint: 20 },
  ...(lkcv !== undefined ? { lkcv } : {}),
});

const ingest = (b: RowBatch, writeControl: string | undefined = RE): LineageCommand => ({
  type: 'IngestRowBatch',
  data: {
    ...DEVICE,
    ...MINT,
    batch: b,
    new_lineage_id: L,
    new_review_id: R1,
    policy: DEFAULT_POLICY,
    ...(writeControl ? { new_write_control_id: writeControl } : {}),
  },
});
const write = (rows: { pk: Record<string, unknown>; values: Record<string, unknown> }[], control = W1) =>
  ({
    type: 'WriteCloudRows',
    data: { rows, new_control_id: control, now: NOW },
  }) as LineageCommand;
const authority = (a: 'cloud_authoritative' | 'device_authoritative'): LineageCommand => ({
  type: 'SetLineageAuthority',
  data: { authority: a },
});
const ack = (control_id: string): LineageCommand => ({
  type: 'AcknowledgeControl',
  data: { control_id, acknowledged_at: NOW },
});

function history(...cmds: LineageCommand[]): LineageEvent[] {
  const out: LineageEvent[] = [];
  for (const c of cmds) out.push(...spec.given(out).when(c).events());
  return out;
}

/** A device table with an approved schema and rows 1 and 2 in the mirror. */
const approved = () =>
  history(
    ingest(batch([change(1, 1, 'idle'), change(2, 2, 'idle')])),
    { type: 'ClaimReview', data: { review_id: R1, action_version: 1 } },
    {
      type: 'ApproveReview',
      data: { review_id: R1, action_version: 2, replay_id: '0190a000-0000-7000-8000-0000000000f1' },
    },
  );
/** …made cloud_authoritative, with key 1 written by the cloud (version 1, control W1). */
function written(): LineageEvent[] {
  const h = approved();
  return [...h, ...spec.given(h).when(authority('cloud_authoritative')).events()];
}
function cloudWritten(): LineageEvent[] {
  const h = written();
  return [
    ...h,
    ...spec
      .given(h)
      .when(write([{ pk: { id: 1 }, values: { mode: 'cool' } }]))
      .events(),
  ];
}
const state = (events: LineageEvent[]) => fold(lineageDecider, events) as RowsLineage;

describe('write-back: authority', () => {
  it('a lineage is device_authoritative until an operator says otherwise; a repeat changes nothing', () => {
    spec
      .given(approved())
      .when(authority('cloud_authoritative'))
      .then([
        {
          type: 'LineageAuthoritySet',
          data: { authority: 'cloud_authoritative', previous: 'device_authoritative' },
        },
      ]);
    spec.given(written()).when(authority('cloud_authoritative')).then([]);
    spec.given(approved()).when(authority('device_authoritative')).then([]);
  });
});

describe('write-back: writes', () => {
  it('upserts the cloud row with the next cloud_version and issues a state_write carrying it', () => {
    spec
      .given(written())
      .when(write([{ pk: { id: 1 }, values: { mode: 'cool' } }]))
      .then([
        {
          type: 'CloudRowsWritten',
          data: { cloud_version: V, rows: [{ pk: { id: 1 }, values: { mode: 'cool' }, cloud_version: V }] },
        },
        {
          type: 'ControlIssued',
          data: {
            control_id: W1,
            control_kind: 'state_write',
            source_table: 'device_state',
            server_watermark: 2,
            reason: `cloud write-back v${V}: 1 row(s)`,
            issued_at: NOW,
            rows: [{ pk: { id: 1 }, values: { mode: 'cool' }, cloud_version: V }],
          },
        },
      ]);
  });

  it('merges later writes of a key into its cloud row; versions only go up', () => {
    const h = cloudWritten();
    spec
      .given(h)
      .when(
        write(
          [
            { pk: { id: 1 }, values: { setpoint: 21.5 } },
            { pk: { id: 9 }, values: {} },
          ],
          W2,
        ),
      )
      .thenMatch([
        { type: 'CloudRowsWritten', data: { cloud_version: V + 1 } },
        {
          type: 'ControlIssued',
          data: {
            control_id: W2,
            rows: [
              { pk: { id: 1 }, values: { mode: 'cool', setpoint: 21.5 }, cloud_version: V + 1 },
              { pk: { id: 9 }, values: {}, cloud_version: V + 1 },
            ],
          },
        },
      ]);
  });

  it("versions are the write's time in ms, and always above the last one even if the clock went back", () => {
    const at = (now: string, control: string) =>
      ({
        type: 'WriteCloudRows',
        data: { rows: [{ pk: { id: 1 }, values: {} }], new_control_id: control, now },
      }) as LineageCommand;
    const h = cloudWritten(); // version V
    const earlier = spec.given(h).when(at('2026-11-21T23:00:00.000Z', W2)).events();
    expect(earlier[0]).toMatchObject({ type: 'CloudRowsWritten', data: { cloud_version: V + 1 } });
    const h2 = [...h, ...earlier];
    spec
      .given(h2)
      .when(at('2026-11-22T00:00:01.000Z', RE))
      .thenMatch([
        { type: 'CloudRowsWritten', data: { cloud_version: V + 1000 } },
        { type: 'ControlIssued' },
      ]);
  });

  it.each([
    ['no rows', [], 'invalid_rows'],
    ['501 rows', Array.from({ length: 501 }, (_, i) => ({ pk: { id: i }, values: {} })), 'invalid_rows'],
    ['an unknown column', [{ pk: { id: 1 }, values: { colour: 'red' } }], 'invalid_rows'],
    ['a pk without the key column', [{ pk: { mode: 'x' }, values: {} }], 'invalid_rows'],
    ['an empty pk', [{ pk: {}, values: { mode: 'x' } }], 'invalid_rows'],
    ['a pk of the wrong type', [{ pk: { id: '1' }, values: {} }], 'invalid_rows'],
    ['a key column in values', [{ pk: { id: 1 }, values: { id: 2 } }], 'invalid_rows'],
    [
      'the same key twice',
      [
        { pk: { id: 1 }, values: {} },
        { pk: { id: 1 }, values: {} },
      ],
      'invalid_rows',
    ],
  ])('refuses a write with %s', (_what, rows, code) => {
    spec.given(written()).when(write(rows)).thenThrows(code);
  });

  it('refuses writes to a device_authoritative lineage, an unapproved table and a telemetry lineage', () => {
    spec
      .given(approved())
      .when(write([{ pk: { id: 1 }, values: {} }]))
      .thenThrows('not_cloud_authoritative');
    const unapproved = history(ingest(batch([change(1, 1, 'idle')])), authority('cloud_authoritative'));
    spec
      .given(unapproved)
      .when(write([{ pk: { id: 1 }, values: {} }]))
      .thenThrows('schema_not_approved');
    const telemetry: LineageEvent[] = [
      {
        type: 'LineageRegistered',
        data: { lineage_id: L, ...DEVICE, source_table: 'temps', kind: 'telemetry' },
      },
    ];
    spec.given(telemetry).when(authority('cloud_authoritative')).thenThrows('illegal_transition');
    spec
      .given(telemetry)
      .when(write([{ pk: { id: 1 }, values: {} }]))
      .thenThrows('illegal_transition');
  });

  it(`refuses a write while ${MAX_PENDING_STATE_WRITES} earlier ones wait for the device's ACK`, () => {
    let h = written();
    for (let i = 0; i < MAX_PENDING_STATE_WRITES; i++) {
      const id = `0190a000-0000-7000-8000-0000000001${String(i).padStart(2, '0')}`;
      h = [
        ...h,
        ...spec
          .given(h)
          .when(write([{ pk: { id: 1 }, values: { mode: `m${i}` } }], id))
          .events(),
      ];
    }
    spec
      .given(h)
      .when(write([{ pk: { id: 1 }, values: {} }]))
      .thenThrows('write_back_backlog');
  });
});

describe('write-back: the conflict rule (cloud wins on a cloud_authoritative lineage)', () => {
  it('a device change with lkcv below the cloud_version is a conflict: recorded, not materialized, the cloud row sent again', () => {
    const h = cloudWritten();
    const acked = [...h, ...spec.given(h).when(ack(W1)).events()];
    const b = batch([change(3, 1, 'device-stale'), change(4, 2, 'device-ok')]);
    spec
      .given(acked)
      .when(ingest(b))
      .then([
        {
          type: 'StateWriteConflictDetected',
          data: {
            batch_id: b.batch_id,
            journal_epoch: EPOCH,
            conflicts: [{ pk: { id: 1 }, commit_seq: 3, op: 'update', lkcv: 0, cloud_version: V }],
            reissued: 1,
          },
        },
        {
          type: 'ControlIssued',
          data: {
            control_id: RE,
            control_kind: 'state_write',
            source_table: 'device_state',
            server_watermark: 3,
            reason:
              'write-back conflict: 1 key(s) changed on the device before it applied the cloud row; the cloud row stands',
            issued_at: NOW,
            rows: [{ pk: { id: 1 }, values: { mode: 'cool' }, cloud_version: V }],
          },
        },
        {
          type: 'RowsAccepted',
          data: {
            batch_id: b.batch_id,
            journal_epoch: EPOCH,
            schema_hash: schemaHash(DEVICE_STATE_SETPOINT),
            rows: [change(4, 2, 'device-ok')],
            duplicates_skipped: 0,
          },
        },
      ]);
  });

  it('a change with lkcv equal to the cloud_version (the device applied the write) materializes', () => {
    spec
      .given(cloudWritten())
      .when(ingest(batch([change(3, 1, 'cool', V)])))
      .thenMatch([{ type: 'RowsAccepted', data: { rows: [{ commit_seq: 3, lkcv: V }] } }]);
  });

  it('a key the cloud never wrote materializes without lkcv', () => {
    spec
      .given(cloudWritten())
      .when(ingest(batch([change(3, 2, 'heat')])))
      .thenMatch([{ type: 'RowsAccepted', data: { rows: [{ commit_seq: 3 }] } }]);
  });

  it('does not send the cloud row again while the state_write carrying it is unacknowledged', () => {
    spec
      .given(cloudWritten())
      .when(ingest(batch([change(3, 1, 'device-stale')])))
      .thenMatch([
        {
          type: 'StateWriteConflictDetected',
          data: { conflicts: [{ commit_seq: 3, lkcv: 0, cloud_version: V }], reissued: 0 },
        },
      ]);
  });

  it('does not send it again when a later row of the same batch shows the device applied it', () => {
    const h = cloudWritten();
    const acked = [...h, ...spec.given(h).when(ack(W1)).events()];
    spec
      .given(acked)
      .when(ingest(batch([change(3, 1, 'device-stale'), change(4, 1, 'cool', V)])))
      .thenMatch([
        { type: 'StateWriteConflictDetected', data: { reissued: 0 } },
        { type: 'RowsAccepted', data: { rows: [{ commit_seq: 4, lkcv: V }] } },
      ]);
  });

  it('a conflicting change is taken in: the retried batch is a no-op and the watermark moves', () => {
    const b = batch([change(3, 1, 'device-stale')]);
    const h = [...cloudWritten(), ...spec.given(cloudWritten()).when(ingest(b)).events()];
    expect(state(h).last_commit_seq).toBe(3);
    const after = state(h);
    expect(after.materialized_rows + after.replaying_rows + after.staged_rows).toBe(2);
    spec.given(h).when(ingest(b)).then([]);
  });

  it('a device_authoritative lineage never conflicts: the device wins', () => {
    const h = cloudWritten();
    const back = [...h, ...spec.given(h).when(authority('device_authoritative')).events()];
    spec
      .given(back)
      .when(ingest(batch([change(3, 1, 'device')])))
      .thenMatch([{ type: 'RowsAccepted', data: { rows: [{ commit_seq: 3 }] } }]);
  });

  it('a delete of a cloud-written key the device had not seen is a conflict too', () => {
    const del: RowChange = { commit_seq: 3, op: 'delete', pk: { id: 1 }, row: null };
    spec
      .given(cloudWritten())
      .when(ingest(batch([del])))
      .thenMatch([
        {
          type: 'StateWriteConflictDetected',
          data: { conflicts: [{ op: 'delete', commit_seq: 3, lkcv: 0, cloud_version: V }] },
        },
      ]);
  });

  it('without a minted control id the conflict is still recorded, and nothing is sent', () => {
    const h = cloudWritten();
    const acked = [...h, ...spec.given(h).when(ack(W1)).events()];
    spec
      .given(acked)
      .when(ingest(batch([change(3, 1, 'device-stale')]), ''))
      .thenMatch([{ type: 'StateWriteConflictDetected', data: { reissued: 0 } }]);
  });
});
