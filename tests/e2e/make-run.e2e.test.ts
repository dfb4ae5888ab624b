import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort, type Managed, startProcess, tempDir } from '../support/proc';
import { ROOT } from '../support/stack';
import { waitFor } from '../support/wait';

type Lineage = {
  lineage_id: string;
  device_name: string;
  source_table: string;
  status: string;
  pause_reasons: string[];
  staged_rows: number;
};

/**
 * `make run` as a newcomer runs it (the launcher behind it, on free ports and a temp data dir):
 * within 30 s the printed token lists the demo device's lineages, paused for schema review, with
 * staged rows.
 */
describe('make run', () => {
  let stack: Managed | undefined;
  afterAll(async () => {
    await stack?.stop();
  });

  it('brings up the stack and the demo device within 30 s', async () => {
    const [nats, mqtt, api] = await Promise.all([freePort(), freePort(), freePort()]);
    stack = startProcess('bash', [join(ROOT, 'infra', 'dev', 'run-stack.sh')], {
      env: {
        ...process.env,
        SLUICE_DATA_DIR: join(tempDir('make-run'), 'data'),
        SLUICE_NATS_PORT: String(nats),
        SLUICE_MQTT_PORT: String(mqtt),
        SLUICE_API_PORT: String(api),
      },
      detached: true,
    });
    const banner = await waitFor(() => /Dev token\s+(\S+)/.exec(stack!.output()), {
      timeoutMs: 60_000,
      message: 'the banner',
    });
    const token = banner[1]!;
    const project = /Project\s+(\S+)/.exec(stack.output())![1]!;
    const lineages = await waitFor(
      async () => {
        const r = await fetch(`http://127.0.0.1:${api}/core/api/v1/projects/${project}/edge/lineages`, {
          headers: { authorization: `Bearer ${token}` },
        });
        const body = (await r.json()) as { items: Lineage[] };
        const demo = body.items.filter((l) => l.device_name === 'demo-gw-01' && l.staged_rows > 0);
        return demo.length === 2 ? demo : undefined;
      },
      {
        // The promise of `make run`: past 30 s from the banner, the wait fails the test.
        timeoutMs: 30_000,
        message: () => `demo lineages with staged rows (${stack!.output().slice(-1000)})`,
      },
    );
    expect(lineages.map((l) => l.source_table).sort()).toEqual(['device_state', 'order_events']);
    for (const l of lineages) expect(l).toMatchObject({ status: 'paused', pause_reasons: ['schema_review'] });

    // The banner's export lines are all the CLI needs, from any directory.
    const exports = Object.fromEntries(
      [...stack.output().matchAll(/(SLUICE_[A-Z_]+)=('[^']*'|\S+)/g)]
        .filter((m) => m[1] !== 'SLUICE_API_TOKENS')
        .map((m) => [m[1]!, m[2]!.replace(/^'|'$/g, '')]),
    );
    expect(exports).toMatchObject({ SLUICE_API_URL: `http://127.0.0.1:${api}`, SLUICE_TOKEN: token });
    const cliEnv = { PATH: process.env.PATH, HOME: process.env.HOME, ...exports };
    const sluice = (...args: string[]) =>
      promisify(execFile)(join(ROOT, 'bin', 'sluice'), args, { env: cliEnv, cwd: tempDir('elsewhere') });
    const listed = JSON.parse((await sluice('lineages', 'ls', '--json')).stdout) as { items: Lineage[] };
    // The CLI, on nothing but those exports, lists the very lineages the API showed.
    const ids = (ls: Lineage[]) => ls.map((l) => l.lineage_id).sort();
    expect(ids(listed.items.filter((l) => l.device_name === 'demo-gw-01'))).toEqual(ids(lineages));
    const status = await sluice('projections', 'status', '--json');
    expect(status.stderr).toContain(`NATS nats://127.0.0.1:${nats}`);
    expect(JSON.parse(status.stdout).projections.length).toBeGreaterThan(0);

    // Ctrl-C is the normal way to stop: exit 0, no error.
    process.kill(-stack.child.pid!, 'SIGINT');
    const code = await new Promise<number | null>((resolve) => {
      if (stack!.child.exitCode !== null) resolve(stack!.child.exitCode);
      else stack!.child.once('exit', (c) => resolve(c));
    });
    expect(code).toBe(0);
    expect(stack.output()).not.toContain('a process exited');
  });
});
