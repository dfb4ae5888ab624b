import { logRows } from '../testing/mirror';
import { generateKeyPairSync } from 'node:crypto';
import http from 'node:http';
import { join } from 'node:path';
import type Database from 'better-sqlite3';
import mqtt, { type MqttClient } from 'mqtt';
import { uuidv7 } from 'uuidv7';
import { DecompressStream } from 'zstd-napi';
import { startNats, type NatsServer } from '../../tests/support/nats';
import { tempDir } from '../../tests/support/proc';
import { waitFor } from '../../tests/support/wait';
import { signControl } from '../control/signature';
import { silentLogger } from '../../infra/log';
import { type AgentHandle, startAgent } from '../main';
import { createAppDb, writeTestConfig } from '../testing/fixtures';

type Request = {
  request_kind: 'url_request' | 'finalize';
  request_id: string;
  upload_id: string;
  journal_epoch: string;
  first_commit_seq: number;
  last_commit_seq: number;
  row_count: number;
  schema_hash: string;
};

/** A stand-in upload endpoint: counts the JSONL lines of each zstd PUT and answers 201. */
function uploadServer() {
  const puts: { path: string; lines: number; seqs: number[] }[] = [];
  const server = http.createServer((req, res) => {
    const z = new DecompressStream();
    let text = '';
    z.on('data', (b: Buffer) => (text += b.toString('utf8')));
    z.on('end', () => {
      const lines = text.split('\n').filter((l) => l.length > 0);
      puts.push({
        path: req.url ?? '',
        lines: lines.length,
        seqs: lines.map((l) => (JSON.parse(l) as { commit_seq: number }).commit_seq),
      });
      res.writeHead(201, { 'content-type': 'application/json' }).end('{"already_stored":false}');
    });
    z.on('error', () => res.writeHead(400).end('{"code":"upload_invalid_zstd"}'));
    req.pipe(z);
  });
  return { server, puts };
}

