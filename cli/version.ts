import pkg from '../package.json';

/** The version of this checkout, as package.json says (`sluice --version`, `sluice-agent --version`). */
export const VERSION: string = pkg.version;
