/**
 * Headless Chromium (Debian's `chromium`) for the tests of HTML pages: loads one local file with
 * no network and a fresh profile, and returns the DOM after its scripts ran and every console
 * message the page wrote (Chromium logs them to stderr as `INFO:CONSOLE`). Its process group is
 * killed if it does not finish in time.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { findTool } from '../deploy/helpers.js';

/** The chromium binary, or undefined when this machine has none. */
export const CHROMIUM = findTool(['/usr/bin/chromium']);

/** What a page load gave. */
export interface PageLoad {
  /** The DOM as serialised after load (`--dump-dom`). */
  dom: string;
  /** Console messages of the page: errors, uncaught exceptions, logs. */
  console: string[];
  stderr: string;
}

/** Loads `file` in headless Chromium and dumps its DOM. */
export async function loadPage(
  chromium: string,
  file: string,
  timeoutMs = 30_000,
): Promise<PageLoad> {
  const profile = await mkdtemp(join(tmpdir(), 'sluice-chromium-'));
  try {
    const child = spawn(
      chromium,
      [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
        `--user-data-dir=${profile}`,
        '--enable-logging=stderr',
        '--v=0',
        '--dump-dom',
        pathToFileURL(file).href,
      ],
      {
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { PATH: process.env.PATH, HOME: profile },
      },
    );
    let dom = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      dom += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // Gone already.
      }
    }, timeoutMs);
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    clearTimeout(timer);
    if (code !== 0) throw new Error(`chromium exited ${code}:\n${stderr.slice(-2000)}`);
    const console = stderr.split('\n').filter((line) => line.includes(':CONSOLE'));
    return { dom, console, stderr };
  } finally {
    await rm(profile, { recursive: true, force: true });
  }
}
