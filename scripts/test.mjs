#!/usr/bin/env node
// npm test — every package's tests on the wasm backend (always installed), then, where the native
// `tensorflow` backend is available (tfjs-node installed normally, or `npm run setup:tensorflow`),
// again on it for the packages whose results depend on the backend. Exits non-zero if any run fails.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// comm moves bytes and knows nothing of tensors: its results do not depend on the backend.
const BACKEND_DEPENDENT = ['@hpdl/core', '@hpdl/pipeline', '@hpdl/examples'];

function turbo(backend, filters) {
  console.log(`\n[test] ${filters.length ? filters.join(', ') : 'every package'} on the ${backend} backend`);
  const args = ['turbo', 'run', 'test', '--concurrency=1', ...filters.map((f) => `--filter=${f}`)];
  const r = spawnSync('npx', args, { cwd: root, stdio: 'inherit', env: { ...process.env, HPDL_BACKEND: backend } });
  return r.status === 0;
}

/** Whether `initBackend('tensorflow')` succeeds in a fresh process (after the build). */
function tensorflowAvailable() {
  const core = join(root, 'packages', 'core', 'dist', 'index.js');
  const code = `import { initBackend } from ${JSON.stringify(core)}; await initBackend('tensorflow');`;
  return spawnSync(process.execPath, ['--input-type=module', '-e', code], { cwd: root, stdio: 'ignore' }).status === 0;
}

let ok = turbo('wasm', []);
if (tensorflowAvailable()) ok = turbo('tensorflow', BACKEND_DEPENDENT) && ok;
else console.log('\n[test] the tensorflow backend is not available here: tests ran on wasm only (npm run setup:tensorflow adds it)');
process.exit(ok ? 0 : 1);
