import { pbkdf2Sync } from 'node:crypto';
import bcrypt from 'bcryptjs';
import {
  checkDeviceRoot,
  emptyStore,
  issueDevice,
  issueService,
  mosquittoPasswordHash,
  natsSubjectOf,
  renderMosquittoPasswd,
  renderNatsAuth,
} from '../../infra/security/credentials';

describe('device roots for broker credentials', () => {
  it('accepts {slug}/{device} and /{device} of letters, digits, "_" and "-"', () => {
    for (const root of ['acme/gw-01', '/solo', 'Fleet_2/Gerät-7', 'a/b'])
      expect(checkDeviceRoot(root).ok).toBe(true);
  });

  it('refuses every name that is MQTT or NATS syntax, or would break a generated config', () => {
    const hostile = [
      'acme/+',
      'acme/#',
      '+/gw',
      '#',
      'acme/gw/extra',
      'acme',
      'acme/',
      '/',
      'acme/*', // NATS: one token of any device
      'acme/>', // NATS: everything below
      'acme/gw.01', // NATS: a subject separator
      'acme.x/gw',
      'acme/gw 01',
      'acme/gw\t01',
      'acme/gw\u000001',
      'acme/"gw"',
      "acme/gw'",
      'acme/gw\\',
      'acme/$SYS',
      '$MQTT/sub',
      'acme/gw\u2028',
      'acme/' + 'x'.repeat(65),
      'sluice-bridge',
      'sluice-nobody',
    ];
    for (const root of hostile) expect([root, checkDeviceRoot(root).ok]).toEqual([root, false]);
    expect(() => issueDevice(emptyStore(), 'acme/*', { bcryptCost: 4 })).toThrow(
      /no credentials were issued/,
    );
  });

  it('maps topics to NATS subjects as the MQTT listener does', () => {
    expect(natsSubjectOf('acme/gw-01/sync/rows/batch')).toBe('acme.gw-01.sync.rows.batch');
    expect(natsSubjectOf('/solo/sync/ingest/control')).toBe('/.solo.sync.ingest.control');
  });
});

describe('rendered broker files', () => {
  const issued = issueDevice(emptyStore(), 'acme/gw-01', { bcryptCost: 4 });
  const withBridge = issueService(issued.store, 'bridge', { bcryptCost: 4 });
  const store = issueService(withBridge.store, 'cloud', { bcryptCost: 4 }).store;

  it('hold hashes that verify, never the password', () => {
    const nats = renderNatsAuth(store);
    const mosq = renderMosquittoPasswd(store);
    expect(nats).not.toContain(issued.password);
    expect(mosq).not.toContain(issued.password);
    const dev = store.devices[0]!;
    expect(bcrypt.compareSync(issued.password, dev.nats_password)).toBe(true);
    const [, , iter, salt, hash] = dev.mosquitto_password.split('$');
    const again = pbkdf2Sync(issued.password, Buffer.from(salt!, 'base64'), Number(iter), 64, 'sha512');
    expect(again.toString('base64')).toBe(hash);
    expect(mosquittoPasswordHash('x')).not.toBe(mosquittoPasswordHash('x')); // salted
  });

  it('grant a device its own subjects only, and the cloud user no MQTT', () => {
    const nats = renderNatsAuth(store);
    const device = nats.split('\n').filter((l) => l.includes('acme.gw-01') || l.includes('"acme/gw-01"'));
    expect(device.join('\n')).toContain('"acme.gw-01.sync.rows.batch"');
    expect(nats).not.toMatch(/"acme\.\*|"\*\.gw/);
    expect(nats).toMatch(/"sluice-cloud".*allowed_connection_types: \["STANDARD"\]/);
    expect(nats).toMatch(/"acme\/gw-01".*allowed_connection_types: \["MQTT"\]/);
    expect(
      renderMosquittoPasswd(store)
        .split('\n')
        .filter(Boolean)
        .map((l) => l.split(':')[0]),
    ).toEqual(['sluice-bridge', 'acme/gw-01']);
  });

  it('skip a store entry whose name could widen a permission (a hand-edited store)', () => {
    const tampered = {
      ...store,
      devices: [
        ...store.devices,
        { ...store.devices[0]!, username: 'acme/*' },
        { ...store.devices[0]!, username: '#/x' },
      ],
    };
    expect(renderNatsAuth(tampered)).not.toContain('acme/*');
    expect(renderMosquittoPasswd(tampered)).not.toContain('#/x');
  });
});
