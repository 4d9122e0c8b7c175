import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import * as h from '../src/index.js';
import { tensorflowOp1 } from '../src/ops/native.js';
import { availableBackends } from './helpers.js';

const dist = join(dirname(fileURLToPath(import.meta.url)), '../dist/index.js');
const hasTensorflow = (await availableBackends()).includes('tensorflow');

function run(code: string, env: Record<string, string> = {}): { out: string; err: string; code: number } {
  const script = `import * as h from ${JSON.stringify(dist)};\n${code}`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    encoding: 'utf8',
    env: { ...process.env, HPDL_BACKEND: '', HPDL_VERBOSE: '', ...env },
  });
  return { out: r.stdout, err: r.stderr, code: r.status ?? -1 };
}

describe('backend selection', () => {
  it('chooses the best available backend (wasm here, without native TensorFlow) and stays quiet', () => {
    const r = run(`console.log(await h.initBackend());`);
    expect(['tensorflow', 'wasm']).toContain(r.out.trim());
    expect(r.err).toBe('');
  });

  it('reports the backend once in verbose mode', () => {
    const r = run(`await h.initBackend(); await h.initBackend();`, { HPDL_VERBOSE: '1' });
    expect(r.err.match(/\[hpdl\] backend: /g)?.length).toBe(1);
  });

  it('honours HPDL_BACKEND', () => {
    expect(run(`console.log(await h.initBackend());`, { HPDL_BACKEND: 'cpu' }).out.trim()).toBe('cpu');
  });

  it('rejects an unknown backend name, naming the choices', async () => {
    await expect(h.initBackend('gpu')).rejects.toThrow("unknown backend 'gpu' (initBackend argument); expected one of tensorflow, wasm, cpu");
    const r = run(`await h.initBackend();`, { HPDL_BACKEND: 'webgl' });
    expect(r.code).not.toBe(0);
    expect(r.err).toMatch(/unknown backend 'webgl' \(HPDL_BACKEND\)/);
  });

  it('fails clearly, without falling back, when a forced backend is not installed', async () => {
    let native = true;
    try {
      await import('@tensorflow/tfjs-node' as string);
    } catch {
      native = false;
    }
    if (native) return; // where native TensorFlow is installed, forcing it succeeds
    const r = run(`await h.initBackend('tensorflow');`);
    expect(r.code).not.toBe(0);
    expect(r.err).toMatch(/backend 'tensorflow' was asked for but is not available .*install @tensorflow\/tfjs-node/);
  });

  it('says which gradient forms each backend gets; TensorFlow ops by name only on tensorflow', async () => {
    await h.initBackend('wasm');
    expect(h.kernelTraits()).toEqual({ transposeFlags: false, nativeBackprop: false, segmentSum: false, tensorflowOps: false, fastTranspose: false, batchedWeightGradients: false });
    expect(() => tensorflowOp1('ReluGrad', [h.tf.ones([2]), h.tf.ones([2])])).toThrow("the TensorFlow op ReluGrad needs the tensorflow backend; the active one is wasm");
    await h.initBackend('cpu');
    expect(h.kernelTraits()).toMatchObject({ nativeBackprop: false, segmentSum: true, tensorflowOps: false });
  });

  it.runIf(hasTensorflow)('on tensorflow: native rules, the thread pools reported, and quiet unless verbose', () => {
    const r = run(`await h.initBackend(); console.log(JSON.stringify(h.kernelTraits())); console.log(h.describeBackend());`, { TF_NUM_INTRAOP_THREADS: '1', TF_NUM_INTEROP_THREADS: '1' });
    expect(r.err).toBe('');
    const [traits, described] = r.out.trim().split('\n');
    expect(JSON.parse(traits!)).toEqual({ transposeFlags: true, nativeBackprop: true, segmentSum: true, tensorflowOps: true, fastTranspose: true, batchedWeightGradients: true });
    expect(described).toBe('tensorflow (1 intra-op thread(s), 1 inter-op thread(s))');
    const verbose = run(`await h.initBackend();`, { HPDL_VERBOSE: '1', TF_NUM_INTRAOP_THREADS: '2', TF_NUM_INTEROP_THREADS: '1' });
    expect(verbose.err).toMatch(/\[hpdl\] backend: tensorflow \(2 intra-op thread\(s\), 1 inter-op thread\(s\)\)/);
  });

  it('switches backends on request within a process', async () => {
    expect(await h.initBackend('cpu')).toBe('cpu');
    expect(h.backendName()).toBe('cpu');
    expect(await h.initBackend('wasm')).toBe('wasm');
    expect(h.describeBackend()).toMatch(/^wasm/);
  });
});
