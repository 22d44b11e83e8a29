/**
 * The agent's instance token: a random id made at the agent's first start and kept on local disk
 * (default `/var/lib/sluice/instance`, systemd's StateDirectory). It tells this agent's own keys
 * in etcd from those of another machine that shares the node id (see DESIGN.md, "One node, one
 * agent").
 *
 * A token file copied into another machine (an image made after sluiced ran) would make the copy
 * pass for the original. So the file also keeps the machine's DMI product UUID when there is one
 * (virtual machines get a new one when cloned), and a token found on a machine with another UUID
 * is replaced by a new one.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { SluiceError } from '@sluice/core';

/** Where the token is kept by default: systemd's StateDirectory, else /var/lib/sluice. */
export function defaultTokenFile(env: NodeJS.ProcessEnv = process.env): string {
  const state = env.STATE_DIRECTORY?.split(':')[0];
  return `${state || '/var/lib/sluice'}/instance`;
}

/** The machine's DMI product UUID, where the kernel shows one. */
export const PRODUCT_UUID_FILE = '/sys/class/dmi/id/product_uuid';

const TOKEN = /^[A-Za-z0-9-]{16,64}$/;

async function readText(path: string): Promise<string | null> {
  try {
    return (await readFile(path, 'utf8')).trim();
  } catch {
    return null;
  }
}

/**
 * Reads the instance token from `path`, or makes one and writes it there (mode 0600, atomically).
 * A token written on a machine with another product UUID is replaced. Throws an `invalid-config`
 * SluiceError naming the file when it can be neither read nor written.
 */
export async function instanceToken(
  path: string,
  machineFile: string = PRODUCT_UUID_FILE,
): Promise<{ token: string; created: boolean }> {
  const machine = (await readText(machineFile)) || null;
  const text = await readText(path);
  if (text !== null) {
    const [token = '', ...rest] = text.split('\n');
    const recorded = rest.find((l) => l.startsWith('machine '))?.slice('machine '.length) ?? null;
    if (TOKEN.test(token) && (recorded === null || machine === null || recorded === machine)) {
      return { token, created: false };
    }
  }
  const token = randomUUID();
  const body = machine ? `${token}\nmachine ${machine}\n` : `${token}\n`;
  try {
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    const tmp = `${path}.${process.pid}.tmp`;
    await writeFile(tmp, body, { mode: 0o600 });
    await rename(tmp, path);
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code ?? 'unwritable';
    throw new SluiceError(
      'invalid-config',
      `cannot write the instance token file ${path} (${code}): sluiced keeps its identity there; make it writable or set node.tokenFile (--token-file, SLUICE_TOKEN_FILE)`,
      path,
      { cause },
    );
  }
  return { token, created: true };
}

/** Where Linux keeps the id of the current boot. */
export const DEFAULT_BOOT_ID_FILE = '/proc/sys/kernel/random/boot_id';

/**
 * Reads the boot id. Without one the agent cannot tell a reboot from a restart, and could ask
 * for the same reboot on every boot: an unreadable or empty file is a config error.
 */
export async function readBootId(path = DEFAULT_BOOT_ID_FILE): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    const why = error instanceof Error ? error.message : String(error);
    throw new SluiceError(
      'invalid-config',
      `cannot read the boot id from ${path}: ${why} (set --boot-id-file or SLUICE_BOOT_ID_FILE)`,
    );
  }
  const id = text.trim();
  if (id === '') throw new SluiceError('invalid-config', `the boot id file ${path} is empty`);
  return id;
}
