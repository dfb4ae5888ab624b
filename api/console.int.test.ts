import Fastify, { type FastifyInstance } from 'fastify';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../tests/support/proc';
import { MANAGE, READ, TokenBook } from './auth/tokens';
import { registerConsole } from './console';
import { ApiError } from './errors';

const PROJECT = '0190a000-0000-7000-8000-00000000000c';
const tokens = new TokenBook([
  { token: 'console-operator-token-0001', project_id: PROJECT, permissions: [READ, MANAGE], name: 'ops' },
  { token: 'console-reader-token-00002', project_id: PROJECT, permissions: [READ], name: 'viewer' },
]);

async function serve(dir: string): Promise<FastifyInstance> {
  const app = Fastify();
  // As api/app.ts answers an ApiError.
  app.setErrorHandler((err, _req, reply) =>
    err instanceof ApiError
      ? reply.status(err.status).send({ code: err.code, message: err.message })
      : reply.send(err),
  );
  await registerConsole(app, { tokens, consoleDir: dir });
  await app.ready();
  return app;
}

describe('the console routes', () => {
  it('serve the app, its assets, and the app again for client routes', async () => {
    const dir = tempDir('console-dist');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'index.html'), '<div id="app"></div>');
    writeFileSync(join(dir, 'main.js'), 'console.log(1)');
    const app = await serve(dir);
    try {
      for (const url of ['/console', '/console/', '/console/lineages/x']) {
        const r = await app.inject({ url });
        expect({ url, status: r.statusCode, body: r.body }).toEqual({
          url,
          status: 200,
          body: '<div id="app"></div>',
        });
        expect(r.headers['content-security-policy']).toContain("default-src 'self'");
      }
      const js = await app.inject({ url: '/console/main.js' });
      expect(js.statusCode).toBe(200);
      expect(js.headers['content-type']).toMatch(/javascript/);
      expect((await app.inject({ url: '/console/missing.js' })).statusCode).toBe(404);
      expect((await app.inject({ url: '/console/..%2f..%2fpackage.json' })).statusCode).not.toBe(200);
    } finally {
      await app.close();
    }
  });

  it('answer 503 with what to do when the console is not built', async () => {
    const app = await serve(join(tempDir('console-none'), 'dist'));
    try {
      const r = await app.inject({ url: '/console' });
      expect(r.statusCode).toBe(503);
      expect(r.headers['content-type']).toMatch(/^text\/plain/);
      expect(r.body).toContain('npm run build');
    } finally {
      await app.close();
    }
  });

  it("tell a token's project and permissions, and refuse an unknown one", async () => {
    const app = await serve(tempDir('console-any'));
    try {
      const ask = (token?: string) =>
        app.inject({
          url: '/core/api/v1/session',
          headers: token ? { authorization: `Bearer ${token}` } : {},
        });
      expect((await ask('console-operator-token-0001')).json()).toEqual({
        name: 'ops',
        project_id: PROJECT,
        permissions: [READ, MANAGE],
        can_manage: true,
      });
      expect((await ask('console-reader-token-00002')).json()).toMatchObject({
        permissions: [READ],
        can_manage: false,
      });
      expect((await ask('not-a-token-of-this-book')).statusCode).toBe(401);
      expect((await ask()).statusCode).toBe(401);
    } finally {
      await app.close();
    }
  });
});
