import { en } from 'zod/locales';
import * as z from 'zod/mini';

/**
 * zod for everything that is bundled into a Lambda or the pod: the tree-shakeable mini API with the
 * English error messages, which the mini API does not load on its own. Import it as a namespace,
 * `import * as z from './zod.js'`, so a bundle keeps only the parts it uses.
 */
z.config(en());

export * from 'zod/mini';
/** Every error a failed parse throws. */
export { $ZodError as ZodError } from 'zod/v4/core';
