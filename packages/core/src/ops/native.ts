import { tf } from '../tf.js';
import type * as TF from '@tensorflow/tfjs-core';
import { BackendError } from '../errors.js';

interface Attr {
  name: string;
  type: number;
  value: unknown;
}

/** The part of tfjs-node's backend used here: it runs any TensorFlow op by name. */
interface TensorflowBackend {
  executeMultipleOutputs(name: string, attrs: Attr[], inputs: TF.Tensor[], outputs: number): TF.Tensor[];
  binding: Record<'TF_ATTR_TYPE' | 'TF_ATTR_BOOL' | 'TF_ATTR_STRING' | 'TF_FLOAT' | 'TF_INT32', number>;
}

/** An op attribute: a boolean, a string, or a dtype (written { dtype: 'int32' }). */
export type AttrValue = boolean | string | { dtype: 'float32' | 'int32' };

function tensorflowBackend(name: string): TensorflowBackend {
  const backend = tf.backend() as unknown as Partial<TensorflowBackend>;
  if (typeof backend.executeMultipleOutputs !== 'function' || backend.binding == null) {
    throw new BackendError(`the TensorFlow op ${name} needs the tensorflow backend; the active one is ${tf.getBackend()}`);
  }
  return backend as TensorflowBackend;
}

/**
 * Runs a TensorFlow op by name on the tensorflow backend, for what TensorFlow.js has no kernel for
 * (ReluGrad, BiasAddGrad, the sparse softmax cross-entropy) or reaches only through extra ops (a
 * 2-D MatMul without reshapes to 3-D). Type attribute T is float32 unless `attrs` says otherwise.
 * The results are tracked by TensorFlow.js like any other tensor.
 */
export function tensorflowOp(name: string, inputs: TF.Tensor[], attrs: Record<string, AttrValue> = {}, outputs = 1): TF.Tensor[] {
  const backend = tensorflowBackend(name);
  const b = backend.binding;
  const list: Attr[] = Object.entries({ T: { dtype: 'float32' } as AttrValue, ...attrs }).map(([k, v]) =>
    typeof v === 'boolean' ? { name: k, type: b.TF_ATTR_BOOL, value: v }
    : typeof v === 'string' ? { name: k, type: b.TF_ATTR_STRING, value: v }
    : { name: k, type: b.TF_ATTR_TYPE, value: v.dtype === 'int32' ? b.TF_INT32 : b.TF_FLOAT },
  );
  return backend.executeMultipleOutputs(name, list, inputs, outputs);
}

/** `tensorflowOp` of an op with one output. */
export function tensorflowOp1(name: string, inputs: TF.Tensor[], attrs: Record<string, AttrValue> = {}): TF.Tensor {
  return tensorflowOp(name, inputs, attrs)[0]!;
}
