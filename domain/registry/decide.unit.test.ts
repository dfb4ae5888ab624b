import { schemaHash } from '../protocol/fingerprint';
import type { RowBatch } from '../protocol/contracts';
import { DEFAULT_POLICY } from '../policy/policy';
import { deciderSpec } from '../../tests/support/decider-spec';
import { DEVICE_STATE } from '../../tests/support/fixtures';
import { type LineageCommand, bindSchema, lineageDecider } from '../lineage/decide';
import type { LineageEvent } from '../lineage/events';
import { type RegistryCommand, registryDecider, registryView } from './decide';
import { type RegistryEvent, coalescingScope, registryId } from './events';
import { initialRegistryState } from './state';

const registry = deciderSpec(registryDecider);
const lineage = deciderSpec(lineageDecider);

const H = schemaHash(DEVICE_STATE);
const P = '0190a000-0000-7000-8000-000000000001';
const KEY = {
  project_id: P,
  scope: 'project' as const,
  scope_id: P,
  source_table: 'device_state',
  schema_hash: H,
};
const RID = registryId(KEY);
const REVIEW = '0190a000-0000-7000-8000-0000000000a1';
const REVIEW2 = '0190a000-0000-7000-8000-0000000000b2';
const L1 = '0190a000-0000-7000-8000-0000000000c1';
const L2 = '0190a000-0000-7000-8000-0000000000c2';
const BINDINGS = bindSchema(DEVICE_STATE);

const enroll = (lineage_id: string, review = REVIEW): RegistryCommand => ({
  type: 'EnrollLineage',
  data: {
    ...KEY,
    lineage_id,
    device_id: `dev-${lineage_id.slice(-2)}`,
    schema_columns: DEVICE_STATE,
    new_review_id: review,
  },
});
const registered: RegistryEvent = { type: 'RegistryEntryRegistered', data: { ...KEY, registry_id: RID } };
const opened: RegistryEvent = {
  type: 'RegistryReviewOpened',
  data: { review_id: REVIEW, action_version: 1, lineage_id: L1, device_id: 'dev-c1' },
};
const first: RegistryEvent[] = [
  registered,
  { type: 'RegistrySchemaObserved', data: { schema_columns: DEVICE_STATE } },
  { type: 'RegistryLineageEnrolled', data: { lineage_id: L1, device_id: 'dev-c1' } },
  opened,
];
const claimed: RegistryEvent = {
  type: 'RegistryReviewClaimed',
  data: { review_id: REVIEW, action_version: 2 },
};

describe('registry decider', () => {
  it('ids are deterministic per (scope, table, hash) and differ across scopes', () => {
    expect(RID).toMatch(/^[0-9a-f]{64}$/);
    expect(registryId({ ...KEY })).toBe(RID);
    expect(registryId({ ...KEY, scope: 'fleet', scope_id: 'f' })).not.toBe(RID);
    expect(registryId({ ...KEY, source_table: 'a.b"c' })).not.toBe(RID);
  });

  it('the first lineage registers the entry and opens its review', () => {
    registry.given([]).when(enroll(L1)).then(first);
  });

  it('a later lineage only enrolls: one review per entry', () => {
    registry
      .given(first)
      .when(enroll(L2, REVIEW2))
      .then([{ type: 'RegistryLineageEnrolled', data: { lineage_id: L2, device_id: 'dev-c2' } }]);
  });

  it('an approved entry takes no enrollment: the lineage applies the approval itself', () => {
    registry
      .given([
        ...first,
        claimed,
        {
          type: 'RegistryReviewApproved',
          data: { review_id: REVIEW, action_version: 3, bindings: BINDINGS },
        },
      ])
      .when(enroll(L2, REVIEW2))
      .then([]);
  });

  it('enrolling twice changes nothing', () => {
    registry.given(first).when(enroll(L1)).then([]);
  });

  it('approve needs a claim and the current action_version, and binds the schema', () => {
    const approve = (v: number): RegistryCommand => ({
      type: 'ApproveRegistryReview',
      data: { review_id: REVIEW, action_version: v },
    });
    registry.given(first).when(approve(1)).thenThrows('illegal_transition');
    registry
      .given([...first, claimed])
      .when(approve(1))
      .thenThrows('stale_action_version');
    registry
      .given([...first, claimed])
      .when(approve(2))
      .then([
        {
          type: 'RegistryReviewApproved',
          data: { review_id: REVIEW, action_version: 3, bindings: BINDINGS },
        },
      ]);
  });

  it('a decided entry opens no new review; an abandoned one does on the next enrollment', () => {
    const rejected: RegistryEvent = {
      type: 'RegistryReviewRejected',
      data: { review_id: REVIEW, action_version: 3, reason: 'no' },
    };
    registry
      .given([...first, claimed, rejected])
      .when(enroll(L2, REVIEW2))
      .then([{ type: 'RegistryLineageEnrolled', data: { lineage_id: L2, device_id: 'dev-c2' } }]);
    const abandoned: RegistryEvent = {
      type: 'RegistryReviewAbandoned',
      data: { review_id: REVIEW, action_version: 2, reason: 'stale' },
    };
    registry
      .given([...first, abandoned])
      .when(enroll(L2, REVIEW2))
      .then([
        { type: 'RegistryLineageEnrolled', data: { lineage_id: L2, device_id: 'dev-c2' } },
        {
          type: 'RegistryReviewOpened',
          data: { review_id: REVIEW2, action_version: 1, lineage_id: L2, device_id: 'dev-c2' },
        },
      ]);
    registry
      .given([...first, abandoned])
      .when({ type: 'AbandonRegistryReview', data: { review_id: REVIEW, action_version: 2, reason: 'x' } })
      .thenThrows('illegal_transition');
  });

  it('adopting a lineage approval supersedes an open review; a rejected entry adopts nothing', () => {
    const adopt: RegistryCommand = {
      type: 'AdoptApproval',
      data: { ...KEY, lineage_id: L2, review_id: null, bindings: BINDINGS, schema_columns: DEVICE_STATE },
    };
    registry
      .given(first)
      .when(adopt)
      .thenMatch([
        { type: 'RegistryReviewAbandoned', data: { review_id: REVIEW, action_version: 2 } },
        { type: 'RegistryApprovalAdopted', data: { lineage_id: L2, bindings: BINDINGS } },
      ]);
    registry
      .given([
        ...first,
        claimed,
        { type: 'RegistryReviewRejected', data: { review_id: REVIEW, action_version: 3, reason: 'no' } },
      ])
      .when(adopt)
      .then([]);
  });

  it('views: none, open, approved', () => {
    expect(registryView(KEY, initialRegistryState()).status).toBe('none');
    const s = (events: RegistryEvent[]) => events.reduce(registryDecider.evolve, initialRegistryState());
    expect(registryView(KEY, s(first))).toMatchObject({ status: 'open', review_id: REVIEW });
    const approved: RegistryEvent = {
      type: 'RegistryReviewApproved',
      data: { review_id: REVIEW, action_version: 3, bindings: BINDINGS },
    };
    expect(registryView(KEY, s([...first, claimed, approved]))).toMatchObject({
      status: 'approved',
      bindings: BINDINGS,
      registry_id: RID,
    });
  });

  it('scope by mode: project, fleet, none; a device in no fleet is governed on its own', () => {
    expect(coalescingScope('project', P, null)).toEqual({ scope: 'project', scope_id: P });
    expect(coalescingScope('fleet', P, 'f1')).toEqual({ scope: 'fleet', scope_id: 'f1' });
    expect(coalescingScope('fleet', P, null)).toBeNull();
    expect(coalescingScope('none', P, 'f1')).toBeNull();
  });
});

