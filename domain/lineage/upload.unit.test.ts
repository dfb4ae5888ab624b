import { schemaHash } from '../protocol/fingerprint';
import type { RowChange, UrlRequest } from '../protocol/contracts';
import { DEFAULT_POLICY } from '../policy/policy';
import { deciderSpec } from '../../tests/support/decider-spec';
import { DEVICE_STATE } from '../../tests/support/fixtures';
import { fold } from '../shared/decider';
import { type LineageCommand, lineageDecider } from './decide';
import type { LineageEvent } from './events';

const spec = deciderSpec(lineageDecider);
const L = '0190a000-0000-7000-8000-0000000000aa';
const EPOCH = '0190a000-0000-7000-8000-0000000000e1';
const UPLOAD = '0190a000-0000-7000-8000-0000000000d1';
const CONTROL = '0190a000-0000-7000-8000-0000000000c1';
const DEVICE = { project_id: 'p', device_id: 'd', device_name: 'gw-1', topic_slug: 'acme' };
const NOW = '2026-11-22T00:00:00.000Z';
const EXPIRES = '2026-11-22T00:15:00.000Z';
const MINT = { new_control_id: CONTROL, new_replay_id: '0190a000-0000-7000-8000-0000000000f2', now: NOW };

const H1 = schemaHash(DEVICE_STATE);

const request = (over: Partial<UrlRequest> = {}): UrlRequest => ({
  format_version: 1,
  request_kind: 'url_request',
  request_id: '0190a000-0000-7000-8000-0000000000a1',
  upload_id: UPLOAD,
  source_table: 'device_state',
  journal_epoch: EPOCH,
  schema_hash: H1,
  schema_columns: DEVICE_STATE,
  first_commit_seq: 1,
  last_commit_seq: 10,
  row_count: 10,
  ...over,
});

const requestUpload = (now = NOW, r = request()): LineageCommand => ({
  type: 'RequestUpload',
  data: { ...DEVICE, ...MINT, now, request: r, new_lineage_id: L, expires_at: EXPIRES },
});

const rows = (from: number, to: number): RowChange[] =>
  Array.from({ length: to - from + 1 }, (_, i) => ({
    commit_seq: from + i,
    op: 'insert' as const,
    pk: { id: from + i },
    row: { id: from + i, mode: 'm' },
  }));

const chunk = (n: number, r: RowChange[]): LineageCommand => ({
  type: 'IngestUploadChunk',
  data: {
    ...MINT,
    upload_id: UPLOAD,
    chunk: n,
    rows: r,
    new_review_id: '0190a000-0000-7000-8000-0000000000b1',
    policy: DEFAULT_POLICY,
  },
});

const granted = (): LineageEvent[] => [
  ...lineageDecider.decide(requestUpload(), lineageDecider.initialState()),
];

describe('upload flow in the lineage decider', () => {
  it('a url_request registers the lineage and grants with a url_grant control in one decision', () => {
    spec
      .given([])
      .when(requestUpload())
      .thenMatch([
        { type: 'LineageRegistered', data: { lineage_id: L, kind: 'rows', source_table: 'device_state' } },
        {
          type: 'UploadGranted',
          data: {
            upload_id: UPLOAD,
            control_id: CONTROL,
            expires_at: EXPIRES,
            first_commit_seq: 1,
            row_count: 10,
          },
        },
        { type: 'ControlIssued', data: { control_id: CONTROL, control_kind: 'url_grant' } },
      ]);
  });

  it('a repeated request grants nothing while the grant works, and a new grant once it expired', () => {
    spec.given(granted()).when(requestUpload('2026-11-22T00:05:00.000Z')).then([]);
    spec
      .given(granted())
      .when(requestUpload('2026-11-22T00:16:00.000Z'))
      .thenMatch([{ type: 'UploadGranted' }, { type: 'ControlIssued', data: { control_kind: 'url_grant' } }]);
  });

  it('a request for the same upload id with another range is refused', () => {
    spec
      .given(granted())
      .when(requestUpload('2026-11-22T00:16:00.000Z', request({ last_commit_seq: 11 })))
      .thenThrows('upload_mismatch');
  });

  it('chunks enter like batches (staged under the first schema review), in order, and each once', () => {
    const first = spec
      .given(granted())
      .when(chunk(0, rows(1, 4)))
      .events();
    expect(first.map((e) => e.type)).toEqual([
      'SchemaVersionObserved',
      'SchemaReviewQueued',
      'LineagePaused',
      'RowsStaged',
      'UploadChunkAppended',
    ]);
    expect(first.find((e) => e.type === 'RowsStaged')).toMatchObject({
      data: { batch_id: UPLOAD, journal_epoch: EPOCH, reason: 'schema_review' },
    });
    const after = [...granted(), ...first];
    // A resumed finalize re-reads chunk 0: nothing happens twice.
    spec
      .given(after)
      .when(chunk(0, rows(1, 4)))
      .then([]);
    spec
      .given(after)
      .when(chunk(2, rows(9, 10)))
      .thenThrows('upload_chunk_out_of_order');
    spec
      .given(after)
      .when(chunk(1, rows(9, 11)))
      .thenThrows('upload_content_invalid');
  });

  it('rows a batch already brought in are skipped (dedupe on journal_epoch and commit_seq)', () => {
    const base = [
      ...granted(),
      ...spec
        .given(granted())
        .when(chunk(0, rows(1, 4)))
        .events(),
    ];
    const events = spec
      .given(base)
      .when(chunk(1, rows(3, 10)))
      .events();
    expect(events.find((e) => e.type === 'RowsStaged')).toMatchObject({ data: { duplicates_skipped: 2 } });
    expect(events.at(-1)).toEqual({
      type: 'UploadChunkAppended',
      data: { upload_id: UPLOAD, chunk: 1, rows: 6, duplicates_skipped: 2 },
    });
  });

  it('completes when every announced row was read, fails when the object held another count', () => {
    const c0 = spec
      .given(granted())
      .when(chunk(0, rows(1, 10)))
      .events();
    const base = [...granted(), ...c0];
    spec
      .given(base)
      .when({ type: 'CompleteUpload', data: { upload_id: UPLOAD, chunks: 1, rows_read: 10 } })
      .then([
        { type: 'UploadCompleted', data: { upload_id: UPLOAD, chunks: 1, rows: 10, duplicates_skipped: 0 } },
      ]);
    spec
      .given(base)
      .when({ type: 'CompleteUpload', data: { upload_id: UPLOAD, chunks: 1, rows_read: 9 } })
      .thenMatch([{ type: 'UploadFailed', data: { code: 'upload_row_count_mismatch' } }]);
    const done = [
      ...base,
      ...lineageDecider.decide(
        { type: 'CompleteUpload', data: { upload_id: UPLOAD, chunks: 1, rows_read: 10 } },
        fold(lineageDecider, base),
      ),
    ];
    // A late finalize or chunk of a finished upload changes nothing.
    spec
      .given(done)
      .when(chunk(1, rows(1, 2)))
      .then([]);
    spec
      .given(done)
      .when({ type: 'CompleteUpload', data: { upload_id: UPLOAD, chunks: 1, rows_read: 10 } })
      .then([]);
  });

  it('an unknown upload is refused', () => {
    spec
      .given(granted())
      .when({
        ...chunk(0, rows(1, 2)),
        data: { ...chunk(0, rows(1, 2)).data, upload_id: CONTROL },
      } as LineageCommand)
      .thenThrows('unknown_upload');
  });
});
