import Database from 'better-sqlite3';
import { generateKeyPairSync } from 'node:crypto';
import { join } from 'node:path';
import { EXIT } from '../../cli/client';
import { runCli } from '../../cli/program';
import { startNats, type NatsServer } from '../support/nats';
import { tempDir } from '../support/proc';
import {
  approveReview,
  controls,
  findLineage,
  mirrorRows,
  shutdown,
  waitForTriggers,
} from '../support/readside';
import {
  type AgentProcess,
  type CloudProcess,
  TEST_PROJECT,
  TEST_TOKEN,
  getJson,
  postJson,
  startAgentProcess,
  startCloudProcess,
} from '../support/stack';
import { waitFor } from '../support/wait';
import { wireOf, wireRows } from '../support/exact';

const DEVICE = 'gw-write-back';

type AuditItem = { seq: number; type: string; data: Record<string, unknown> };
type BatchRow = { commit_seq: number; op: string; pk: Record<string, unknown>; row: unknown; lkcv?: number };

/**
 * Cloud write-back end to end, with the real agent and every cloud role, signed controls on:
 * an operator makes the lineage cloud_authoritative and writes two rows through the API → the
 * domain versions them and the bridge sends a signed state_write → the agent changes the
 * device's SQLite rows → its next batch carries those keys with `lkcv` = their cloud_version →
 * the mirror converges to the cloud's rows, and the cloud rows read `applied`. A device change
 * made after that carries the version it saw and flows on (no conflict).
 */
