import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';

/** `--persist` for the emulators that keep their state in memory: a JSON file, loaded at start, saved at stop. */
export const loadState = async <T>(path: string): Promise<T | undefined> => {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
};

export const saveState = async (path: string, state: unknown): Promise<void> => {
  await mkdir(dirname(path), { recursive: true });
  // write then rename, so a crash mid-write never leaves a truncated file behind
  const temporary = `${path}.${process.pid}.tmp`;
  await writeFile(temporary, JSON.stringify(state));
  await rename(temporary, path);
};
