/**
 * What the read queries of the HTTP API share. Every query in this folder takes the project it
 * answers for and never returns another project's rows (a lineage id from another project reads as
 * "not found"). Lists page as `../page.ts` says.
 */
import type { Kysely } from 'kysely';
import type { ReadStoreDB } from '../schema';

export type Db = Kysely<ReadStoreDB>;

export const json = <T>(text: string | null): T | null => (text === null ? null : (JSON.parse(text) as T));
