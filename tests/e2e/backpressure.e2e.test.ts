import Database from 'better-sqlite3';
import mqtt from 'mqtt';
import { generateKeyPairSync } from 'node:crypto';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { inRanges } from '../../domain/lineage/state';
import { verifyControl } from '../../edge-agent/control/signature';
import { parseReadStore } from '../../infra/config/env';
import { openReadStore, type ReadStore } from '../../projections';
import { startNats, type NatsServer } from '../support/nats';
import { tempDir } from '../support/proc';
import {
  agentBacklog,
  approveReview,
  controls,
  delay,
  rowsDomainState,
  findLineage,
  lineage,
  mirrorRows,
  projectionsCaughtUp,
  shutdown,
  stagedTotal,
  waitForTriggers,
} from '../support/readside';
import {
  type AgentProcess,
  type CloudProcess,
  getJson,
  postJson,
  startAgentProcess,
  startCloudProcess,
} from '../support/stack';
import { waitFor } from '../support/wait';
import { wireOf, wireRows } from '../support/exact';

const CAP = 200;
const FIRST = 260; // written while the review is pending: over the cap
const WHILE_PAUSED = 150; // journaled by the agent, not sent
const AFTER = 60; // live, after the resume
const DEVICE = 'gw-backpressure';

/**
 * Volume backpressure end to end, with signed controls: a small staged-row cap, an application
 * writing past it while its schema waits for review → the lineage pauses (`volume_backpressure`)
 * and the real agent receives a signed `pause_lineage`, ACKs it and holds the table's changes in
 * its journal. Approval replays the staged rows, the backlog falls below 80 % of the cap, the
 * cloud sends `resume_lineage`, and the agent drains from the watermark: every row of the table
 * ends in the mirror once.
 */
