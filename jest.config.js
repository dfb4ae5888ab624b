/** Test projects by file suffix: unit (no IO), int (real servers), e2e (whole processes). */
const esbuild = '<rootDir>/tests/support/esbuild-jest.js';
const transform = { '^.+\\.ts$': esbuild };
const common = {
  transform,
  testEnvironment: 'node',
  moduleFileExtensions: ['ts', 'js', 'json'],
  // Dynamic imports name their target as Node resolves it (`./roles.js` for `./roles.ts`).
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
};
module.exports = {
  projects: [
    { ...common, displayName: 'unit', testMatch: ['<rootDir>/**/*.unit.test.ts'] },
    { ...common, displayName: 'int', testMatch: ['<rootDir>/**/*.int.test.ts'], slowTestThreshold: 30 },
    { ...common, displayName: 'e2e', testMatch: ['<rootDir>/**/*.e2e.test.ts'], slowTestThreshold: 60 },
  ],
  testPathIgnorePatterns: ['/node_modules/', '/.data/'],
  testTimeout: 90_000,
  globalSetup: '<rootDir>/tests/support/global-setup.js',
  globalTeardown: '<rootDir>/tests/support/global-teardown.js',
};
