export function ensureOpenMpi(o?: { compiler?: boolean; log?: (s: string) => void }): boolean;
export const MPIRUN_LOCAL_ARGS: string[];
export const MPIRUN_LOCAL_ENV: Record<string, string>;