describe('backpressure end to end', () => {
  let nats: NatsServer | undefined;
  let cloud: CloudProcess | undefined;
  let agent: AgentProcess | undefined;
  let spy: mqtt.MqttClient | undefined;
  let nc: NatsConnection | undefined;
  let readStore: ReadStore | undefined;
  let app: Database.Database | undefined;

  afterAll(async () => {
    await spy?.endAsync().catch(() => undefined);
    await shutdown(agent);
    await shutdown(cloud);
    app?.close();
    await readStore?.close();
    await nc?.close();
    await nats?.stop();
  });

  it('pauses the device with a signed control, replays after approval, resumes from the watermark', async () => {
    const t0 = Date.now();
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    nats = await startNats();
    const dir = tempDir('backpressure');
    const readStoreUrl = `sqlite:${join(dir, 'read.db')}`;
    cloud = await startCloudProcess({
      natsUrl: nats.url,
      mqttUrl: nats.mqttUrl,
      readStore: readStoreUrl,
      env: { SLUICE_CONTROL_SIGNING_KEY: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() },
    });
    nc = await connect({ servers: nats.url });
    readStore = openReadStore(parseReadStore(readStoreUrl));

    // The cap is set before the device's first batch.
    const patched = await postJson<Record<string, unknown>>(
      `${cloud.base}/policy`,
      { max_pending_rows_per_lineage: CAP },
      { method: 'PATCH' },
    );
    expect(patched.status).toBe(200);
    expect(patched.body).toMatchObject({ max_pending_rows_per_lineage: CAP, resume_threshold_percent: 80 });
    expect((await getJson(`${cloud.base}/policy`)).body).toMatchObject({ max_pending_rows_per_lineage: CAP });

    // A second MQTT client listens on the device's control topic: what the device is sent.
    const seen: Record<string, unknown>[] = [];
    spy = await mqtt.connectAsync(nats.mqttUrl, {
      clientId: 'spy-backpressure',
      clean: true,
      protocolVersion: 4,
    });
    spy.on('message', (_t, p) => seen.push(JSON.parse(p.toString()) as Record<string, unknown>));
    await spy.subscribeAsync(`e2e/${DEVICE}/sync/ingest/control`, { qos: 1 });

    app = new Database(join(dir, 'app.db'));
    app.pragma('journal_mode = WAL');
    app.pragma('busy_timeout = 5000');
    app.exec('CREATE TABLE readings (id INTEGER PRIMARY KEY, v REAL NOT NULL, label TEXT)');
    app.exec('CREATE TABLE heartbeat (id INTEGER PRIMARY KEY, at INTEGER NOT NULL)');
    const publicPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
    agent = startAgentProcess({
      mqttUrl: nats.mqttUrl,
      sourceDb: join(dir, 'app.db'),
      device: DEVICE,
      dir,
      extraYaml: [
        'security:',
        '  signed_control:',
        '    enabled: true',
        `    public_key: ${JSON.stringify(publicPem)}`,
      ].join('\n'),
    });
    await waitForTriggers(app, 'readings');
    await waitForTriggers(app, 'heartbeat');

    const insert = app.prepare('INSERT INTO readings (id, v, label) VALUES (?, ?, ?)');
    let next = 1;
    const write = async (n: number) => {
      // Small transactions at the application's own pace, so several batches carry them.
      for (let i = 0; i < n; i += 10) {
        app!
          .transaction(() => {
            for (let j = 0; j < Math.min(10, n - i); j++, next++) insert.run(next, next / 4, `r${next}`);
          })
          .immediate();
        await delay(20);
      }
    };
    let beats = 0;
    const heartbeat = async () => {
      beats++;
      app!.prepare('INSERT INTO heartbeat (id, at) VALUES (?, ?)').run(beats, Date.now());
      const hb = await findLineage(cloud!.base, DEVICE, 'heartbeat');
      await waitFor(async () => (await rowsDomainState(nc!, hb.lineage_id)).last_commit_seq >= beats, {
        message: `heartbeat ${beats} in the cloud`,
      });
    };

    // 1. Over the cap while the schema waits for review: paused, and the device is told to stop.
    await write(FIRST);
    const { lineage_id } = await findLineage(cloud.base, DEVICE, 'readings');
    const paused = await waitFor(
      async () => {
        const l = await lineage(cloud!.base, lineage_id);
        return l.pause_reasons.includes('volume_backpressure') ? l : undefined;
      },
      {
        timeoutMs: 30_000,
        message: () => `lineage paused for volume_backpressure (agent: ${agent!.output().slice(-1500)})`,
      },
    );
    expect(paused.status).toBe('paused');
    expect(paused.pause_reasons).toEqual(expect.arrayContaining(['schema_review', 'volume_backpressure']));
    const pause = await waitFor(
      async () =>
        (await controls(cloud!.base, lineage_id)).find(
          (c) => c.control_kind === 'pause_lineage' && c.status === 'acknowledged',
        ),
      {
        timeoutMs: 30_000,
        message: () => `pause_lineage acknowledged by the device (agent: ${agent!.output().slice(-1500)})`,
      },
    );
    expect(pause.reason).toContain('backpressure');
    expect(pause.deliveries).toBeGreaterThanOrEqual(1);
    const sentPause = seen.find((c) => c.control_id === pause.control_id);
    expect(sentPause).toMatchObject({ control_kind: 'pause_lineage', source_table: 'readings' });
    expect(verifyControl(sentPause!, publicKey)).toBe(true);
    expect(agent.output()).toContain('"event":"pause"');

    // 2. Paused: the application keeps writing, the agent journals but does not send that table,
    //    while another table of the same device flows on.
    await heartbeat();
    const before = agentBacklog(app, 'readings').seq;
    await write(WHILE_PAUSED);
    await heartbeat();
    const whilePaused = await rowsDomainState(nc, lineage_id);
    const epoch = whilePaused.last_epoch!;
    for (let s = before + 1; s <= before + WHILE_PAUSED; s++) {
      expect(inRanges(whilePaused.accepted[epoch] ?? [], s)).toBe(false);
    }
    expect(agentBacklog(app, 'readings').journal).toBeGreaterThanOrEqual(WHILE_PAUSED);
    expect(whilePaused.staged_rows).toBe(whilePaused.last_commit_seq);

    // 3. Approval releases the staged rows; their replay drains the backlog below 80 % → resume.
    await approveReview(cloud.base, lineage_id);
    const resume = await waitFor(
      async () =>
        (await controls(cloud!.base, lineage_id)).find(
          (c) => c.control_kind === 'resume_lineage' && c.status === 'acknowledged',
        ),
      {
        timeoutMs: 30_000,
        message: () => `resume_lineage acknowledged (cloud: ${cloud!.output().slice(-2000)})`,
      },
    );
    expect(resume.reason).toContain('backpressure');
    expect(resume.server_watermark).toBe(whilePaused.last_commit_seq);
    const sentResume = seen.find((c) => c.control_id === resume.control_id);
    expect(verifyControl(sentResume!, publicKey)).toBe(true);
    await write(AFTER);

    // 4. Everything arrives, once.
    const total = FIRST + WHILE_PAUSED + AFTER;
    await waitFor(
      async () => {
        const b = agentBacklog(app!, 'readings');
        if (b.journal > 0 || b.seq !== total) return false;
        const s = await rowsDomainState(nc!, lineage_id);
        if (s.last_commit_seq !== total || s.staged_rows !== 0 || s.replaying_rows !== 0) return false;
        return projectionsCaughtUp(nc!, readStore!);
      },
      { timeoutMs: 30_000, intervalMs: 250, message: `all ${total} changes delivered and folded` },
    );
    const domain = await rowsDomainState(nc, lineage_id);
    expect(domain.pause_reasons).toEqual([]);
    expect(domain.accepted[domain.last_epoch!]).toEqual([[1, total]]);
    expect(domain.materialized_rows).toBe(total);
    const view = await lineage(cloud.base, lineage_id);
    expect(view).toMatchObject({
      status: 'active',
      pause_reasons: [],
      staged_rows: 0,
      replaying_rows: 0,
      materialized_rows: total,
      last_commit_seq: total,
    });
    expect(await stagedTotal(cloud.base, lineage_id)).toBe(0);
    const all = await controls(cloud.base, lineage_id);
    expect(all.map((c) => [c.control_kind, c.status])).toEqual([
      ['pause_lineage', 'acknowledged'],
      ['resume_lineage', 'acknowledged'],
    ]);

    const mirror = await mirrorRows(cloud.base, lineage_id);
    const want = wireRows(app, 'SELECT id, v, label FROM readings ORDER BY id');
    expect(mirror.map((m) => wireOf(m.row))).toEqual(want);
    expect(mirror).toHaveLength(total);
    expect(agent.output()).not.toContain('control_dropped');
    const segments = await getJson<{ items: unknown[] }>(
      `${cloud.base}/segments?lineage_id=${lineage_id}&limit=500`,
    );
    console.log(
      `[backpressure] cap ${CAP}: ${segments.body.items.length} batches; paused at watermark ${pause.server_watermark}, ${whilePaused.staged_rows} staged, ` +
        `resumed at ${resume.server_watermark}; ${total} rows mirrored in ${Date.now() - t0} ms`,
    );
  });
});