describe('write-back end to end', () => {
  let nats: NatsServer | undefined;
  let cloud: CloudProcess | undefined;
  let agent: AgentProcess | undefined;
  let app: Database.Database | undefined;
  /** What the second test needs of the stack the first one built. */
  let shared:
    | {
        lineage_id: string;
        rowsUrl: string;
        launch: () => AgentProcess;
        audit: () => Promise<AuditItem[]>;
        mirrorEqualsDevice: () => Promise<unknown>;
        v1: number;
      }
    | undefined;

  afterAll(async () => {
    await shutdown(agent);
    await shutdown(cloud);
    app?.close();
    await nats?.stop();
  });

  it('API write → device row changed → next batch carries lkcv → mirror converges', async () => {
    const t0 = Date.now();
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    nats = await startNats();
    const dir = tempDir('write-back');
    cloud = await startCloudProcess({
      natsUrl: nats.url,
      mqttUrl: nats.mqttUrl,
      readStore: `sqlite:${join(dir, 'read.db')}`,
      env: { SLUICE_CONTROL_SIGNING_KEY: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() },
    });
    app = new Database(join(dir, 'app.db'));
    app.pragma('journal_mode = WAL');
    app.pragma('busy_timeout = 5000');
    app.exec('CREATE TABLE device_state (id INTEGER PRIMARY KEY, mode TEXT NOT NULL, setpoint REAL)');
    const launch = () =>
      startAgentProcess({
        mqttUrl: nats!.mqttUrl,
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
    agent = launch();
    await waitForTriggers(app, 'device_state');
    const insert = app.prepare('INSERT INTO device_state (id, mode, setpoint) VALUES (?, ?, ?)');
    for (let id = 1; id <= 3; id++) insert.run(id, 'idle', 18);

    const { lineage_id } = await findLineage(cloud.base, DEVICE, 'device_state');
    await approveReview(cloud.base, lineage_id);
    await waitFor(async () => (await mirrorRows(cloud!.base, lineage_id)).length === 3, {
      timeoutMs: 30_000,
      message: 'the three device rows in the mirror',
    });

    const rowsUrl = `${cloud.apiUrl}/core/api/v1/projects/${TEST_PROJECT}/devices/${DEVICE}/edge/state-tables/${lineage_id}/rows`;
    // The operator's side goes through the `sluice` CLI, against the real API.
    const cli = async (args: string[]) => {
      let stdout = '';
      let stderr = '';
      const { code } = await runCli(
        [...args, '--api', cloud!.apiUrl, '--token', TEST_TOKEN, '--project', TEST_PROJECT],
        {
          out: async (t) => {
            stdout += t;
          },
          err: (t) => {
            stderr += t;
          },
        },
      );
      return { code, stdout, stderr };
    };
    const refused = await cli([
      'rows',
      'write',
      lineage_id,
      '--row',
      '{"pk":{"id":2},"values":{"mode":"x"}}',
    ]);
    expect(refused.code).toBe(EXIT.conflict);
    expect(refused.stderr).toContain('device_authoritative');
    expect(refused.stderr).toContain('sluice lineages authority');
    const authority = await cli(['lineages', 'authority', lineage_id, 'cloud_authoritative']);
    expect(authority).toMatchObject({
      code: 0,
      stdout: expect.stringContaining('is now cloud_authoritative'),
    });

    // 1. The write.
    const written = await cli([
      'rows',
      'write',
      lineage_id,
      '--device',
      DEVICE,
      '--row',
      '{"pk":{"id":2},"values":{"mode":"cloud-cool","setpoint":19.5}}',
      '--row',
      '{"pk":{"id":10},"values":{"mode":"cloud-new"}}',
      '--json',
    ]);
    expect(written.code).toBe(0);
    const write = { body: JSON.parse(written.stdout) as { cloud_version: number; control_id: string } };
    const v1 = write.body.cloud_version; // the write's time in ms
    expect(v1).toBeGreaterThan(Date.parse('2026-01-01T00:00:00Z'));

    // 2. The device's SQLite rows change, and the agent ACKs the signed control.
    const deviceRow = (id: number) =>
      app!.prepare('SELECT id, mode, setpoint FROM device_state WHERE id = ?').get(id) as
        { id: number; mode: string; setpoint: number | null } | undefined;
    await waitFor(() => deviceRow(2)?.mode === 'cloud-cool' && deviceRow(10) !== undefined, {
      timeoutMs: 30_000,
      message: () => `state_write applied on the device (agent: ${agent!.output().slice(-1500)})`,
    });
    expect(deviceRow(2)).toEqual({ id: 2, mode: 'cloud-cool', setpoint: 19.5 });
    expect(deviceRow(10)).toEqual({ id: 10, mode: 'cloud-new', setpoint: null });
    expect(deviceRow(1)).toEqual({ id: 1, mode: 'idle', setpoint: 18 });
    await waitFor(
      async () =>
        (await controls(cloud!.base, lineage_id)).find(
          (c) => c.control_id === write.body.control_id && c.status === 'acknowledged',
        ),
      { timeoutMs: 30_000, message: 'state_write acknowledged' },
    );
    expect(agent.output()).toContain('"event":"state_write"');
    expect(agent.output()).not.toContain('control_dropped');

    // 3. The next batch carries those keys with lkcv = their cloud_version.
    const audit = async () =>
      (await getJson<{ items: AuditItem[] }>(`${cloud!.base}/lineages/${lineage_id}/events?limit=500`)).body
        .items;
    const confirmations = await waitFor(
      async () => {
        const rows = (await audit())
          .filter((e) => e.type === 'RowsAccepted')
          .flatMap((e) => e.data.rows as BatchRow[])
          .filter((r) => r.lkcv !== undefined);
        return rows.length >= 2 ? rows : undefined;
      },
      { timeoutMs: 30_000, message: 'a batch carrying lkcv' },
    ).catch(async (err: Error) => {
      const trail = JSON.stringify((await audit()).slice(-5));
      throw new Error(`${err.message}; last events: ${trail}; agent: ${agent!.output().slice(-3000)}`);
    });
    expect(confirmations).toEqual([
      expect.objectContaining({
        op: 'update',
        pk: { id: 2 },
        lkcv: v1,
        row: { id: 2, mode: 'cloud-cool', setpoint: 19.5 },
      }),
      expect.objectContaining({
        op: 'insert',
        pk: { id: 10 },
        lkcv: v1,
        row: { id: 10, mode: 'cloud-new', setpoint: null },
      }),
    ]);

    // 4. The mirror converges to the cloud's rows; the cloud rows read applied.
    const deviceTable = () => wireRows(app!, 'SELECT id, mode, setpoint FROM device_state ORDER BY id');
    const mirrorEqualsDevice = () =>
      waitFor(
        async () =>
          JSON.stringify((await mirrorRows(cloud!.base, lineage_id)).map((m) => wireOf(m.row))) ===
          JSON.stringify(deviceTable()),
        { timeoutMs: 30_000, message: 'mirror equal to the device table' },
      );
    await mirrorEqualsDevice();
    const cloudRows = await waitFor(
      async () => {
        const r = await getJson<{ items: { pk: unknown; status: string; cloud_version: number }[] }>(rowsUrl);
        return r.body.items.every((i) => i.status === 'applied') ? r.body.items : undefined;
      },
      { timeoutMs: 30_000, message: 'cloud rows applied' },
    );
    expect(cloudRows).toMatchObject([
      { pk: { id: 10 }, cloud_version: v1, status: 'applied' },
      { pk: { id: 2 }, cloud_version: v1, status: 'applied' },
    ]);

    const shown = await cli(['rows', 'cloud', lineage_id]);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toContain(`cloud_authoritative, last cloud_version ${v1}`);
    expect(shown.stdout).toMatch(new RegExp(`\\{"id":2\\}.*cloud-cool.*\\s${v1}\\s+applied\\s+${v1}\\s+0`));

    // 5. A device change after the write carries the version it saw and flows on.
    app.prepare('UPDATE device_state SET setpoint = 22 WHERE id = 2').run();
    await waitFor(
      async () =>
        // setpoint is a REAL column: 22 is stored as 22.0 and says so on the wire.
        JSON.stringify(
          (await mirrorRows(cloud!.base, lineage_id)).find((m) => m.key.id === 2)?.row.setpoint,
        ) === JSON.stringify({ $real: '22' }),
      { timeoutMs: 30_000, message: 'the device change after the write in the mirror' },
    );
    const trail = await audit();
    const last = trail
      .filter((e) => e.type === 'RowsAccepted')
      .flatMap((e) => e.data.rows as BatchRow[])
      .at(-1);
    expect(last).toMatchObject({ pk: { id: 2 }, lkcv: v1, row: { setpoint: { $real: '22' } } });
    expect(trail.map((e) => e.type)).not.toContain('StateWriteConflictDetected');
    expect(trail.map((e) => e.type)).toEqual(
      expect.arrayContaining([
        'LineageAuthoritySet',
        'CloudRowsWritten',
        'ControlIssued',
        'ControlAcknowledged',
      ]),
    );
    console.log(`[write-back] write → device → lkcv → mirror round trip done in ${Date.now() - t0} ms`);
    shared = { lineage_id, rowsUrl, launch, audit, mirrorEqualsDevice, v1 };
  });

  it('a change the device made before it received a write loses to the cloud row, visibly', async () => {
    const { lineage_id, rowsUrl, launch, audit, mirrorEqualsDevice, v1 } = shared!;
    // The device is offline: its application changes key 2, and the operator writes key 2.
    await shutdown(agent);
    app!.prepare("UPDATE device_state SET mode = 'device-offline' WHERE id = 2").run();
    const write = await postJson<{ cloud_version: number }>(rowsUrl, {
      rows: [{ pk: { id: 2 }, values: { mode: 'cloud-wins' } }],
    });
    expect(write.status).toBe(200);
    const v2 = write.body.cloud_version;
    expect(v2).toBeGreaterThan(v1);

    // Back online: the journaled change goes out with the version it was made under (v1), the
    // write is applied and confirmed with v2.
    agent = launch();
    const conflict = await waitFor(
      async () => (await audit()).find((e) => e.type === 'StateWriteConflictDetected'),
      { timeoutMs: 30_000, message: 'the conflict recorded' },
    );
    expect(conflict.data).toMatchObject({
      conflicts: [{ pk: { id: 2 }, op: 'update', lkcv: v1, cloud_version: v2 }],
    });
    await waitFor(
      () => app!.prepare('SELECT mode FROM device_state WHERE id = 2').pluck().get() === 'cloud-wins',
      {
        timeoutMs: 30_000,
        message: 'the cloud row on the device',
      },
    );
    await mirrorEqualsDevice();
    const mirrored = (await mirrorRows(cloud!.base, lineage_id)).find((m) => m.key.id === 2);
    expect(mirrored?.row).toMatchObject({ mode: 'cloud-wins' });
    // The stale change never reached the mirror.
    const accepted = (await audit())
      .filter((e) => e.type === 'RowsAccepted')
      .flatMap((e) => e.data.rows as BatchRow[]);
    expect(accepted.some((r) => (r.row as { mode?: string } | null)?.mode === 'device-offline')).toBe(false);
    const cloudRow = await waitFor(
      async () => {
        const r = await getJson<{ items: { pk: { id: number }; status: string; conflicts: number }[] }>(
          rowsUrl,
        );
        const row = r.body.items.find((i) => i.pk.id === 2);
        return row?.status === 'applied' ? row : undefined;
      },
      { timeoutMs: 30_000, message: 'cloud row 2 applied again' },
    );
    expect(cloudRow.conflicts).toBe(1);
  });
});