describe('agent upload client', () => {
  let nats: NatsServer;
  let cloud: MqttClient;
  let agent: AgentHandle | undefined;
  let app: Database.Database;
  let httpBase: string;
  const up = uploadServer();
  const requests: Request[] = [];
  const acks: string[] = [];
  const root = 'acme/up-1';
  const keys = generateKeyPairSync('ed25519');
  const otherKeys = generateKeyPairSync('ed25519');

  beforeAll(async () => {
    nats = await startNats();
    await new Promise<void>((r) => up.server.listen(0, '127.0.0.1', r));
    httpBase = `http://127.0.0.1:${(up.server.address() as { port: number }).port}`;
    cloud = await mqtt.connectAsync(nats.mqttUrl, { clientId: `cloud-${process.pid}`, protocolVersion: 4 });
    cloud.on('message', (topic, payload) => {
      const body = JSON.parse(payload.toString()) as Request & { control_id: string };
      if (topic.endsWith('/sync/ingest/request')) requests.push(body);
      if (topic.endsWith('/sync/ingest/ack')) acks.push(body.control_id);
    });
    await cloud.subscribeAsync([`${root}/sync/ingest/request`, `${root}/sync/ingest/ack`], { qos: 1 });
  });
  afterAll(async () => {
    await agent?.stop();
    app?.close();
    await cloud?.endAsync();
    await new Promise((r) => up.server.close(r));
    await nats?.stop();
  });

  it('refuses unsigned, forged and expired url_grants; a signed one gets a streamed PUT and a finalize', async () => {
    const dir = tempDir('upload-agent');
    app = createAppDb(
      join(dir, 'app.db'),
      'CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, qty REAL);',
    );
    const insert = app.prepare('INSERT INTO items (id, name, qty) VALUES (?, ?, ?)');
    app.transaction(() => {
      for (let i = 1; i <= 6000; i++) insert.run(i, `item ${i} ünïcødé`, i / 7);
    })();
    const { config } = writeTestConfig({
      dir,
      serverUrl: nats.mqttUrl,
      deviceId: 'up-1',
      sourceDb: join(dir, 'app.db'),
      extraReplication: 'snapshot_on_first_run: true',
      security: [
        'security:',
        '  signed_control:',
        '    enabled: true',
        `    public_key: ${JSON.stringify(keys.publicKey.export({ type: 'spki', format: 'pem' }).toString())}`,
      ].join('\n'),
    });
    agent = await startAgent(config, { logger: silentLogger() });

    const first = await waitFor(() => requests.find((r) => r.request_kind === 'url_request'), {
      message: 'a url_request for the snapshot',
    });
    expect(first).toMatchObject({ first_commit_seq: 1, last_commit_seq: 6000, row_count: 6000 });
    expect(agent.stats().tables.items?.upload).toMatchObject({ status: 'requesting', rows: 6000 });

    const grant = (extra: Record<string, unknown> = {}) => ({
      control_id: uuidv7(),
      control_kind: 'url_grant',
      source_table: 'items',
      server_watermark: 0,
      reason: `upload ${first.upload_id}`,
      issued_at: new Date().toISOString(),
      upload_id: first.upload_id,
      root_topic: root,
      presigned_url: `${httpBase}/core/api/v1/uploads/${first.upload_id}?token=t`,
      presigned_url_expires_at: new Date(Date.now() + 15 * 60_000).toISOString(),
      ...extra,
    });
    const send = (c: unknown) =>
      cloud.publishAsync(`${root}/sync/ingest/control`, JSON.stringify(c), { qos: 1 });

    // Unsigned, and signed by someone else: dropped without ACK, no PUT.
    const unsigned = grant();
    const forged = signControl(grant(), otherKeys.privateKey);
    const tampered = { ...signControl(grant(), keys.privateKey), presigned_url: 'http://evil.example/x' };
    await send(unsigned);
    await send(forged);
    await send(tampered);
    await waitFor(() => agent!.stats().controls.rejected >= 3, { message: 'three grants dropped' });
    expect(acks).not.toContain(unsigned.control_id);
    expect(acks).not.toContain(forged.control_id);
    expect(acks).not.toContain(tampered.control_id);
    expect(up.puts).toHaveLength(0);

    // Signed but expired: ACKed (a valid control), not used; the agent asks again.
    const before = requests.length;
    const expired = signControl(
      grant({ presigned_url_expires_at: new Date(Date.now() - 1000).toISOString() }),
      keys.privateKey,
    );
    await send(expired);
    await waitFor(() => acks.includes(expired.control_id), { message: 'expired grant ACKed' });
    await waitFor(() => requests.slice(before).some((r) => r.request_kind === 'url_request'), {
      message: 'a new url_request after the expired grant',
    });
    expect(up.puts).toHaveLength(0);

    // A good grant: one PUT of every snapshot row in commit order, then the finalize.
    await send(signControl(grant(), keys.privateKey));
    const put = await waitFor(() => up.puts[0], { timeoutMs: 30_000, message: 'the PUT' });
    expect(put.path).toBe(`/core/api/v1/uploads/${first.upload_id}?token=t`);
    expect(put.lines).toBe(6000);
    expect(put.seqs).toEqual(Array.from({ length: 6000 }, (_, i) => i + 1));
    const fin = await waitFor(() => requests.find((r) => r.request_kind === 'finalize'), {
      message: 'finalize',
    });
    expect(fin).toMatchObject({ upload_id: first.upload_id, first_commit_seq: 1, last_commit_seq: 6000 });

    // Journal rows stay until the finalize's receipt; then the cursor moves past the upload.
    const journaled = () => logRows(app, 'items');
    expect(journaled()).toBe(6000);

    // A restart before the receipt picks the upload up at its step: the same finalize again, no new PUT.
    await agent.stop();
    const finalizes = () => requests.filter((r) => r.request_kind === 'finalize');
    const seen = finalizes().length;
    agent = await startAgent(config, { logger: silentLogger() });
    await waitFor(() => finalizes().length > seen, { message: 'the finalize re-sent after the restart' });
    expect(new Set(finalizes().map((r) => r.request_id))).toEqual(new Set([fin.request_id]));
    expect(agent.stats().tables.items?.upload).toMatchObject({
      upload_id: first.upload_id,
      status: 'finalizing',
    });
    await cloud.publishAsync(
      `${root}/sync/ingest/receipt`,
      JSON.stringify({
        format_version: 1,
        batch_id: first.upload_id,
        source_table: 'items',
        journal_epoch: fin.journal_epoch,
        last_commit_seq: 6000,
      }),
      { qos: 1 },
    );
    await waitFor(() => agent!.stats().tables.items?.confirmed_seq === 6000, { message: 'upload confirmed' });
    // Every confirmed entry goes but the one holding the largest commit_seq (never reused).
    await waitFor(() => journaled() === 1, { message: 'journal rows deleted' });
    expect(agent.stats().tables.items?.upload).toBeUndefined();
    expect(up.puts).toHaveLength(1);
  });

  it('after a retention gap, uploads what the journal kept plus a resync snapshot of the current rows', async () => {
    const dir = tempDir('upload-gap');
    const gapApp = createAppDb(
      join(dir, 'app.db'),
      'CREATE TABLE readings (id INTEGER PRIMARY KEY, v TEXT);',
    );
    const gapRoot = 'acme/up-gap';
    await cloud.subscribeAsync([`${gapRoot}/sync/ingest/request`, `${gapRoot}/sync/ingest/ack`], { qos: 1 });
    const { config } = writeTestConfig({
      dir,
      serverUrl: nats.mqttUrl,
      deviceId: 'up-gap',
      sourceDb: join(dir, 'app.db'),
      extraReplication: 'local_retention_bytes: 64KiB\ndelivery: puback',
      security: [
        'security:',
        '  signed_control:',
        '    enabled: true',
        `    public_key: ${JSON.stringify(keys.publicKey.export({ type: 'spki', format: 'pem' }).toString())}`,
      ].join('\n'),
    });
    const gapAgent = await startAgent(config, { logger: silentLogger() });
    const send = (c: Record<string, unknown>) =>
      cloud.publishAsync(`${gapRoot}/sync/ingest/control`, JSON.stringify(signControl(c, keys.privateKey)), {
        qos: 1,
      });
    const ctl = (kind: string) => ({
      control_id: uuidv7(),
      control_kind: kind,
      source_table: 'readings',
      server_watermark: 0,
      issued_at: new Date().toISOString(),
      root_topic: gapRoot,
    });
    try {
      await waitFor(() => gapAgent.stats().connected && gapAgent.stats().tables.readings, {
        message: 'agent up',
      });
      await send(ctl('pause_lineage'));
      await waitFor(() => gapAgent.stats().tables.readings?.paused, { message: 'paused' });
      const ins = gapApp.prepare('INSERT INTO readings (id, v) VALUES (?, ?)');
      gapApp.transaction(() => {
        for (let i = 1; i <= 5000; i++) ins.run(i, 'x'.repeat(100)); // ~130 KiB of change log (keys only)
      })();
      await waitFor(() => gapAgent.stats().dropped_rows > 0, { message: 'retention enforced' });
      const kept = gapAgent.stats().tables.readings!.pending_rows;
      const epoch = gapAgent.stats().tables.readings!.journal_epoch!;
      expect(kept).toBeLessThan(5000);

      await send(ctl('resume_lineage'));
      const req = await waitFor(
        () => requests.find((r) => r.request_kind === 'url_request' && r.journal_epoch === epoch),
        { message: 'a url_request after the gap' },
      );
      // The kept changes (commit_seq 1..kept of the new epoch), then every current row again.
      expect(req).toMatchObject({
        first_commit_seq: 1,
        last_commit_seq: kept + 5000,
        row_count: kept + 5000,
      });
      const puts = up.puts.length;
      await send({
        ...ctl('url_grant'),
        upload_id: req.upload_id,
        presigned_url: `${httpBase}/core/api/v1/uploads/${req.upload_id}?token=t`,
        presigned_url_expires_at: new Date(Date.now() + 15 * 60_000).toISOString(),
      });
      const put = await waitFor(() => up.puts[puts], { timeoutMs: 30_000, message: 'the PUT after the gap' });
      expect(put.lines).toBe(kept + 5000);
      expect(put.seqs.at(-1)).toBe(kept + 5000);
    } finally {
      await gapAgent.stop();
      gapApp.close();
    }
  });
});
