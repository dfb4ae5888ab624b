/**
 * Operator verbs of the `sluice` CLI. They talk to the HTTP API only (never to NATS or the read
 * store directly), so they work from any machine that can reach it, with the token's permissions.
 * One module per command group in cli/operator/; what they share is in cli/operator/common.ts.
 */
import type { Command } from 'commander';
import type { Io } from './output';
import { registerAuditCommands } from './operator/audit';
import { registerControlCommands } from './operator/controls';
import { registerLineageCommands } from './operator/lineages';
import { registerRejectionCommands } from './operator/rejections';
import { registerReviewCommands } from './operator/reviews';
import { registerRowCommands } from './operator/rows';

/** In this order in `sluice --help`. */
export function registerOperatorCommands(program: Command, io: Io): void {
  registerLineageCommands(program, io);
  registerReviewCommands(program, io);
  registerRowCommands(program, io);
  registerAuditCommands(program, io);
  registerControlCommands(program, io);
  registerRejectionCommands(program, io);
}
