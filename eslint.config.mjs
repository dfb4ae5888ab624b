import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const ioModules = [
  'node:*',
  'fs',
  'path',
  'os',
  'crypto',
  'net',
  'http',
  'child_process',
  'worker_threads',
  '@nats-io/*',
  'mqtt',
  'better-sqlite3',
  'kysely',
  'pg',
  'fastify',
  'pino',
  'prom-client',
  'uuidv7',
  // The adapters and the roles built on the domain: the domain never reaches back into them.
  '**/infra/**',
  '**/projections/**',
  '**/worker/**',
  '**/bridge/**',
  '**/api/**',
  '**/cli/**',
  '**/edge-agent/**',
];

export default tseslint.config(
  { ignores: ['node_modules/**', '.data/**', 'coverage/**', 'dist/**', 'console/dist/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  {
    files: ['**/*.js', '**/*.cjs'],
    languageOptions: {
      sourceType: 'commonjs',
      globals: {
        require: 'readonly',
        module: 'writable',
        process: 'readonly',
        __dirname: 'readonly',
        console: 'readonly',
      },
    },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    files: ['infra/build/**/*.mjs'],
    languageOptions: { sourceType: 'module', globals: { process: 'readonly', console: 'readonly' } },
  },
  {
    // The domain is pure: decisions take time, ids and policy as inputs and never touch IO.
    files: ['domain/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        { patterns: [{ group: ioModules, message: 'domain/ is pure: no IO imports.' }] },
      ],
      'no-restricted-globals': [
        'error',
        'process',
        'fetch',
        'setTimeout',
        'setInterval',
        'performance',
        'crypto',
        'require',
      ],
      'no-restricted-syntax': [
        'error',
        {
          selector: "NewExpression[callee.name='Date'][arguments.length=0]",
          message: 'Time comes in with the command.',
        },
        {
          selector: "MemberExpression[object.name='Math'][property.name='random']",
          message: 'Randomness comes in with the command.',
        },
        {
          selector: "MemberExpression[object.name='Date'][property.name='now']",
          message: 'Time comes in with the command.',
        },
        {
          selector: "MemberExpression[object.name='performance'][property.name='now']",
          message: 'Time comes in with the command.',
        },
        {
          selector: "MemberExpression[property.name='randomUUID']",
          message: 'Ids come in with the command.',
        },
        {
          selector: "MemberExpression[property.name='getRandomValues']",
          message: 'Randomness comes in with the command.',
        },
      ],
    },
  },
);
