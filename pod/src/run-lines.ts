import { Writable } from 'node:stream';
import { podLogPrefix } from '../../shared/schemas/pod-log.js';

/**
 * `output` with the run's prefix at the start of every line written to it, whoever writes (the pod's
 * own lines, the hooks', the agent's). A chunk may end inside a line: the prefix goes only where a
 * line starts.
 */
export const runLines = (output: NodeJS.WritableStream, runId: string): NodeJS.WritableStream => {
  const prefix = podLogPrefix(runId);
  let atLineStart = true;
  return new Writable({
    write(chunk: Buffer | string, _encoding, done) {
      const text = chunk.toString();
      const lines = text.split('\n');
      const prefixed = lines
        .map((line, i) => {
          const starts = i === 0 ? atLineStart : true;
          const last = i === lines.length - 1;
          return starts && !(last && line === '') ? `${prefix}${line}` : line;
        })
        .join('\n');
      if (text !== '') atLineStart = text.endsWith('\n');
      // straight through, nothing held here: what the output queues is flushed before the process exits
      output.write(prefixed);
      done();
    },
  });
};
