import { tf } from './tf.js';
import type * as TF from '@tensorflow/tfjs-core';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BackendError } from './errors.js';

/** Backends in order of preference. */
export const BACKENDS = ['tensorflow', 'wasm', 'cpu'] as const;
export type BackendName = (typeof BACKENDS)[number];

const require = createRequire(import.meta.url);

const HOW_TO_GET: Record<BackendName, string> = {
  tensorflow:
    'install @tensorflow/tfjs-node (or @tensorflow/tfjs-node-gpu) 4.22, whose install step downloads libtensorflow; where that download is blocked, `npm run setup:tensorflow` in the hpdl repository builds it from TensorFlow\'s Python wheel',
  wasm: 'install @tensorflow/tfjs-backend-wasm 4.22 (a dependency of @hpdl/core; reinstall if it is missing)',
  cpu: 'install @tensorflow/tfjs-backend-cpu 4.22 (a dependency of @hpdl/core; reinstall if it is missing)',
};

let active: BackendName | null = null;
let initialising: Promise<BackendName> | null = null;

const verbose = () => Boolean(process.env.HPDL_VERBOSE);

interface QuietStderr {
  silence(): number;
  restore(fd: number): void;
}

/** Core's optional native helper (built by `npm run setup:tensorflow`), or null where it was not built. */
function quietStderr(): QuietStderr | null {
  const file = join(dirname(fileURLToPath(import.meta.url)), '..', 'native', 'build', 'Release', 'hpdl_quiet_stderr.node');
  if (!existsSync(file)) return null;
  try {
    return require(file) as QuietStderr;
  } catch {
    return null;
  }
}

/**
 * Loads tfjs-node (the GPU build first). Quiet unless HPDL_VERBOSE is set: TensorFlow's C++ logging
 * below errors is turned off (TF_CPP_MIN_LOG_LEVEL, unless the user set it), and the lines its
 * library prints while it loads, before that setting is read, are kept off stderr.
 */
function loadTensorflow(): void {
  const quiet = verbose() ? null : quietStderr();
  if (!verbose()) process.env.TF_CPP_MIN_LOG_LEVEL ??= '2';
  const fd = quiet?.silence() ?? -1;
  try {
    try {
      require('@tensorflow/tfjs-node-gpu');
    } catch {
      require('@tensorflow/tfjs-node');
    }
  } finally {
    if (fd >= 0) quiet!.restore(fd);
  }
}

/** Loads the package that registers a backend; returns the reason it could not, or null. */
function register(name: BackendName): string | null {
  try {
    if (name === 'tensorflow') {
      loadTensorflow();
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
        if (verbose()) console.error(`[hpdl] backend: ${describeBackend()}`);
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

/** One line describing the active backend, for logs: its name and the threads it computes with. */
export function describeBackend(): string {
  const name = backendName();
  if (name === 'wasm') {
    const wasm = require('@tensorflow/tfjs-backend-wasm') as { getThreadsCount?: () => number };
    return `wasm (${wasm.getThreadsCount?.() ?? 1} thread(s))`;
  }
  if (name === 'tensorflow') {
    const { intraOp, interOp } = tensorflowThreads();
    return `tensorflow (${intraOp} intra-op thread(s), ${interOp} inter-op thread(s))`;
  }
  return name;
}

/**
 * The sizes of TensorFlow's thread pools in this process: TF_NUM_INTRAOP_THREADS and
 * TF_NUM_INTEROP_THREADS as set (by `hpdl launch` for each local rank, or by the user), else every core.
 */
export function tensorflowThreads(): { intraOp: number; interOp: number } {
  const read = (v: string | undefined) => (v && Number(v) > 0 ? Math.floor(Number(v)) : availableParallelism());
  return { intraOp: read(process.env.TF_NUM_INTRAOP_THREADS), interOp: read(process.env.TF_NUM_INTEROP_THREADS) };
}

/**
 * Which form of a gradient rule is fastest (and right) on a backend. Rules with more than one form
 * read these; each form is tested against tf.grads and finite differences on every backend.
 */
export interface KernelTraits {
  /** matMul with a transpose flag runs as fast as without one; else operands are transposed first (wasm: 10-25x slower with a flag). */
  transposeFlags: boolean;
  /**
   * The backend's own backprop kernels (Conv2DBackpropInput/Filter, MaxPoolGrad, AvgPoolGrad,
   * TensorFlow's ReluGrad) are fast and exact; else gradients are built from forward kernels (on
   * wasm several backprop kernels are slow or missing).
   */
  nativeBackprop: boolean;
  /** UnsortedSegmentSum exists (the embedding gradient); else a one-hot matmul is used. */
  segmentSum: boolean;
  /** TensorFlow's own ops can be run by name (tfjs-node): ReluGrad, BiasAdd, BiasAddGrad, ... */
  tensorflowOps: boolean;
  /** tf.transpose of rank 3 and more is fast; else such permutations run in JavaScript. */
  fastTranspose: boolean;
  /**
   * One product over many rows beats several products of few rows and their sum (weight gradients
   * accumulated over micro-batches: see Tensor.deferGradProducts).
   */
  batchedWeightGradients: boolean;
}

const TRAITS: Record<BackendName, KernelTraits> = {
  tensorflow: { transposeFlags: true, nativeBackprop: true, segmentSum: true, tensorflowOps: true, fastTranspose: true, batchedWeightGradients: true },
  wasm: { transposeFlags: false, nativeBackprop: false, segmentSum: false, tensorflowOps: false, fastTranspose: false, batchedWeightGradients: false },
  cpu: { transposeFlags: false, nativeBackprop: false, segmentSum: true, tensorflowOps: false, fastTranspose: true, batchedWeightGradients: false },
};

/** The kernel traits of the active backend. */
export function kernelTraits(): KernelTraits {
  return TRAITS[backendName()];
}