// ----------------------------------------------------------------- lineages under a registry
const LID = '0190a000-0000-7000-8000-0000000000aa';
const EPOCH = '0190a000-0000-7000-8000-0000000000e1';
const DEVICE = { project_id: P, device_id: 'd', device_name: 'gw-1' };
const MINT = {
  new_control_id: '0190a000-0000-7000-8000-0000000000c1',
  new_replay_id: '0190a000-0000-7000-8000-0000000000f2',
  now: '2026-11-22T00:00:00.000Z',
};
function batch(seqs: number[]): RowBatch {
  return {
    format_version: 1,
    capture_strategy: 'sqlite_row_batch_v1',
    batch_id: `0190a000-0000-7000-8000-${String(seqs[0]).padStart(12, '0')}`,
    journal_epoch: EPOCH,
    source_table: 'device_state',
    schema_hash: H,
    schema_columns: DEVICE_STATE,
    first_commit_seq: Math.min(...seqs),
    last_commit_seq: Math.max(...seqs),
    rows: seqs.map((s) => ({
      commit_seq: s,
      op: 'insert' as const,
      pk: { id: s },
      row: { id: s, mode: 'm' },
    })),
  };
}
const view = (status: 'none' | 'open' | 'approved' | 'rejected') => ({
  registry_id: RID,
  scope: 'project' as const,
  scope_id: P,
  status,
  review_id: status === 'none' ? null : REVIEW,
  bindings: status === 'approved' ? BINDINGS : null,
});
const ingest = (
  seqs: number[],
  status: Parameters<typeof view>[0],
  fleet?: string | null,
): LineageCommand => ({
  type: 'IngestRowBatch',
  data: {
    ...DEVICE,
    ...MINT,
    batch: batch(seqs),
    new_lineage_id: LID,
    new_review_id: REVIEW2,
    policy: { ...DEFAULT_POLICY, schema_coalescing_mode: 'project' },
    registry: view(status),
    ...(fleet !== undefined ? { fleet_id: fleet } : {}),
  },
});
const lineageRegistered: LineageEvent = {
  type: 'LineageRegistered',
  data: { lineage_id: LID, ...DEVICE, source_table: 'device_state', kind: 'rows' },
};
const approval = {
  registry_id: RID,
  review_id: REVIEW,
  schema_hash: H,
  scope: 'project' as const,
  scope_id: P,
  bindings: BINDINGS,
};

