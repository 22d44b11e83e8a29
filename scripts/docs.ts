/**
 * Regenerates the parts of the docs that are drawn from the code, so that they cannot drift:
 * the lifecycle diagram in docs/sluiced.md (from core's transition table) and its settings
 * reference (from sluiced's settings table). Tests fail when a
 * generated block is stale; run `npm run docs` to update it.
 *
 *   npm run docs
 */
import { readFile, writeFile } from 'node:fs/promises';
import { settingsReference } from '@sluice/agent';
import { renderTransitions } from '@sluice/core';

/** Replaces the text between `<!-- name:begin -->` and `<!-- name:end -->` in `file`. */
async function fill(file: string, name: string, body: string): Promise<boolean> {
  const path = new URL(`../${file}`, import.meta.url);
  const text = await readFile(path, 'utf8');
  const begin = `<!-- ${name}:begin -->\n`;
  const end = `\n<!-- ${name}:end -->`;
  const at = text.indexOf(begin);
  const to = text.indexOf(end, at);
  if (at === -1 || to === -1) throw new Error(`${file} has no ${name} block`);
  const next = text.slice(0, at + begin.length) + body + text.slice(to);
  if (next === text) return false;
  await writeFile(path, next);
  return true;
}

const lifecycle = await fill(
  'docs/sluiced.md',
  'lifecycle',
  `\`\`\`mermaid\n${renderTransitions()}\n\`\`\``,
);
const settings = await fill('docs/sluiced.md', 'settings', await settingsReference());
if (lifecycle) console.log('docs/sluiced.md: lifecycle diagram updated');
if (settings) console.log('docs/sluiced.md: settings reference updated');
if (!lifecycle && !settings) console.log('docs are up to date');
