import { schemaHash } from '../protocol/fingerprint';
import { DEFAULT_POLICY, type Policy } from '../policy/policy';
import type { RegistryView } from '../registry/decide';
import { deciderSpec } from '../../tests/support/decider-spec';
import { TEMPS } from '../../tests/support/fixtures';
import { type LineageCommand, lineageDecider } from './decide';
import type { ColumnBinding, LineageEvent } from './events';

const spec = deciderSpec(lineageDecider);
const L = '0190a000-0000-7000-8000-0000000000aa';
const R1 = '0190a000-0000-7000-8000-0000000000b1';
const REPLAY = '0190a000-0000-7000-8000-0000000000f9';
const ENTRY = 'e'.repeat(64);
const FLEET = '0190a000-0000-7000-8000-00000000f1ee';
const DEVICE = { project_id: 'p', device_id: 'd', device_name: 'gw-1' };
const MINT = {
  new_control_id: '0190a000-0000-7000-8000-0000000000c1',
  new_replay_id: '0190a000-0000-7000-8000-0000000000f2',
  now: '2026-11-22T00:00:00.000Z',
};
const ALLOW: Policy = { ...DEFAULT_POLICY, allow_auto_create_device_data_points: true };

const H = schemaHash(TEMPS);

const tb = (seq: number, policy: Policy = DEFAULT_POLICY, registry?: RegistryView): LineageCommand => ({
  type: 'IngestTelemetryBatch',
  data: {
    ...DEVICE,
    ...MINT,
    new_lineage_id: L,
    new_review_id: R1,
    policy,
    ...(registry ? { registry } : {}),
    batch: {
      format_version: 1,
      capture_strategy: 'sqlite_telemetry_batch_v1',
      batch_id: `0190a000-0000-7000-8000-${String(seq).padStart(12, '0')}`,
      batch_seq: seq,
      source_table: 'temps',
      schema_hash: H,
      schema_columns: TEMPS,
      cursor_start_ts: '2026-04-28T09:00:00Z',
      cursor_end_ts: '2026-04-28T09:00:10Z',
      row_count: 1,
      rows: [{ ts: '2026-04-28T09:00:01Z', fields: { value_c: 22.1 } }],
    },
  },
});

function history(...cmds: LineageCommand[]): LineageEvent[] {
  const out: LineageEvent[] = [];
  for (const c of cmds) out.push(...spec.given(out).when(c).events());
  return out;
}
const claim: LineageCommand = { type: 'ClaimReview', data: { review_id: R1, action_version: 1 } };
const approve = (action: 'mirror' | 'map' | 'auto_create_and_map', policy?: Policy): LineageCommand => ({
  type: 'ApproveReview',
  data: {
    review_id: R1,
    action_version: 2,
    replay_id: REPLAY,
    column_actions: [{ column: 'value_c', action }],
    ...(policy ? { policy } : {}),
  },
});

const binding = (action: ColumnBinding['action']): ColumnBinding[] => [
  { column: 'ts', action: 'mirror', target: 'ts', affinity: 'TEXT', pk_ordinal: 0, not_null: true },
  { column: 'value_c', action, target: 'value_c', affinity: 'REAL', pk_ordinal: 0, not_null: false },
];

