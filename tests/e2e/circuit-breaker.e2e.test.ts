import Database from 'better-sqlite3';
import mqtt from 'mqtt';
import { generateKeyPairSync } from 'node:crypto';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { verifyControl } from '../../edge-agent/control/signature';
import { parseReadStore } from '../../infra/config/env';
import { openReadStore, quoteIdent, type ReadStore } from '../../projections';
import { startNats, type NatsServer } from '../support/nats';
import { tempDir } from '../support/proc';
import {
  agentBacklog,
  approveReview,
  controls,
  rowsDomainState,
  eventTrail,
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
  postJson,
  startAgentProcess,
  startCloudProcess,
} from '../support/stack';
import { waitFor } from '../support/wait';

const DEVICE = 'gw-breaker';
const HEALTHY = 40;
const THRESHOLD = 5; // the policy's default circuit_breaker_threshold
const MAX_BROKEN_WRITES = 12;
const WHILE_OPEN = 30;

/**
 * The circuit breaker end to end: the mirror table becomes unwritable (a trigger that aborts every
 * write), each batch the mirror cannot write is reported as a permanent materialization failure,
 * and after 5 the lineage pauses with `circuit_breaker` and the device gets a signed
 * `pause_lineage`. Once the table is fixed, an operator resets materialization: `resume_lineage`
 * goes out, the staged rows replay, and every row of the device's table lands.
 */
