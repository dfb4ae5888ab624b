import { uuidv7 } from 'uuidv7';
import { type SchemaColumns, schemaHash } from '../../domain/protocol/fingerprint';
import { BucketDigests, bucketOf } from '../../domain/protocol/wire-values';
import { bindAll, del, TestLineage, upsert } from './lineage';
import type { TestNats } from './nats';
import { TEMPS } from '../../tests/support/fixtures';

const SCHEMA: SchemaColumns = {
  table_name: 'device_state',
  columns: [
    { name: 'id', decl_type_affinity: 'INTEGER', pk_ordinal: 1, not_null: true },
    { name: 'mode', decl_type_affinity: 'TEXT', pk_ordinal: 0, not_null: false },
    { name: 'blob', decl_type_affinity: 'BLOB', pk_ordinal: 0, not_null: false },
  ],
};

/**
 * A varied history on the lineage and rejection streams: staging, approval, replay, live rows,
 * deletes, big values, a hostile table name, telemetry, a deleted lineage, rejections.
 * `round` makes each call add new lineages; resolves to the last lineage-stream sequence.
 */
export async function appendHistory(nats: TestNats, projectId: string, round: number): Promise<number> {
  for (const [i, table] of ['device_state', `"; DROP TABLE t${round}; --`, 'Ünïcödé'].entries()) {
    const schema = { ...SCHEMA, table_name: table };
    const l = new TestLineage(nats.events, {
      project_id: projectId,
      device_id: uuidv7(),
      device_name: `dev-${round}-${i}`,
      source_table: table,
    });
    const review = uuidv7();
    const epoch = uuidv7();
    await l.append(l.registered(), l.observed(schema), l.queued(review, schema), l.paused('schema_review'));
    await l.append(
      l.staged(
        epoch,
        [
          upsert(1, { id: 1, mode: 'a', blob: { $blob: 'AAE=' } }),
          upsert(2, { id: 2, mode: 'b', blob: null }),
        ],
        {
          schema,
        },
      ),
    );
    await l.append(
      l.staged(epoch, [
        del(3, { id: 2 }),
        upsert(4, { id: { $int: '9223372036854775000' }, mode: 'big', blob: null }),
      ]),
    );
    await l.append(l.claimed(review));
    const replay = uuidv7();
    await l.append(
      l.approved(review, schema, bindAll(schema)),
      l.resumed('schema_review'),
      l.released(replay, schema),
    );
    await l.append(l.completed(replay, 4));
    await l.append(
      l.accepted(
        epoch,
        Array.from({ length: 50 }, (_, k) => upsert(10 + k, { id: 100 + k, mode: `live-${k}`, blob: null })),
      ),
    );
    if (i === 1) {
      // Controls, a reported materialization failure (its rows staged), a reset and a replay.
      const control = uuidv7();
      const at = '2026-04-28T10:00:00.000Z';
      await l.append({
        type: 'ControlIssued',
        data: {
          control_id: control,
          control_kind: 'pause_lineage',
          source_table: table,
          server_watermark: 59,
          reason: 'backpressure',
          issued_at: at,
        },
      });
      await l.append({
        type: 'ControlDelivered',
        data: { control_id: control, attempt: 1, delivered_at: at },
      });
      await l.append({ type: 'ControlAcknowledged', data: { control_id: control, acknowledged_at: at } });
      await l.append({
        type: 'MaterializationFailed',
        data: {
          source_seq: 1,
          code: '42P01',
          message: 'relation does not exist',
          permanent: true,
          rows: [upsert(60, { id: 7, mode: 'failed once', blob: null })],
          journal_epoch: epoch,
          consecutive_failures: 1,
        },
      });
      await l.append(
        { type: 'MaterializationReset', data: { previous_failures: 1 } },
        l.released(uuidv7(), schema),
      );
    }
    if (i === 0) {
      // Exact replication: values of every class, a refused change, a bucket resync ending in a
      // sweep, a verify run and its completion.
      await l.append(
        l.accepted(epoch, [
          upsert(70, { id: 200, mode: 'real', blob: { $real: '-0' } }),
          upsert(71, { id: 201, mode: 'inf', blob: { $real: 'Infinity' } }),
          upsert(72, { id: 202, mode: 'int', blob: { $int: '9007199254740993' } }),
        ]),
        {
          type: 'RowsRefused',
          data: {
            batch_id: uuidv7(),
            journal_epoch: epoch,
            schema_hash: '0'.repeat(64),
            rows: [
              {
                commit_seq: 73,
                op: 'refused',
                pk: { id: 203 },
                row: null,
                refusal: { code: 'unencodable_text', column: 'mode', message: 'not UTF-8' },
              },
            ],
          },
        },
      );
      const resync = uuidv7();
      const buckets = [bucketOf({ id: 100 }), bucketOf({ id: 101 })];
      await l.append({
        type: 'ResyncRequested',
        data: { resync_id: resync, control_id: uuidv7(), buckets, reason: 'operator' },
      });
      await l.append(
        l.accepted(epoch, [
          upsert(80, { id: 100, mode: 'resynced', blob: null }),
          {
            commit_seq: 81,
            op: 'sweep',
            pk: {},
            row: null,
            sweep: { resync_id: resync, since_commit_seq: 80, buckets },
          },
        ]),
      );
      const verify = uuidv7();
      const digests = new BucketDigests();
      digests.addRow({ id: 100 }, { id: 100, mode: 'resynced' }, ['id', 'mode']);
      await l.append({
        type: 'VerifyReported',
        data: {
          verify_id: verify,
          journal_epoch: epoch,
          through_commit_seq: 81,
          schema_hash: schemaHash(schema),
          columns: ['id', 'mode'],
          digests: digests.list(),
        },
      });
      await l.append({
        type: 'VerifyCompleted',
        data: {
          verify_id: verify,
          outcome: 'divergent',
          divergent_buckets: [1, 2],
          device_rows: 1,
          mirror_rows: 60,
        },
      });
    }
    if (i === 2) await l.append(l.deleted('retired'));
  }
  const t = new TestLineage(nats.events, {
    project_id: projectId,
    device_id: uuidv7(),
    device_name: `ts-${round}`,
    source_table: 'temps',
    kind: 'telemetry',
  });
  const review = uuidv7();
  await t.append(t.registered(), t.observed(TEMPS), t.queued(review, TEMPS), t.paused('schema_review'));
  await t.append(
    t.telemetry(1, [{ ts: '2026-04-28T09:00:01Z', fields: { value_c: 21.5 } }], 'schema_review'),
  );
  await t.append(t.claimed(review));
  await t.append(
    t.approved(review, TEMPS, bindAll(TEMPS)),
    t.resumed('schema_review'),
    t.released(uuidv7(), TEMPS),
  );
  const last = await t.append(
    t.telemetry(2, [
      { ts: '2026-04-28T09:00:02Z', row_id: uuidv7(), fields: { value_c: 22 } },
      { ts: '2026-04-28T09:00:03Z', fields: { value_c: null } },
    ]),
  );
  for (let k = 0; k < 3; k++) {
    await nats.reject({
      device_key: `dev-${round}`,
      project_id: projectId,
      kind: 'rows',
      topic: `p/dev-${round}/sync/rows/batch`,
      code: 'invalid_batch_id',
      message: 'batch_id must be a UUIDv7',
      received_at: new Date(Date.UTC(2026, 3, 28, 9, round, k)).toISOString(),
      payload_excerpt: '{"batch_id":"nope"}',
    });
  }
  return last;
}
