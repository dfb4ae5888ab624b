/**
 * `sluice policy get|set`: the project's policy (backpressure, coalescing, circuit breaker,
 * verify schedule). HTTP API only, like every operator verb.
 */
import type { Command } from 'commander';
import type { Policy } from '../domain/policy/policy';
import { CliError, EXIT } from './client';
import { apiCommand, run } from './operator/common';
import { type Io, json } from './output';
import { fields } from './table';

/** `key=value` → a patch field; numbers and booleans are typed, anything else is a string. */
export function parseAssignment(arg: string): [string, unknown] {
  const eq = arg.indexOf('=');
  if (eq <= 0)
    throw new CliError(
      EXIT.usage,
      `expected key=value, got ${JSON.stringify(arg)}`,
      'e.g. circuit_breaker_threshold=10',
    );
  const key = arg.slice(0, eq);
  const raw = arg.slice(eq + 1);
  if (raw === 'true' || raw === 'false') return [key, raw === 'true'];
  if (raw !== '' && /^-?\d+(\.\d+)?$/.test(raw)) return [key, Number(raw)];
  return [key, raw];
}

export function registerPolicyCommands(program: Command, io: Io): void {
  const policy = program
    .command('policy')
    .description('the project’s policy: show it, or change some fields');
  apiCommand(policy, 'get', 'every field of the project’s policy').action(
    run(io, async (ctx) => {
      const p = await ctx.client.get<Policy>('/policy');
      await ctx.io.out(ctx.json ? json(p) : fields(Object.entries(p)));
    }),
  );
  apiCommand(
    policy,
    'set <assignments...>',
    'change only the fields given, as key=value (e.g. verify_interval_minutes=60); the API checks each one',
    true,
  ).action(
    run(io, async (ctx, args) => {
      // A variadic argument arrives as one array.
      const assignments = (args[0] ?? []) as unknown as string[];
      const patch = Object.fromEntries(assignments.map(parseAssignment));
      const p = await ctx.client.mutate<Policy>('PATCH', '/policy', patch, ctx.key());
      await ctx.io.out(
        ctx.json ? json(p) : `policy updated: ${Object.keys(patch).join(', ')}\n${fields(Object.entries(p))}`,
      );
    }),
  );
}