describe('circuit breaker end to end', () => {
  let nats: NatsServer | undefined;
  let cloud: CloudProcess | undefined;
  let agent: AgentProcess | undefined;
  let spy: mqtt.MqttClient | undefined;
  let nc: NatsConnection | undefined;
  let readStore: ReadStore | undefined;
  let app: Database.Database | undefined;
  let sabotage: Database.Database | undefined;

  afterAll(async () => {
    await spy?.endAsync().catch(() => undefined);
    await shutdown(agent);
    await shutdown(cloud);
    app?.close();
    sabotage?.close();
    await readStore?.close();
    await nc?.close();
    await nats?.stop();
  });

  it('pauses after 5 permanent failures, and replays every row after reset-materialization', async () => {
    const t0 = Date.now();
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    nats = await startNats();
    const dir = tempDir('breaker');
    const readStorePath = join(dir, 'read.db');
    cloud = await startCloudProcess({
      natsUrl: nats.url,
      mqttUrl: nats.mqttUrl,
      readStore: `sqlite:${readStorePath}`,
      env: { SLUICE_CONTROL_SIGNING_KEY: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() },
    });
    nc = await connect({ servers: nats.url });
    readStore = openReadStore(parseReadStore(`sqlite:${readStorePath}`));

    const seen: Record<string, unknown>[] = [];
    spy = await mqtt.connectAsync(nats.mqttUrl, { clientId: 'spy-breaker', clean: true, protocolVersion: 4 });
    spy.on('message', (_t, p) => seen.push(JSON.parse(p.toString()) as Record<string, unknown>));
    await spy.subscribeAsync(`e2e/${DEVICE}/sync/ingest/control`, { qos: 1 });

    app = new Database(join(dir, 'app.db'));
    app.pragma('journal_mode = WAL');
    app.pragma('busy_timeout = 5000');
    app.exec('CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT NOT NULL, qty INTEGER)');
    agent = startAgentProcess({
      mqttUrl: nats.mqttUrl,
      sourceDb: join(dir, 'app.db'),
      device: DEVICE,
      dir,
      extraYaml: [
        'security:',
        '  signed_control:',
        '    enabled: true',
        `    public_key: ${JSON.stringify(publicKey.export({ type: 'spki', format: 'pem' }).toString())}`,
      ].join('\n'),
    });
    await waitForTriggers(app, 'orders');
    const insert = app.prepare('INSERT INTO orders (id, item, qty) VALUES (?, ?, ?)');
    let next = 1;
    app
      .transaction(() => {
        for (; next <= HEALTHY; next++) insert.run(next, `item-${next}`, next);
      })
      .immediate();

    // 1. Healthy: approved, and the rows materialize.
    const { lineage_id } = await findLineage(cloud.base, DEVICE, 'orders');
    await approveReview(cloud.base, lineage_id);
    await waitFor(async () => (await mirrorRows(cloud!.base, lineage_id)).length === HEALTHY, {
      timeoutMs: 30_000,
      message: `${HEALTHY} rows in the mirror`,
    });
    const table = (await lineage(cloud.base, lineage_id)).materialization.table_name!;
    expect(table).toMatch(/^edge_mirror_/);

    // 2. Break the mirror table: every write to it aborts (a permanent error, not a busy one).
    sabotage = new Database(readStorePath);
    sabotage.pragma('busy_timeout = 10000');
    const triggers = ['INSERT', 'UPDATE', 'DELETE'].map((op) => `sabotage_${op.toLowerCase()}`);
    for (const [i, op] of ['INSERT', 'UPDATE', 'DELETE'].entries()) {
      sabotage.exec(
        `CREATE TRIGGER ${triggers[i]} BEFORE ${op} ON ${quoteIdent(table)} BEGIN SELECT RAISE(ABORT, 'broken'); END`,
      );
    }

    // 3. The application goes on, one change per batch (an insert, an update, a delete in turn),
    //    until the breaker opens: each batch the mirror cannot write is one permanent failure.
    const change = (n: number) => {
      if (n % 3 === 1) insert.run(next++, `late-${n}`, n);
      else if (n % 3 === 2) app!.prepare('UPDATE orders SET qty = qty + 100 WHERE id = ?').run(n);
      else app!.prepare('DELETE FROM orders WHERE id = ?').run(HEALTHY - n);
    };
    let writes = 0;
    let domainAtTrip = await rowsDomainState(nc, lineage_id);
    const reportedBefore = domainAtTrip.reported_failures.length;
    while (writes < MAX_BROKEN_WRITES && !domainAtTrip.pause_reasons.includes('circuit_breaker')) {
      change(++writes);
      const seq = agentBacklog(app, 'orders').seq;
      // The batch reaches the lineage, the mirror fails on it, and its report reaches the domain.
      domainAtTrip = await waitFor(
        async () => {
          const s = await rowsDomainState(nc!, lineage_id);
          return s.last_commit_seq >= seq && s.reported_failures.length >= reportedBefore + writes
            ? s
            : undefined;
        },
        { message: `the failure of change ${seq} reported` },
      ).catch(async (err: Error) => {
        err.message += `; the lineage's events:\n${await eventTrail(nc!, lineage_id)}`;
        throw err;
      });
    }
    if (writes !== THRESHOLD || !domainAtTrip.pause_reasons.includes('circuit_breaker')) {
      throw new Error(
        `the breaker should open at the failure of the ${THRESHOLD}th failing batch; after ${writes} ` +
          `the lineage has consecutive_failures ${domainAtTrip.consecutive_failures} and pause reasons ` +
          `${JSON.stringify(domainAtTrip.pause_reasons)}. Its events:\n${await eventTrail(nc, lineage_id)}`,
      );
    }
    expect(domainAtTrip.consecutive_failures).toBe(THRESHOLD);
    const opened = await waitFor(
      async () => {
        const l = await lineage(cloud!.base, lineage_id);
        return l.pause_reasons.includes('circuit_breaker') ? l : undefined;
      },
      { message: 'the API shows the breaker open' },
    );
    expect(opened).toMatchObject({ status: 'paused', pause_reasons: ['circuit_breaker'] });
    expect(opened.materialization_errors).toBeGreaterThanOrEqual(THRESHOLD);
    expect(opened.last_error).toContain('broken');

    // The device is told to stop, and ACKs.
    const pause = await waitFor(
      async () =>
        (await controls(cloud!.base, lineage_id)).find(
          (c) => c.control_kind === 'pause_lineage' && c.status === 'acknowledged',
        ),
      { timeoutMs: 30_000, message: 'pause_lineage acknowledged by the device' },
    );
    expect(pause.reason).toContain('circuit breaker');
    expect(pause.server_watermark).toBe(domainAtTrip.last_commit_seq);
    expect(
      verifyControl(
        seen.find((c) => c.control_id === pause.control_id)!,
        publicKey,
      ),
    ).toBe(true);

    // 4. While the breaker is open the application keeps writing; the agent journals the changes.
    for (let i = 0; i < WHILE_OPEN; i++) insert.run(next++, `held-${i}`, i);
    expect(agentBacklog(app, 'orders').journal).toBeGreaterThanOrEqual(WHILE_OPEN);

    // 5. Fix the table, reset: resume_lineage, the staged rows replay, the held changes flow.
    for (const t of triggers) sabotage.exec(`DROP TRIGGER ${t}`);
    const reset = await postJson<{ events: { type: string }[] }>(
      `${cloud.base}/lineages/${lineage_id}/reset-materialization`,
      {},
    );
    expect(reset.status).toBe(200);
    expect(reset.body.events.map((e) => e.type)).toEqual(
      expect.arrayContaining(['MaterializationReset', 'LineageResumed', 'ControlIssued']),
    );
    const resume = await waitFor(
      async () =>
        (await controls(cloud!.base, lineage_id)).find(
          (c) => c.control_kind === 'resume_lineage' && c.status === 'acknowledged',
        ),
      { timeoutMs: 30_000, message: 'resume_lineage acknowledged by the device' },
    );
    expect(
      verifyControl(
        seen.find((c) => c.control_id === resume.control_id)!,
        publicKey,
      ),
    ).toBe(true);

    await waitFor(
      async () => {
        const b = agentBacklog(app!, 'orders');
        if (b.journal > 0) return false;
        const s = await rowsDomainState(nc!, lineage_id);
        if (s.last_commit_seq !== b.seq || s.staged_rows !== 0 || s.replaying_rows !== 0) return false;
        return projectionsCaughtUp(nc!, readStore!);
      },
      { timeoutMs: 30_000, intervalMs: 250, message: 'every change delivered, replayed and folded' },
    );
    const view = await lineage(cloud.base, lineage_id);
    const domain = await rowsDomainState(nc, lineage_id);
    expect(view).toMatchObject({
      status: 'active',
      pause_reasons: [],
      staged_rows: 0,
      replaying_rows: 0,
      materialized_rows: domain.materialized_rows,
      last_commit_seq: domain.last_commit_seq,
    });
    expect(await stagedTotal(cloud.base, lineage_id)).toBe(0);

    const mirror = await mirrorRows(cloud.base, lineage_id);
    const want = app.prepare('SELECT id, item, qty FROM orders ORDER BY id').all();
    expect(mirror.map((m) => m.row)).toEqual(want);
    // Each change was written to the mirror once in the end: a row that failed and was replayed
    // counts once, not once per attempt.
    expect({ materialized_rows: domain.materialized_rows }).toEqual({
      materialized_rows: domain.last_commit_seq,
    });
    console.log(
      `[circuit-breaker] opened after ${writes} failing batches; ${WHILE_OPEN} held; ` +
        `${want.length} rows mirrored in ${Date.now() - t0} ms`,
    );
  });
});
