/**
 * The `sluiced` programs the simulator can run on its nodes: the built agent and the bundle.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The built agent: `npx turbo run build` makes it. */
export const SLUICED = fileURLToPath(new URL('../../agent/dist/main.js', import.meta.url));

/** The agent as nodes get it, one file: `node scripts/bundle.mjs` makes it. */
export const SLUICED_BUNDLE = fileURLToPath(
  new URL('../../../dist-bundle/sluiced.mjs', import.meta.url),
);

/**
 * The agent program an `--agent` flag names: `bundle` ({@link SLUICED_BUNDLE}, what the demo,
 * the soak and the benchmark run by default) or `built` ({@link SLUICED}). Throws, saying how to
 * make it, when the name is unknown or the file is missing.
 */
export function agentProgram(kind: string): string {
  const programs: Record<string, [string, string]> = {
    bundle: [SLUICED_BUNDLE, 'node scripts/bundle.mjs'],
    built: [SLUICED, 'npx turbo run build'],
  };
  const found = programs[kind];
  if (!found) throw new Error(`--agent: expected bundle or built, got ${JSON.stringify(kind)}`);
  const [program, make] = found;
  if (!existsSync(program))
    throw new Error(`--agent ${kind}: ${program} is missing; ${make} makes it`);
  return program;
}
