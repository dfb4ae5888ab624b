import { z } from 'zod';
import { CliError, EXIT } from './client';

const actionSchema = z
  .object({
    column: z.string().min(1),
    action: z.enum(['mirror', 'map', 'ignore', 'defer', 'auto_create_and_map']),
    mirror_column_name: z.string().min(1).max(63).optional(),
    data_point: z.string().min(1).max(200).optional(),
  })
  .strict();
export type ColumnAction = z.infer<typeof actionSchema>;

const fileSchema = z.union([
  z.array(actionSchema),
  z.object({ column_actions: z.array(actionSchema) }).passthrough(),
]);

export type ActionFlags = Readonly<{
  /** `col` or `col:mirror_name`, each possibly comma-separated. */
  mirror?: readonly string[];
  ignore?: readonly string[];
  defer?: readonly string[];
}>;

const split = (values: readonly string[] | undefined) =>
  (values ?? [])
    .flatMap((v) => v.split(','))
    .map((v) => v.trim())
    .filter((v) => v.length > 0);

/** Parse the JSON of `--actions FILE`: an array of column actions or `{column_actions: [...]}`. */
export function parseActionsFile(text: string, source: string): ColumnAction[] {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new CliError(EXIT.usage, `${source} is not JSON: ${(err as Error).message}`);
  }
  const parsed = fileSchema.safeParse(raw);
  if (!parsed.success) {
    const i = parsed.error.issues[0];
    throw new CliError(
      EXIT.usage,
      `${source}: ${i?.path.join('.') || 'document'}: ${i?.message ?? 'invalid'}`,
      'expected [{"column":"mode","action":"mirror","mirror_column_name":"hvac_mode"}, …] (actions: mirror, map, ignore, defer, auto_create_and_map)',
    );
  }
  return Array.isArray(parsed.data) ? parsed.data : parsed.data.column_actions;
}

/**
 * The column actions of an approval from `--mirror/--ignore/--defer`, checked against the
 * review's columns when they are known. Columns not named keep the server default (mirror under
 * their own name); no flags at all means "mirror every column" (undefined).
 */
export function actionsFromFlags(
  flags: ActionFlags,
  knownColumns?: readonly string[],
): ColumnAction[] | undefined {
  const known = knownColumns ? new Set(knownColumns) : undefined;
  const out: ColumnAction[] = [];
  const seen = new Set<string>();
  const add = (a: ColumnAction) => {
    if (seen.has(a.column))
      throw new CliError(EXIT.usage, `column ${JSON.stringify(a.column)} is given more than one action`);
    if (known && !known.has(a.column))
      throw new CliError(
        EXIT.usage,
        `the schema under review has no column ${JSON.stringify(a.column)}`,
        `its columns: ${[...known].join(', ')}`,
      );
    seen.add(a.column);
    out.push(a);
  };
  for (const spec of split(flags.mirror)) {
    // `col:name` renames; an exact column name (which may itself contain ':') does not.
    const at = spec.lastIndexOf(':');
    if (at <= 0 || known?.has(spec)) add({ column: spec, action: 'mirror' });
    else {
      const name = spec.slice(at + 1);
      if (!name)
        throw new CliError(EXIT.usage, `--mirror ${spec}: the mirror column name after ":" is empty`);
      add({ column: spec.slice(0, at), action: 'mirror', mirror_column_name: name });
    }
  }
  for (const c of split(flags.ignore)) add({ column: c, action: 'ignore' });
  for (const c of split(flags.defer)) add({ column: c, action: 'defer' });
  return out.length > 0 ? out : undefined;
}
