import type { FastifyInstance } from 'fastify';
import { ApiError } from './errors';

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * JSON bodies are decoded as strict UTF-8: Fastify's own parser decodes with replacement
 * characters, so malformed bytes would be stored as U+FFFD and nobody would know they were lost.
 * Everything else (empty body, bad JSON, `__proto__` / `constructor` poisoning) is Fastify's
 * parser unchanged.
 */
export function registerStrictJsonParser(app: FastifyInstance): void {
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (req, body, done) => {
    let text: string;
    try {
      text = strictUtf8.decode(body as Buffer);
    } catch {
      done(
        new ApiError(
          400,
          'invalid_utf8',
          'the request body is not valid UTF-8; nothing was changed: send the JSON encoded as UTF-8',
        ),
        undefined,
      );
      return;
    }
    parseJson(req, text, done);
  });
}
