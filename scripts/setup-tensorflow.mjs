#!/usr/bin/env node
// npm run setup:tensorflow — makes TensorFlow.js's native `tensorflow` backend available where
// @tensorflow/tfjs-node's own install cannot download libtensorflow.
//
// TensorFlow's Python wheel carries the same C library (libtensorflow_cc.so.2 exports the C and eager
// C APIs that tfjs-node's binding calls) and its headers. This script downloads that wheel with pip,
// unpacks the library and headers into tfjs-node's deps/ folder, and builds tfjs-node's binding
// against them with node-gyp. Where tfjs-node already loads (its own install worked), it does nothing.
//
//   npm run setup:tensorflow [-- --force] [-- --wheel file.whl] [-- --tf-version 2.21.0]
//
// Environment: HPDL_TF_WHEEL (a wheel already on disk), HPDL_CACHE_DIR (where the wheel is kept;
// default ~/.cache/hpdl).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, symlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir, arch, platform } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(root, 'package.json'));
const TFJS_NODE = '@tensorflow/tfjs-node';
const TFJS_NODE_VERSION = '4.22.0';
const NAPI = 8;

const { values: args } = parseArgs({
  options: {
    force: { type: 'boolean', default: false },
    wheel: { type: 'string' },
    'tf-version': { type: 'string', default: '2.21.0' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (args.help) {
  console.log('usage: npm run setup:tensorflow [-- --force] [-- --wheel FILE.whl] [-- --tf-version X.Y.Z]');
  process.exit(0);
}

class SetupError extends Error {}
const say = (msg) => console.log(`[setup:tensorflow] ${msg}`);

/** Runs a command, streaming its output; throws with `what` when it fails. */
function run(cmd, argv, what, opts = {}) {
  const r = spawnSync(cmd, argv, { stdio: ['ignore', 'inherit', 'inherit'], ...opts });
  if (r.error) throw new SetupError(`${what}: could not run ${cmd} (${r.error.message})`);
  if (r.status !== 0) throw new SetupError(`${what}: ${cmd} ${argv.join(' ')} exited with ${r.status}`);
}

/** Whether tfjs-node loads and computes here, checked in a fresh process; returns the reason if not. */
function tfjsNodeWorks() {
  const code = `
    process.env.TF_CPP_MIN_LOG_LEVEL ??= '2';
    const tf = require(${JSON.stringify(TFJS_NODE)});
    const y = tf.matMul(tf.ones([2, 2]), tf.ones([2, 2])).dataSync();
    if (tf.getBackend() !== 'tensorflow' || y[0] !== 2) throw new Error('the tensorflow backend computed ' + y);`;
  const r = spawnSync(process.execPath, ['-e', code], { cwd: root, encoding: 'utf8' });
  if (r.status === 0) return null;
  const lines = (r.stderr || '').split('\n').filter((l) => /Error|error:/.test(l));
  return lines[0]?.trim() ?? `exit code ${r.status}`;
}

function tfjsNodeDir() {
  try {
    return dirname(require.resolve(`${TFJS_NODE}/package.json`));
  } catch {
    return null;
  }
}

/** tfjs-node's package files, installed without its install script (which would try the download). */
function ensurePackage() {
  let dir = tfjsNodeDir();
  if (dir) return dir;
  say(`installing ${TFJS_NODE}@${TFJS_NODE_VERSION} from the lockfile without its download step (npm install --ignore-scripts)`);
  run('npm', ['install', '--ignore-scripts', '--no-audit', '--no-fund'], `installing ${TFJS_NODE}`, { cwd: root, shell: platform() === 'win32' });
  dir = tfjsNodeDir();
  if (!dir) throw new SetupError(`${TFJS_NODE} is still not installed after npm install; is it in the lockfile as an optional dependency of @hpdl/core?`);
  return dir;
}

/** The TensorFlow wheel: given, cached, or downloaded with pip. */
function getWheel(version) {
  const given = args.wheel ?? process.env.HPDL_TF_WHEEL;
  if (given) {
    if (!existsSync(given)) throw new SetupError(`the wheel ${given} (from ${args.wheel ? '--wheel' : 'HPDL_TF_WHEEL'}) does not exist`);
    return resolve(given);
  }
  if (platform() !== 'linux' || arch() !== 'x64') {
    throw new SetupError(
      `building from TensorFlow's wheel is supported on Linux x86-64; this is ${platform()} ${arch()}. ` +
        `Install ${TFJS_NODE} normally (its install downloads libtensorflow), or pass a wheel holding tensorflow/libtensorflow_cc.so.2 with --wheel`,
    );
  }
  const cache = join(process.env.HPDL_CACHE_DIR ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'hpdl'), `tensorflow-cpu-${version}`);
  const find = () => (existsSync(cache) ? readdirSync(cache).find((f) => f.startsWith(`tensorflow_cpu-${version}-`) && f.endsWith('.whl')) : undefined);
  let file = find();
  if (!file) {
    mkdirSync(cache, { recursive: true });
    say(`downloading tensorflow-cpu ${version} (about 275 MB) with pip into ${cache}`);
    // The wheel's Python tag does not matter (only its C library is used): ask for one fixed build so
    // that the same file is fetched whatever Python runs pip.
    const pipArgs = ['-m', 'pip', 'download', '--no-deps', '--only-binary=:all:', '--platform', 'manylinux_2_27_x86_64',
      '--python-version', '3.11', '--implementation', 'cp', '--abi', 'cp311', '--retries', '1', '--timeout', '30',
      '-d', cache, `tensorflow-cpu==${version}`];
    const python = ['python3', 'python'].find((p) => spawnSync(p, ['-m', 'pip', '--version']).status === 0);
    if (!python) throw new SetupError('pip is needed to download TensorFlow\'s wheel (python3 -m pip); install it, or pass a wheel with --wheel');
    run(python, pipArgs, `downloading tensorflow-cpu ${version}`);
    file = find();
    if (!file) throw new SetupError(`pip finished but no tensorflow_cpu-${version}-*.whl is in ${cache}`);
  }
  return join(cache, file);
}

/** Unpacks the C library and the headers the binding includes into tfjs-node's deps/. */
function unpack(wheel, deps) {
  rmSync(deps, { recursive: true, force: true });
  const staging = `${deps}.staging`;
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true });
  say(`unpacking libtensorflow and its C headers from ${wheel}`);
  // Python's zipfile streams members to disk (the library is ~800 MB); pip's Python is here for sure.
  const py = `
import sys, zipfile
wanted = ('tensorflow/libtensorflow_cc.so.2', 'tensorflow/libtensorflow_framework.so.2')
headers = ('tensorflow/include/tensorflow/c/', 'tensorflow/include/tensorflow/core/platform/ctstring',
           'tensorflow/include/tsl/platform/ctstring', 'tensorflow/include/xla/tsl/c/')
with zipfile.ZipFile(sys.argv[1]) as z:
    names = [n for n in z.namelist() if n in wanted or n.startswith(headers)]
    missing = [w for w in wanted if w not in names]
    if missing:
        sys.exit('the wheel has no ' + ', '.join(missing))
    for n in names:
        z.extract(n, sys.argv[2])
`;
  const python = ['python3', 'python'].find((p) => spawnSync(p, ['--version']).status === 0);
  if (!python) throw new SetupError('python3 is needed to unpack the wheel');
  run(python, ['-c', py, wheel, staging], 'unpacking the wheel');
  mkdirSync(join(deps, 'lib'), { recursive: true });
  renameSync(join(staging, 'tensorflow', 'include'), join(deps, 'include'));
  for (const lib of ['libtensorflow_cc.so.2', 'libtensorflow_framework.so.2']) renameSync(join(staging, 'tensorflow', lib), join(deps, 'lib', lib));
  rmSync(staging, { recursive: true, force: true });
  // The binding links -ltensorflow -ltensorflow_framework and loads libtensorflow.so.2 at run time;
  // the wheel's libtensorflow_cc.so.2 is that library under another name.
  const lib = join(deps, 'lib');
  symlinkSync('libtensorflow_cc.so.2', join(lib, 'libtensorflow.so.2'));
  symlinkSync('libtensorflow.so.2', join(lib, 'libtensorflow.so'));
  symlinkSync('libtensorflow_framework.so.2', join(lib, 'libtensorflow_framework.so'));
}

function nodeGyp() {
  const candidates = [
    process.env.npm_config_node_gyp,
    process.env.npm_execpath && join(dirname(process.env.npm_execpath), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
    join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ].filter(Boolean);
  const found = candidates.find((c) => existsSync(c));
  if (!found) throw new SetupError(`node-gyp was not found (looked at ${candidates.join(', ')}); run this through npm: npm run setup:tensorflow`);
  return found;
}

/** Builds tfjs-node's binding against deps/, into the folder its loader looks in. */
function buildBinding(dir) {
  say('building tfjs-node\'s binding with node-gyp (a C++ compiler, make and python3 are needed)');
  const modulePath = join(dir, 'lib', `napi-v${NAPI}`);
  run(process.execPath, [nodeGyp(), 'rebuild', '--loglevel=warn', '--module_name=tfjs_binding', `--module_path=${modulePath}`, `--napi_build_version=${NAPI}`],
    'building the tfjs-node binding', { cwd: dir });
  rmSync(join(dir, 'build'), { recursive: true, force: true });
}

/** Builds core's helper that keeps the library's load-time log lines off stderr (see its source). */
function buildQuietHelper() {
  const dir = join(root, 'packages', 'core', 'native');
  run(process.execPath, [nodeGyp(), 'rebuild', '--loglevel=warn'], 'building the quiet-stderr helper', { cwd: dir });
  const out = join(dir, 'build', 'Release', 'hpdl_quiet_stderr.node');
  if (!existsSync(out)) throw new SetupError(`node-gyp finished but ${out} is missing`);
}

function main() {
  const version = args['tf-version'];
  const before = tfjsNodeDir() ? tfjsNodeWorks() : 'not installed';
  if (before == null && !args.force) {
    say(`${TFJS_NODE} already loads here: the tensorflow backend is available; nothing to do (--force rebuilds it from TensorFlow's wheel)`);
    return;
  }
  say(`${TFJS_NODE} is not usable yet (${before}); building it from TensorFlow ${version}'s wheel`);
  const dir = ensurePackage();
  const wheel = getWheel(version);
  unpack(wheel, join(dir, 'deps'));
  buildBinding(dir);
  buildQuietHelper();
  const after = tfjsNodeWorks();
  if (after != null) throw new SetupError(`the binding was built but does not work: ${after}`);
  say(`done: the tensorflow backend is available (libtensorflow ${version} in ${join(dir, 'deps', 'lib')}); it is now the default, HPDL_BACKEND=wasm chooses wasm`);
}

try {
  main();
} catch (e) {
  if (!(e instanceof SetupError)) throw e;
  console.error(`[setup:tensorflow] failed: ${e.message}`);
  console.error('[setup:tensorflow] hpdl still runs on the wasm backend (a tfjs-node that does not load is skipped)');
  process.exit(1);
}
