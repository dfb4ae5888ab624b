import { generateKeyPairSync } from 'node:crypto';
import fc from 'fast-check';
import { join } from 'node:path';
import type Database from 'better-sqlite3';
import { uuidv7 } from 'uuidv7';
import { type AgentHandle, startAgent } from '../../edge-agent/main';
import { silentLogger } from '../../infra/log';
import { signControl } from '../../edge-agent/control/signature';
import { FakeCloud } from '../../edge-agent/testing/fake-cloud';
import { createAppDb, writeTestConfig } from '../../edge-agent/testing/fixtures';
import type { AgentConfig } from '../../edge-agent/config/load';
import { startNats, type NatsServer } from '../support/nats';
import { tempDir } from '../support/proc';
import { waitFor } from '../support/wait';
import { FUZZ_RUNS, hostileJson } from '../support/fuzz';
import { verifyControl } from '../../edge-agent/control/signature';

/**
 * Replay protection of the agent (docs/security.md): seen ids persisted in state.db, per-table
 * ordering of pause/resume by (issued_at, control_id), the device's root inside the signature,
 * and cloud_version per key for state_write. Controls on one session are handled in arrival
 * order, so once a later control is ACKed, an earlier one has been handled.
 */
const cloudKey = generateKeyPairSync('ed25519');
const pem = cloudKey.publicKey.export({ type: 'spki', format: 'pem' }).toString();
const security = `security:\n  signed_control:\n    enabled: true\n    public_key: |\n${pem
  .trim()
  .split('\n')
  .map((l) => `      ${l}`)
  .join('\n')}\n`;

let nats: NatsServer;
beforeAll(async () => {
  nats = await startNats();
});
afterAll(async () => {
  await nats?.stop();
});

type Ctx = {
  app: Database.Database;
  cloud: FakeCloud;
  agent: AgentHandle;
  root: string;
  config: AgentConfig;
};

async function setup(device: string): Promise<Ctx> {
  const dir = tempDir('replay');
  const app = createAppDb(join(dir, 'app.db'));
  const cloud = await FakeCloud.connect(nats.mqttUrl);
  const { config, root } = writeTestConfig({
    dir,
    serverUrl: nats.mqttUrl,
    deviceId: device,
    sourceDb: join(dir, 'app.db'),
    security,
  });
  const agent = await startAgent(config, { logger: silentLogger() });
  await waitFor(() => agent.stats().connected, { message: 'agent connected' });
  return { app, cloud, agent, root, config };
}

const at = (ms: number) => new Date(Date.UTC(2026, 0, 1) + ms).toISOString();
const signed = (
  root: string,
  kind: string,
  table: string,
  issuedMs: number,
  extra: Record<string, unknown> = {},
) =>
  signControl(
    {
      control_id: uuidv7(),
      control_kind: kind,
      source_table: table,
      issued_at: at(issuedMs),
      root_topic: root,
      ...extra,
    },
    cloudKey.privateKey,
  );
const acksOf = (c: Ctx, id: string) => c.cloud.acks.filter((a) => a === id).length;
const paused = (c: Ctx, table = 'device_state') => c.agent.stats().tables[table]?.paused;

/** A harmless signed control: once its ACK is back, everything sent before it was handled. */
async function barrier(c: Ctx): Promise<void> {
  const b = signed(c.root, 'url_grant', 'order_events', 0);
  await c.cloud.sendControl(c.root, b);
  await waitFor(() => acksOf(c, b.control_id) === 1, { message: 'barrier control ACKed' });
}

