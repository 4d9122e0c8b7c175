import { tf } from './tf.js';
import type * as TF from '@tensorflow/tfjs-core';
import { createRequire } from 'node:module';
import { BackendError } from './errors.js';

/** Backends in order of preference. */
export const BACKENDS = ['tensorflow', 'wasm', 'cpu'] as const;
export type BackendName = (typeof BACKENDS)[number];

const require = createRequire(import.meta.url);

const HOW_TO_GET: Record<BackendName, string> = {
  tensorflow:
    'install @tensorflow/tfjs-node (or @tensorflow/tfjs-node-gpu) 4.22; its install step downloads libtensorflow, so it needs access to that download',
  wasm: 'install @tensorflow/tfjs-backend-wasm 4.22 (a dependency of @hpdl/core; reinstall if it is missing)',
  cpu: 'install @tensorflow/tfjs-backend-cpu 4.22 (a dependency of @hpdl/core; reinstall if it is missing)',
};

let active: BackendName | null = null;
let initialising: Promise<BackendName> | null = null;

/** Loads the package that registers a backend; returns the reason it could not, or null. */
function register(name: BackendName): string | null {
  try {
    if (name === 'tensorflow') {
      try {
        require('@tensorflow/tfjs-node-gpu');
      } catch {
        require('@tensorflow/tfjs-node');
      }
    } else if (name === 'wasm') {
      require('@tensorflow/tfjs-backend-wasm');
    } else {
      require('@tensorflow/tfjs-backend-cpu');
    }
  } catch (e) {
    return (e as Error).message.split('\n')[0] ?? String(e);
  }
  if (tf.findBackendFactory(name) == null) return `no '${name}' backend was registered`;
  return null;
}

async function tryBackend(name: BackendName): Promise<string | null> {
  const reason = register(name);
  if (reason != null) return reason;
  try {
    const ok = await tf.setBackend(name);
    if (!ok) return `'${name}' failed to initialise`;
    await tf.ready();
  } catch (e) {
    return (e as Error).message;
  }
  return null;
}

function parseName(name: string, where: string): BackendName {
  const n = name.trim().toLowerCase();
  if ((BACKENDS as readonly string[]).includes(n)) return n as BackendName;
  throw new BackendError(`unknown backend '${name}' (${where}); expected one of ${BACKENDS.join(', ')}`);
}

/**
 * Initialises the TensorFlow.js backend: the one named (argument, then HPDL_BACKEND), or the best
 * available. A named backend that cannot be had is an error, never a silent fallback.
 */
export async function initBackend(name?: BackendName | string): Promise<BackendName> {
  const forced =
    name != null ? parseName(name, 'initBackend argument')
    : process.env.HPDL_BACKEND ? parseName(process.env.HPDL_BACKEND, 'HPDL_BACKEND')
    : null;
  if (active != null && (forced == null || forced === active)) return active;
  if (initialising != null && forced == null) return initialising;
  initialising = (async () => {
    const tried: string[] = [];
    for (const candidate of forced ? [forced] : BACKENDS) {
      const reason = await tryBackend(candidate);
      if (reason == null) {
        active = candidate;
        if (process.env.HPDL_VERBOSE) console.error(`[hpdl] backend: ${describeBackend()}`);
        return candidate;
      }
      tried.push(`${candidate}: ${reason}`);
      if (forced) {
        throw new BackendError(
          `backend '${candidate}' was asked for but is not available (${reason}); to get it, ${HOW_TO_GET[candidate]}`,
        );
      }
    }
    throw new BackendError(`no TensorFlow.js backend could be initialised: ${tried.join('; ')}`);
  })();
  try {
    return await initialising;
  } finally {
    initialising = null;
  }
}

/** The active backend's name; throws if initBackend has not completed. */
export function backendName(): BackendName {
  if (active == null) {
    const current = tf.getBackend() as string | undefined;
    if (current && (BACKENDS as readonly string[]).includes(current)) return current as BackendName;
    throw new BackendError('no backend is initialised: call `await initBackend()` first');
  }
  return active;
}

/** One line describing the active backend, for logs: name, and threads for wasm. */
export function describeBackend(): string {
  const name = backendName();
  if (name === 'wasm') {
    const wasm = require('@tensorflow/tfjs-backend-wasm') as { getThreadsCount?: () => number };
    return `wasm (${wasm.getThreadsCount?.() ?? 1} thread(s))`;
  }
  return name;
}

/**
 * Whether matMul with a transpose flag is slow here, so that gradient rules transpose explicitly
 * (measured on wasm: 10-25x slower with a flag than transpose followed by a plain matMul).
 */
export function explicitTranspose(): boolean {
  return backendName() !== 'tensorflow';
}
