import { processIo } from './output';
import { runCli } from './program';

// `sluice … | head` closes stdout early: that is not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

runCli(process.argv.slice(2), processIo()).then(
  ({ code, daemon }) => {
    // Roles keep running until a signal; everything else ends here, with an exit code scripts can
    // trust (stdout and stderr are synchronous for files and pipes on Linux: nothing is cut off).
    if (!daemon) process.exit(code);
  },
  (err: unknown) => {
    console.error(`sluice: ${(err as Error).message}`);
    process.exit(1);
  },
);
