/**
 * The operator console (console/, docs/console.md): a static single-page app served at /console,
 * plus the session route it signs in with. The files need no token; every data call the app makes
 * goes to the JSON API with the operator's bearer token, which the API checks as for any client.
 */
import fastifyStatic from '@fastify/static';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { existsSync } from 'node:fs';
import { dirname, extname, join } from 'node:path';
import type { TokenBook } from './auth/tokens';
import { registerSessionRoute } from './routes/session';

/**
 * Nothing but the API itself: the app loads no script, style or font from elsewhere, and its
 * bearer token (sessionStorage) is not readable by a page that cannot inject script here.
 * uPlot styles its canvas with style attributes, hence 'unsafe-inline' for styles only.
 */
const CSP =
  "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; " +
  "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/** The repository (or installed package) root: the nearest directory above with a package.json. */
function packageRoot(from: string): string {
  let dir = from;
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) return from;
    dir = up;
  }
  return dir;
}

export const CONSOLE_DIST = join(packageRoot(__dirname), 'console', 'dist');

export async function registerConsole(
  app: FastifyInstance,
  deps: Readonly<{ tokens: TokenBook; consoleDir?: string }>,
): Promise<void> {
  const root = deps.consoleDir ?? CONSOLE_DIST;
  await registerSessionRoute(app, deps);
  await app.register(async (scope) => {
    // serve: false: the routes below decide what a path means (a file, or the app's index).
    await scope.register(fastifyStatic, { root, serve: false, suppressWarning: true });

    const send = (reply: FastifyReply, file: string) => {
      if (!existsSync(join(root, 'index.html'))) {
        return reply
          .status(503)
          .type('text/plain; charset=utf-8')
          .send(
            `The operator console is not built (no ${root}/index.html). ` +
              'Run `npm run build` (or `make build`) in the Sluice directory, then reload this page.\n',
          );
      }
      // Asset names do not change between builds: always revalidate (ETag/Last-Modified).
      reply
        .header('content-security-policy', CSP)
        .header('x-content-type-options', 'nosniff')
        .header('cache-control', 'no-cache');
      return reply.sendFile(file, { cacheControl: false });
    };

    scope.get('/console', { schema: { hide: true } }, (_req, reply) => send(reply, 'index.html'));
    scope.get<{ Params: { '*': string } }>('/console/*', { schema: { hide: true } }, (req, reply) => {
      const path = req.params['*'];
      // A path with a file extension is an asset (404 when absent); anything else is a client route.
      return send(reply, path && extname(path) ? path : 'index.html');
    });
  });
}
