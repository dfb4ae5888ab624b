/**
 * The naive pipeline, what a user would hand-roll: one MQTT subscriber (QoS 1, PUBACK after the
 * write) that parses each batch and upserts it straight into PostgreSQL. No validation beyond
 * JSON, no lineage, no review, no staging, no events, no rebuild.
 */
import mqtt from 'mqtt';
import pg from 'pg';
import { uuidv7 } from 'uuidv7';
import type { RowChange } from '../../domain/protocol/contracts';
import type { Ctx, StageResult } from '../lib/context';
import { items, wireBatches } from '../lib/data';
import { measure, type Run, seconds, windowed } from '../lib/measure';
import { MIRROR_LIKE_DDL, UPSERT_SQL, upsertParams, withTimeout } from './raw';

export async function naive(ctx: Ctx, size: number): Promise<StageResult> {
  const url = await ctx.createDatabase(`naive_${size}`);
  const db = new pg.Client({ connectionString: url });
  await db.connect();
  const rows = items(ctx.sizes.naiveRows, size, ctx.sizes.keys);
  const tag = uuidv7().slice(-8);
  try {
    return await measure(
      ctx,
      {
        group: 'naive',
        stage: 'naive',
        label: 'naive: MQTT subscriber → PostgreSQL',
        row_bytes: size,
        latency_of: 'publish → written',
        note: 'NATS MQTT listener, one upsert per message, PUBACK after it',
      },
      async (run): Promise<Run> => {
        const table = `naive_${run}`;
        await db.query(MIRROR_LIKE_DDL(table));
        const sql = UPSERT_SQL(table);
        const batches = wireBatches(rows, size, `naive-${run}`);
        const sent = new Map<string, number>();
        const lat: number[] = [];
        let written = 0;
        let done: () => void = () => undefined;
        const all = new Promise<void>((r) => (done = r));
        const sub = mqtt.connect(ctx.nats.mqttUrl, {
          clientId: `naive-sub-${tag}-${run}`,
          protocolVersion: 4,
          clean: true,
        });
        sub.handleMessage = (packet, callback) => {
          const batch = JSON.parse((packet.payload as Buffer).toString('utf8')) as {
            batch_id: string;
            journal_epoch: string;
            rows: RowChange[];
          };
          const part = batch.rows.map((r) => ({
            id: Number(r.pk.id),
            body: String(r.row!.body),
            n: Number(r.row!.n),
            seq: r.commit_seq,
          }));
          db.query(sql, upsertParams(part, 'naive-device', batch.journal_epoch)).then(
            () => {
              lat.push(performance.now() - sent.get(batch.batch_id)!);
              written += part.length;
              callback();
              if (written >= rows.length) done();
            },
            (err: Error) => callback(err),
          );
        };
        await new Promise<void>((r) => sub.once('connect', () => r()));
        await sub.subscribeAsync(`naive/+/sync/rows/batch`, { qos: 1 });
        const pub = await mqtt.connectAsync(ctx.nats.mqttUrl, {
          clientId: `naive-pub-${tag}-${run}`,
          protocolVersion: 4,
        });
        const t0 = process.hrtime.bigint();
        await windowed(
          batches.map((b) => ({ ...b, topic: b.topic.replace(/^bench\//, 'naive/') })),
          64,
          (b) => {
            sent.set(b.batch_id, performance.now());
            return pub.publishAsync(b.topic, b.body, { qos: 1 });
          },
        );
        await withTimeout(all, 300_000, `naive: ${written}/${rows.length} rows written`);
        const s = seconds(t0);
        await Promise.all([pub.endAsync(), sub.endAsync()]);
        return { rows: rows.length, seconds: s, latenciesMs: lat };
      },
    );
  } finally {
    await db.end();
  }
}
