import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { freePort, type Managed, startProcess, tempDir } from '../support/proc';
import { ROOT } from '../support/stack';
import { waitFor } from '../support/wait';

type Lineage = { device_name: string; source_table: string; status: string; staged_rows: number };

function httpsJson(url: string, token: string, ca: Buffer): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ca, headers: { authorization: `Bearer ${token}` } }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as unknown }));
    });
    req.on('error', reject);
    req.end();
  });
}

/**
 * `make run-secure` from a clean data directory (the launcher behind it, on free ports): a new CA,
 * certificates and secrets; the demo device connects with its certificate over mutual TLS, the
 * cloud roles over TLS, and its lineages are read over HTTPS with the printed token.
 */
describe('make run-secure', () => {
  let stack: Managed | undefined;
  afterAll(async () => {
    await stack?.stop();
  });

  it('brings up the TLS stack and the demo device, served over HTTPS only', async () => {
    const [nats, mqtt, api] = await Promise.all([freePort(), freePort(), freePort()]);
    const data = join(tempDir('make-run-secure'), 'data');
    stack = startProcess('bash', [join(ROOT, 'infra', 'dev', 'run-stack-secure.sh')], {
      env: {
        ...process.env,
        SLUICE_DATA_DIR: data,
        SLUICE_NATS_PORT: String(nats),
        SLUICE_MQTT_PORT: String(mqtt),
        SLUICE_API_PORT: String(api),
      },
      detached: true,
    });
    const banner = await waitFor(() => /Token\s+(\S+)/.exec(stack!.output()), {
      timeoutMs: 60_000,
      message: () => `the banner (${stack!.output().slice(-1000)})`,
    });
    const token = banner[1]!;
    const project = /Project\s+(\S+)/.exec(stack.output())![1]!;
    const ca = readFileSync(join(data, 'ca', 'ca.crt'));
    const url = `https://127.0.0.1:${api}/core/api/v1/projects/${project}/edge/lineages`;
    const lineages = await waitFor(
      async () => {
        const r = await httpsJson(url, token, ca);
        const demo = (r.body as { items: Lineage[] }).items.filter(
          (l) => l.device_name === 'demo-gw-01' && l.staged_rows > 0,
        );
        return demo.length === 2 ? demo : undefined;
      },
      { timeoutMs: 30_000, message: () => `demo lineages over HTTPS (${stack!.output().slice(-1000)})` },
    );
    expect(lineages.map((l) => l.source_table).sort()).toEqual(['device_state', 'order_events']);
    // Plain HTTP gets no answer from the API port.
    const plain = await fetch(`http://127.0.0.1:${api}/healthz`).then(
      (r) => r.status,
      () => 'refused',
    );
    expect(plain).not.toBe(200);
    // The device logged in with its certificate: the agent's config has no password.
    expect(readFileSync(join(data, 'demo', 'device.yaml'), 'utf8')).toContain('cert_env: SLUICE_TLS_CERT');
  });
});