describe('telemetry data points', () => {
  it('auto_create_and_map creates the data point when the policy allows, and releases the rows', () => {
    spec
      .given(history(tb(1), claim))
      .when(approve('auto_create_and_map', ALLOW))
      .thenMatch([
        { type: 'SchemaReviewApproved' },
        { type: 'LineageResumed', data: { reason: 'schema_review' } },
        {
          type: 'DataPointsCreated',
          data: {
            data_points: [
              { name: 'value_c', column: 'value_c', affinity: 'REAL', action: 'auto_create_and_map' },
            ],
          },
        },
        { type: 'StagedRowsReleased', data: { replay_id: REPLAY, schema_hash: H } },
      ]);
  });

  it('auto_create_and_map without the policy flag creates nothing and keeps the rows staged, saying why', () => {
    const events = spec
      .given(history(tb(1), claim))
      .when(approve('auto_create_and_map'))
      .events();
    expect(events.map((e) => e.type)).toEqual(['SchemaReviewApproved', 'LineageResumed', 'LineagePaused']);
    const paused = events[2] as Extract<LineageEvent, { type: 'LineagePaused' }>;
    expect(paused.data.reason).toBe('data_points');
    expect(paused.data.detail).toContain('allow_auto_create_device_data_points is false');
    // Later batches stay staged, with the pause as their reason.
    const h = [...history(tb(1), claim), ...events];
    spec
      .given(h)
      .when(tb(2))
      .thenMatch([{ type: 'TelemetryStaged', data: { batch_seq: 2, reason: 'lineage_paused' } }]);
    // Once the policy allows it, the next batch creates the data point and releases the backlog first.
    spec
      .given(h)
      .when(tb(2, ALLOW))
      .thenMatch([
        { type: 'DataPointsCreated' },
        { type: 'LineageResumed', data: { reason: 'data_points' } },
        { type: 'StagedRowsReleased' },
        { type: 'TelemetryAccepted', data: { batch_seq: 2 } },
      ]);
  });

  it('map binds only a data point the device table has', () => {
    spec
      .given(history(tb(1), claim))
      .when(approve('map', ALLOW))
      .thenMatch([
        { type: 'SchemaReviewApproved' },
        { type: 'LineageResumed', data: { reason: 'schema_review' } },
        { type: 'LineagePaused', data: { reason: 'data_points' } },
      ]);
  });

  it('mirror needs no data point', () => {
    spec
      .given(history(tb(1), claim))
      .when(approve('mirror'))
      .thenMatch([
        { type: 'SchemaReviewApproved' },
        { type: 'LineageResumed', data: { reason: 'schema_review' } },
        { type: 'StagedRowsReleased' },
      ]);
  });
});

describe('telemetry under registry coalescing', () => {
  const open: RegistryView = {
    registry_id: ENTRY,
    status: 'open',
    review_id: R1,
    scope: 'fleet',
    scope_id: FLEET,
    bindings: null,
  };
  const approved = (action: ColumnBinding['action']): RegistryView => ({
    ...open,
    status: 'approved',
    bindings: binding(action),
  });

  it('waits for the entry instead of opening a review of its own', () => {
    spec
      .given([])
      .when(tb(1, DEFAULT_POLICY, open))
      .thenMatch([
        { type: 'LineageRegistered', data: { kind: 'telemetry' } },
        { type: 'SchemaVersionObserved' },
        { type: 'RegistryReviewAwaited', data: { registry_id: ENTRY, scope: 'fleet', scope_id: FLEET } },
        { type: 'LineagePaused', data: { reason: 'schema_review' } },
        { type: 'TelemetryStaged', data: { reason: 'schema_review' } },
      ]);
  });

  it("takes the entry's approval from the fan-out and releases its staged rows", () => {
    spec
      .given(history(tb(1, DEFAULT_POLICY, open)))
      .when({
        type: 'ApplyRegistryApproval',
        data: {
          registry_id: ENTRY,
          review_id: R1,
          schema_hash: H,
          scope: 'fleet',
          scope_id: FLEET,
          bindings: binding('auto_create_and_map'),
          replay_id: REPLAY,
          policy: ALLOW,
        },
      })
      .thenMatch([
        { type: 'SchemaApprovedByRegistry', data: { registry_id: ENTRY, scope: 'fleet' } },
        { type: 'LineageResumed', data: { reason: 'schema_review' } },
        { type: 'DataPointsCreated' },
        { type: 'StagedRowsReleased', data: { replay_id: REPLAY } },
      ]);
  });

  it('a later device takes an approved entry in its first batch: no review, no staging', () => {
    spec
      .given([])
      .when(tb(1, DEFAULT_POLICY, approved('mirror')))
      .thenMatch([
        { type: 'LineageRegistered' },
        { type: 'SchemaVersionObserved', data: { classification: 'compatible_mapped' } },
        { type: 'SchemaApprovedByRegistry', data: { registry_id: ENTRY } },
        { type: 'TelemetryAccepted', data: { batch_seq: 1 } },
      ]);
  });

  it('an approved entry that maps to data points the device may not create stages the first batch', () => {
    spec
      .given([])
      .when(tb(1, DEFAULT_POLICY, approved('auto_create_and_map')))
      .thenMatch([
        { type: 'LineageRegistered' },
        { type: 'SchemaVersionObserved' },
        { type: 'SchemaApprovedByRegistry' },
        { type: 'LineagePaused', data: { reason: 'data_points' } },
        { type: 'TelemetryStaged', data: { reason: 'lineage_paused' } },
      ]);
  });
});