describe('a lineage under a registry entry', () => {
  it('waits for the entry instead of opening a review of its own, and stages', () => {
    lineage
      .given([])
      .when(ingest([1, 2], 'none'))
      .thenMatch([
        { type: 'LineageRegistered' },
        { type: 'SchemaVersionObserved', data: { classification: 'ambiguous' } },
        { type: 'RegistryReviewAwaited', data: { registry_id: RID, schema_hash: H, scope: 'project' } },
        { type: 'LineagePaused', data: { reason: 'schema_review' } },
        { type: 'RowsStaged', data: { reason: 'schema_review' } },
      ]);
  });

  it('takes an approved entry on its first batch: no review, no pause, rows accepted', () => {
    lineage
      .given([])
      .when(ingest([1, 2], 'approved'))
      .thenMatch([
        { type: 'LineageRegistered' },
        { type: 'SchemaVersionObserved', data: { classification: 'compatible_mapped' } },
        { type: 'SchemaApprovedByRegistry', data: approval },
        { type: 'RowsAccepted' },
      ]);
  });

  it('the approval fanned out releases staged rows and resumes; repeated, it is a no-op', () => {
    const waiting = lineage
      .given([])
      .when(ingest([1, 2], 'open'))
      .events() as LineageEvent[];
    const apply: LineageCommand = {
      type: 'ApplyRegistryApproval',
      data: { ...approval, replay_id: MINT.new_replay_id },
    };
    const taken = lineage.given(waiting).when(apply).events() as LineageEvent[];
    expect(taken).toEqual([
      { type: 'SchemaApprovedByRegistry', data: approval },
      { type: 'LineageResumed', data: { reason: 'schema_review' } },
      { type: 'StagedRowsReleased', data: { replay_id: MINT.new_replay_id, schema_hash: H } },
    ]);
    lineage
      .given([...waiting, ...taken])
      .when(apply)
      .then([]);
  });

  it('an approval of an entry the lineage does not wait for is ignored', () => {
    lineage
      .given([lineageRegistered])
      .when({ type: 'ApplyRegistryApproval', data: { ...approval, replay_id: MINT.new_replay_id } })
      .then([]);
  });

  it('a rejected entry leaves the lineage paused with its rows staged', () => {
    const waiting = lineage
      .given([])
      .when(ingest([1], 'rejected'))
      .events() as LineageEvent[];
    lineage
      .given(waiting)
      .when(ingest([2], 'rejected'))
      .thenMatch([{ type: 'RowsStaged', data: { reason: 'schema_review' } }]);
  });

  it('a waiting lineage whose entry got approved takes it with its next batch, ahead of the rows', () => {
    const waiting = lineage
      .given([])
      .when(ingest([1], 'open'))
      .events() as LineageEvent[];
    lineage
      .given(waiting)
      .when(ingest([2], 'approved'))
      .thenMatch([
        { type: 'SchemaApprovedByRegistry' },
        { type: 'LineageResumed', data: { reason: 'schema_review' } },
        { type: 'StagedRowsReleased' },
        { type: 'RowsAccepted' },
      ]);
  });

  it('a waiting lineage whose project stopped coalescing gets a review of its own', () => {
    const waiting = lineage
      .given([])
      .when(ingest([1], 'open'))
      .events() as LineageEvent[];
    const plain: LineageCommand = {
      type: 'IngestRowBatch',
      data: {
        ...DEVICE,
        ...MINT,
        batch: batch([2]),
        new_lineage_id: LID,
        new_review_id: REVIEW2,
        policy: DEFAULT_POLICY,
      },
    };
    const queued = lineage.given(waiting).when(plain).events() as LineageEvent[];
    expect(queued).toMatchObject([
      {
        type: 'SchemaReviewQueued',
        data: { review_id: REVIEW2, schema_hash: H, classification: 'ambiguous' },
      },
      { type: 'RowsStaged', data: { reason: 'schema_review' } },
    ]);
    // Approving it resumes the lineage and releases every staged row, the waiting ones included.
    const claimed = lineage
      .given([...waiting, ...queued])
      .when({ type: 'ClaimReview', data: { review_id: REVIEW2, action_version: 1 } })
      .events() as LineageEvent[];
    lineage
      .given([...waiting, ...queued, ...claimed])
      .when({
        type: 'ApproveReview',
        data: { review_id: REVIEW2, action_version: 2, replay_id: MINT.new_replay_id },
      })
      .thenMatch([
        { type: 'SchemaReviewApproved' },
        { type: 'LineageResumed', data: { reason: 'schema_review' } },
        { type: 'StagedRowsReleased' },
      ]);
  });

  it('records the fleet of its device when it changes', () => {
    lineage
      .given([lineageRegistered])
      .when(ingest([1], 'approved', 'f1'))
      .thenMatch([
        { type: 'LineageFleetAssigned', data: { fleet_id: 'f1' } },
        { type: 'SchemaVersionObserved' },
        { type: 'SchemaApprovedByRegistry' },
        { type: 'RowsAccepted' },
      ]);
    lineage
      .given([lineageRegistered, { type: 'LineageFleetAssigned', data: { fleet_id: 'f1' } }])
      .when({ type: 'AssignFleet', data: { fleet_id: 'f1' } })
      .then([]);
  });
});
