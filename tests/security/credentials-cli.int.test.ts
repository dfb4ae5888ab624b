import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { runCli } from '../../cli/program';
import { captureIo as capture } from '../support/cli-io';
import mqtt from 'mqtt';
import { connect } from '@nats-io/transport-node';
import { emptyStore } from '../../infra/security/credentials';
import { tempDir } from '../support/proc';
import { startSecureMosquitto, startSecureNats } from '../support/secure-brokers';

describe('sluice devices credentials', () => {
  it('issues a password once, keeps only hashes, renders the broker files and revokes', async () => {
    const dir = tempDir('creds');
    const store = join(dir, 'credentials.json');
    const out = join(dir, 'broker');
    const io = capture();
    const r = await runCli(
      ['devices', 'credentials', 'issue', 'acme/gw-01', '--store', store, '--out', out, '--json'],
      io,
    );
    expect(r.code).toBe(0);
    const issued = JSON.parse(io.stdout()) as { username: string; password: string };
    expect(issued.username).toBe('acme/gw-01');
    expect(issued.password.length).toBeGreaterThanOrEqual(32);
    const saved = readFileSync(store, 'utf8');
    expect(saved).toContain('acme/gw-01');
    expect(saved).not.toContain(issued.password);
    expect(statSync(store).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(out, 'auth.conf'), 'utf8')).toContain('"acme.gw-01.sync.rows.batch"');
    expect(readFileSync(join(out, 'mosquitto.passwd'), 'utf8')).toMatch(/^acme\/gw-01:\$7\$/m);
    expect(statSync(join(out, 'mosquitto.passwd')).mode & 0o777).toBe(0o600);

    expect(
      (await runCli(['devices', 'credentials', 'issue', '--service', 'bridge', '--store', store], capture()))
        .code,
    ).toBe(0);
    const bad = capture();
    expect((await runCli(['devices', 'credentials', 'issue', 'acme/*', '--store', store], bad)).code).toBe(2);
    expect(bad.stderr()).toMatch(/may hold only letters, digits/);

    const ls = capture();
    await runCli(['devices', 'credentials', 'list', '--store', store, '--json'], ls);
    expect(
      (JSON.parse(ls.stdout()) as { items: { username: string }[] }).items.map((i) => i.username),
    ).toEqual(['sluice-bridge', 'acme/gw-01']);

    expect(
      (
        await runCli(
          ['devices', 'credentials', 'revoke', 'acme/gw-01', '--store', store, '--out', out],
          capture(),
        )
      ).code,
    ).toBe(0);
    expect(readFileSync(join(out, 'auth.conf'), 'utf8')).not.toContain('acme/gw-01');
    expect(
      (await runCli(['devices', 'credentials', 'revoke', 'acme/gw-01', '--store', store], capture())).code,
    ).toBe(3);
  });

  it('keeps both brokers closed to anonymous clients before any credential is issued', async () => {
    const nats = await startSecureNats(emptyStore());
    const mosq = await startSecureMosquitto(emptyStore());
    try {
      await expect(connect({ servers: nats.natsUrl, maxReconnectAttempts: 0 })).rejects.toThrow(
        /authorization/i,
      );
      for (const url of [nats.mqttUrl, mosq.mqttUrl]) {
        await expect(
          mqtt.connectAsync(url, {
            clientId: `anon-${Math.random()}`,
            protocolVersion: 4,
            reconnectPeriod: 0,
          }),
        ).rejects.toThrow(/authori[sz]ed/i);
      }
    } finally {
      await nats.stop();
      await mosq.stop();
    }
  });
});
