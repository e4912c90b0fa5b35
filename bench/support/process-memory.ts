import { readdir, readFile } from 'node:fs/promises';

/**
 * The resident memory of a process tree, read from /proc (Linux only): what `ps` would sum, without
 * spawning it every sample. Shared pages count once per process, so the sum is an upper bound.
 */

const pids = async (): Promise<number[]> =>
  (await readdir('/proc')).flatMap((name) => (/^\d+$/.test(name) ? [Number(name)] : []));

/** A process ended between listing and reading: it simply is not there. */
const read = async (file: string): Promise<string | undefined> =>
  readFile(file, 'utf8').catch(() => undefined);

/** The process whose environment holds `name=value`, if one runs. */
export const processWithVariable = async (name: string, value: string): Promise<number | undefined> => {
  const wanted = `${name}=${value}`;
  for (const pid of await pids()) {
    const environ = await read(`/proc/${pid}/environ`);
    if (environ?.split('\0').includes(wanted)) return pid;
  }
  return undefined;
};

const parentOf = async (pid: number): Promise<number | undefined> => {
  const stat = await read(`/proc/${pid}/stat`);
  // after the command name, which may hold spaces: state, then the parent's pid
  return stat === undefined ? undefined : Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
};

const residentKiB = async (pid: number): Promise<number> => {
  const status = await read(`/proc/${pid}/status`);
  return Number(status?.match(/^VmRSS:\s+(\d+) kB$/m)?.[1] ?? 0);
};

/** The resident set of `root` and all its descendants, in KiB; 0 once the tree is gone. */
export const treeResidentKiB = async (root: number): Promise<number> => {
  const all = await pids();
  const parents = new Map(await Promise.all(all.map(async (pid) => [pid, await parentOf(pid)] as const)));
  const tree = new Set([root]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const [pid, parent] of parents) {
      if (parent !== undefined && tree.has(parent) && !tree.has(pid)) {
        tree.add(pid);
        grew = true;
      }
    }
  }
  const sizes = await Promise.all([...tree].filter((pid) => parents.has(pid)).map(residentKiB));
  return sizes.reduce((a, b) => a + b, 0);
};
