/** Where the CLI writes: stdout for answers, stderr for errors and progress. */
export type Io = Readonly<{
  out: (text: string) => Promise<void>;
  err: (text: string) => void;
  /** A stream for a progress bar, when stderr is a terminal (never in tests or pipes). */
  progress?: NodeJS.WritableStream;
}>;

export function processIo(): Io {
  return {
    // Respect backpressure: `rows staged --all --json` can print a lot.
    out: (text) =>
      process.stdout.write(text)
        ? Promise.resolve()
        : new Promise((resolve) => process.stdout.once('drain', () => resolve())),
    err: (text) => {
      process.stderr.write(text);
    },
    ...(process.stderr.isTTY ? { progress: process.stderr } : {}),
  };
}

export const json = (v: unknown): string => `${JSON.stringify(v, null, 2)}\n`;
