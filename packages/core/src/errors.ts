/** Base class of every error raised by @hpdl/core. */
export class HpdlError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** Two shapes that an operation cannot combine, or a shape that is not what was expected. */
export class ShapeError extends HpdlError {}

/** A backend that was asked for is not available, or none could be initialised. */
export class BackendError extends HpdlError {}

/** Misuse of autograd: backward twice through a released graph, a non-scalar without gradients, ... */
export class AutogradError extends HpdlError {}

/** A checkpoint file that is truncated, foreign, or does not match the model it is loaded into. */
export class CheckpointError extends HpdlError {}

/** Formats a shape the way error messages print it: `[8,128]`. */
export function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(',')}]`;
}
