import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The run state machine: the one ASL file both CDK and the local cloud deploy. */
export const ASL_PATH = fileURLToPath(new URL('../../statemachine/run.asl.json', import.meta.url));

const PLACEHOLDER = /\$\{([A-Za-z0-9_]+)\}/g;

/**
 * The definition as CDK's `definitionSubstitutions` deploys it: each `${Name}` replaced by its value
 * as plain text, before the JSON is parsed. A placeholder left without a value is an error here,
 * because locally it would only surface later as a confusing task failure.
 */
export function renderDefinition(substitutions: Record<string, string>): string {
  const template = readFileSync(ASL_PATH, 'utf8');
  const missing = new Set<string>();
  const rendered = template.replace(PLACEHOLDER, (placeholder, name: string) => {
    const value = substitutions[name];
    if (value === undefined) missing.add(name);
    return value ?? placeholder;
  });
  if (missing.size > 0) {
    throw new Error(
      `${ASL_PATH}: no substitution for ${[...missing].map((name) => `\${${name}}`).join(', ')}`,
    );
  }
  return rendered;
}
