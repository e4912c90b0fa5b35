import { defineConfig } from 'vite';

/**
 * The console's build. Preact's JSX goes through Vite's own transformer (oxc) with Preact as the
 * import source, so no framework plugin is needed.
 */
export default defineConfig({
  root: import.meta.dirname,
  base: '/',
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: { outDir: 'dist', emptyOutDir: true, target: 'es2022', sourcemap: false },
  logLevel: 'warn',
});
