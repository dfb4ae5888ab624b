import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';

export const MANAGE = 'PROJECT_CAN_MANAGE_DEVICES';
export const READ = 'PROJECT_CAN_READ_DEVICES';

const tokenSchema = z.object({
  token: z.string().min(16, 'tokens must be at least 16 characters'),
  project_id: z.string().uuid(),
  permissions: z.array(z.enum([READ, MANAGE])).default([READ]),
  name: z.string().optional(),
});
export type TokenGrant = Readonly<{ project_id: string; permissions: readonly string[]; name: string }>;

const digest = (s: string) => createHash('sha256').update(s).digest();

/** Bearer tokens, kept only as SHA-256 digests and compared in constant time. */
export class TokenBook {
  private readonly grants: { digest: Buffer; grant: TokenGrant }[];

  constructor(entries: readonly z.input<typeof tokenSchema>[]) {
    this.grants = entries.map((raw, i) => {
      const e = tokenSchema.parse(raw);
      return {
        digest: digest(e.token),
        grant: { project_id: e.project_id, permissions: e.permissions, name: e.name ?? `token-${i + 1}` },
      };
    });
  }

  static fromSources(opts: { json?: string; file?: string }): TokenBook {
    const entries: unknown[] = [];
    if (opts.file) entries.push(...z.array(z.unknown()).parse(parseYaml(readFileSync(opts.file, 'utf8'))));
    if (opts.json) entries.push(...z.array(z.unknown()).parse(JSON.parse(opts.json)));
    return new TokenBook(entries as z.input<typeof tokenSchema>[]);
  }

  lookup(token: string): TokenGrant | undefined {
    const d = digest(token);
    let found: TokenGrant | undefined;
    for (const g of this.grants) if (timingSafeEqual(g.digest, d)) found = g.grant;
    return found;
  }

  get size(): number {
    return this.grants.length;
  }
}
