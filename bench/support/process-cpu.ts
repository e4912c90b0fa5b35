import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';

let clockTicks: number | undefined;
const ticksPerSecond = () => {
  try {
    clockTicks ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    clockTicks = 100;
  }
  return clockTicks;
};

/**
 * CPU time (user + system, ms) another process has used so far, read from /proc; undefined where
 * there is no /proc (macOS) or no such process.
 */
export const processCpuMs = async (pid: number | undefined): Promise<number | undefined> => {
  if (pid === undefined) return undefined;
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // after the command name, which may hold spaces: state is field 3, utime 14 and stime 15
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / ticksPerSecond();
  } catch {
    return undefined;
  }
};