describe('replayed and late controls', () => {
  it('re-ACKs a replayed pause without acting, and ACKs but ignores a pause older than the last resume', async () => {
    let c: Ctx | undefined;
    try {
      c = await setup('dev-replay');
      const pause = signed(c.root, 'pause_lineage', 'device_state', 1_000, { server_watermark: 0 });
      const withheld = signed(c.root, 'pause_lineage', 'device_state', 1_500, { server_watermark: 0 });
      const resume = signed(c.root, 'resume_lineage', 'device_state', 2_000, { server_watermark: 0 });
      await c.cloud.sendControl(c.root, pause);
      await waitFor(() => acksOf(c!, pause.control_id) === 1 && paused(c!), { message: 'paused' });
      await c.cloud.sendControl(c.root, resume);
      await waitFor(() => acksOf(c!, resume.control_id) === 1 && paused(c!) === false, {
        message: 'resumed',
      });

      // The old pause, byte for byte, later: ACKed again (the cloud may be redelivering), not obeyed.
      await c.cloud.sendControl(c.root, pause);
      await waitFor(() => acksOf(c!, pause.control_id) === 2, { message: 'replay re-ACKed' });
      expect(paused(c)).toBe(false);
      // A pause the device never saw, issued before the resume it already obeyed: stale.
      await c.cloud.sendControl(c.root, withheld);
      await waitFor(() => acksOf(c!, withheld.control_id) === 1, { message: 'stale pause ACKed' });
      expect(paused(c)).toBe(false);
      expect(c.agent.stats().controls).toMatchObject({ applied: 2, stale: 1 });
      // Ordering is per table: an older control of another table still acts.
      const other = signed(c.root, 'pause_lineage', 'order_events', 500, { server_watermark: 0 });
      await c.cloud.sendControl(c.root, other);
      await waitFor(() => paused(c!, 'order_events'), { message: 'other table paused' });

      // After a restart on the same state.db, nothing old acts either.
      await c.agent.stop();
      c.agent = await startAgent(c.config, { logger: silentLogger() });
      await waitFor(() => c!.agent.stats().connected, { message: 'agent reconnected' });
      for (const old of [pause, withheld]) await c.cloud.sendControl(c.root, old);
      await barrier(c);
      expect(paused(c)).toBe(false);
      expect(acksOf(c, pause.control_id)).toBe(3);
      expect(c.agent.stats().controls.applied).toBe(1); // the barrier, this run
      // A newer pause still works.
      const next = signed(c.root, 'pause_lineage', 'device_state', 3_000, { server_watermark: 0 });
      await c.cloud.sendControl(c.root, next);
      await waitFor(() => paused(c!), { message: 'newer pause obeyed' });
    } finally {
      await c?.agent.stop();
      await c?.cloud.close();
      c?.app.close();
    }
  });

  it('drops, without ACK, a validly signed control of another device and one that names no device', async () => {
    let c: Ctx | undefined;
    try {
      c = await setup('dev-target');
      const elsewhere = signed('acme/someone-else', 'pause_lineage', 'device_state', 1_000, {
        server_watermark: 0,
      });
      const { root_topic: _r, ...unaddressed } = signed(c.root, 'pause_lineage', 'device_state', 1_000);
      const anonymous = signControl(unaddressed, cloudKey.privateKey);
      const redirected = {
        ...signed('acme/someone-else', 'pause_lineage', 'device_state', 1_000),
        root_topic: c.root,
      };
      for (const x of [elsewhere, anonymous, redirected]) await c.cloud.sendControl(c.root, x);
      await barrier(c);
      expect(paused(c)).toBe(false);
      expect(c.cloud.acks).toHaveLength(1); // the barrier only
      expect(c.agent.stats().controls.rejected).toBe(3);
    } finally {
      await c?.agent.stop();
      await c?.cloud.close();
      c?.app.close();
    }
  });

  it('never rolls a row back with a late state_write', async () => {
    let c: Ctx | undefined;
    try {
      c = await setup('dev-sw-replay');
      const v5 = signed(c.root, 'state_write', 'device_state', 2_000, {
        rows: [{ pk: { id: 1 }, values: { mode: 'v5' }, cloud_version: 5 }],
      });
      const v3 = signed(c.root, 'state_write', 'device_state', 1_000, {
        rows: [
          { pk: { id: 1 }, values: { mode: 'v3' }, cloud_version: 3 },
          { pk: { id: 2 }, values: { mode: 'new' }, cloud_version: 3 },
        ],
      });
      await c.cloud.sendControl(c.root, v5);
      await waitFor(() => acksOf(c!, v5.control_id) === 1 && c!.agent.stats().controls.applied === 1);
      await c.cloud.sendControl(c.root, v3);
      await waitFor(() => acksOf(c!, v3.control_id) === 1 && c!.agent.stats().controls.applied === 2);
      const mode = (id: number) =>
        c!.app.prepare('SELECT mode FROM device_state WHERE id = ?').pluck().get(id);
      expect(mode(1)).toBe('v5');
      expect(mode(2)).toBe('new'); // a key it had not seen is still written
    } finally {
      await c?.agent.stop();
      await c?.cloud.close();
      c?.app.close();
    }
  });

  it('survives generated hostile controls and receipts: nothing acted on, nothing confirmed, still obeying', async () => {
    let c: Ctx | undefined;
    try {
      c = await setup('dev-hostile-downlinks');
      c.cloud.receipts = false; // the journal stays unconfirmed: a forged receipt would show
      const ins = c.app.prepare("INSERT INTO device_state (mode) VALUES ('m')");
      for (let i = 0; i < 5; i++) ins.run();
      await waitFor(() => c!.cloud.distinctCount('device_state') === 5, { message: 'rows sent' });
      const root = c.root;
      const genuine = signed(root, 'pause_lineage', 'device_state', 1_000, { server_watermark: 5 });
      const n = Math.min(FUZZ_RUNS, 300);
      const mutated = fc
        .tuple(fc.constantFrom(...Object.keys(genuine)), hostileJson)
        .map(([k, v]) => ({ ...genuine, [k]: v }))
        .filter((m) => !verifyControl(m, cloudKey.publicKey));
      const controls = fc.sample(
        fc.oneof(
          mutated.map((m) => JSON.stringify(m)),
          hostileJson.map((v) => JSON.stringify(v) ?? ''),
          fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b).toString('latin1')),
        ),
        n,
      );
      const receipts = fc.sample(
        fc.oneof(
          fc
            .record({
              format_version: fc.constant(1),
              batch_id: fc.uuid({ version: 7 }),
              source_table: fc.constantFrom('device_state', 'order_events', 'nope'),
              last_commit_seq: fc.nat(),
              journal_epoch: fc.uuid({ version: 7 }),
            })
            .map((r) => JSON.stringify(r)),
          hostileJson.map((v) => JSON.stringify(v) ?? ''),
        ),
        n,
      );
      for (let i = 0; i < n; i++) {
        await c.cloud.publishRaw(`${root}/sync/ingest/control`, controls[i]!);
        await c.cloud.publishRaw(`${root}/sync/ingest/receipt`, receipts[i]!);
      }
      await barrier(c);
      expect(c.agent.stats().connected).toBe(true);
      expect(c.cloud.acks).toHaveLength(1); // the barrier only
      expect(c.agent.stats().controls).toMatchObject({ received: n + 1, rejected: n, applied: 1 });
      expect(paused(c)).toBe(false);
      expect(c.agent.stats().tables.device_state?.confirmed_seq).toBe(0);
      // And it still obeys the cloud.
      await c.cloud.sendControl(root, genuine);
      await waitFor(() => paused(c!), { message: 'genuine pause obeyed' });
    } finally {
      await c?.agent.stop();
      await c?.cloud.close();
      c?.app.close();
    }
  });
});
